"""``--model.cuda_graph auto``: captured where the settings allow, otherwise eager with
one line saying why; config.yaml keeps ``auto`` (on this CPU: eager, no CUDA GPU)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from gan_mn.cli import main
from gan_mn.training import GAN
from tests.helpers.cli import SMOKE

QUIET = ["--wandb.mode", "disabled", "--trainer.enable_progress_bar", "false",
         "--trainer.max_steps", "2", "--model.sample_every_n_steps", "0"]


@pytest.mark.slow  # trains through Lightning
def test_auto_runs_eagerly_without_a_gpu_and_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="gan_mn"):
        assert main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path), *QUIET,
                     "--model.cuda_graph", "auto"]) == 0
    assert "cuda_graph auto: running eagerly (no CUDA GPU)" in caplog.text
    run = tmp_path / "smoke-seed0"
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["cuda_graph"] == "auto"
    assert yaml.safe_load((run / "hparams.yaml").read_text())["cuda_graph"] is False


def test_the_module_itself_takes_true_or_false() -> None:
    with pytest.raises(ValueError, match="cuda_graph 'auto' is resolved by gan-mn fit"):
        GAN(cuda_graph="auto")
