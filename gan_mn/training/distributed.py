"""Multi-process training: synchronized norm layers and DDP settings for a GAN.

- ``NormSync``: a Lightning ``LayerSync`` plugin converting ``MixtureNorm2d`` to
  ``SyncMixtureNorm2d`` and ``BatchNorm`` to ``SyncBatchNorm`` when a DDP strategy sets the
  model up (Lightning's own ``sync_batchnorm=True`` converts BatchNorm only, so MN would
  silently normalize each process's slice of the batch), and back at teardown.
- ``unused_parameters_strategy``: each GAN backward touches one network only, which
  plain DDP rejects; Lightning's ``ddp_find_unused_parameters_true`` strategies turn on
  its unused-parameter detection, the standard remedy.
"""

from __future__ import annotations

import logging

from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm
from torch import nn
from typing_extensions import override

from gan_mn.norm import SyncMixtureNorm2d, revert_sync

log = logging.getLogger(__name__)


class NormSync(TorchSyncBatchNorm):
    """Synchronize MN (and, on CUDA, BN) layers over the DDP process group: Lightning's
    ``TorchSyncBatchNorm`` for BatchNorm, plus ``SyncMixtureNorm2d`` for MN.

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
        return super().apply(model)

    @override
    def revert(self, model: nn.Module) -> nn.Module:
        return revert_sync(super().revert(model))


def unused_parameters_strategy(strategy: object) -> object:
    """The registered DDP strategy that finds unused parameters in place of a plain one
    (``"ddp"`` -> ``"ddp_find_unused_parameters_true"``, likewise ``ddp_spawn``); any other
    strategy (or an object the user configured) unchanged."""
    if isinstance(strategy, str) and strategy in ("ddp", "ddp_spawn"):
        return f"{strategy}_find_unused_parameters_true"
    return strategy
