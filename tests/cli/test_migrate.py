"""``gan-mn migrate``: a run saved by an earlier gan-mn is refused by every reader, in one
line that names the command, and reads as it was once the command has rewritten it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gan_mn.cli import main
from gan_mn.cli.rundir import RunError, resume_changes
from gan_mn.run_log import read_run
from tests.helpers.cli import error
from tests.helpers.report import FID, write_run


def _earlier_run(root: Path) -> Path:
    """A run as an earlier gan-mn left it: training rows at Lightning's 0-based batch
    index with an epoch column (2 D steps per G step: batch 399 ends G step 200), and a
    config without the settings added since."""
    run = write_run(root, "bn", 0, {200: 30})
    (run / "config.yaml").write_text("seed_everything: 0\nmodel:\n  label: bn\n  d_steps: 2\n")
    (run / "metrics.csv").write_text(f"epoch,{FID},step,time/train_seconds\n"
                                     "0,,399,80.0\n"
                                     ",30,200,\n")
    return run


def test_an_earlier_run_is_refused_then_migrated_once(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    run = _earlier_run(tmp_path / "runs")
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    out = tmp_path / "report"
    assert main(["compare", str(run), "--out", str(out)]) == 2
    assert f"`gan-mn migrate {run}` rewrites it once" in error(capsys)
    assert not out.exists() and {f.name: f.read_bytes() for f in run.iterdir()} == before

    assert main(["migrate", str(run)]) == 0
    said = capsys.readouterr().out
    assert "metrics.csv" in said and "model.arch, model.cuda_graph, model.num_classes" in said
    assert (run / "metrics.csv").read_text() == (f"{FID},step,time/train_seconds\n"
                                                 ",200,80.0\n30,200,\n")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == {"label": "bn", "d_steps": 2, "arch": "dcgan",
                               "cuda_graph": False, "num_classes": 0}
    assert config["data"] == {"per_batch_file": None}
    log = read_run(run)
    assert log.train_seconds[0].tolist() == [200] and log.train_seconds[1].tolist() == [80.0]
    assert log.curve(FID)[1].tolist() == [30]

    migrated = {f.name: f.read_bytes() for f in run.iterdir()}
    assert main(["migrate", str(run)]) == 0
    assert "already in today's format" in capsys.readouterr().out
    assert {f.name: f.read_bytes() for f in run.iterdir()} == migrated


def test_migrate_checks_every_directory_before_rewriting_any(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _earlier_run(tmp_path / "runs")
    before = (run / "metrics.csv").read_bytes()
    assert main(["migrate", str(run), str(tmp_path / "missing")]) == 2
    assert "missing: not a directory" in error(capsys)
    assert (run / "metrics.csv").read_bytes() == before


def test_an_empty_section_is_filled(tmp_path: Path) -> None:
    run = _earlier_run(tmp_path / "runs")
    (run / "config.yaml").write_text("seed_everything: 0\nmodel:\n  label: bn\ndata:\n")
    assert main(["migrate", str(run)]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["data"] == {"per_batch_file": None}


def test_a_resume_of_an_earlier_run_names_migrate() -> None:
    saved = {"seed_everything": 0, "model": {"label": "bn"}}
    with pytest.raises(RunError, match=r"model.num_classes absent from the saved config.*"
                                       r"gan-mn migrate RUN_DIR"):
        resume_changes(saved, {**saved, "model": {"label": "bn", "num_classes": 0}})
