"""One run per run directory, resumes that check what changed, and settings checked before
anything is written: through the real entry point (`gan_mn.cli.main`)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from gan_mn.cli import main
from gan_mn.cli.rundir import RunLock
from tests.helpers.cli import ROOT, SMOKE, error, fast, step_of

FAST = fast(4)


def fit(out: Path, *extra: str) -> int:
    return main(["fit", "-c", SMOKE, "--output_dir", str(out), *FAST, *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step smoke run; tests copy it before changing it."""
    out = tmp_path_factory.mktemp("runs")
    assert fit(out) == 0
    return out / "smoke-seed0"


def copy_of(run: Path, tmp_path: Path) -> Path:
    subprocess.run(["cp", "-r", str(run.parent), str(tmp_path / "out")], check=True)
    return tmp_path / "out" / run.name


@pytest.mark.slow  # trains through Lightning
def test_a_run_without_checkpoint_is_not_appended_to(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Killed before its first checkpoint: the same command refuses (naming --overwrite)
    instead of appending to the stale metrics.csv; --overwrite starts clean."""
    run = tmp_path / "smoke-seed0"
    run.mkdir()
    (run / "metrics.csv").write_text("loss/d,step\n0.5,999\n")
    (run / "wandb-id").write_text("stale\n")
    assert fit(tmp_path) == 2
    message = error(capsys)
    assert "already holds a run (metrics.csv, wandb-id)" in message
    assert "--overwrite true" in message and "--ckpt_path last" not in message
    assert (run / "metrics.csv").read_text().endswith("999\n")  # untouched
    assert fit(tmp_path, "--overwrite", "true") == 0
    steps = [line.split(",")[-2] for line in (run / "metrics.csv").read_text().splitlines()]
    assert "999" not in steps and not (run / "wandb-id").exists()


@pytest.mark.slow  # trains through Lightning
def test_a_second_writer_is_refused_naming_the_holder(finished: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    run = copy_of(finished, tmp_path)
    before = (run / "metrics.csv").read_bytes()
    lock = RunLock(run)
    lock.acquire()
    try:
        assert fit(run.parent, "--ckpt_path", "last", "--trainer.max_steps", "6") == 2
        assert f"in use by another gan-mn fit (process {os.getpid()})" in error(capsys)
        assert fit(run.parent, "--overwrite", "true") == 2
        assert "in use by another gan-mn fit" in error(capsys)
    finally:
        lock.release()
    assert (run / "metrics.csv").read_bytes() == before and (run / "last.ckpt").is_file()


def _hold_lock(run_dir: Path, held: Any) -> None:
    RunLock(run_dir).acquire()
    held.set()
    time.sleep(60)


@pytest.mark.slow  # real processes
def test_the_os_releases_the_lock_of_a_killed_process(tmp_path: Path) -> None:
    fork = multiprocessing.get_context("fork")  # a second process, without a new interpreter
    held = fork.Event()
    holder = fork.Process(target=_hold_lock, args=(tmp_path, held), daemon=True)
    holder.start()
    try:
        assert held.wait(60)
        with pytest.raises(ValueError, match=f"process {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()  # SIGKILL: no chance to release anything itself
        holder.join()
    lock = RunLock(tmp_path)
    lock.acquire()  # no stale lock after SIGKILL
    lock.release()


@pytest.mark.slow  # trains through Lightning
def test_resume_refuses_frozen_changes_before_writing(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    assert fit(tmp_path) == 0  # its own run: config.yaml names this directory
    run = tmp_path / "smoke-seed0"
    files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert fit(run.parent, "--ckpt_path", "last", "--model.g_norm", "bn",
               "--model.lr_g", "0.001", "--trainer.max_steps", "6") == 2
    message = error(capsys)
    assert "model.g_norm 'mn' -> 'bn'" in message and "model.lr_g 0.0002 -> 0.001" in message
    assert "trainer.max_steps" not in message  # that one may change
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == files
    # The README's resume command still works afterwards, and a longer schedule is
    # applied and recorded with the step it took effect at.
    config = str(run / "config.yaml")
    assert main(["fit", "-c", config, "--ckpt_path", "last", "--trainer.max_steps", "6"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_steps"] == 6
    record = json.loads((run / "resumes.jsonl").read_text())
    assert record == {"step": 4, "changed": {"trainer.max_steps": {"old": 4, "new": 6}}}
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[-1].split(",")[-2] == "6"  # every row at the generator steps done


@pytest.mark.parametrize("args, message", [
    (["--trainer.max_steps", "0"], "--trainer.max_steps must be a positive number"),
    (["--model.lr_d", "-0.1"], "learning rates must be positive"),
    (["--ckpt_path", "last"], "no run to resume in"),
    (["--ckpt_path", "last", "--overwrite", "true"], "cannot be combined with --ckpt_path"),
])
def test_bad_settings_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    args: list[str], message: str) -> None:
    out = tmp_path / "out"
    assert fit(out, *args) == 2
    assert message in error(capsys)
    assert not out.exists()


def test_only_existing_commands_are_offered(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-c", SMOKE]) == 2
    assert "unknown command 'validate'; the commands are fit, evaluate, sample, compare" \
        in error(capsys)
    assert main(["--help"]) == 0
    assert "validate" not in capsys.readouterr().out


def test_unavailable_extractor_weights_fail_at_start(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics with torch-fidelity's Inception offline: one line before step 1 that says
    what to pass, not a urlopen error at the first evaluation."""
    from urllib.error import URLError

    import torch_fidelity.feature_extractor_inceptionv3 as inception

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(inception, "load_state_dict_from_url", offline)
    out = tmp_path / "out"
    assert fit(out, "--metrics.every_n_steps", "2") == 2
    message = error(capsys)
    assert "feature extractor 'inception-v3-compat' cannot be loaded" in message
    assert "--metrics.feature_extractor_weights_path" in message
    assert not out.exists()
    assert fit(out, "--metrics.every_n_steps", "2", "--metrics.feature_extractor_weights_path",
               str(tmp_path / "missing.pth")) == 2
    assert "missing.pth do not exist" in error(capsys)


@pytest.mark.slow  # trains through Lightning
def test_train_seconds_count_training_steps_only(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Callbacks that take 100 s after every step (as an evaluation or a checkpoint write
    may) add nothing to time/train_seconds."""
    import types

    import gan_mn.training.module as module
    from tests.helpers.callbacks import SlowClock

    monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=SlowClock.perf_counter))
    assert fit(tmp_path, "--trainer.callbacks+=tests.helpers.callbacks.SlowEvaluation") == 0
    rows = (tmp_path / "smoke-seed0" / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("time/train_seconds")
    seconds = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    assert len(seconds) == 4 and seconds == sorted(seconds)
    assert seconds[-1] < 100, seconds  # counting the callbacks, it would be > 300


@pytest.mark.slow  # trains through Lightning
def test_an_internal_error_keeps_its_traceback(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (here a ValueError planted inside training) is not turned into a one-line
    user error with exit 2: it propagates out of the entry point, so Python prints its
    traceback and exits 1."""
    from gan_mn.training.losses import LOSSES, Loss

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("planted internal bug")

    monkeypatch.setitem(LOSSES._entries, "ns", Loss(broken, broken))
    with pytest.raises(ValueError, match="planted internal bug"):
        fit(tmp_path)


def test_missing_cifar10_offline_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """No CIFAR-10 and no network: one line, and neither a run directory (wandb-id) nor an
    empty data folder is left behind."""
    import urllib.error

    import torchvision.datasets

    class Offline:
        def __init__(self, root: str, **kwargs: object) -> None:
            Path(root).mkdir(parents=True, exist_ok=True)  # as torchvision does first
            raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert fit(out, "--data.dataset", "cifar10", "--data.root", "data/cifar",
               "--wandb.mode", "offline") == 2
    assert "downloading it failed" in error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_triton_kernels_without_a_gpu_are_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET")  # (tests/conftest.py sets it for the kernels' tests)
    out = tmp_path / "out"
    assert fit(out, "--model.norm_kwargs", '{"mn": {"kernels": "triton"}}') == 2
    assert "MN kernels='triton' needs a CUDA GPU" in error(capsys)
    assert not out.exists()


def test_cuda_graph_without_a_gpu_is_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert fit(out, "--model.cuda_graph", "true") == 2
    assert "--model.cuda_graph true needs a CUDA GPU" in error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(("options", "message"), [
    (["--trainer.precision", "16-mixed"], "float32 only"),
    (["--trainer.devices", "2"], "one GPU in one process"),
    (["--trainer.strategy", "ddp"], "one GPU in one process")])
def test_what_a_captured_step_cannot_do_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        options: list[str], message: str) -> None:
    """As on a machine with one GPU (the check reads no more of CUDA than its presence)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    out = tmp_path / "out"
    assert fit(out, "--model.cuda_graph", "true", *options) == 2
    assert message in error(capsys)
    assert not out.exists()


SLOW_LOAD = """
import sys, time
import gan_mn.data.datamodule as datamodule
load = datamodule.load_image_folder_labelled
def slow(*args, **kwargs):
    print("loading", flush=True)
    time.sleep(2)
    return load(*args, **kwargs)
datamodule.load_image_folder_labelled = slow
from gan_mn.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # real processes
def test_a_run_loading_slowly_holds_its_directory(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The lock is taken before the data loads: a second run into the directory while the
    first is still loading is refused, and the first trains alone."""
    from tests.helpers.fakes import write_image_folder

    data = write_image_folder(tmp_path / "images", n=20, size=32)
    args = ["fit", "-c", SMOKE, "--output_dir", str(tmp_path / "out"), *FAST,
            "--data.dataset", "imagefolder", "--data.root", str(data)]
    first = subprocess.Popen([sys.executable, "-c", SLOW_LOAD, *args], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "loading"
        assert main(args) == 2
        assert f"in use by another gan-mn fit (process {first.pid})" in error(capsys)
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-2000:]
    finally:
        first.kill()
    run = tmp_path / "out" / "smoke-seed0"
    assert step_of(run / "last.ckpt") == 4


def test_a_refused_start_leaves_no_directory(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """(The lock file of a start refused after taking it goes too.)"""
    out = tmp_path / "out"
    assert fit(out, "--data.dataset", "imagefolder", "--data.root",
               str(tmp_path / "no-such-folder")) == 2
    assert "no-such-folder" in error(capsys)
    assert not out.exists()


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_config_holds_paths_as_given_and_a_copied_run_resumes_in_place(
        tmp_path: Path, finished: Path) -> None:
    """config.yaml records --output_dir as given and no directory derived from it, so a
    run directory copied elsewhere resumes there, leaving the original untouched."""
    saved = yaml.safe_load((finished / "config.yaml").read_text())
    assert saved["trainer"]["default_root_dir"] is None
    assert saved["checkpoint"]["dirpath"] is None
    assert saved["output_dir"] == str(finished.parent)
    original = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()}
    moved = tmp_path / "moved"
    shutil.copytree(finished, moved / finished.name)
    assert main(["fit", "-c", str(moved / finished.name / "config.yaml"), "--output_dir",
                 str(moved), "--ckpt_path", "last", "--trainer.max_steps", "6"]) == 0
    assert step_of(moved / finished.name / "last.ckpt") == 6
    assert {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()} == original
    again = yaml.safe_load((moved / finished.name / "config.yaml").read_text())
    assert again["checkpoint"]["dirpath"] is None and again["output_dir"] == str(moved)
