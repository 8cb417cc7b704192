"""``EMA``: Lightning's ``EMAWeightAveraging``, without a GPU synchronisation per update."""

from __future__ import annotations

import itertools
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from typing_extensions import override

# torch's spectral-norm parametrization keeps its vectors as buffers with these names
SPECTRAL_VECTORS = ("parametrizations.weight.0._u", "parametrizations.weight.0._v")


class EMA(EMAWeightAveraging):
    """An exponential moving average of the whole module (parameters and buffers), as
    ``EMAWeightAveraging`` keeps it: same arguments, schedule, checkpoint contents and
    averaged model (what sampling, metrics and ``evaluate`` use).

    torch's ``AveragedModel.update_parameters`` tests its device-resident counter
    ``n_averaged`` twice per update (``bool(n_averaged == 0)``, ``n_averaged > 0``), each
    a wait for the GPU, and averages parameter by parameter. This callback asks once per
    fit (the counter is restored from the checkpoint by then), then updates with a few
    multi-tensor operations and no host read: ``decay * average + (1 - decay) * value``,
    the same arithmetic for floating-point tensors; integer and boolean buffers (counters,
    flags) are copied, where ``AveragedModel`` would average and truncate them.

    Spectral norm's power-iteration vectors are copied too, not averaged: the average of
    unit vectors is not one, and the averaged copy never trains (its vectors would never
    be refined), while the live vectors are the singular vectors of nearly the same
    weights (each update moves the average ``1 - decay`` of the way). In eval mode, as
    sampling runs, spectral norm divides by ``u^T W v`` with the stored vectors.
    """

    def __init__(self, *args: Any, decay: float = 0.999, **kwargs: Any) -> None:
        super().__init__(*args, decay=decay, **kwargs)
        self.decay = decay
        self._started: bool | None = None  # whether n_averaged > 0, read once per fit
        self._live: dict[str, Any] | None = None  # the live weights, once training ended

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started, self._live = None, None

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The average goes into the model, as Lightning does; the live weights are kept
        for a checkpoint saved after this (``ModelCheckpoint`` saves ``last.ckpt`` again
        when the last step was off its schedule), whose ``current_model_state`` would
        otherwise hold the average and a resume would train on from it."""
        self._live = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        super().on_train_end(trainer, pl_module)

    @override
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._live is not None and "current_model_state" in checkpoint:
            checkpoint["current_model_state"] = self._live

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        # EMAWeightAveraging's schedule, with this class's update (lightning 2.6 keeps the
        # averaged model and the last update's step in these attributes)
        step_idx = trainer.global_step - 1
        if trainer.global_step > self._latest_update_step and \
                self.should_update(step_idx=step_idx):
            self._update(pl_module)
            self._latest_update_step = trainer.global_step

    @torch.no_grad()
    def _update(self, pl_module: pl.LightningModule) -> None:
        average = self._average_model
        assert average is not None
        if self._started is None:
            self._started = bool(average.n_averaged > 0)
        names = itertools.chain((n for n, _ in average.module.named_parameters()),
                                (n for n, _ in average.module.named_buffers()))
        pairs = list(zip(itertools.chain(average.module.parameters(), average.module.buffers()),
                         itertools.chain(pl_module.parameters(), pl_module.buffers()),
                         strict=True))
        averaged = [a.is_floating_point() and not name.endswith(SPECTRAL_VECTORS)
                    for name, (a, _) in zip(names, pairs, strict=True)]
        floats = [pair for pair, avg in zip(pairs, averaged, strict=True) if avg]
        others = [pair for pair, avg in zip(pairs, averaged, strict=True) if not avg]
        if not self._started:
            floats, others = [], pairs  # the first update copies
        for a, v in others:
            a.copy_(v)
        if floats:
            averages, values = [a for a, _ in floats], [v.detach() for _, v in floats]
            torch._foreach_mul_(averages, self.decay)
            torch._foreach_add_(averages, torch._foreach_mul(values, 1.0 - self.decay))
        average.n_averaged.add_(1)
        self._started = True
