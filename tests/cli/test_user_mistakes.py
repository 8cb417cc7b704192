"""What a demanding user tries, through the entry point: one line, exit 2,
nothing written or changed; runs that cannot mix; compare that never misreads."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_mn.cli import main
from tests.helpers.cli import SMOKE, error, fast
from tests.helpers.fakes import write_image_folder

FAST = fast(2)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step smoke run on an image folder (20 images)."""
    work = tmp_path_factory.mktemp("mistakes")
    data = write_image_folder(work / "images", n=20, size=32)
    args = ["fit", "-c", SMOKE, "--output_dir", str(work / "out"), *FAST,
            "--data.dataset", "imagefolder", "--data.root", str(data)]
    assert main(args) == 0
    return work / "out" / "smoke-seed0"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow  # trains through Lightning
@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_cuda_without_a_gpu_is_named_as_such(run: Path, command: str,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    extra = ["--out", str(run.parent / "g.png")] if command == "sample" else []
    assert main([command, str(run / "last.ckpt"), "--device", "cuda", *extra]) == 2
    assert "no CUDA device is available on this machine; use --device cpu" in error(capsys)
    assert main([command, str(run / "last.ckpt"), "--device", "gpu", *extra]) == 2
    assert "'gpu' is not a device" in error(capsys)


@pytest.mark.slow  # trains through Lightning (its fixture)
@pytest.mark.parametrize(("options", "message"), [
    (["--batch-size", "0"], "--batch-size must be positive, got 0"),
    (["--batch-size", "-1"], "--batch-size must be positive, got -1"),
    (["--out", ""], "--out must name a file"),
    (["--out-dir", ""], "--out-dir must name a folder"),
    (["--num", "5000", "--out", "big.png"], "too many images for one grid (at most 4096)"),
    (["--num", "x", "--out", "a.png"], "argument --num: invalid int value"),
])
def test_sample_mistakes_are_one_line(run: Path, tmp_path: Path, options: list[str],
                                      message: str, capsys: pytest.CaptureFixture[str]) -> None:
    os.chdir(tmp_path)
    if "--out" not in options and "--out-dir" not in options:
        options = [*options, "--out", "grid.png"]
    assert main(["sample", str(run / "last.ckpt"), *options]) == 2
    assert message in error(capsys)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_sample_to_a_folder_streams_and_honours_the_umask(run: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """--out-dir writes each batch as it comes (the all-in-memory path is never taken);
    the folder is made as mkdir would make it."""
    import gan_mn.metrics.fidelity as fidelity

    def all_at_once(*args: object, **kwargs: object) -> None:
        raise AssertionError("sample --out-dir held every image in memory")

    monkeypatch.setattr(fidelity, "generate", all_at_once)
    old = os.umask(0o022)
    try:
        assert main(["sample", str(run / "last.ckpt"), "--num", "30", "--batch-size", "7",
                     "--out-dir", str(tmp_path / "pngs")]) == 0
    finally:
        os.umask(old)
    assert len(list((tmp_path / "pngs").iterdir())) == 30
    assert stat.S_IMODE((tmp_path / "pngs").stat().st_mode) == 0o755


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_evaluate_of_a_run_directory_says_what_it_is(run: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(run)]) == 2
    assert "is a directory, not a checkpoint file (e.g. its last.ckpt)" in error(capsys)


@pytest.mark.parametrize(("norm_kwargs", "message"), [
    ('{mn: {momentum: abc}}', "momentum must be a number in [0, 1] or None, got 'abc'"),
    ('{bn: {momentum: 7}}', "momentum must be a number in [0, 1] or None, got 7"),
    ('{bn: {eps: 0}}', "eps must be a positive number, got 0"),
    ('{mn: {affine: maybe}}', "affine must be true or false, got 'maybe'"),
])
def test_norm_options_are_checked_for_bn_as_for_mn(tmp_path: Path, norm_kwargs: str,
                                                  message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["fit", "-c", SMOKE, "--output_dir", str(out), *FAST,
                 "--model.norm_kwargs", norm_kwargs]) == 2
    assert message in error(capsys)
    assert not out.exists()


@pytest.mark.slow  # trains through Lightning
def test_too_few_images_says_image_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    data = write_image_folder(tmp_path / "one", n=1, size=32)
    assert main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path / "out"), *FAST,
                 "--data.dataset", "imagefolder", "--data.root", str(data)]) == 2
    assert "has 1 image, fewer than one batch (16)" in error(capsys)


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_a_resume_on_other_images_is_refused_a_moved_folder_is_not(
        run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    shutil.copytree(run.parent, out)
    mine = out / run.name
    before = snapshot(mine)
    other = write_image_folder(tmp_path / "other", n=24, size=32)
    common = ["fit", "-c", str(mine / "config.yaml"), "--output_dir", str(out),
              "--checkpoint.dirpath", str(mine), "--ckpt_path", "last", "--trainer.max_steps", "3"]
    assert main([*common, "--data.root", str(other)]) == 2
    assert "cannot resume on other images" in error(capsys)
    assert snapshot(mine) == before  # nothing written or changed
    moved = tmp_path / "moved"
    shutil.copytree(run.parent.parent / "images", moved)
    assert main([*common, "--data.root", str(moved)]) == 0


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_a_resume_with_no_steps_left_says_so(run: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    shutil.copytree(run.parent, out)
    before = snapshot(out)
    assert main(["fit", "-c", str(out / run.name / "config.yaml"), "--output_dir", str(out),
                 "--checkpoint.dirpath", str(out / run.name), "--ckpt_path", "last"]) == 2
    assert "nothing to train: the run is at step 2 and --trainer.max_steps is 2" in \
        error(capsys)
    assert snapshot(out) == before


@pytest.mark.slow  # trains through Lightning
def test_a_run_shorter_than_the_logging_interval_writes_its_metrics(tmp_path: Path) -> None:
    """Its last step is logged anyway; every row is at the generator steps done."""
    import csv

    assert main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path), *FAST,
                 "--trainer.max_steps", "3", "--trainer.log_every_n_steps", "50"]) == 0
    with open(tmp_path / "smoke-seed0" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["3"]
    assert float(rows[0]["loss/d"]) > 0 and float(rows[0]["time/train_seconds"]) > 0


@pytest.mark.slow  # trains through Lightning
def test_steps_of_every_row_are_generator_steps_and_monotonic(tmp_path: Path) -> None:
    """Training rows, evaluation rows and sample grids at the same steps, in order (what
    wandb receives too): no 40, 40, 39."""
    import csv

    from tests.helpers.fakes import TINY_EXTRACTOR

    assert main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path), *FAST,
                 "--trainer.max_steps", "4", "--trainer.log_every_n_steps", "2",
                 "--metrics.every_n_steps", "2", "--metrics.num_samples", "20",
                 "--metrics.feature_extractor", "tiny-test", "--metrics.extractor_plugin",
                 TINY_EXTRACTOR, "--metrics.cache_dir", str(tmp_path / "cache")]) == 0
    with open(tmp_path / "smoke-seed0" / "metrics.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == sorted(steps) and set(steps) == {2, 4}


@pytest.mark.slow  # trains through Lightning
def test_plain_fit_is_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            caplog: pytest.LogCaptureFixture) -> None:
    """No Lightning tip, no wandb 'anonymous' warning; torch's CUDA-runtime note muted."""
    with caplog.at_level(logging.INFO):
        assert main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path), *FAST,
                     "--wandb.mode", "offline"]) == 0
    printed = capsys.readouterr()
    text = printed.out + printed.err + caplog.text
    assert "Tip:" not in text and "anonymous setting" not in text
    assert logging.getLogger("torch.utils.cpp_extension").level == logging.ERROR


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_evaluate_against_another_reference(run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--reference DIR: the values against that folder's images, recorded as such."""
    import json

    from gan_mn.data import GANDataModule, UInt8Images
    from gan_mn.metrics import MetricSettings
    from gan_mn.metrics.fidelity import compute_metrics
    from gan_mn.training import load_run
    from tests.helpers.fakes import TINY_EXTRACTOR

    other = write_image_folder(tmp_path / "other", n=30, size=40)
    settings = MetricSettings(num_samples=20, feature_extractor="tiny-test",
                              extractor_plugin=TINY_EXTRACTOR, cache_dir=str(tmp_path / "c"))
    assert main(["evaluate", str(run / "last.ckpt"), "--reference", str(other),
                 "--num-samples", "20", "--feature-extractor", "tiny-test",
                 "--extractor-plugin", TINY_EXTRACTOR, "--cache-dir", str(tmp_path / "c")]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    data = GANDataModule("imagefolder", root=str(other))
    assert record["reference"] == f"imagefolder {other}"
    assert record["reference_key"] == data.content_key()
    generator = load_run(run / "last.ckpt").gan.generator
    expected = compute_metrics(generator, generator.z_dim, UInt8Images(data.load_images()),
                               data.content_key(), settings.protocol("other"), settings)
    assert record["fid20_other_tiny-test"] == pytest.approx(expected["fid20_other_tiny-test"])


def test_ctrl_c_outside_training_exits_130(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import gan_mn.cli.compare as report_cli

    def interrupted(argv: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(report_cli, "compare_main", interrupted)
    assert main(["compare", "x", "--out", "y"]) == 130
    assert capsys.readouterr().err.strip() == "gan-mn: interrupted"


@pytest.mark.slow  # real processes
@pytest.mark.parametrize(("command", "mistake", "error"), [
    ("compare", ["missing", "--out", "x"], "missing: not a directory"),
    ("evaluate", ["missing.ckpt"], "checkpoint missing.ckpt does not exist"),
    ("sample", ["missing.ckpt", "--out-dir", "x"], "checkpoint missing.ckpt does not exist"),
    ("sample", ["missing.ckpt", "--out", "x.bmp"],
     "x.bmp: the file name must end in one of .png, .jpg, .jpeg, .webp (the format written)"),
])
def test_help_and_mistakes_answer_without_loading_torch(
        tmp_path: Path, command: str, mistake: list[str], error: str) -> None:
    """Help and argument mistakes come in a second: neither torch nor Lightning (about
    10 s here) is imported before the arguments are checked. (`compare`'s help imported
    Lightning through an exception clause in `main`; `evaluate` and `sample` imported it
    at module level, so a mistyped checkpoint path took 10 s to report.)"""
    code = ("import sys\nfrom gan_mn.cli import main\n"
            f"try:\n    main({[command, '--help']!r})\nexcept SystemExit as e:\n"
            "    assert e.code == 0\n"
            f"assert main({[command, *mistake]!r}) == 2\n"
            "print(sorted(m for m in ('lightning', 'torch') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"usage: gan-mn {command}" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert proc.stderr.strip() == f"gan-mn: error: {error}"
    assert not (tmp_path / "x").exists()
