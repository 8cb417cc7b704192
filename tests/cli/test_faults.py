"""Faults, through the real entry point: SIGKILL/SIGTERM/Ctrl-C and resume, NaNs, and
bad input answered with one line."""

from __future__ import annotations

import csv
import multiprocessing
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from gan_mn.cli import main
from tests.helpers.cli import EAGER_MN, ROOT, SMOKE
from tests.helpers.fakes import write_image_folder

STEPS = 24
# 40 images in batches of 8: an epoch is 5 steps, so runs cross epochs and are killed
# mid-epoch. Eager MN (no compile) keeps the subprocesses quick; EMA is on so that its
# state has to come back too.
ARGS = ["--data.dataset", "imagefolder", "--data.batch_size", "8",
        "--trainer.max_steps", str(STEPS), "--trainer.deterministic", "true",
        "--trainer.log_every_n_steps", "1", "--checkpoint.every_n_train_steps", "4",
        "--model.sample_every_n_steps", "0", *EAGER_MN,
        "--trainer.callbacks+=gan_mn.training.EMA",
        "--wandb.mode", "disabled", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


def start(data: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    """A run in its own process (and process group, as a terminal gives a command): for
    the runs a test interrupts."""
    cmd = [sys.executable, "-m", "gan_mn", "fit", *fit_args(data, out, *extra)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, process_group=0)


def fit_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["-c", SMOKE, "--data.root", str(data), "--output_dir", str(out), *ARGS, *extra]


def fit_here(data: Path, out: Path, *extra: str) -> int:
    """A run in this process, through the same entry point (no interpreter start-up);
    ``trainer.deterministic`` is switched back off afterwards for the other tests."""
    try:
        return main(["fit", *fit_args(data, out, *extra)])
    finally:
        torch.use_deterministic_algorithms(False)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.time() + 120
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline
        time.sleep(0.05)


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def losses(run: Path) -> dict[int, tuple[str, str]]:
    """loss/d, loss/g per logged step; for a resumed run the last row per step wins."""
    with open(run / "metrics.csv", newline="") as f:
        return {int(r["step"]): (r["loss/d"], r["loss/g"]) for r in csv.DictReader(f)
                if r["loss/d"]}


def assert_same_state(a: Any, b: Any, where: str = "") -> None:
    """Equal, tensors bit for bit, Python values (step counts, learning rates, flags...)
    exactly."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("faults") / "images", n=40, size=32)


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every interrupted one must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference")
    assert fit_here(data, out) == 0
    return out / "smoke-seed0"


def assert_matches_reference(run: Path, reference: Path) -> None:
    mine, ref = load(run / "last.ckpt"), load(reference / "last.ckpt")
    assert mine["global_step"] == ref["global_step"] == STEPS
    # weights, MN's running mixture, the EMA copy, the optimiser state, the loops' progress
    # and the RNG states, bit for bit; the data position
    for key in ("state_dict", "current_model_state", "averaging_state", "optimizer_states",
                "GANDataModule"):
        assert_same_state(mine[key], ref[key], key)
    # Lightning's loop counters too, but its count of epochs started: after a resume from
    # the end of an epoch it counts one fewer (the data position does not depend on it)
    loops = [mine["loops"], ref["loops"]]
    for state in loops:
        for scope in ("total", "current"):
            for field in ("ready", "started"):
                state["fit_loop"]["epoch_progress"][scope].pop(field)
    assert_same_state(*loops, "loops")
    rng = [k for k in mine["callbacks"] if k.startswith("RNGState")]
    assert rng and all(assert_same_state(mine["callbacks"][k], ref["callbacks"][k], k) is None
                       for k in rng)
    # training time is wall-clock: different, but carried across the resume
    assert mine["train_seconds"] > 0 and ref["train_seconds"] > 0
    assert losses(run) == losses(reference)
    assert len(losses(run)) == STEPS


@pytest.mark.slow  # real processes
def test_sigkill_at_any_moment_then_resume_equals_an_uninterrupted_run(
        data: Path, reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "smoke-seed0"
    proc = start(data, tmp_path, "--trainer.callbacks+=tests.helpers.callbacks.SlowDown")
    wait_for(run / "last.ckpt", proc)
    time.sleep(0.7)  # somewhere after step 4's checkpoint, maybe inside the next save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = load(run / "last.ckpt")  # a complete checkpoint, loadable
    killed_at = killed["global_step"]
    assert 4 <= killed_at < STEPS and killed_at % 4 == 0
    assert fit_here(data, tmp_path, "--ckpt_path", "last") == 0
    assert_matches_reference(run, reference)
    assert load(run / "last.ckpt")["train_seconds"] > killed["train_seconds"] > 0


@pytest.mark.slow  # real processes
@pytest.mark.parametrize(("step", "callback"), [
    # SIGTERM during step 10, which ends an epoch: a state Lightning's own stop would save
    # after closing the epoch, which resumes wrongly
    (10, "SignalAt"),
    # a terminal's Ctrl-C reaches every process of the group, data-loader workers included
    # (as torch-fidelity's during an evaluation), here during step 7, mid-epoch
    (7, "CtrlCInWorkers"),
])
def test_sigterm_and_ctrl_c_save_a_final_checkpoint(data: Path, reference: Path, tmp_path: Path,
                                                   step: int, callback: str) -> None:
    run = tmp_path / "smoke-seed0"
    proc = start(data, tmp_path, f"--trainer.callbacks+=tests.helpers.callbacks.{callback}",
                 "--trainer.callbacks.init_args.step", str(step))
    rc, err = finish(proc)
    assert rc == 143, err[-3000:]
    assert "Traceback" not in err
    assert load(run / "last.ckpt")["global_step"] == step  # not the periodic one (4, 8)
    assert "continue with the same command plus --ckpt_path last" in err
    if callback == "CtrlCInWorkers":  # named as what came, not as the SIGTERM it becomes
        assert "Ctrl-C: stopping after this step" in err and "Received SIGTERM" not in err
    assert fit_here(data, tmp_path, "--ckpt_path", "last") == 0
    assert_matches_reference(run, reference)


@pytest.mark.slow  # trains through Lightning
def test_non_finite_values_stop_the_run_and_keep_the_last_good_checkpoint(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "smoke-seed0"
    assert fit_here(data, tmp_path, "--trainer.callbacks+=tests.helpers.callbacks.PoisonAt",
                    "--trainer.callbacks.init_args.step", "6") == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("gan-mn: error:")]
    assert len(errors) == 1 and "non-finite" in errors[0] and "step 7" in errors[0]
    assert f"the last good checkpoint is {run / 'last.ckpt'}: resume it" in errors[0]
    assert "Traceback" not in err
    good = load(run / "last.ckpt")
    assert good["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in good["state_dict"].values()
               if v.is_floating_point())
    assert not list(run.glob("*step*7*")) and not list(run.glob(".*tmp"))


@pytest.mark.slow  # trains through Lightning
def test_non_finite_before_any_checkpoint_gives_no_resume_hint(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = fit_here(data, tmp_path, "--trainer.callbacks+=tests.helpers.callbacks.PoisonAt",
                  "--trainer.callbacks.init_args.step", "1")
    errors = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith("gan-mn: error:")]
    assert rc == 1 and len(errors) == 1 and "no checkpoint was saved before it" in errors[0]
    assert "--ckpt_path last" not in errors[0] and "--overwrite true" in errors[0]


@pytest.mark.parametrize(("error", "free", "match"), [
    # another I/O error propagates as it is
    (OSError("disk full"), 2**40, "disk full"),
    # torch.save on a full disk raises a bare RuntimeError: one line that says what happened
    (RuntimeError("[enforce fail at inline_container.cc:778] . unexpected pos 64 vs 0"), 0,
     r"the disk is full \(0 MiB free\): writing .*last.ckpt at step 2 failed and the "
     r"previous last.ckpt is intact"),
])
def test_a_failed_save_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                error: Exception, free: int, match: str
                                                ) -> None:
    import shutil

    from gan_mn.errors import UserError
    from gan_mn.training.checkpoint_io import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, path)

    def dies_half_way(obj: Any, f: Any) -> None:
        Path(f).write_bytes(b"\x80\x02partial")
        raise error

    monkeypatch.setattr(torch, "save", dies_half_way)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, free))
    with pytest.raises(type(error) if free else UserError, match=match):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert torch.load(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def _save_forever(path: Path, saved: Any) -> None:
    from gan_mn.training.checkpoint_io import AtomicCheckpointIO

    torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP pool
    io = AtomicCheckpointIO()
    for i in range(10**6):
        io.save_checkpoint({"i": i, "w": torch.full((4_000_000,), float(i))}, path)
        saved.set()


@pytest.mark.slow  # real processes
def test_sigkill_during_saves_leaves_a_complete_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    fork = multiprocessing.get_context("fork")  # a second process, without a new interpreter
    saved = fork.Event()
    saver = fork.Process(target=_save_forever, args=(path, saved), daemon=True)
    saver.start()
    assert saved.wait(60)  # one complete save, the next one under way
    time.sleep(0.05)
    saver.kill()
    saver.join()
    ckpt = torch.load(path)  # loads: not truncated; and all of one save, not a mix
    assert ckpt["w"].numel() == 4_000_000 and bool((ckpt["w"] == ckpt["i"]).all())


@pytest.mark.slow  # trains through Lightning
def test_a_resume_with_spectral_norm_equals_an_uninterrupted_run(data: Path,
                                                                  tmp_path: Path) -> None:
    """SNGAN's standard CNN with spectral norm in D (its power-iteration vectors live in
    the checkpoint): 8 steps at once, and 4 then 4 more after a resume, bit for bit."""
    family = ["--model.arch", "sngan", "--model.g_channels", "[32, 16, 8, 8]",
              "--model.d_channels", "[8, 16, 16]", "--model.d_norm", "sn",
              "--model.loss", "hinge", "--model.label", "sngan-smoke"]
    assert fit_here(data, tmp_path / "once", *family, "--trainer.max_steps", "8") == 0
    assert fit_here(data, tmp_path / "twice", *family, "--trainer.max_steps", "4") == 0
    assert fit_here(data, tmp_path / "twice", *family, "--trainer.max_steps", "8",
                    "--ckpt_path", "last") == 0
    once = load(tmp_path / "once" / "sngan-smoke-seed0" / "last.ckpt")
    twice = load(tmp_path / "twice" / "sngan-smoke-seed0" / "last.ckpt")
    assert twice["global_step"] == 8
    vectors = [k for k in once["state_dict"] if k.endswith("parametrizations.weight.0._u")]
    assert len(vectors) == 4  # D's three convolutions and its head
    for key in ("state_dict", "averaging_state", "optimizer_states"):
        assert_same_state(twice[key], once[key], key)


@pytest.mark.slow  # trains through Lightning
def test_two_resumes_the_first_at_an_epoch_end_equal_an_uninterrupted_run(
        data: Path, reference: Path, tmp_path: Path) -> None:
    """Stopped after step 10 (the end of the second 5-step epoch), resumed to 14 (inside
    the third), resumed to the end: the same as never stopping."""
    run = tmp_path / "smoke-seed0"
    assert fit_here(data, tmp_path, "--trainer.max_steps", "10") == 0
    assert fit_here(data, tmp_path, "--trainer.max_steps", "14", "--ckpt_path", "last") == 0
    assert fit_here(data, tmp_path, "--ckpt_path", "last") == 0
    assert_matches_reference(run, reference)
