"""``PreemptionCheckpoint``: on SIGTERM or Ctrl-C, finish the step and save ``last.ckpt``."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override


class _ForwardedSigint(logging.Filter):
    """Ctrl-C reaches Lightning's stop as a SIGTERM (see :class:`PreemptionCheckpoint`):
    its "Received SIGTERM: 15" would then name the wrong signal; the line that names
    Ctrl-C is ours."""

    pending = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.pending and "Received SIGTERM" in str(record.msg):
            self.pending = False
            return False
        return True


_FORWARDED = _ForwardedSigint()


class PreemptionCheckpoint(Callback):
    """On SIGTERM (cluster preemption) or Ctrl-C, finish the current step and save
    ``last.ckpt``, so ``--ckpt_path last`` loses nothing.

    Lightning already turns SIGTERM into a stop after the current batch; the first Ctrl-C
    is routed the same way (a second one aborts at once). Other exceptions (a crash, a
    NaN) save nothing: the last good checkpoint stays. (Not Lightning's
    OnExceptionCheckpoint: that saves on every exception, and its presence makes every
    fit resume from "last" implicitly.)
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.ckpt_path = Path(dirpath) / "last.ckpt"
        self._previous: Any = None
        self._saved_step = -1

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0 or not _in_main_thread():
            return
        main_pid = os.getpid()

        def stop_after_this_step(signum: int, frame: Any) -> None:
            # Forked children (data-loader workers, e.g. torch-fidelity's during an
            # evaluation) inherit this handler; a terminal's Ctrl-C reaches them too. They
            # leave it to this process, which stops after the step and shuts them down.
            if os.getpid() != main_pid:
                return
            rank_zero_info("\ngan-mn: Ctrl-C: stopping after this step and saving last.ckpt "
                           "(Ctrl-C again to abort at once)")
            signal.signal(signal.SIGINT, signal.default_int_handler)
            _FORWARDED.pending = True  # Lightning would announce it as SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)

        self._previous = signal.signal(signal.SIGINT, stop_after_this_step)
        connector = logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector")
        if _FORWARDED not in connector.filters:
            connector.addFilter(_FORWARDED)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        """Save here, where the loop state is what a resume expects (Lightning raises its
        stop later, possibly after closing the epoch, a state it resumes from wrongly).
        Also saves the final step: ModelCheckpoint(save_last=True) refreshes last.ckpt
        only when its schedule saves, and at on_train_end the EMA has swapped weights."""
        # (Under DDP the signal reaches the ranks at different times and saving is
        # collective: there Lightning's broadcast stop and on_exception save instead.)
        stop = trainer.received_sigterm and trainer.world_size == 1
        if stop or 0 < trainer.max_steps <= trainer.global_step:
            trainer.save_checkpoint(self.ckpt_path, weights_only=False)
            self._saved_step = trainer.global_step

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_sigint()

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self._restore_sigint()
        if isinstance(exception, SIGTERMException):
            if self._saved_step != trainer.global_step:  # signalled after our batch end
                trainer.save_checkpoint(self.ckpt_path, weights_only=False)
            rank_zero_info(f"gan-mn: stopped at step {trainer.global_step}; saved "
                           f"{self.ckpt_path}")

    def _restore_sigint(self) -> None:
        if self._previous is not None and _in_main_thread():
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
