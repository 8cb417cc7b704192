"""What the CLI's tests share: the repository, the smoke config, MN's eager kernels, and
reading a run's step and the one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from gan_mn.torch_files import checkpoint_step

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "gan_mn" / "configs" / "smoke.yaml")
# MN with its eager kernels: runs that do not test the compiled kernels (tests/norm does)
# skip compiling them, seconds per process.
EAGER_MN = ["--model.norm_kwargs", '{"mn": {"kernels": "eager"}}']
# no wandb run, no progress bar or model summary
QUIET = ["--wandb.mode", "disabled", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false"]


def fast(steps: int) -> list[str]:
    """A short quiet fit: ``steps`` steps, a metrics row each, no sample grids, eager MN."""
    return ["--trainer.max_steps", str(steps), "--trainer.log_every_n_steps", "1",
            "--model.sample_every_n_steps", "0", *EAGER_MN, *QUIET]


def step_of(ckpt: Path) -> int:
    return checkpoint_step(ckpt)


def error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a user mistake gets (the last of stderr)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("gan-mn: error:"), err
    return err[-1]
