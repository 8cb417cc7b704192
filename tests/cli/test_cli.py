"""The gan-mn command end to end, offline: fit, resume, metrics, evaluate, sample, errors."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from gan_mn.cli import main
from tests.helpers.cli import EAGER_MN, SMOKE, step_of
from tests.helpers.fakes import TINY_EXTRACTOR, write_cifar10, write_image_folder

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 6-step run through the entry point on CIFAR-10-format data, MN in G and D, an
    EMA (decay 0.5), metrics every 3 steps with the tiny extractor
    (tests/cli/test_faults.py runs the command in its own process). MN's eager kernels:
    the compiled ones have their own tests (tests/norm/test_kernels.py), and compiling
    them again here costs seconds."""
    work = tmp_path_factory.mktemp("run")
    write_cifar10(work / "cifar", per_batch=20)
    cache = work / "cache"
    args = ["fit", "-c", SMOKE, "--data.dataset", "cifar10", "--data.root", str(work / "cifar"),
            "--data.download", "false", "--model.d_norm", "mn", *EAGER_MN,
            "--trainer.max_steps", "6", "--trainer.callbacks+=gan_mn.training.EMA",
            "--trainer.callbacks.init_args.decay", "0.5",
            "--checkpoint.every_n_train_steps", "3", "--metrics.every_n_steps", "3",
            "--metrics.num_samples", "40", "--metrics.feature_extractor", "tiny-test",
            "--metrics.extractor_plugin", TINY_EXTRACTOR, "--metrics.cache_dir", str(cache),
            *QUIET]
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert main(args) == 0
    finally:
        os.chdir(cwd)
    return work / "checkpoints" / "smoke-seed0"


@pytest.mark.slow  # trains through Lightning
def test_fit_writes_checkpoint_csv_wandb_and_config(trained: Path) -> None:
    assert step_of(trained / "last.ckpt") == 6
    assert (trained / "config.yaml").is_file()
    assert list((trained / "wandb").glob("offline-run-*/run-*.wandb"))
    rows = metrics_rows(trained)
    assert any(r.get("loss/d") for r in rows) and any(r.get("loss/g") for r in rows)


def _metrics_of(generator: torch.nn.Module, data_root: Path, cache: Path,
                num_samples: int = 40) -> dict[str, float]:
    """torch-fidelity's values for ``generator`` with the fixture's protocol."""
    from gan_mn.data import GANDataModule, UInt8Images
    from gan_mn.metrics import MetricSettings
    from gan_mn.metrics.fidelity import compute_metrics

    data = GANDataModule("cifar10", root=str(data_root), download=False)
    settings = MetricSettings(num_samples=num_samples, feature_extractor="tiny-test",
                              extractor_plugin=TINY_EXTRACTOR, cache_dir=str(cache))
    return compute_metrics(generator, generator.z_dim, UInt8Images(data.load_images()),
                           data.content_key(), settings.protocol(data.metric_suffix()),
                           settings)


