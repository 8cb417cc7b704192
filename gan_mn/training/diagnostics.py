"""``MixtureDiagnostics``: a view inside every MN layer while it trains, logged to every
logger as ``mn/<layer>/<field>`` (wandb groups them into a panel per layer)."""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from gan_mn.norm import MixtureNorm2d
from gan_mn.norm.diagnostics import mixture_diagnostics
from gan_mn.training.module import logging_step


class MixtureDiagnostics(Callback):
    """At logging steps only, each ``MixtureNorm2d`` (K > 1) of the model is described on
    its first training input of the step (:func:`gan_mn.norm.diagnostics.mixture_diagnostics`:
    weights, effective number of components, posterior entropy, separation, components
    below one sample). Other steps run no hook and read nothing: the forward hooks are
    armed at the start of a logging step and removed at its end. Not with
    ``cuda_graph``, whose replayed step runs no Python hook."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []
        self._values: dict[str, dict[str, Tensor]] = {}

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if not logging_step(trainer):
            return
        for name, layer in pl_module.named_modules():
            if isinstance(layer, MixtureNorm2d) and layer.num_components > 1:
                self._handles.append(layer.register_forward_hook(partial(self._record, name)))

    def _record(self, name: str, layer: nn.Module, args: tuple[Tensor, ...],
                output: Tensor) -> None:
        if layer.training and name not in self._values:
            assert isinstance(layer, MixtureNorm2d)
            self._values[name] = mixture_diagnostics(layer, args[0])

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if not self._values:
            return
        keys = [f"mn/{name}/{field}" for name, fields in self._values.items()
                for field in fields]
        # one read of every value (one wait on a GPU), straight to the loggers: through
        # LightningModule.log they would leave results to reset at the next step
        values = torch.stack([v.float() for f in self._values.values() for v in f.values()])
        self._values.clear()
        row = dict(zip(keys, values.tolist(), strict=True))
        for logger in trainer.loggers:
            logger.log_metrics(row, step=trainer.global_step)
