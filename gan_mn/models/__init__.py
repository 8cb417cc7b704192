"""DCGAN models with configurable normalization (torch only)."""

from gan_mn.models.dcgan import DCGAN_WIDTHS, Discriminator, Generator, dcgan_widths

__all__ = ["DCGAN_WIDTHS", "Discriminator", "Generator", "dcgan_widths"]
