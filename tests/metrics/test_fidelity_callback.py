"""FidelityCallback inside a fit: values in metrics.csv, the model's mode restored."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import CSVLogger

from gan_mn.data import GANDataModule
from gan_mn.metrics import FidelityCallback
from gan_mn.training import GAN
from tests.helpers.fakes import TINY_EXTRACTOR


@pytest.mark.slow  # trains through Lightning
def test_callback_logs_fid_and_isc_and_restores_train_mode(tmp_path: Path) -> None:
    modes = []

    class Spy(pl.Callback):  # runs after the metrics callback at the same step
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            modes.append((trainer.global_step, pl_module.generator.training,
                          all(m.training for m in pl_module.generator.modules())))

    metrics = FidelityCallback(every_n_steps=2, num_samples=30, metrics=["isc", "fid"],
                               feature_extractor="tiny-test", extractor_plugin=TINY_EXTRACTOR,
                               cache_dir=str(tmp_path / "cache"))
    trainer = pl.Trainer(max_steps=4, logger=CSVLogger(tmp_path, name="", version=""),
                         callbacks=[metrics, Spy()], enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    # MN (its train mode must come back) with eager kernels: compiling them is not tested here
    model = GAN(z_dim=8, g_channels=(16, 8, 4), d_channels=(4, 8, 16), g_norm="mn",
                norm_kwargs={"mn": {"kernels": "eager"}}, sample_every_n_steps=0)
    trainer.fit(model, GANDataModule("synthetic", batch_size=8))
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("fid30_train_tiny-test")]
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert all(float(r["isc30_tiny-test"]) >= 1.0 for r in rows)
    assert all(training and all_modules for _, training, all_modules in modes)
    assert (tmp_path / "samples" / "metrics_step_0000004.png").is_file()
    assert trainer.callback_metrics["fid30_train_tiny-test"] >= 0
