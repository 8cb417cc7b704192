"""``gan-mn fit``'s MN diagnostics: in metrics.csv and the wandb run at logging steps
only, off with one flag, and no extra work or host read at any other step."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import Callback

from gan_mn.cli import main
from tests.helpers.cli import EAGER_MN, SMOKE
from tests.helpers.reads import OpLog

RUN = ["--trainer.max_steps", "9", "--trainer.log_every_n_steps", "4",
       "--model.sample_every_n_steps", "0", *EAGER_MN, "--trainer.enable_progress_bar",
       "false", "--trainer.enable_model_summary", "false"]
LOGGED: list[OpLog] = []
LAYERS = ("generator.net.1", "generator.net.4", "generator.net.7")  # smoke's three MN layers


class RecordOps(Callback):
    """Every operator of the fit, tagged with the batch (across epochs) it belongs to."""

    def __init__(self) -> None:
        self.record = OpLog()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record.__enter__()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: object, batch_idx: int) -> None:
        self.record.tag = trainer.fit_loop.epoch_loop.total_batch_idx

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record.__exit__(None, None, None)
        LOGGED.append(self.record)


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # trains through Lightning
def test_diagnostics_at_logging_steps_in_csv_and_wandb(tmp_path: Path) -> None:
    assert main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path), *RUN,
                 "--wandb.mode", "offline"]) == 0
    run = tmp_path / "smoke-seed0"
    rows = _rows(run)
    fields = ("effective_components", "posterior_entropy", "separation", "min_weight",
              "below_one_sample", "weight_0", "weight_1", "weight_2")
    keys = {f"mn/{layer}/{field}" for layer in LAYERS for field in fields}
    assert keys <= set(rows[0])
    at = sorted(int(r["step"]) for r in rows if r[f"mn/{LAYERS[0]}/separation"])
    assert at == [4, 8]  # logging steps only (9 is logged for its losses alone)
    effective = [float(r[f"mn/{LAYERS[0]}/effective_components"]) for r in rows
                 if r[f"mn/{LAYERS[0]}/effective_components"]]
    assert all(1 <= e <= 3 for e in effective)
    record = next((run / "wandb").glob("offline-run-*/run-*.wandb")).read_bytes()
    assert all(key.encode() in record for key in keys)


@pytest.mark.slow  # trains through Lightning
def test_one_flag_turns_them_off(tmp_path: Path) -> None:
    assert main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path), *RUN,
                 "--wandb.mode", "disabled", "--mn_diagnostics", "false"]) == 0
    assert not [k for k in _rows(tmp_path / "smoke-seed0")[0] if k.startswith("mn/")]


@pytest.mark.slow  # trains through Lightning
def test_other_steps_do_exactly_the_same_work(tmp_path: Path) -> None:
    """The operators of every non-logging step, with and without the diagnostics, are the
    same list (so are their host reads: none in MN); the logging steps do more."""
    LOGGED.clear()
    for flag in ("true", "false"):
        assert main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path / flag), *RUN,
                     "--wandb.mode", "disabled", "--mn_diagnostics", flag,
                     "--trainer.deterministic", "true",
                     "--trainer.callbacks+=tests.cli.test_mn_diagnostics.RecordOps"]) == 0
    on, off = LOGGED

    def ops(log: OpLog, batch: int) -> list[str]:
        return [name for tag, name in log.ops if tag == batch]

    for batch in range(9):
        if (batch + 1) % 4:
            assert ops(on, batch) == ops(off, batch), batch
        else:
            assert len(ops(on, batch)) > len(ops(off, batch)), batch
