"""A run's directory ``<output_dir>/<run name>/``: loggers, resume bookkeeping.

Everything a run writes lives there: ``last.ckpt`` (and ``best-fid-*.ckpt``),
``config.yaml``, ``metrics.csv``, ``hparams.yaml``, ``samples/`` and ``wandb/``.
"""

from __future__ import annotations

import csv
import logging
import netrc
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

log = logging.getLogger(__name__)
WANDB_MODES = ("offline", "online", "disabled")


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv``; a resumed run must
    append to it instead (keeping its header, which may gain columns)."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                header = next(csv.reader(f), [])
            self.metrics_keys = list(header)


class RunCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``metrics.csv`` straight into the run directory and
    appending to it on resume."""

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.log_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def truncate_metrics(metrics_file: Path, step: int) -> int:
    """Drop rows logged after ``step`` (the checkpoint a run resumes from), so that a
    resumed run does not leave two values for the same step. Returns rows dropped."""
    if not metrics_file.is_file():
        return 0
    with open(metrics_file, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)
    keep = [r for r in rows if not r.get("step") or int(float(r["step"])) <= step]
    if len(keep) < len(rows):
        tmp = metrics_file.with_name(metrics_file.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(keep)
        os.replace(tmp, metrics_file)
    return len(rows) - len(keep)


def wandb_logger(run_dir: Path, run_name: str, project: str, mode: str) -> Logger | None:
    """WandbLogger for the run, resuming the same wandb run id on resume. ``online``
    without a wandb login falls back to ``offline``, saying so."""
    if mode == "disabled":
        return None
    if mode == "online" and not _wandb_logged_in():
        log.warning("wandb: not logged in (run `wandb login` or set WANDB_API_KEY); "
                    "logging offline instead, `wandb sync %s/wandb/offline-run-*` uploads later",
                    run_dir)
        mode = "offline"
    id_file = run_dir / "wandb-id"
    if id_file.is_file():
        run_id = id_file.read_text().strip()
    else:
        run_id = secrets.token_hex(4)  # wandb run ids: short lowercase alphanumerics
        run_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
    return WandbLogger(name=run_name, project=project, save_dir=str(run_dir), id=run_id,
                       offline=mode == "offline", resume="allow")


def _wandb_logged_in() -> bool:
    """An API key in the environment or in the netrc file `wandb login` writes. Read
    directly: asking wandb itself (wandb.api) leaves it set up for online mode, after
    which even an offline init insists on a login."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return netrc.netrc(path).authenticators(host or "api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def make_loggers(run_dir: Path, run_name: str, project: str, wandb_mode: str) -> list[Any]:
    """CSV first (so ``trainer.log_dir`` is the run directory), then wandb."""
    loggers: list[Any] = [RunCSVLogger(run_dir)]
    wb = wandb_logger(run_dir, run_name, project, wandb_mode)
    if wb is not None:
        loggers.append(wb)
    return loggers
