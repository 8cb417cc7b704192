"""A run's directory ``<output_dir>/<run name>/``: one run per directory, loggers,
resume bookkeeping.

Everything a run writes lives there: ``last.ckpt`` (and ``best-fid-*.ckpt``),
``config.yaml``, ``metrics.csv``, ``hparams.yaml``, ``resumes.jsonl``, ``samples/`` and
``wandb/``; ``.lock`` is held by the process training it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import netrc
import os
import secrets
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from typing_extensions import override

from gan_mn.errors import UserError
from gan_mn.run_log import (
    metrics_fields,
    metrics_header,
    metrics_rows,
    steps_done,
    write_metrics,
)
from gan_mn.runs import flatten, frozen, setting_class

log = logging.getLogger(__name__)
WANDB_MODES = ("offline", "online", "disabled")
# What `gan-mn fit` writes into a run directory (and --overwrite removes).
RUN_FILES = ("last.ckpt", "metrics.csv", "hparams.yaml", "config.yaml", "resumes.jsonl",
             "wandb-id", "wandb", "samples")
class RunError(UserError):
    """A run that cannot start as asked, with a message meant for the user as is."""


def run_files(run_dir: Path) -> list[str]:
    """The files of a run already in ``run_dir`` (sorted names)."""
    if not run_dir.is_dir():
        return []
    found = [n for n in RUN_FILES if (run_dir / n).exists()]
    return sorted(found + [p.name for p in run_dir.glob("best-fid-*.ckpt")])


def remove_run_files(run_dir: Path) -> None:
    """Start a run directory again from nothing (``--overwrite``): remove what fit wrote."""
    for name in run_files(run_dir):
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock``, held while the process lives: a
    second ``gan-mn fit`` into the directory is refused, and the OS releases the lock
    when the holder exits or dies (no stale locks). Only the process that trains (DDP:
    rank 0) holds it; everything written into the run directory is written by it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.fd: int | None = None
        self.made: list[Path] = []  # directories acquire() created

    def acquire(self) -> None:
        missing = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.made = missing  # deepest first
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _try_lock(fd, self.path, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self, remove_if_unused: bool = False) -> None:
        """Drop the lock; with ``remove_if_unused``, and if the run directory holds nothing
        but it, also the lock file and the directories :meth:`acquire` made (a start that
        was refused or failed before writing anything leaves nothing)."""
        if self.fd is None:
            return
        unused = remove_if_unused and [p.name for p in self.path.parent.iterdir()] == [".lock"]
        if unused:
            self.path.unlink(missing_ok=True)  # (while still held: no one took it meanwhile)
            for folder in self.made:
                try:
                    folder.rmdir()
                except OSError:
                    break
        os.close(self.fd)  # closing drops the flock
        self.fd = None


def _try_lock(fd: int, path: Path, kind: int) -> None:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        with open(path) as f:
            pid = f.read().strip() or "?"
        raise RunError(f"{path.parent} is in use by another gan-mn fit (process {pid}); "
                       "wait for it to finish, or pick another --run_name or --output_dir"
                       ) from None


def resume_changes(saved: dict[str, Any], requested: dict[str, Any]
                   ) -> dict[str, tuple[Any, Any]]:
    """Compare a run's saved config with the one a resume asks for (both as YAML/JSON
    data): raise RunError naming every frozen setting that differs, else return the
    changed settings as ``{key: (old, new)}``."""
    old, new = flatten(saved), flatten(requested)
    changed = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
               if setting_class(k) != "not a setting" and old.get(k) != new.get(k)}
    kept = [k for k in changed if frozen(k)]
    if kept:
        detail = ", ".join(f"{k} {changed[k][0]!r} -> {changed[k][1]!r}" for k in kept)
        absent = [k for k in kept if k not in old]
        why = (f"; {', '.join(absent)} absent from the saved config: a run saved by an "
               "earlier gan-mn, which `gan-mn migrate RUN_DIR` rewrites once" if absent else "")
        raise RunError(f"cannot resume with different settings: {detail} (model, data and "
                       "seed settings cannot change mid-run; start a new run with another "
                       f"--run_name, or again from step 0 with --overwrite true{why})")
    return changed


def record_resume(run_dir: Path, step: int, changed: dict[str, tuple[Any, Any]]) -> None:
    """Append what a resume changed, and from which step, to ``resumes.jsonl``."""
    line = {"step": step, "changed": {k: {"old": o, "new": n} for k, (o, n) in changed.items()}}
    with open(run_dir / "resumes.jsonl", "a") as f:
        f.write(json.dumps(line, default=str) + "\n")


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv``; a resumed run must
    append to it instead (keeping its header, which may gain columns).

    The one place we override a private Lightning method (``_check_log_dir_exists``, and
    its ``metrics_keys``): Lightning offers no append mode. lightning is pinned below 2.7
    in pyproject so that a change there fails at install time.
    """

    @override
    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            self.metrics_keys = metrics_header(Path(self.metrics_file_path))


class RunCSVLogger(CSVLogger):
    """``CSVLogger`` writing ``metrics.csv`` straight into the run directory and
    appending to it on resume."""

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")

    @property
    @override
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
    fields = metrics_fields(metrics_file)
    with open(metrics_file, newline="") as f:
        lines = sum(1 for _ in f) - 1
    rows = metrics_rows(metrics_file)  # (rows cut short are dropped too)
    keep = [r for r in rows if (done := steps_done(r)) is None or done <= step]
    if len(keep) < lines:
        write_metrics(metrics_file, fields, keep)
    return lines - len(keep)


def wandb_logger(run_dir: Path, run_name: str, project: str, mode: str,
                 group: str | None = None, tags: list[str] | None = None) -> Logger | None:
    """WandbLogger for the run, resuming the same wandb run id on resume. ``online``
    without a wandb login falls back to ``offline``, saying so. ``group`` (the run's
    setting) puts the seeds of one setting together on the dashboard."""
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
    logger = WandbLogger(name=run_name, project=project, save_dir=str(run_dir), id=run_id,
                         offline=mode == "offline", resume="allow", group=group, tags=tags)
    # Lightning passes wandb an "anonymous" setting wandb no longer has (and warns about,
    # even unset); lightning 2.6 keeps wandb.init's arguments here (pinned below 2.7)
    logger._wandb_init.pop("anonymous", None)
    return logger


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


def make_loggers(run_dir: Path, run_name: str, project: str, wandb_mode: str,
                 group: str | None = None, tags: list[str] | None = None) -> list[Any]:
    """CSV first (so ``trainer.log_dir`` is the run directory), then wandb."""
    loggers: list[Any] = [RunCSVLogger(run_dir)]
    wb = wandb_logger(run_dir, run_name, project, wandb_mode, group, tags)
    if wb is not None:
        loggers.append(wb)
    return loggers
