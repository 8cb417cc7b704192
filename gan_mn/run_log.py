"""Read a training run's ``metrics.csv`` and config: the one reader of them, for
``gan-mn compare`` and for ``gan-mn fit``/``study`` (resume truncation, finished steps).
Imports neither torch nor scipy nor matplotlib, so training does not load the statistics.

A run directory is what ``gan-mn fit`` writes: ``metrics.csv`` (Lightning's CSV logger,
appended on resume) and ``config.yaml`` (LightningCLI's saved config, which holds the
run's ``model.label`` and ``seed_everything``).
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from gan_mn.errors import UserError
from gan_mn.files import atomic_write
from gan_mn.runs import affects_results, flatten

logger = logging.getLogger(__name__)


class ReportError(UserError):
    """A run directory or option that ``compare`` cannot use; the message says why."""


@dataclass
class RunLog:
    """The metric curves of one run, one value per evaluated step (the last row wins)."""

    path: Path
    label: str
    seed: int
    settings: dict[str, object] = field(default_factory=dict)  # what defines the model
    columns: dict[str, dict[int, float]] = field(default_factory=dict)
    train_seconds: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))
    # steps at which a metric was logged as NaN or infinite (left out of ``columns``)
    non_finite: dict[str, dict[int, str]] = field(default_factory=dict)

    def up_to(self, step: int) -> RunLog:
        """This run as if it had stopped at ``step``: its evaluations and times after it
        left out (runs of unequal length compared over the steps they share)."""
        columns = {k: {s: v for s, v in c.items() if s <= step} for k, c in self.columns.items()}
        at, secs = self.train_seconds
        keep = at <= step
        return RunLog(self.path, self.label, self.seed, self.settings,
                      {k: c for k, c in columns.items() if c}, (at[keep], secs[keep]),
                      {k: {s: v for s, v in c.items() if s <= step}
                       for k, c in self.non_finite.items()})

    def curve(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a metric, sorted by step."""
        points = sorted(self.columns.get(key, {}).items())
        return (np.array([s for s, _ in points], dtype=float),
                np.array([v for _, v in points], dtype=float))

    def seconds_at(self, steps: np.ndarray) -> np.ndarray:
        """Training wall-clock at ``steps``, interpolated between the logged rows.

        ``time/train_seconds`` counts time inside training steps only (not evaluation), so
        runs compare by the cost of training; NaN where the run logged no time.
        """
        at, secs = self.train_seconds
        if at.size == 0:
            return np.full(len(steps), np.nan)
        return np.asarray(np.interp(steps, np.concatenate([[0.0], at]),
                                    np.concatenate([[0.0], secs])), dtype=float)


def _float(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _settings(config: dict[str, object]) -> dict[str, object]:
    """The settings that define a run's results (:func:`gan_mn.runs.affects_results`):
    seeds of one group must share them. The data folder is compared resolved (one folder
    named relative in one run and absolute in another is one folder)."""
    tree = {"model": config.get("model") or {}, "data": config.get("data") or {}}
    values = flatten(tree)
    if values.get("data.root") is not None:
        values["data.root"] = str(Path(str(values["data.root"])).expanduser().resolve())
    return {k: v for k, v in values.items() if affects_results(k)}


def _config(run_dir: Path) -> tuple[str, int, dict[str, object]]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ReportError(f"{run_dir}: no config.yaml (compare reads the run's label and seed "
                          "from the config `gan-mn fit` saves)")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ReportError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    label = (config.get("model") or {}).get("label")
    seed = config.get("seed_everything")
    if not label or not isinstance(seed, int) or isinstance(seed, bool):
        raise ReportError(f"{path}: needs model.label and an integer seed_everything "
                          f"(found label={label!r}, seed_everything={seed!r})")
    return str(label), seed, _settings(config)


def steps_done(row: dict[str, str]) -> int | None:
    """The generator steps done when a metrics.csv row was logged (every row carries
    them), or None for a row without a step."""
    step = _float(row.get("step"))
    return None if step is None else int(step)


def earlier_format(run_dir: Path) -> str:
    """What a reader says of a run saved in an earlier format (the one place that names
    the command that rewrites it)."""
    return (f"{run_dir}: saved by an earlier gan-mn; `gan-mn migrate {run_dir}` rewrites "
            "it once in today's format")


# the column only an earlier gan-mn's metrics.csv has (its training rows were logged at
# Lightning's batch index: see gan_mn.cli.migrate)
EARLIER_STEP_COLUMN = "epoch"


def metrics_header(csv_path: Path) -> list[str]:
    """metrics.csv's header, as written (empty for an empty file)."""
    with open(csv_path, newline="") as f:
        return next(csv.reader(f), [])


def metrics_fields(csv_path: Path) -> list[str]:
    """metrics.csv's header; ReportError (one line) for one in an earlier format."""
    fields = metrics_header(csv_path)
    if EARLIER_STEP_COLUMN in fields:
        raise ReportError(earlier_format(csv_path.parent))
    return fields


def write_metrics(csv_path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    """Replace metrics.csv (atomically) by ``rows``, written as Lightning's CSV logger
    writes them."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(csv_path, write)


def metrics_rows(csv_path: Path) -> list[dict[str, str]]:
    """metrics.csv's rows, less any that is not whole: fewer or more fields than the
    header, or a last line without its newline (a write cut short, e.g. a run killed while
    logging). Each one left out is named in a warning; none is read as data."""
    text = csv_path.read_text()
    lines = text.splitlines(keepends=True)
    reader = csv.DictReader(lines)
    rows = []
    for row in reader:
        cut = reader.line_num == len(lines) and not text.endswith("\n")
        if None in row or None in row.values() or cut:
            logger.warning("%s: line %d is not a whole row (a write cut short?); left out",
                           csv_path, reader.line_num)
            continue
        rows.append(row)
    return rows


def read_run(run_dir: str | Path) -> RunLog:
    """Load a run directory; raise ReportError with one line when it cannot be used."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a directory")
    csv_path = run_dir / "metrics.csv"
    if not csv_path.is_file():
        hint = (" (it has a wandb run, which compare does not read: keep the CSV logger on, "
                "as `gan-mn fit` does by default)" if (run_dir / "wandb").is_dir() else "")
        raise ReportError(f"{run_dir}: no metrics.csv{hint}")
    metrics_fields(csv_path)
    label, seed, settings = _config(run_dir)
    log = RunLog(run_dir, label, seed, settings)
    seconds: dict[int, float] = {}
    for row in metrics_rows(csv_path):
        step = steps_done(row)
        if step is None:
            continue
        for key, text in row.items():
            if key == "step":
                continue
            value = _float(text)
            if value is None:
                if (text or "").strip().lower() in ("nan", "inf", "-inf", "+inf"):
                    log.non_finite.setdefault(key, {})[step] = text.strip()
                continue
            if key == "time/train_seconds":
                seconds[step] = value
            else:
                log.columns.setdefault(key, {})[step] = value  # later rows win
    if seconds:
        at = sorted(seconds)
        log.train_seconds = (np.array(at, dtype=float), np.array([seconds[s] for s in at]))
    return log