def _ema_and_live(ckpt: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The generator a checkpoint's EMA holds (its state_dict) and the live one."""
    from gan_mn.training import load_run

    run = load_run(ckpt)
    live = load_run(ckpt).gan
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["current_model_state"]
    live.load_state_dict(state)
    return run.gan.generator, live.generator


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_metrics_are_logged_and_best_fid_kept(trained: Path) -> None:
    rows = [r for r in metrics_rows(trained) if r.get("fid40_train_tiny-test")]
    assert [int(r["step"]) for r in rows] == [3, 6]
    # the value logged at step 6 is torch-fidelity's for the EMA generator at step 6
    ema, _ = _ema_and_live(trained / "last.ckpt")
    values = _metrics_of(ema, trained.parent.parent / "cifar", trained.parent.parent / "cache")
    assert float(rows[1]["fid40_train_tiny-test"]) == pytest.approx(values["fid40_train_tiny-test"])
    assert float(rows[1]["isc40_tiny-test"]) == pytest.approx(values["isc40_tiny-test"])
    best = list(trained.glob("best-fid-step*.ckpt"))
    assert len(best) == 1
    fids = {int(r["step"]): float(r["fid40_train_tiny-test"]) for r in rows}
    assert step_of(best[0]) == min(fids, key=fids.get)


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_resume_continues_from_its_step(trained: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "checkpoints" / "smoke-seed0"
    shutil.copytree(trained, run)
    # the run's own saved config is the resume recipe
    args = ["fit", "-c", str(run / "config.yaml"), "--trainer.max_steps", "9",
            "--wandb.mode", "disabled", "--ckpt_path", "last", "--trainer.log_every_n_steps", "1"]
    os.chdir(tmp_path)
    assert main(args) == 0
    assert step_of(run / "last.ckpt") == 9
    losses = [int(r["step"]) for r in metrics_rows(run) if r.get("loss/d")]
    assert losses == sorted(losses) and len(set(losses)) == len(losses) and max(losses) >= 6


@pytest.mark.slow  # trains through Lightning
def test_fit_on_an_image_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "imgs", n=40)
    os.chdir(tmp_path)
    assert main(["fit", "-c", SMOKE, "--data.dataset", "imagefolder", "--data.root",
                 str(tmp_path / "imgs"), "--trainer.max_steps", "6", *EAGER_MN, *QUIET]) == 0
    run = tmp_path / "checkpoints" / "smoke-seed0"
    assert step_of(run / "last.ckpt") == 6 and (run / "metrics.csv").is_file()
    assert list((run / "wandb").glob("offline-run-*"))


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_a_second_run_into_the_same_directory_must_resume(trained: Path, tmp_path: Path,
                                                          capsys) -> None:
    import shutil

    shutil.copytree(trained, tmp_path / "checkpoints" / "smoke-seed0")
    os.chdir(tmp_path)
    assert main(["fit", "-c", SMOKE, *QUIET]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ckpt_path last" in err[0]


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_evaluate_prints_json_and_appends_jsonl(trained: Path, tmp_path: Path, capsys) -> None:
    args = ["evaluate", str(trained / "last.ckpt"), "--num-samples", "40", "--metrics",
            "isc,fid,kid", "--kid-subset-size", "20", "--feature-extractor", "tiny-test",
            "--extractor-plugin", TINY_EXTRACTOR, "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["step"] == 6 and record["num_samples"] == 40 and record["seed"] == 2020
    assert record["feature_extractor"] == "tiny-test" and record["norm_mode"] == "running"
    assert "kid40_train_tiny-test" in record and record["reference"].startswith("cifar10-train")
    # the EMA weights (the checkpoint's state_dict), as the training-time metrics
    assert record["ema"] is True
    ema, live = _ema_and_live(trained / "last.ckpt")
    values = _metrics_of(ema, trained.parent.parent / "cifar", tmp_path)
    assert record["fid40_train_tiny-test"] == pytest.approx(values["fid40_train_tiny-test"])
    assert _metrics_of(live, trained.parent.parent / "cifar", tmp_path)[
        "fid40_train_tiny-test"] != pytest.approx(values["fid40_train_tiny-test"])
    lines = (trained / "evaluations.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == record


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_evaluate_offline_with_the_built_in_proxy_extractor(trained: Path, tmp_path: Path,
                                                             capsys, caplog) -> None:
    """``cifar10-proxy`` ships with the package: no plugin, no download. 40 samples: a
    warning that FID from so few is biased."""
    args = ["evaluate", str(trained / "last.ckpt"), "--num-samples", "40", "--metrics",
            "isc,fid", "--feature-extractor", "cifar10-proxy", "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    assert "FID/KID from 40 samples is biased upward" in caplog.text
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["feature_extractor"] == "cifar10-proxy"
    assert record["fid40_train_cifar10-proxy"] > 0 and record["isc40_cifar10-proxy"] >= 1
    # the MN layers' mixture on one training batch, named as training logs it (G and D)
    inside = {k for k in record if k.startswith("mn/")}
    assert {k.split("/")[1].split(".")[0] for k in inside} == {"generator", "discriminator"}
    assert all(1 <= record[k] <= 3 for k in inside if k.endswith("effective_components"))


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_sample_grid_and_folder(trained: Path, tmp_path: Path) -> None:
    from PIL import Image

    assert main(["sample", str(trained / "last.ckpt"), "--num", "9", "--out",
                 str(tmp_path / "grid.png")]) == 0
    assert Image.open(tmp_path / "grid.png").size == (3 * 34 + 2, 3 * 34 + 2)
    assert main(["sample", str(trained / "last.ckpt"), "--num", "5", "--out-dir",
                 str(tmp_path / "pngs")]) == 0
    files = sorted((tmp_path / "pngs").iterdir())
    assert len(files) == 5 and Image.open(files[0]).size == (32, 32)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pngs")]
    # the EMA generator's images (sample's default seed 0), not the live one's
    import numpy as np

    from gan_mn.metrics.fidelity import generate

    ema, live = _ema_and_live(trained / "last.ckpt")
    written = np.asarray(Image.open(files[0]))
    assert np.array_equal(written, generate(ema, 5, 0)[0].permute(1, 2, 0).numpy())
    assert not np.array_equal(written, generate(live, 5, 0)[0].permute(1, 2, 0).numpy())


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_sample_writes_the_format_its_name_asks_for(trained: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    assert main(["sample", str(trained / "last.ckpt"), "--num", "4", "--out",
                 str(tmp_path / "grid.jpg")]) == 0
    assert Image.open(tmp_path / "grid.jpg").format == "JPEG"
    assert main(["sample", str(trained / "last.ckpt"), "--num", "4", "--out",
                 str(tmp_path / "grid.gif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must end in one of .png, .jpg, .jpeg, .webp" in err[0]
    assert not (tmp_path / "grid.gif").exists()


@pytest.mark.slow  # trains through Lightning (its fixture)
@pytest.mark.parametrize("kind", ["missing", "truncated", "foreign"])
def test_bad_checkpoints_are_one_line_errors(trained: Path, tmp_path: Path, capsys,
                                             kind: str) -> None:
    path = tmp_path / "x.ckpt"
    if kind == "truncated":
        path.write_bytes((trained / "last.ckpt").read_bytes()[:5000])
    elif kind == "foreign":
        torch.save({"state_dict": {"layer.weight": torch.zeros(1)}}, path)
    for command in (["evaluate", str(path), "--feature-extractor", "tiny-test",
                     "--extractor-plugin", TINY_EXTRACTOR],
                    ["sample", str(path), "--out", str(tmp_path / "g.png")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("gan-mn: error:") and "x.ckpt" in err[0]
    assert not (tmp_path / "g.png").exists()


def test_evaluate_flags_come_from_the_metric_settings() -> None:
    """One record of metric settings: evaluate's flags (today's spellings) and defaults
    are its fields, so a default changed there changes everywhere."""
    import dataclasses

    from gan_mn.cli.commands import evaluate_parser
    from gan_mn.metrics import MetricSettings

    args = evaluate_parser().parse_args(["x.ckpt", "--num-samples", "500", "--kid-subset-size",
                                         "20", "--feature-extractor-weights", "w.pth"])
    settings = MetricSettings(**{f.name: getattr(args, f.name)
                                 for f in dataclasses.fields(MetricSettings)})
    assert settings == MetricSettings(num_samples=500, kid_subset_size=20,
                                      feature_extractor_weights_path="w.pth")
    defaults = evaluate_parser().parse_args(["x.ckpt"])
    assert MetricSettings(**{f.name: getattr(defaults, f.name)
                             for f in dataclasses.fields(MetricSettings)}) == MetricSettings()


# Smoke-sized SNGAN families (README): widths for the projection and three up-sampling
# layers in G; for D three convolutions (sngan) or four blocks (resnet).
FAMILY_SMOKE = {"sngan": ["--model.g_channels", "[32, 16, 8, 8]", "--model.d_channels",
                          "[8, 16, 16]"],
                "resnet": ["--model.g_channels", "[16, 16, 16, 16]", "--model.d_channels",
                           "[16, 16, 16, 16]"]}


@pytest.mark.slow  # trains through Lightning
@pytest.mark.parametrize("g_norm", ["bn", "mn"])
@pytest.mark.parametrize("arch", ["sngan", "resnet"])
def test_fit_each_family_then_sample_its_ema(tmp_path: Path, arch: str, g_norm: str) -> None:
    """``--model.arch``: spectral norm in D, BN or MN in G, hinge loss, 2 D steps per G
    step, the EMA generator sampled by ``gan-mn sample``."""
    args = ["fit", "-c", SMOKE, "--model.arch", arch, "--model.label", "", "--model.g_norm",
            g_norm, "--model.d_norm", "sn", "--model.loss", "hinge", "--model.d_steps", "2",
            *FAMILY_SMOKE[arch], *EAGER_MN, "--trainer.max_steps", "2",
            "--trainer.callbacks+=gan_mn.training.EMA", "--output_dir", str(tmp_path),
            "--wandb.mode", "disabled", *QUIET]
    assert main(args) == 0
    label = f"{arch}-{'mn-g' if g_norm == 'mn' else 'bn'}"
    run = tmp_path / f"{label}-seed0"
    assert step_of(run / "last.ckpt") == 2
    grid = tmp_path / "grid.png"
    assert main(["sample", str(run / "last.ckpt"), "--num", "4", "--out", str(grid)]) == 0
    assert grid.stat().st_size > 0
