"""`gan-mn fit` with DDP: 2 CPU processes (gloo), synchronized MN, metrics once."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan_mn.norm import MixtureNorm2d, SyncMixtureNorm2d
from gan_mn.training import load_run
from tests.helpers.cli import EAGER_MN, ROOT, SMOKE


@pytest.mark.slow  # real processes
def test_two_process_fit_syncs_mn_logs_metrics_once_and_loads_in_one(tmp_path: Path) -> None:
    """MN in G, spectral norm in D (its vectors, buffers, stay the same on both ranks)."""
    cmd = [sys.executable, "-m", "gan_mn", "fit", "-c", SMOKE, "--model.d_norm", "sn",
           "--trainer.strategy", "ddp", "--trainer.devices", "2",
           "--trainer.accelerator", "cpu", "--trainer.max_steps", "6",
           "--trainer.log_every_n_steps", "1", "--output_dir", str(tmp_path / "runs"),
           *EAGER_MN,
           "--trainer.callbacks+=tests.helpers.callbacks.RecordNorms",
           "--trainer.callbacks.init_args.path", str(tmp_path / "norms"),
           "--metrics.every_n_steps", "3", "--metrics.num_samples", "20",
           "--metrics.feature_extractor", "tiny-test",
           "--metrics.extractor_plugin", "tests.helpers.tiny_extractor",
           "--metrics.cache_dir", str(tmp_path / "cache"), "--wandb.mode", "offline",
           "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "smoke-seed0"
    # both processes trained with MN synchronized
    for rank in (0, 1):
        assert "SyncMixtureNorm2d" in (tmp_path / f"norms.{rank}").read_text()
    vectors = [torch.load(tmp_path / f"norms.sn.{rank}") for rank in (0, 1)]
    assert len(vectors[0]) == 8  # u and v of D's four convolutions
    for key, value in vectors[0].items():
        assert torch.equal(value, vectors[1][key]), key
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fid_key = next(k for k in rows[0] if k.startswith("fid"))
    assert [r["step"] for r in rows if r[fid_key]] == ["3", "6"]  # once per evaluation
    assert len([r for r in rows if r["loss/d"]]) == 6  # one training row per step
    loaded = load_run(run / "last.ckpt")  # one process, no process group
    assert loaded.step == 6
    norms = [m for m in loaded.gan.modules() if isinstance(m, MixtureNorm2d)]
    assert norms and not any(isinstance(m, SyncMixtureNorm2d) for m in norms)
    with torch.no_grad():
        images = loaded.gan.generator.eval()(loaded.gan.generator.sample_latent(4))
    assert images.shape[0] == 4 and torch.isfinite(images).all()
