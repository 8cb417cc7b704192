"""Shared test helpers: deterministic seeds and synthetic clustered activations."""

from __future__ import annotations

import os
import sys

import pytest
import torch

# Triton decorates its own library when it is first imported, so its CPU interpreter
# (the Triton kernels' tests, on CPU tensors) must be chosen before anything imports it.
if not torch.cuda.is_available():
    assert "triton" not in sys.modules, "triton was imported before tests/conftest.py"
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Inductor compiles in this process rather than in a pool of compile workers of its own:
# on a small machine running the tests in parallel (pytest-xdist) that pool only competes
# for the same cores (measured: 149 s -> 128 s for the suite on 2 cores).
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def clustered(n: int, centres: torch.Tensor, stds: torch.Tensor, fractions: list[float],
              hw: int = 4, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, C, hw, hw)`` activations whose ``n*hw*hw`` samples come from well separated
    Gaussian clusters (``centres`` ``(K, C)``, ``stds`` ``(K,)``) in the given
    proportions; returns the activations and each sample's cluster label ``(n, hw, hw)``."""
    m = n * hw * hw
    counts = [round(f * m) for f in fractions[:-1]]
    counts.append(m - sum(counts))
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    labels = labels[torch.randperm(m, generator=generator)]
    noise = torch.randn(m, centres.shape[1], generator=generator)
    samples = centres[labels] + stds[labels, None] * noise
    x = samples.reshape(n, hw, hw, -1).permute(0, 3, 1, 2).contiguous()
    return x, labels.reshape(n, hw, hw)
