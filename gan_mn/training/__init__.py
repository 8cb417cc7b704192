"""Lightning training: the GAN module and its losses."""

from gan_mn.training.checkpoint import CheckpointError, LoadedRun, load_run
from gan_mn.training.losses import discriminator_loss, generator_loss
from gan_mn.training.module import GAN, default_label

__all__ = ["GAN", "CheckpointError", "LoadedRun", "default_label", "discriminator_loss",
           "generator_loss", "load_run"]
