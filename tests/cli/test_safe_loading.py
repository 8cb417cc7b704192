"""A checkpoint or cache file whose pickle would run code (here: create a marker file) is
refused in one line, exit 2, through every command that reads one; nothing from it runs.
Real files (a training run's checkpoint and its metrics cache) still load. And the other
one-line answers about files a user gives: weights that do not fit their settings, a
place that refuses the file to write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gan_mn.cli import main
from gan_mn.torch_files import UnsafeFileError, checkpoint_step, load
from tests.helpers.cli import QUIET, SMOKE, error


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: code that runs on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _poison(path: Path, marker: Path, base: object | None = None) -> Path:
    """``base`` (a checkpoint's dict, say) with the payload added, saved as ``path``."""
    content = dict(base) if isinstance(base, dict) else {"global_step": 1}
    content["payload"] = _Payload(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return path


def _refused(code: int, capsys: pytest.CaptureFixture[str], path: Path, marker: Path) -> None:
    assert code == 2
    line = error(capsys)
    named = "/".join(path.parts[-2:])  # (fit names its run's file relative to the cwd)
    assert named in line and "holds objects" in line and "open" in line, line
    assert not marker.exists()


def test_the_crafted_file_would_run_code(tmp_path: Path) -> None:
    """The payload is real: an unrestricted load creates the marker."""
    marker = tmp_path / "pwned"
    path = _poison(tmp_path / "evil.ckpt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_evaluate_and_sample_refuse_it(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    path = _poison(tmp_path / "evil.ckpt", marker)
    _refused(main(["evaluate", str(path), "--feature-extractor", "cifar10-proxy",
                   "--num-samples", "8"]), capsys, path, marker)
    _refused(main(["sample", str(path), "--num", "4", "--out", str(tmp_path / "g.png")]),
             capsys, path, marker)
    assert not (tmp_path / "g.png").exists()


def test_fit_refuses_it_as_the_run_to_resume(in_tmp: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    marker = in_tmp / "pwned"
    path = _poison(in_tmp / "checkpoints" / "smoke-seed0" / "last.ckpt", marker)
    _refused(main(["fit", "-c", SMOKE, "--ckpt_path", "last", *QUIET]), capsys, path, marker)
    other = _poison(in_tmp / "given.ckpt", marker)
    _refused(main(["fit", "-c", SMOKE, "--run_name", "other", "--ckpt_path", str(other),
                   *QUIET]), capsys, other, marker)


def test_study_refuses_it_when_reading_a_runs_step(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    path = _poison(tmp_path / "study" / "runs" / "bn-seed0" / "last.ckpt", marker)
    study = ["study", "--out", str(tmp_path / "study"), "--data-root", str(tmp_path),
             "--groups", "bn", "--seeds", "0", "--steps", "2", "--eval-every", "2"]
    _refused(main(study), capsys, path, marker)
    assert not (tmp_path / "study" / "manifest.json").exists()


def test_legacy_format_is_refused_too(tmp_path: Path) -> None:
    """The old (non-zip) serialization goes through the same restricted unpickler."""
    marker = tmp_path / "pwned"
    path = tmp_path / "old.pt"
    torch.save({"payload": _Payload(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeFileError, match="holds objects a metrics cache file should not"):
        load(path, "metrics cache file")
    assert not marker.exists()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step smoke run, with its reference statistics cached by an evaluation."""
    work = tmp_path_factory.mktemp("safe")
    assert main(["fit", "-c", SMOKE, "--trainer.max_steps", "2", "--output_dir",
                 str(work / "out"), *QUIET]) == 0
    return work / "out" / "smoke-seed0" / "last.ckpt"


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_a_poisoned_metrics_cache_is_refused(smoke_run: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    args = ["evaluate", str(smoke_run), "--feature-extractor", "cifar10-proxy",
            "--num-samples", "16", "--metrics", "fid", "--cache-dir", str(cache)]
    assert main(args) == 0  # real cache files load (numpy statistics among them)
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(args) == 0  # and are read back, safely
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])[
        "fid16_train_cifar10-proxy"] == first["fid16_train_cifar10-proxy"]
    stats = next(cache.glob("*-stat-fid-features.pt"))
    marker = tmp_path / "pwned"
    _poison(stats, marker, load(stats, "cache"))
    _refused(main(args), capsys, stats, marker)


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_a_real_checkpoint_loads_weights_only(smoke_run: Path) -> None:
    assert checkpoint_step(smoke_run) == 2
    assert torch.serialization.get_unsafe_globals_in_checkpoint(smoke_run) == []


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_weights_that_do_not_fit_their_settings_are_one_short_line(
        smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = load(smoke_run)
    ckpt["hyper_parameters"]["g_channels"] = [48, 24, 12]  # another model than its weights
    path = tmp_path / "other.ckpt"
    torch.save(ckpt, path)
    assert main(["sample", str(path), "--num", "4", "--out", str(tmp_path / "g.png")]) == 2
    line = error(capsys)
    assert "weights do not fit the model its own settings build" in line, line
    assert "22 of another shape (generator.net.0.weight, " in line and "19 more" in line
    assert len(line) < 300
    assert "version" not in line


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_a_failed_write_names_the_users_path(smoke_run: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A place that refuses new files (/proc): the error names the path asked for, not
    the temporary file gan-mn writes first."""
    assert main(["sample", str(smoke_run), "--num", "4", "--out", "/proc/g.png"]) == 2
    line = error(capsys)
    assert "'/proc/g.png'" in line and ".tmp" not in line, line
