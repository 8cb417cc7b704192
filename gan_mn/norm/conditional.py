"""Class-conditional normalization: a shared normalization over the batch, then a gain
and a bias per class (as conditional BatchNorm in SNGAN's and BigGAN's generators).

``ConditionalMixtureNorm2d`` normalizes with one mixture for the whole batch (all
classes share it: MN's own transform, without its affine parameters), then applies
``1 + embedding_gamma[y]`` and ``embedding_beta[y]``; ``ConditionalBatchNorm2d`` does the
same after BatchNorm. Both embeddings start at zero, so at initialisation each layer is
its unconditional one. The normalization is an ordinary child module (``norm``): its
buffers, eval mode, kernels, DDP conversion (``SyncMixtureNorm2d``, ``SyncBatchNorm``)
and state dict are the unconditional layer's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gan_mn.errors import OptionError
from gan_mn.norm.mixture import MixtureNorm2d
from gan_mn.norm.options import check_count


class ConditionalNorm2d(nn.Module):
    """``norm(x) * (1 + gamma[y]) + beta[y]``, with ``norm`` given by the subclass."""

    def __init__(self, norm: nn.Module, num_features: int, num_classes: int) -> None:
        super().__init__()
        check_count("num_classes", num_classes)
        self.num_features = num_features
        self.num_classes = num_classes
        self.norm = norm
        self.embedding_gamma = nn.Embedding(num_classes, num_features)
        self.embedding_beta = nn.Embedding(num_classes, num_features)
        nn.init.zeros_(self.embedding_gamma.weight)
        nn.init.zeros_(self.embedding_beta.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``x`` ``(N, C, H, W)``; ``y`` the ``N`` class indices (integers)."""
        if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point():
            raise ValueError(f"labels must be N={x.shape[0]} integer class indices, got "
                             f"shape {tuple(y.shape)} of {y.dtype}")
        if y.device.type == "cpu" and y.numel() and not torch.compiler.is_compiling():
            # (on the CPU only: on a GPU this read would wait for the device every step;
            # there the labels' range is the data's and the sampler's to keep)
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(f"labels must be in [0, {self.num_classes}), got "
                                 f"{low if low < 0 else high}")
        h = self.norm(x)
        gain = (1 + self.embedding_gamma(y)).to(h.dtype)[:, :, None, None]
        bias = self.embedding_beta(y).to(h.dtype)[:, :, None, None]
        return torch.addcmul(bias, h, gain)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


class ConditionalMixtureNorm2d(ConditionalNorm2d):
    """MN over the batch (one mixture for every class), then a gain and a bias per class.

    ``mn_options`` go to :class:`MixtureNorm2d` (``eps``, ``momentum``, ``em_iters``,
    ``kernels``, ...); ``affine`` is not one of them: the class embeddings are the affine
    part."""

    def __init__(self, num_features: int, num_classes: int, num_components: int = 3,
                 **mn_options: Any) -> None:
        if "affine" in mn_options:
            raise OptionError("ConditionalMixtureNorm2d takes no affine option: its class "
                              "embeddings are its gain and bias")
        super().__init__(MixtureNorm2d(num_features, num_components, affine=False,
                                       **mn_options), num_features, num_classes)

    @property
    def num_components(self) -> int:
        return self.norm.num_components


class ConditionalBatchNorm2d(ConditionalNorm2d):
    """BatchNorm over the batch, then a gain and a bias per class (the baseline).
    ``MixtureNorm2d.convert_batchnorm`` turns it into a ``ConditionalMixtureNorm2d``."""

    def __init__(self, num_features: int, num_classes: int, eps: float = 1e-5,
                 momentum: float | None = 0.1) -> None:
        super().__init__(nn.BatchNorm2d(num_features, eps, momentum, affine=False),
                         num_features, num_classes)

    def to_mixture_norm(self, convert: Any) -> ConditionalMixtureNorm2d:
        """This layer as conditional MN: ``convert`` turns its BatchNorm into the MN
        layer (``MixtureNorm2d._from_batchnorm`` with the caller's options); the class
        embeddings are kept."""
        norm = convert(self.norm)
        out = ConditionalMixtureNorm2d.__new__(ConditionalMixtureNorm2d)
        ConditionalNorm2d.__init__(out, norm, self.num_features, self.num_classes)
        with torch.no_grad():
            out.embedding_gamma.weight.copy_(self.embedding_gamma.weight)
            out.embedding_beta.weight.copy_(self.embedding_beta.weight)
        return out.to(self.embedding_gamma.weight.device).train(self.training)
