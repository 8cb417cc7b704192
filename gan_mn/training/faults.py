"""Keeping every finished step: atomic checkpoint writes, a checkpoint on SIGTERM/Ctrl-C,
RNG states in the checkpoint, and a stop (without saving) on non-finite values.

All of these plug into Lightning's own extension points (CheckpointIO, callbacks).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor, nn
from typing_extensions import override

from gan_mn.errors import UserError
from gan_mn.files import atomic_write


class NonFiniteError(RuntimeError):
    """Training produced NaN/Inf; the run stops without writing a checkpoint."""


LOW_DISK = 64 * 2**20  # torch.save on a full disk raises a bare RuntimeError: judge by space


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _errno_in_chain(err: BaseException | None, *codes: int) -> bool:
    while err is not None:
        if isinstance(err, OSError) and err.errno in codes:
            return True
        err = err.__cause__ or err.__context__
    return False


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the checkpoint's own directory, fsync, then
    ``os.replace``: a kill leaves either the old complete file or the new complete one.

    (Lightning's default writes through fsspec, whose local temporary file lives in the
    system temp directory; when that is another filesystem the final move is a copy.)
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        try:
            atomic_write(path, lambda tmp: torch.save(checkpoint, tmp), durable=True)
        except (OSError, RuntimeError) as err:
            free = _free_bytes(Path(path).parent)
            if not (_errno_in_chain(err, errno.ENOSPC, errno.EDQUOT)
                    or (free is not None and free < LOW_DISK)):
                raise
            kept = f"the previous {Path(path).name} is intact" if Path(path).is_file() else \
                "no earlier one exists"
            raise UserError(f"the disk is full ({(free or 0) / 2**20:.0f} MiB free): writing "
                            f"{path} at step {checkpoint.get('global_step')} failed and {kept}; "
                            "free some space and resume with --ckpt_path last") from err


class RNGState(Callback):
    """Saves and restores the Python, NumPy and torch (CPU and CUDA) RNG states, so the
    noise after a resume is the noise an uninterrupted run would have drawn."""

    @override
    def state_dict(self) -> dict[str, Any]:
        # plain types and tensors only, so weights_only checkpoint loading accepts them
        kind, key, pos, has_gauss, gauss = np.random.get_state()
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": [kind, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss),
                      float(gauss)],
            "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        kind, key, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


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


class FiniteWatch:
    """Tracks, on the device and without a host sync, the first step at which a loss or
    a normalization statistic stopped being finite; ``check`` reads it back."""

    def __init__(self) -> None:
        self.first_bad: Tensor | None = None

    def observe(self, step: int, modules: list[nn.Module], *losses: Tensor) -> None:
        # one concatenation and one test, whatever the number of buffers: a few launches
        values = [t.detach().float().reshape(-1) for m in modules for t in m.buffers()
                  if t.is_floating_point()]
        values += [loss.detach().float().reshape(-1) for loss in losses]
        bad = ~torch.isfinite(torch.cat(values)).all()
        if self.first_bad is None:
            self.first_bad = torch.full((), -1, dtype=torch.long, device=bad.device)
        self.first_bad = torch.where(bad & (self.first_bad < 0), step, self.first_bad)

    def check(self) -> None:
        if self.first_bad is not None and (step := int(self.first_bad)) >= 0:
            raise NonFiniteError(
                f"non-finite loss or normalization statistics at step {step}: training "
                "stopped and no checkpoint was written after it")


def check_state_finite(state_dict: dict[str, Tensor], step: int) -> None:
    """Refuse to write a checkpoint holding NaN/Inf weights or statistics (one host read
    per checkpoint; the names are looked up only when something is wrong)."""
    floats = {k: v for k, v in state_dict.items() if isinstance(v, Tensor) and
              v.is_floating_point()}
    if not floats or bool(torch.stack([torch.isfinite(v).all() for v in floats.values()]).all()):
        return
    bad = [k for k, v in floats.items() if not torch.isfinite(v).all()]
    if bad:
        raise NonFiniteError(f"non-finite values at step {step} in {', '.join(bad[:3])}"
                             f"{' ...' if len(bad) > 3 else ''}: training stopped and this "
                             "checkpoint was not written")
