"""Bad input to the entry point and the installed script: one line on stderr, exit 2,
nothing written."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gan_mn.cli import main
from tests.helpers.cli import SMOKE
from tests.helpers.fakes import write_image_folder


def bad_input_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    empty = tmp / "empty"
    empty.mkdir()
    (tmp / "a_file").write_text("")
    images = write_image_folder(tmp / "images", n=20, size=32)
    metrics = ["--metrics.every_n_steps", "2", "--metrics.feature_extractor", "tiny-test",
               "--metrics.extractor_plugin", "tests.helpers.tiny_extractor"]
    return {
        "unknown key": (["--model.no_such_key", "1"], "no_such_key"),
        "missing config": (["-c", str(tmp / "nope.yaml")], "nope.yaml"),
        "wrong type": (["--trainer.max_steps", "many"], "trainer.max_steps"),
        "negative seed": (["--seed_everything", "-1"],
                          "--seed_everything must be between 0 and 4294967295, got -1"),
        "num_components < 1": (["--model.norm_kwargs", '{"mn": {"num_components": 0}}'],
                               "num_components"),
        "batch too small": (["--data.batch_size", "1"], "batch_size must be at least 2"),
        "missing data": (["--data.dataset", "imagefolder", "--data.root", str(tmp / "no")],
                         "does not exist"),
        "empty data": (["--data.dataset", "imagefolder", "--data.root", str(empty)],
                       "no images"),
        "unwritable output": (["--output_dir", str(tmp / "a_file")],
                              "cannot write the run directory"),
        "fid on 1 sample": ([*metrics, "--metrics.num_samples", "1"], "at least 2"),
        "kid subset > samples": ([*metrics, "--data.dataset", "imagefolder", "--data.root",
                                  str(images), "--metrics.metrics", "[kid]",
                                  "--metrics.num_samples", "10",
                                  "--metrics.kid_subset_size", "50"], "KID subset size 50"),
    }


@pytest.mark.parametrize("case", ["unknown key", "missing config", "wrong type",
                                  "negative seed", "num_components < 1", "batch too small",
                                  "missing data", "empty data", "unwritable output",
                                  "fid on 1 sample", "kid subset > samples"])
def test_bad_input_is_one_line_and_writes_nothing(in_tmp: Path, case: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    args, message = bad_input_cases(in_tmp)[case]
    before = {p for p in in_tmp.rglob("*")}
    assert main(["fit", "-c", SMOKE, "--wandb.mode", "offline", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gan-mn: error:") and message in err[0], err
    assert {p for p in in_tmp.rglob("*")} == before  # no run directory, no wandb run


@pytest.mark.parametrize("option", ["--out", "--out-dir"])
def test_sample_into_an_unwritable_place_is_one_line(tmp_path: Path, option: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a_file").write_text("")
    target = tmp_path / "a_file" / "grid.png"
    assert main(["sample", str(tmp_path / "x.ckpt"), "--num", "4", option, str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {target}" in err[0]


@pytest.mark.slow  # real processes
def test_console_script_answers_bad_input_in_one_line(tmp_path: Path) -> None:
    """The installed `gan-mn` script: the one beside this Python (its environment need
    not be activated, so PATH may not lead to it). An unknown command is answered before
    Lightning is imported, so this costs no interpreter start-up of seconds."""
    import sysconfig

    script = Path(sysconfig.get_path("scripts")) / "gan-mn"
    assert script.is_file(), f"{script}: is the project installed (pip install -e .)?"
    proc = subprocess.run([str(script), "fti", "-c", "x.yaml"],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PATH"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "gan-mn: error: unknown command 'fti'; the commands are fit, evaluate, sample, "
        "compare, study, migrate (`gan-mn --help`)"]


def test_missing_config_file_is_one_line(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "-c", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"gan-mn: error: Parser key \"config\": File does not exist: "
        f"'{tmp_path / 'missing.yaml'}' (see `gan-mn fit --help`)"]
