"""Several D steps per G step: the cycle runs on across epochs (through the entry point)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan_mn.cli import main
from tests.helpers.cli import SMOKE


@pytest.mark.slow  # trains through Lightning
def test_the_d_g_cycle_runs_across_epochs(tmp_path: Path) -> None:
    """4 batches an epoch (1,024 images, batch 250) and 3 D steps per G step: 4 G steps
    take 12 batches. Restarting the cycle each epoch took 15 (one extra D step an epoch)."""
    assert main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path), "--model.d_steps", "3",
                 "--data.batch_size", "250", "--trainer.max_steps", "4",
                 "--model.sample_every_n_steps", "0", "--wandb.mode", "disabled",
                 "--trainer.enable_progress_bar", "false"]) == 0
    ckpt = torch.load(tmp_path / "smoke-seed0" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    batches = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"]
    assert (ckpt["global_step"], batches) == (4, 12)
