"""DCGAN models with configurable normalization (torch only)."""

from gan_mn.models.dcgan import DCGAN_WIDTHS, Discriminator, Generator, dcgan_widths
from gan_mn.models.sampling import NORM_MODES, sampling

__all__ = ["DCGAN_WIDTHS", "NORM_MODES", "Discriminator", "Generator", "dcgan_widths",
           "sampling"]
