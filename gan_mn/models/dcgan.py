"""DCGAN generator and discriminator (Radford et al.) whose norm layers are chosen per layer.

The default widths are the standard DCGAN for 32x32 images:
generator ``z -> 512@4x4 -> 256@8x8 -> 128@16x16 -> 3@32x32`` and discriminator
``3@32x32 -> 64@16x16 -> 128@8x8 -> 256@4x4 -> 1``. As in the paper, the
discriminator's first layer and the generator's output layer have no norm.
``norm`` is one kind for every normalized layer or a list, one per layer;
``norm_kwargs`` maps a kind to its layers' arguments, e.g. ``{"mn": {"num_components": 5}}``.
``sn`` puts spectral norm on a layer's weight instead of a norm after it; a network whose
normalized layers are all ``sn`` has it on every layer (its first and last ones too).
With ``num_classes`` > 0 the generator's norms are class-conditional and the
discriminator adds a projection term on its last features, summed over positions.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from gan_mn.errors import OptionError
from gan_mn.models.layers import (
    ConditionalSequential,
    LatentGenerator,
    NormKwargs,
    NormSpec,
    Projection,
    SpectralNorms,
    check_conditional_kinds,
    check_num_classes,
    check_projection,
    edge_kind,
    norm_after,
    per_layer,
)


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
        raise OptionError(f"image_size must be one of {sorted(DCGAN_WIDTHS)} for the DCGAN "
                          f"models, got {image_size}")
    g32, d32 = DCGAN_WIDTHS[32]
    g = DCGAN_WIDTHS[image_size][0] if tuple(g_channels) == g32 else tuple(g_channels)
    d = DCGAN_WIDTHS[image_size][1] if tuple(d_channels) == d32 else tuple(d_channels)
    for name, widths in (("g_channels", g), ("d_channels", d)):
        if 4 * 2 ** len(widths) != image_size:
            raise OptionError(f"{name} {list(widths)} makes {4 * 2 ** len(widths)}-pixel "
                              f"images, not {image_size}: give "
                              f"{image_size.bit_length() - 3} widths")
    return g, d


class DCGANGenerator(LatentGenerator):
    """Maps latents ``(N, z_dim)`` (and labels ``(N,)`` when class-conditional) to images
    ``(N, 3, S, S)`` in ``[-1, 1]``, with ``S = 4 * 2**len(channels)`` (32 for the DCGAN
    widths)."""

    def __init__(self, z_dim: int = 100, channels: Sequence[int] = (512, 256, 128),
                 out_channels: int = 3, norm: NormSpec = "bn",
                 norm_kwargs: NormKwargs | None = None, num_classes: int = 0) -> None:
        super().__init__(z_dim, num_classes)
        kinds = per_layer(norm, len(channels), "generator norm")
        check_conditional_kinds(kinds, num_classes)
        sn = SpectralNorms(norm_kwargs)
        layers: list[nn.Module] = []
        prev = z_dim
        for i, (width, kind) in enumerate(zip(channels, kinds, strict=True)):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            conv = nn.ConvTranspose2d(prev, width, 4, stride, pad, bias=kind in ("none", "sn"))
            layers += [sn(conv, kind), norm_after(kind, width, norm_kwargs, num_classes),
                       nn.ReLU(inplace=True)]
            prev = width
        layers += [sn(nn.ConvTranspose2d(prev, out_channels, 4, 2, 1), edge_kind(kinds)),
                   nn.Tanh()]
        self.net = ConditionalSequential(*layers)
        _init_dcgan(self)
        sn.apply()

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        self.check_labels(y)
        return self.net(z.reshape(z.shape[0], self.z_dim, 1, 1), y)


class DCGANDiscriminator(nn.Module):
    """Maps images ``(N, 3, S, S)``, ``S = 4 * 2**len(channels)``, to logits ``(N,)``."""

    def __init__(self, channels: Sequence[int] = (64, 128, 256), in_channels: int = 3,
                 norm: NormSpec = "bn", norm_kwargs: NormKwargs | None = None,
                 num_classes: int = 0) -> None:
        super().__init__()
        check_num_classes(num_classes)
        kinds = per_layer(norm, len(channels) - 1, "discriminator norm")
        edge = edge_kind(kinds)
        sn = SpectralNorms(norm_kwargs)
        layers: list[nn.Module] = [sn(nn.Conv2d(in_channels, channels[0], 4, 2, 1), edge),
                                   nn.LeakyReLU(0.2, inplace=True)]
        for prev, width, kind in zip(channels[:-1], channels[1:], kinds, strict=True):
            conv = nn.Conv2d(prev, width, 4, 2, 1, bias=kind in ("none", "sn"))
            layers += [sn(conv, kind), norm_after(kind, width, norm_kwargs),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers.append(sn(nn.Conv2d(channels[-1], 1, 4, 1, 0), edge))
        self.net = nn.Sequential(*layers)
        _init_dcgan(self)
        self.projection = Projection(num_classes, channels[-1], sn, edge) \
            if num_classes else None
        sn.apply()

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        check_projection(self.projection, y)
        if self.projection is None:
            return self.net(x).flatten()
        features = self.net[:-1](x)
        return self.net[-1](features).flatten() + self.projection(features, y)
