"""Callbacks the fault tests add to real `gan-mn fit` runs (``--trainer.callbacks+=``)."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback


class SlowDown(Callback):
    """Sleeps after each step, so a test can signal a run while it is training."""

    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        time.sleep(self.seconds)


class SlowClock:
    """A clock that only :class:`SlowEvaluation` moves on (in-process runs)."""

    offset = 0.0

    @classmethod
    def perf_counter(cls) -> float:
        return time.perf_counter() + cls.offset


class SlowEvaluation(Callback):
    """Takes 100 s of :class:`SlowClock` time after every step, as a long evaluation or
    checkpoint write would, without sleeping."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        SlowClock.offset += 100.0


class PoisonAt(Callback):
    """Turns the generator's weights into NaN before generator step ``step`` (0-based
    ``global_step``), as a diverging run would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in pl_module.generator.parameters():
                    p.fill_(float("nan"))


class SignalAt(Callback):
    """Sends this process SIGTERM (what a scheduler sends) right after generator step
    ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)


class RecordNorms(Callback):
    """Writes, per rank, which norm layer classes the model trains with, and (at the end)
    the spectral-norm vectors of its discriminator."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        names = sorted({type(m).__name__ for m in pl_module.modules() if "Norm" in
                        type(m).__name__})
        with open(f"{self.path}.{trainer.global_rank}", "w") as f:
            f.write(" ".join(names))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        vectors = {k: v.cpu() for k, v in pl_module.discriminator.state_dict().items()
                   if k.endswith(("._u", "._v"))}
        torch.save(vectors, f"{self.path}.sn.{trainer.global_rank}")


class _Slow(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> torch.Tensor:
        time.sleep(0.05)
        return torch.zeros(1)


class CtrlCInWorkers(Callback):
    """After generator step ``step``, reads a slow DataLoader with worker processes (as
    torch-fidelity does during an evaluation) and, while they run, sends SIGINT to the
    whole process group, as a terminal's Ctrl-C does."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        import os
        import signal

        # its own generator: the workers' seeds must not come from the run's random stream
        loader = torch.utils.data.DataLoader(_Slow(), batch_size=4, num_workers=2,
                                             generator=torch.Generator())
        for i, _ in enumerate(loader):
            if i == 2:  # the workers are up and busy
                os.killpg(os.getpgid(0), signal.SIGINT)
