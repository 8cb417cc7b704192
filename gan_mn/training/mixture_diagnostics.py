"""``MixtureDiagnostics``: a view inside every MN layer while it trains, logged to every
logger as ``mn/<layer>/<field>`` (wandb groups them into a panel per layer)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from typing_extensions import override

from gan_mn.norm.mixture_summary import flat, recording
from gan_mn.training.module import logging_step


class MixtureDiagnostics(Callback):
    """At logging steps only, each ``MixtureNorm2d`` (K > 1) of the model is described on
    its first training input of the step (:func:`gan_mn.norm.mixture_summary.mixture_diagnostics`:
    weights, effective number of components, posterior entropy, separation, components
    below one sample). Other steps run no hook and read nothing: the forward hooks are
    armed at the start of a logging step and removed at its end. Not with
    ``cuda_graph``, whose replayed step runs no Python hook."""

    def __init__(self) -> None:
        self._recording: AbstractContextManager[dict[str, dict[str, Tensor]]] | None = None
        self._values: dict[str, dict[str, Tensor]] = {}

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if logging_step(trainer):
            self._recording = recording(pl_module)
            self._values = self._recording.__enter__()

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._recording is None:
            return
        self._recording.__exit__(None, None, None)
        self._recording = None
        # one read of every value (one wait on a GPU), straight to the loggers: through
        # LightningModule.log they would leave results to reset at the next step
        row = flat(self._values)
        self._values = {}
        if row:
            for logger in trainer.loggers:
                logger.log_metrics(row, step=trainer.global_step)
