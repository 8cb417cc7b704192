"""Lightning training: the GAN module, its update step, its losses and its EMA."""

from gan_mn.training.checkpoint import CheckpointError, LoadedRun, load_run
from gan_mn.training.ema import EMA
from gan_mn.training.losses import LOSSES, Loss
from gan_mn.training.mixture_diagnostics import MixtureDiagnostics
from gan_mn.training.module import GAN

__all__ = ["EMA", "GAN", "LOSSES", "CheckpointError", "LoadedRun", "Loss", "MixtureDiagnostics",
           "load_run"]
