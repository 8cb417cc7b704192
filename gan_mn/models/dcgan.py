"""DCGAN generator and discriminator (Radford et al.) whose norm layers are chosen per layer.

The default widths are the standard DCGAN for 32x32 images:
generator ``z -> 512@4x4 -> 256@8x8 -> 128@16x16 -> 3@32x32`` and discriminator
``3@32x32 -> 64@16x16 -> 128@8x8 -> 256@4x4 -> 1``. As in the paper, the
discriminator's first layer and the generator's output layer have no norm.
``norm`` is one kind for every normalized layer or a list, one per layer;
``norm_kwargs`` maps a kind to its layers' arguments, e.g. ``{"mn": {"num_components": 5}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gan_mn.norm import make_norm

NormSpec = str | Sequence[str]
NormKwargs = Mapping[str, Mapping[str, Any]]


def _per_layer(norm: NormSpec, count: int, name: str) -> list[str]:
    """One norm kind per normalized layer: a single kind, or a list of ``count``."""
    kinds = [norm] * count if isinstance(norm, str) else list(norm)
    if len(kinds) != count:
        raise ValueError(f"{name} needs {count} norm kinds (one per layer), got {len(kinds)}")
    return kinds


def _norm(kind: str, width: int, norm_kwargs: NormKwargs | None) -> nn.Module:
    """``make_norm`` with the keyword arguments given for that kind (e.g. ``{"mn": {...}}``)."""
    return make_norm(kind, width, **dict((norm_kwargs or {}).get(kind, {})))


def _init_dcgan(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif getattr(m, "weight", None) is not None and hasattr(m, "running_mean"):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# The DCGAN family's image sizes and their default widths (G, D): 64 pixels has one more
# up-/down-sampling block on each side, as in the DCGAN paper.
DCGAN_WIDTHS = {32: ((512, 256, 128), (64, 128, 256)),
                64: ((512, 256, 128, 64), (64, 128, 256, 512))}


def dcgan_widths(image_size: int, g_channels: Sequence[int], d_channels: Sequence[int]
                 ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Widths for ``image_size``: the 32-pixel defaults become the 64-pixel ones at 64;
    other widths must have one block per doubling (ValueError, one line, otherwise)."""
    if image_size not in DCGAN_WIDTHS:
        raise ValueError(f"image_size must be one of {sorted(DCGAN_WIDTHS)} for the DCGAN "
                         f"models, got {image_size}")
    g32, d32 = DCGAN_WIDTHS[32]
    g = DCGAN_WIDTHS[image_size][0] if tuple(g_channels) == g32 else tuple(g_channels)
    d = DCGAN_WIDTHS[image_size][1] if tuple(d_channels) == d32 else tuple(d_channels)
    for name, widths in (("g_channels", g), ("d_channels", d)):
        if 4 * 2 ** len(widths) != image_size:
            raise ValueError(f"{name} {list(widths)} makes {4 * 2 ** len(widths)}-pixel "
                             f"images, not {image_size}: give "
                             f"{image_size.bit_length() - 3} widths")
    return g, d


class Generator(nn.Module):
    """Maps latents ``(N, z_dim)`` to images ``(N, 3, S, S)`` in ``[-1, 1]``, with
    ``S = 4 * 2**len(channels)`` (32 for the DCGAN widths)."""

    def __init__(self, z_dim: int = 100, channels: Sequence[int] = (512, 256, 128),
                 out_channels: int = 3, norm: NormSpec = "bn",
                 norm_kwargs: NormKwargs | None = None) -> None:
        super().__init__()
        if z_dim < 1:
            raise ValueError(f"z_dim must be positive, got {z_dim}")
        self.z_dim = z_dim
        kinds = _per_layer(norm, len(channels), "generator norm")
        layers: list[nn.Module] = []
        prev = z_dim
        for i, (width, kind) in enumerate(zip(channels, kinds, strict=True)):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [nn.ConvTranspose2d(prev, width, 4, stride, pad, bias=kind == "none"),
                       _norm(kind, width, norm_kwargs), nn.ReLU(inplace=True)]
            prev = width
        layers += [nn.ConvTranspose2d(prev, out_channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        _init_dcgan(self)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.reshape(z.shape[0], self.z_dim, 1, 1))

    def sample_latent(self, n: int, device: torch.device | str | None = None) -> Tensor:
        """Standard normal latents for ``n`` images."""
        return torch.randn(n, self.z_dim, device=device)


class Discriminator(nn.Module):
    """Maps images ``(N, 3, S, S)``, ``S = 4 * 2**len(channels)``, to logits ``(N,)``."""

    def __init__(self, channels: Sequence[int] = (64, 128, 256), in_channels: int = 3,
                 norm: NormSpec = "bn", norm_kwargs: NormKwargs | None = None) -> None:
        super().__init__()
        kinds = _per_layer(norm, len(channels) - 1, "discriminator norm")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 4, 2, 1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        for prev, width, kind in zip(channels[:-1], channels[1:], kinds, strict=True):
            layers += [nn.Conv2d(prev, width, 4, 2, 1, bias=kind == "none"),
                       _norm(kind, width, norm_kwargs), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(channels[-1], 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        _init_dcgan(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()
