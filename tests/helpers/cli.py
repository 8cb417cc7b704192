"""What the CLI's tests share: the repository, the smoke config, MN's eager kernels, and
reading a run's step and the one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
# MN with its eager kernels: runs that do not test the compiled kernels (tests/norm does)
# skip compiling them, seconds per process.
EAGER_MN = ["--model.norm_kwargs", '{"mn": {"kernels": "eager"}}']


def step_of(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"])


def error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a user mistake gets (the last of stderr)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("gan-mn: error:"), err
    return err[-1]
