"""An EMA run's checkpoints keep the live weights apart from the average, whatever step
the run ends on, and a resume without the EMA callback trains on from the live weights
(through the entry point, on the CPU, deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan_mn.cli import main
from tests.helpers.cli import EAGER_MN, SMOKE

# 6 steps: off smoke.yaml's checkpoint schedule (every 10), so last.ckpt is saved again
# after the EMA callback has put the average into the model at the end of training
RUN = [*EAGER_MN, "--wandb.mode", "disabled", "--trainer.enable_progress_bar", "false",
       "--trainer.enable_model_summary", "false", "--model.sample_every_n_steps", "0",
       "--trainer.deterministic", "true"]
EMA = ["--trainer.callbacks+=gan_mn.training.EMA", "--trainer.callbacks.init_args.decay", "0.5"]


def _fit(out: Path, *extra: str) -> dict:
    assert main(["fit", "-c", SMOKE, "--output_dir", str(out), *RUN, *extra]) == 0
    return torch.load(out / "smoke-seed0" / "last.ckpt", map_location="cpu",
                      weights_only=False)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ema")
    _fit(root / "ema", "--trainer.max_steps", "6", *EMA)
    _fit(root / "plain", "--trainer.max_steps", "6")
    return root / "ema", root / "plain"


@pytest.mark.slow  # trains through Lightning
def test_the_final_checkpoint_holds_the_live_weights(runs: tuple[Path, Path]) -> None:
    ema, plain = (torch.load(r / "smoke-seed0" / "last.ckpt", map_location="cpu",
                             weights_only=False) for r in runs)
    assert ema["global_step"] == 6
    assert _same(ema["current_model_state"], plain["state_dict"])  # the live weights
    assert not _same(ema["state_dict"], plain["state_dict"])  # the average
    # loaded without a Trainer (to sample from), the model holds the average
    from gan_mn.training import GAN

    loaded = GAN.load_from_checkpoint(runs[0] / "smoke-seed0" / "last.ckpt",
                                      map_location="cpu")
    assert _same(loaded.state_dict(), ema["state_dict"])


@pytest.mark.slow  # trains through Lightning (its fixture)
def test_a_resume_without_the_ema_trains_on_from_the_live_weights(
        runs: tuple[Path, Path]) -> None:
    ema, plain = runs
    with pytest.warns(UserWarning, match="the average is dropped"):
        resumed = _fit(ema, "--ckpt_path", "last", "--trainer.max_steps", "8")
    reference = _fit(plain, "--ckpt_path", "last", "--trainer.max_steps", "8")
    assert "current_model_state" not in resumed
    assert _same(resumed["state_dict"], reference["state_dict"])
