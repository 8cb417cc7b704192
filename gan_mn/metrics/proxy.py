"""``cifar10-proxy``: a small CIFAR-10 CNN registered with torch-fidelity, for measuring
offline (no Inception download) and fast on a CPU.

Four conv blocks (two 3x3 convolutions with BatchNorm and ReLU each, max-pooling
between), global average pooling to a 256-d embedding and a linear layer to 10 logits,
trained as a classifier on the CIFAR-10 subset (the first 1,017 images of each training
batch file; ``--data.per_batch_file 1017``). Its weights ship with the package
(``cifar10_proxy.pt``). Features: ``features`` (the 256-d embedding; FID, KID, PRC) and
``logits_unbiased`` (IS).

Its FID and IS compare runs with each other only: they are not Inception FID/IS and are
on another scale. The committed studies used this network with these weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from gan_mn.torch_files import load

NAME = "cifar10-proxy"
WEIGHTS = Path(__file__).with_name("cifar10_proxy.pt")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class ProxyNet(nn.Module):
    """Four conv blocks, global average pooling, a 256-d embedding and 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_block(3, 64), _block(64, 128), _block(128, 256),
                                     _block(256, 256)])
        self.fc = nn.Linear(256, 10)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def embed(self, x: Tensor) -> Tensor:
        """``x``: float images in [0, 1], ``(N, 3, 32, 32)``."""
        x = (x - self.mean) / self.std
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.blocks) - 1:
                x = F.max_pool2d(x, 2)
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.embed(x))


class CifarProxyExtractor(FeatureExtractorBase):
    """torch-fidelity's extractor interface around :class:`ProxyNet`: uint8 images in,
    resized to 32x32 if needed."""

    def __init__(self, name: str, features_list: list[str],
                 feature_extractor_weights_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(name, features_list)
        self.net = ProxyNet()
        state = load(feature_extractor_weights_path or WEIGHTS, "weights file")
        self.net.load_state_dict(state)
        self.net.eval()
        self.requires_grad_(False)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features", "logits_unbiased")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits_unbiased", "fid": "features", "kid": "features",
                "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return (torch.rand([1, 3, 32, 32]) * 255).to(torch.uint8)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dtype != torch.uint8:
            raise ValueError("expected uint8 images in [0, 255]")
        x = x.float() / 255.0
        if x.shape[-2:] != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False,
                              antialias=True)
        emb = self.net.embed(x)
        out = {"features": emb, "logits_unbiased": self.net.fc(emb)}
        return tuple(out[name] for name in self.features_list)


if NAME not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(NAME, CifarProxyExtractor)
