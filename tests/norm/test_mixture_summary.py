"""The mixture diagnostics on batches whose answer is known by construction."""

from __future__ import annotations

import pytest
import torch

from gan_mn.norm import MixtureNorm2d
from gan_mn.norm.mixture_summary import mixture_diagnostics


def _fitted(k: int, x: torch.Tensor) -> MixtureNorm2d:
    layer = MixtureNorm2d(x.shape[1], k, kernels="eager")
    for _ in range(3):
        layer(x)
    return layer


def test_two_separated_clusters() -> None:
    torch.manual_seed(0)
    x = torch.cat([torch.randn(32, 4, 4, 4) * 0.3 + 5, torch.randn(32, 4, 4, 4) * 0.3 - 5])
    d = {k: float(v) for k, v in mixture_diagnostics(_fitted(2, x), x).items()}
    assert d["effective_components"] == pytest.approx(2.0, abs=0.01)
    assert d["separation"] > 10  # means 10 apart, spreads 0.3
    assert d["posterior_entropy"] == pytest.approx(0.0, abs=1e-3)
    assert d["weight_0"] == pytest.approx(0.5, abs=0.01) and d["min_weight"] == d["weight_1"]
    assert d["below_one_sample"] == 0


def test_one_cluster_is_soft_and_not_separated() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 4, 4, 4)
    d = {k: float(v) for k, v in mixture_diagnostics(_fitted(3, x), x).items()}
    assert d["separation"] < 1.5  # components of one Gaussian overlap
    assert d["posterior_entropy"] > 0.2
    assert d["weight_0"] >= d["weight_1"] >= d["weight_2"] == d["min_weight"]
    assert 1 <= d["effective_components"] <= 3


def test_an_empty_component_counts_below_one_sample() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 4, 2, 2)
    layer = _fitted(3, x)
    with torch.no_grad():  # a component far from every sample: no posterior mass
        layer.em_mean[2].fill_(1e3)
    assert float(mixture_diagnostics(layer, x)["below_one_sample"]) == 1
