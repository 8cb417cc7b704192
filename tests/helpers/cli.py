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


def step_of(ckpt: Path) -> int:
    return checkpoint_step(ckpt)


def error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a user mistake gets (the last of stderr)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("gan-mn: error:"), err
    return err[-1]
