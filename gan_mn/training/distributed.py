"""Multi-process training: synchronized norm layers and DDP settings for a GAN.

- ``NormSync``: a Lightning ``LayerSync`` plugin converting ``MixtureNorm2d`` to
  ``SyncMixtureNorm2d`` and ``BatchNorm`` to ``SyncBatchNorm`` when a DDP strategy sets the
  model up (Lightning's own ``sync_batchnorm=True`` converts BatchNorm only, so MN would
  silently normalize each process's slice of the batch), and back at teardown.
- ``allow_unused_parameters``: each GAN backward touches one network only, which plain
  DDP rejects; turning on its unused-parameter detection is the standard remedy.
"""

from __future__ import annotations

import logging

import lightning.pytorch as pl
from lightning.pytorch.plugins.layer_sync import LayerSync
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from typing_extensions import override

from gan_mn.norm import SyncMixtureNorm2d, revert_sync

log = logging.getLogger(__name__)


class NormSync(LayerSync):
    """Synchronize MN (and, on CUDA, BN) layers over the DDP process group.

    ``batchnorm``: also convert BatchNorm; torch's SyncBatchNorm runs on CUDA only, so
    DDP on CPU (gloo) keeps BatchNorm per process (MN is synchronized everywhere).
    """

    def __init__(self, batchnorm: bool = True) -> None:
        self.batchnorm = batchnorm

    @override
    def apply(self, model: nn.Module) -> nn.Module:
        model = SyncMixtureNorm2d.convert_sync_mixturenorm(model)
        if not self.batchnorm:
            if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
                log.warning("DDP on CPU: BatchNorm layers are not synchronized "
                            "(torch's SyncBatchNorm needs CUDA); MN layers are")
            return model
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    @override
    def revert(self, model: nn.Module) -> nn.Module:
        return revert_sync(model)


def allow_unused_parameters(trainer: pl.Trainer) -> None:
    """Before DDP wraps the module: the discriminator step leaves the generator without
    gradients (and vice versa), so DDP must look for unused parameters."""
    strategy = trainer.strategy
    kwargs = getattr(strategy, "_ddp_kwargs", None)
    if isinstance(strategy, DDPStrategy) and isinstance(kwargs, dict) \
            and not kwargs.get("find_unused_parameters"):
        kwargs["find_unused_parameters"] = True
        log.info("DDP: find_unused_parameters=True (each GAN step updates one network)")
