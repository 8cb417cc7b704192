"""wandb through the entry point: offline by default, falling back to offline without a
login, and a run that describes itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from gan_mn.cli import main
from tests.helpers.cli import EAGER_MN, QUIET, SMOKE, fast

FAST = fast(4)


@pytest.mark.slow  # trains through Lightning
def test_wandb_online_without_login_falls_back_to_offline(
        in_tmp: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(in_tmp))
    monkeypatch.setenv("NETRC", str(in_tmp / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(in_tmp / "wandb-config"))
    assert main(["fit", "-c", SMOKE, "--trainer.max_steps", "2",
                 "--trainer.log_every_n_steps", "1", *EAGER_MN, *QUIET,
                 "--wandb.mode", "online"]) == 0
    assert "not logged in" in caplog.text and "logging offline instead" in caplog.text
    assert list((in_tmp / "checkpoints" / "smoke-seed0" / "wandb").glob("offline-run-*"))


@pytest.mark.slow  # trains through Lightning
def test_wandb_run_is_self_describing(tmp_path: Path) -> None:
    """The offline wandb run holds the whole resolved config, the setting as its group and
    the norms as tags (read from wandb's own record file)."""
    args = [a for a in FAST if a not in ("--wandb.mode", "disabled")]
    assert main(["fit", "-c", SMOKE, "--output_dir", str(tmp_path), *args,
                 "--wandb.mode", "offline", "--metrics.num_samples", "123"]) == 0
    record = next((tmp_path / "smoke-seed0" / "wandb").glob("offline-run-*/run-*.wandb"))
    data = record.read_bytes()
    for text in (b"max_steps", b"num_samples", b"G:mn", b"D:bn", b"K=3", b"smoke"):
        assert text in data, text
