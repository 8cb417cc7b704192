"""DCGAN models with configurable normalization (torch only)."""

from gan_mn.models.dcgan import Discriminator, Generator

__all__ = ["Discriminator", "Generator"]
