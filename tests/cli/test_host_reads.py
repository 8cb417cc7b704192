"""``gan-mn fit`` reads nothing back to the host between logging steps (on a GPU each read
would wait for the queued kernels), and the MN layer reads nothing after its first batch."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from gan_mn.cli import main
from tests.helpers.cli import EAGER_MN, SMOKE
from tests.helpers.reads import HostReads

RECORDED: list[tuple[HostReads, list[torch.Tensor]]] = []


class RecordReads(Callback):
    """Records every host read of the fit, tagged with the batch index (across epochs)
    that was running, and Adam's step-count tensors."""

    def __init__(self) -> None:
        self.mode = HostReads()
        self.adam_steps: list[torch.Tensor] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.mode.__enter__()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: object, batch_idx: int) -> None:
        self.mode.tag = trainer.fit_loop.epoch_loop.total_batch_idx

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.mode.__exit__(None, None, None)
        self.adam_steps = [s["step"] for opt in trainer.optimizers for s in opt.state.values()]
        RECORDED.append((self.mode, self.adam_steps))


@pytest.mark.slow  # trains through Lightning
@pytest.mark.parametrize("g_norm", ["bn", "mn"])
def test_fit_reads_only_at_logging_steps(tmp_path: Path, g_norm: str) -> None:
    RECORDED.clear()
    args = ["fit", "-c", SMOKE, "--model.g_norm", g_norm, *EAGER_MN, "--trainer.max_steps", "13",
            "--trainer.log_every_n_steps", "4", "--checkpoint.every_n_train_steps", "4",
            "--model.sample_every_n_steps", "4", "--output_dir", str(tmp_path),
            "--wandb.mode", "disabled", "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks+=gan_mn.training.EMA",
            "--trainer.callbacks+=tests.cli.test_host_reads.RecordReads"]
    assert main(args) == 0
    (mode, adam_steps), = RECORDED
    batches = {r.tag for r in mode.reads}
    assert {3, 7, 11} <= batches  # the recorder sees the logging steps' reads

    def excused(read: object) -> bool:
        # Adam's step counts are CPU tensors unless Adam is capturable (cuda_graph on a
        # GPU): reading them waits for nothing. On a CPU the finite check reads its flag
        # every step (free there); on a GPU it reads at logging steps (gpu_check runs 5
        # steps under torch.cuda.set_sync_debug_mode("error")).
        return any(read.tensor is s for s in adam_steps) or \
            read.came_from("gan_mn/training/finite_watch.py")

    # logging steps: every 4th, and the last (13 steps: batch 12), always logged
    between = [(r.tag, r.op, r.stack[-4:]) for r in mode.reads
               if r.tag is not None and 1 <= r.tag < 12 and (r.tag + 1) % 4 and not excused(r)]
    assert not between
    # None at all from the norm layers, k-means++ seeding included (a layer loaded from a
    # checkpoint reads its seeding flag once, at its first batch).
    assert not [(r.tag, r.stack[-4:]) for r in mode.reads if r.came_from("gan_mn/norm/")]
