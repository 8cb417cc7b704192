"""``build_models``: the one way to build a generator and discriminator pair, by family
(:data:`FAMILIES`, where each family is registered once)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from torch import nn

from gan_mn.errors import OptionError
from gan_mn.models.dcgan import DCGAN_WIDTHS, DCGANDiscriminator, DCGANGenerator, dcgan_widths
from gan_mn.models.layers import LatentGenerator, NormKwargs, NormSpec
from gan_mn.models.resnet import RESNET_WIDTHS, ResNetDiscriminator, ResNetGenerator
from gan_mn.models.sngan import SNGAN_WIDTHS, SNGANDiscriminator, SNGANGenerator
from gan_mn.registry import Registry

Pair = tuple[LatentGenerator, nn.Module]


class Family(NamedTuple):
    """A model family: the image sizes it makes, and its builder ``(z_dim, g_channels,
    d_channels, g_norm, d_norm, norm_kwargs, image_size, num_classes) -> (G, D)``, given
    widths already checked and, where the user left the DCGAN defaults, the family's own."""

    image_sizes: tuple[int, ...]
    build: Callable[[int, Sequence[int], Sequence[int], NormSpec, NormSpec, NormKwargs | None,
                     int, int], Pair]
    widths: tuple[Sequence[int], Sequence[int]] | None = None  # (G, D) defaults, if own


FAMILIES: Registry[Family] = Registry("arch")


def _dcgan(z_dim: int, g: Sequence[int], d: Sequence[int], g_norm: NormSpec, d_norm: NormSpec,
           norm_kwargs: NormKwargs | None, image_size: int, num_classes: int) -> Pair:
    g, d = dcgan_widths(image_size, g, d)
    return (DCGANGenerator(z_dim, g, norm=g_norm, norm_kwargs=norm_kwargs,
                           num_classes=num_classes),
            DCGANDiscriminator(d, norm=d_norm, norm_kwargs=norm_kwargs, num_classes=num_classes))


def _sngan(z_dim: int, g: Sequence[int], d: Sequence[int], g_norm: NormSpec, d_norm: NormSpec,
           norm_kwargs: NormKwargs | None, image_size: int, num_classes: int) -> Pair:
    return (SNGANGenerator(z_dim, g, norm=g_norm, norm_kwargs=norm_kwargs,
                           num_classes=num_classes),
            SNGANDiscriminator(d, norm=d_norm, norm_kwargs=norm_kwargs, image_size=image_size,
                               num_classes=num_classes))


def _resnet(z_dim: int, g: Sequence[int], d: Sequence[int], g_norm: NormSpec,
            d_norm: NormSpec, norm_kwargs: NormKwargs | None, image_size: int,
            num_classes: int) -> Pair:
    return (ResNetGenerator(z_dim, g, norm=g_norm, norm_kwargs=norm_kwargs,
                            num_classes=num_classes),
            ResNetDiscriminator(d, norm=d_norm, norm_kwargs=norm_kwargs,
                                num_classes=num_classes))


# DCGAN: 64 adds a block on each side
FAMILIES.register("dcgan", Family(tuple(sorted(DCGAN_WIDTHS)), _dcgan))
FAMILIES.register("sngan", Family((32,), _sngan, SNGAN_WIDTHS))
FAMILIES.register("resnet", Family((32,), _resnet, RESNET_WIDTHS))


def build_models(arch: str, z_dim: int, g_channels: Sequence[int], d_channels: Sequence[int],
                 g_norm: NormSpec, d_norm: NormSpec, norm_kwargs: NormKwargs | None,
                 image_size: int, num_classes: int = 0) -> Pair:
    """``(generator, discriminator)`` of family ``arch`` for ``image_size`` pixels;
    class-conditional with ``num_classes`` > 0 (conditional norms in G, a projection
    discriminator).

    Widths left at the DCGAN defaults (the model's defaults) become the family's own
    (SNGAN: ``512, 256, 128, 64`` / ``64, 64, 128, 128, 256, 256, 512``; ResNet:
    ``256`` x 4 / ``128`` x 4). Errors are one-line ``ValueError``s.
    """
    family = FAMILIES[arch]
    if image_size not in family.image_sizes:
        raise OptionError(f"image_size must be one of {list(family.image_sizes)} for the "
                          f"{arch} models, got {image_size}")
    _check_positive(g_channels, "g_channels")
    _check_positive(d_channels, "d_channels")
    if family.widths is not None:
        g_default, d_default = DCGAN_WIDTHS[32]
        g_own, d_own = family.widths
        g_channels = g_own if tuple(g_channels) == g_default else tuple(g_channels)
        d_channels = d_own if tuple(d_channels) == d_default else tuple(d_channels)
        _check_sizes(arch, g_channels, d_channels, image_size)
    return family.build(z_dim, g_channels, d_channels, g_norm, d_norm, norm_kwargs,
                        image_size, num_classes)


def _check_positive(widths: Sequence[int], option: str) -> None:
    if not widths or any(not isinstance(w, int) or isinstance(w, bool) or w < 1
                         for w in widths):
        raise OptionError(f"--model.{option} must be a list of positive integers, got "
                          f"{list(widths)}")


def _check_sizes(arch: str, g: Sequence[int], d: Sequence[int], image_size: int) -> None:
    """The SNGAN and ResNet generators start at 4x4 and double once per width after the
    first; SNGAN's discriminator halves once per pair of widths before its linear head.
    Widths that do not make ``image_size`` pixels fail here, not at the first step."""
    made = 4 * 2 ** (len(g) - 1)
    if made != image_size:
        needed = (image_size // 4).bit_length()
        raise OptionError(f"--model.g_channels has {len(g)} widths: the {arch} generator makes "
                          f"4 x 2^{len(g) - 1} = {made}-pixel images, but --data.image_size "
                          f"is {image_size} (give {needed} widths: the projection's, then one "
                          "per up-sampling layer)")
    halvings = len(d) // 2
    if arch == "sngan" and (image_size % 2 ** halvings or image_size < 2 ** halvings):
        raise OptionError(f"--model.d_channels has {len(d)} widths: the SNGAN discriminator "
                          f"halves the image {halvings} times, which {image_size}-pixel "
                          "images do not allow (one halving per pair of widths)")
