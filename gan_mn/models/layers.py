"""What every architecture family shares: per-layer norm kinds, the norm after a layer or
spectral norm on its weight, and the latent a generator samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from gan_mn.norm import make_norm

NormSpec = str | Sequence[str]
NormKwargs = Mapping[str, Mapping[str, Any]]


def per_layer(norm: NormSpec, count: int, name: str) -> list[str]:
    """One norm kind per normalized layer: a single kind, or a list of ``count``."""
    kinds = [norm] * count if isinstance(norm, str) else list(norm)
    if len(kinds) != count:
        raise ValueError(f"{name} needs {count} norm kinds (one per layer), got {len(kinds)}")
    return kinds


def norm_after(kind: str, width: int, norm_kwargs: NormKwargs | None) -> nn.Module:
    """The norm layer after a layer of ``kind`` (``make_norm`` with that kind's arguments);
    ``sn`` normalises the layer's weight instead (see :func:`weighted`): none here."""
    return make_norm(kind, width, **dict((norm_kwargs or {}).get(kind, {})))


class SpectralNorms:
    """The layers of a network that get spectral norm on their weight (kind ``sn``),
    applied by :meth:`apply` once the network is built and initialised: the power
    iteration then starts from the weights it will normalise, and initialising the others
    draws what it drew without spectral norm. torch's parametrization keeps its vectors
    as buffers, so checkpoints carry them."""

    def __init__(self, norm_kwargs: NormKwargs | None) -> None:
        self.options = dict((norm_kwargs or {}).get("sn", {}))
        self.layers: list[nn.Module] = []

    def __call__(self, layer: nn.Module, kind: str) -> nn.Module:
        if kind == "sn":
            self.layers.append(layer)
        return layer

    def apply(self) -> None:
        for layer in self.layers:
            spectral_norm(layer, **self.options)


def edge_kind(kinds: Sequence[str]) -> str:
    """The kind for a network's layers outside the per-layer list (its input and output
    layers): ``sn`` when every listed layer is ``sn`` (spectral norm on the whole network,
    as SNGAN does), otherwise none."""
    return "sn" if kinds and all(k == "sn" for k in kinds) else "none"


class LatentGenerator(nn.Module):
    """A generator of images from standard normal latents ``(N, z_dim)``."""

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        if z_dim < 1:
            raise ValueError(f"z_dim must be positive, got {z_dim}")
        self.z_dim = z_dim

    def sample_latent(self, n: int, device: torch.device | str | None = None) -> Tensor:
        """Standard normal latents for ``n`` images."""
        return torch.randn(n, self.z_dim, device=device)
