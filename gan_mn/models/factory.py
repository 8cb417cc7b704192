"""``build_models``: the one way to build a generator and discriminator pair by family."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from gan_mn.models.dcgan import DCGAN_WIDTHS, Discriminator, Generator, dcgan_widths
from gan_mn.models.layers import LatentGenerator, NormKwargs, NormSpec
from gan_mn.models.resnet import RESNET_WIDTHS, ResNetDiscriminator, ResNetGenerator
from gan_mn.models.sngan import SNGAN_WIDTHS, SNGANDiscriminator, SNGANGenerator

ARCHS = ("dcgan", "sngan", "resnet")
# image sizes each family makes (DCGAN: 64 adds a block on each side)
IMAGE_SIZES = {"dcgan": tuple(sorted(DCGAN_WIDTHS)), "sngan": (32,), "resnet": (32,)}


def build_models(arch: str, z_dim: int, g_channels: Sequence[int], d_channels: Sequence[int],
                 g_norm: NormSpec, d_norm: NormSpec, norm_kwargs: NormKwargs | None,
                 image_size: int) -> tuple[LatentGenerator, nn.Module]:
    """``(generator, discriminator)`` of family ``arch`` for ``image_size`` pixels.

    Widths left at the DCGAN defaults (the model's defaults) become the family's own
    (SNGAN: ``512, 256, 128, 64`` / ``64, 64, 128, 128, 256, 256, 512``; ResNet:
    ``256`` x 4 / ``128`` x 4). Errors are one-line ``ValueError``s.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    if image_size not in IMAGE_SIZES[arch]:
        raise ValueError(f"image_size must be one of {list(IMAGE_SIZES[arch])} for the "
                         f"{arch} models, got {image_size}")
    if arch == "dcgan":
        g_channels, d_channels = dcgan_widths(image_size, g_channels, d_channels)
        return (Generator(z_dim, g_channels, norm=g_norm, norm_kwargs=norm_kwargs),
                Discriminator(d_channels, norm=d_norm, norm_kwargs=norm_kwargs))
    g_default, d_default = DCGAN_WIDTHS[32]
    widths = SNGAN_WIDTHS if arch == "sngan" else RESNET_WIDTHS
    g = widths[0] if tuple(g_channels) == g_default else tuple(g_channels)
    d = widths[1] if tuple(d_channels) == d_default else tuple(d_channels)
    if arch == "sngan":
        return (SNGANGenerator(z_dim, g, norm=g_norm, norm_kwargs=norm_kwargs),
                SNGANDiscriminator(d, norm=d_norm, norm_kwargs=norm_kwargs,
                                   image_size=image_size))
    return (ResNetGenerator(z_dim, g, norm=g_norm, norm_kwargs=norm_kwargs),
            ResNetDiscriminator(d, norm=d_norm, norm_kwargs=norm_kwargs))
