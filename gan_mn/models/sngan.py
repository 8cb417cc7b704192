"""SNGAN's "standard CNN" for 32x32 images (Miyato et al., 2018, Table 3), norms per layer.

Generator: ``z (128) -> linear -> 512@4x4 -> [4x4 stride-2 transposed conv, norm, ReLU]
x 3 (256, 128, 64) -> 3x3 conv -> 3@32x32 -> tanh``. Discriminator: seven convolutions,
3x3 stride 1 and 4x4 stride 2 alternating (``64, 64, 128, 128, 256, 256, 512``), each
followed by LeakyReLU(0.1), then a linear head on ``512@4x4``; the paper puts spectral
norm on all of them (``d_norm: sn``). Norm kinds: one per transposed convolution in G,
one per convolution in D (``bn``, ``mn``, ``sn`` or ``none``); the linear layers and G's
output convolution take ``sn`` only when the whole network is ``sn``. Every layer has a
bias (zero at first); weights start from N(0, 0.02), norm scales from N(1, 0.02).
Class-conditional (``num_classes`` > 0): conditional norms in G, and a projection term
on D's last features (summed over positions) beside its linear head.
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

SNGAN_WIDTHS = ((512, 256, 128, 64), (64, 64, 128, 128, 256, 256, 512))


def _init(module: nn.Module) -> None:
    """Weights ~ N(0, 0.02), biases 0, norm scales ~ N(1, 0.02) (before spectral norm)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        elif getattr(m, "weight", None) is not None and hasattr(m, "running_mean"):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class SNGANGenerator(LatentGenerator):
    """``(N, z_dim)`` latents -> ``(N, 3, 32, 32)`` images in ``[-1, 1]``. ``channels``: the
    projection's width, then one per transposed convolution (each doubles the size)."""

    def __init__(self, z_dim: int = 128, channels: Sequence[int] = SNGAN_WIDTHS[0],
                 norm: NormSpec = "bn", norm_kwargs: NormKwargs | None = None,
                 num_classes: int = 0) -> None:
        super().__init__(z_dim, num_classes)
        if len(channels) < 2:
            raise OptionError(f"the SNGAN generator needs at least 2 widths, got {list(channels)}")
        kinds = per_layer(norm, len(channels) - 1, "generator norm")
        check_conditional_kinds(kinds, num_classes)
        sn = SpectralNorms(norm_kwargs)
        edge = edge_kind(kinds)
        self.width = channels[0]
        self.project = sn(nn.Linear(z_dim, 4 * 4 * channels[0]), edge)
        layers: list[nn.Module] = []
        for prev, width, kind in zip(channels[:-1], channels[1:], kinds, strict=True):
            layers += [sn(nn.ConvTranspose2d(prev, width, 4, 2, 1), kind),
                       norm_after(kind, width, norm_kwargs, num_classes),
                       nn.ReLU(inplace=True)]
        layers += [sn(nn.Conv2d(channels[-1], 3, 3, 1, 1), edge), nn.Tanh()]
        self.net = ConditionalSequential(*layers)
        _init(self)
        sn.apply()

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        self.check_labels(y)
        return self.net(self.project(z).reshape(z.shape[0], self.width, 4, 4), y)


class SNGANDiscriminator(nn.Module):
    """``(N, 3, S, S)`` images -> logits ``(N,)``: convolutions alternating 3x3 stride 1
    and 4x4 stride 2 (``channels``, one per convolution; the last is 3x3), LeakyReLU(0.1),
    a linear head."""

    def __init__(self, channels: Sequence[int] = SNGAN_WIDTHS[1], norm: NormSpec = "sn",
                 norm_kwargs: NormKwargs | None = None, image_size: int = 32,
                 num_classes: int = 0) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if len(channels) % 2 == 0:
            raise OptionError("the SNGAN discriminator alternates 3x3 and 4x4 convolutions "
                              f"and ends on a 3x3 one: give an odd number of widths, got "
                              f"{len(channels)}")
        kinds = per_layer(norm, len(channels), "discriminator norm")
        sn = SpectralNorms(norm_kwargs)
        layers: list[nn.Module] = []
        prev = 3
        for i, (width, kind) in enumerate(zip(channels, kinds, strict=True)):
            conv = nn.Conv2d(prev, width, 3, 1, 1) if i % 2 == 0 else \
                nn.Conv2d(prev, width, 4, 2, 1)
            layers += [sn(conv, kind), norm_after(kind, width, norm_kwargs),
                       nn.LeakyReLU(0.1, inplace=True)]
            prev = width
        self.net = nn.Sequential(*layers)
        side = image_size // 2 ** (len(channels) // 2)
        self.head = sn(nn.Linear(prev * side * side, 1), edge_kind(kinds))
        _init(self)
        self.projection = Projection(num_classes, prev, sn, edge_kind(kinds)) \
            if num_classes else None
        sn.apply()

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        check_projection(self.projection, y)
        features = self.net(x)
        out = self.head(features.flatten(1)).flatten()
        return out if self.projection is None else out + self.projection(features, y)
