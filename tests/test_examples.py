"""The examples run as a user runs them: each file as a script, offline, and says what
it did."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=600, cwd=EXAMPLES.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_layer_without_lightning() -> None:
    out = run("layer_without_lightning.py")
    assert "a copy loaded from the state dict computes the same: True" in out
    assert "running_weight (2,)" in out and "em_seeded ()" in out


@pytest.mark.slow  # a ResNet-18 on the CPU
def test_mn_in_a_torchvision_resnet(tmp_path: Path) -> None:
    """On generated data, and on a folder of class subfolders."""
    from tests.helpers.fakes import write_class_folder

    out = run("mn_in_your_model.py", "--steps", "2", "--batch-size", "4", "--kernels",
              "eager")
    assert "step 2: loss" in out
    assert "20 BatchNorm2d layers became MixtureNorm2d (K=3)" in out
    folder = write_class_folder(tmp_path / "data", ("cat", "dog"), per_class=4)
    out = run("mn_in_your_model.py", "--data", str(folder), "--steps", "1", "--batch-size",
              "4", "--kernels", "eager", "--components", "2")
    assert "20 BatchNorm2d layers became MixtureNorm2d (K=2)" in out
