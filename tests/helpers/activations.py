"""Synthetic clustered activations: MN's inputs with known components."""

from __future__ import annotations

import torch


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
