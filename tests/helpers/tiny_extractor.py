"""A tiny torch-fidelity feature extractor for offline tests: importing this file
registers ``tiny-test``. Features are 4x4 average-pooled pixels (48-d); logits are a
fixed random projection of them. Not a measure of anything beyond these tests."""

import torch
import torch.nn.functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

NAME = "tiny-test"


class TinyExtractor(FeatureExtractorBase):
    calls = 0  # images seen, across instances: lets tests see cache hits

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(48, 10, generator=gen))

    @staticmethod
    def get_provided_features_list():
        return ("features", "logits_unbiased")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits_unbiased", "fid": "features", "kid": "features",
                "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    def forward(self, x):
        TinyExtractor.calls += x.shape[0]
        feats = F.adaptive_avg_pool2d(x.float() / 255.0, 4).flatten(1)
        out = {"features": feats.double(), "logits_unbiased": (feats @ self.proj) * 3}
        return tuple(out[name] for name in self.features_list)


if NAME not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(NAME, TinyExtractor)
