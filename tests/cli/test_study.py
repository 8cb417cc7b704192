"""``gan-mn study``: every group x seed as a ``gan-mn fit`` run, resumable, with a
manifest of each launch (real processes)."""

from __future__ import annotations

import json
import multiprocessing
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gan_mn.cli import main
from gan_mn.cli.rundir import RunLock
from gan_mn.cli.study import command, fit_options, parser, record_launch
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
    args[args.index("mn-g")] = "mn-g-k5"  # its own norm_kwargs, merged with the one above
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "bn-seed0: ok" in printed and "mn-g-k5-seed0: ok" in printed
    config = yaml.safe_load((out / "runs" / "mn-g-k5-seed0" / "config.yaml").read_text())
    assert config["model"]["norm_kwargs"] == {"mn": {"num_components": 5, "kernels": "eager"}}
    for run in ("bn-seed0", "mn-g-k5-seed0"):
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
    study = ["study", "--out", str(tmp_path / "s"), "--data-root", "x"]
    for extra, message in [
        (["--seeds", "-1"], "--seeds must be between 0 and 4294967295, got -1"),
        (["--seeds", "5", "5"], "--seeds lists 5 more than once"),
        (["--groups", "bn", "bn"], "--groups lists bn more than once"),
        (["--steps", "10", "--eval-every", "20"], "--eval-every 20 is more than --steps 10"),
        (["--", "--trainer.max_steps", "5"], "--trainer.max_steps after -- conflicts with "
                                             "what the study sets for every run; use --steps"),
        (["--", "--seed_everything=3"], "use --seeds"),
        (["--", "--model.norm_kwargs", "[1, 2]"], "expected a mapping of norm kinds"),
    ]:
        assert main([*study, *extra]) == 2
        assert message in error(capsys), extra
    (tmp_path / "f").write_text("")
    assert main(["study", "--out", str(tmp_path / "f"), "--data-root", "x"]) == 2
    assert f"--out {tmp_path / 'f'}: exists and is not a directory" in error(capsys)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("")
    (run / "metrics.csv").write_text("")
    assert main(["study", "--out", str(run / "study"), "--data-root", "x"]) == 2
    assert f"is inside the run directory {run.resolve()}" in error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "run"]


def test_the_group_options_merge_with_the_users() -> None:
    group = ["--model.norm_kwargs", "{mn: {num_components: 5}}"]
    assert fit_options(group, ["--model.norm_kwargs={mn: {kernels: eager}}", "--x", "1"]) == [
        "--x", "1", "--model.norm_kwargs", '{"mn": {"num_components": 5, "kernels": "eager"}}']
    assert fit_options(group, ["--model.norm_kwargs", "{mn: {num_components: 3}}"])[-1] == \
        '{"mn": {"num_components": 3}}'  # the user's option wins, key by key
    assert fit_options([], ["--a"]) == ["--a"]


def test_concurrent_launches_each_get_their_manifest_entry(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [context.Process(target=_launch, args=(tmp_path, i, start)) for i in range(8)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    launches = json.loads((tmp_path / "manifest.json").read_text())["launches"]
    assert sorted(launch["runs"][0] for launch in launches) == [f"run {i}" for i in range(8)]
    # each with the code version it was given (read at its start), not the tree's now
    assert sorted(launch["commit"] for launch in launches) == [f"c{i}" for i in range(8)]


def _launch(out: Path, i: int, start: Any) -> None:
    start.wait()
    record_launch(out, ["--out", str(out)], "now", [f"run {i}"],
                  {"commit": f"c{i}", "uncommitted_changes": False})


@pytest.mark.slow  # real processes
def test_sigterm_stops_the_study_and_its_runs_then_a_rerun_resumes(tmp_path: Path) -> None:
    """The study passes SIGTERM on to its fit (which saves last.ckpt and exits), starts
    no other run, records the launch and exits 143; the next launch finds the run free
    and resumes it."""
    data = write_image_folder(tmp_path / "images", n=40, size=32)
    out = tmp_path / "study"
    args = [sys.executable, "-m", "gan_mn", "study", "--out", str(out), "--data-root",
            str(data), "--extractor", "tiny-test", "--plugin", TINY, "--cache-dir",
            str(tmp_path / "cache"), "--groups", "bn", "--seeds", "0", "1", "--steps", "150",
            "--eval-every", "150", "--num-samples", "20", "--checkpoint-every", "150",
            "--threads", "1", "--", "--model.g_channels", "[16, 8, 8]",
            "--model.d_channels", "[8, 8, 16]", "--model.z_dim", "8", "--data.batch_size", "8",
            "--trainer.log_every_n_steps", "5"]
    study = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "runs" / "bn-seed0" / "metrics.csv"
    deadline = time.time() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 2):
        assert study.poll() is None and time.time() < deadline
        time.sleep(0.2)
    study.send_signal(signal.SIGTERM)
    printed, err = study.communicate(timeout=120)
    assert study.returncode == 143, err
    assert "stopped by a signal; run the same command again to resume" in err
    assert "bn-seed0: stopped by a signal at step" in printed
    assert "bn-seed1: not started, the study was stopped" in printed
    assert (out / "runs" / "bn-seed0" / "last.ckpt").is_file()
    assert len(json.loads((out / "manifest.json").read_text())["launches"]) == 1
    # its fit has ended too: the run is free for the next launch, which resumes it
    lock = RunLock(out / "runs" / "bn-seed0")
    lock.acquire()
    lock.release()
    options = parser().parse_args(args[4:args.index("--")])
    options.extra = []
    assert "--ckpt_path" in command(options, "bn", 0, out / "runs" / "bn-seed0")
