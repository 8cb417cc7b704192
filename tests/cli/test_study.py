"""``gan-mn study``: every group x seed as a ``gan-mn fit`` run, resumable, with a
manifest of each launch (real processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gan_mn.cli import main
from tests.helpers.cli import error
from tests.helpers.fakes import TINY_EXTRACTOR as TINY
from tests.helpers.fakes import write_image_folder


@pytest.mark.slow  # real processes
def test_a_tiny_study_runs_resumes_and_records_its_launches(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_image_folder(tmp_path / "images", n=40, size=32)
    out = tmp_path / "study"
    args = ["study", "--out", str(out), "--data-root", str(data), "--extractor", "tiny-test",
            "--plugin", TINY, "--cache-dir", str(tmp_path / "cache"), "--groups", "bn",
            "mn-g", "--seeds", "0", "--steps", "2", "--eval-every", "2", "--num-samples", "20",
            "--checkpoint-every", "2", "--threads", "1", "--",
            "--model.g_channels", "[16, 8, 8]", "--model.d_channels", "[8, 8, 16]",
            "--model.z_dim", "8", "--data.batch_size", "8",
            "--model.norm_kwargs", "{mn: {kernels: eager}}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "bn-seed0: ok" in printed and "mn-g-seed0: ok" in printed
    for run in ("bn-seed0", "mn-g-seed0"):
        rows = (out / "runs" / run / "metrics.csv").read_text()
        assert "fid20_images_tiny-test" in rows.splitlines()[0]
    assert main(args) == 0  # again: nothing left to train
    assert "bn-seed0: already at step 2" in capsys.readouterr().out
    launches = json.loads((out / "manifest.json").read_text())["launches"]
    assert len(launches) == 2 and launches[0]["command"] == ["gan-mn", *args]
    assert {"commit", "packages", "machine", "started", "finished"} <= set(launches[0])
    assert launches[0]["packages"]["torch"] and len(launches[0]["runs"]) == 2


def test_bad_study_options_are_one_line(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    assert main(["study", "--out", str(tmp_path), "--data-root", "x", "--steps", "0"]) == 2
    assert "--steps must be positive, got 0" in error(capsys)
    assert main(["study", "--out", str(tmp_path), "--data-root", "x", "--groups",
                 "nope"]) == 2
    assert "invalid choice: 'nope'" in error(capsys)
    assert not any(tmp_path.iterdir())
