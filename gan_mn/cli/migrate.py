"""``gan-mn migrate RUN_DIR ...``: run directories saved by an earlier gan-mn, rewritten
once in today's format. The only code that knows the earlier formats; every reader of a
run (``compare``, ``study``, a resume) reads today's alone and names this command when it
meets an earlier one.

What changed, and what the rewrite does:

- ``metrics.csv``: training rows were logged at Lightning's 0-based batch index, with an
  ``epoch`` column (``d_steps`` discriminator batches per generator step). Today every
  row carries the generator steps done, and there is no ``epoch`` column.
- ``config.yaml``: settings added since (:data:`ADDED_LATER`) are written with the value
  they had before they existed, so a resume or ``compare`` sees the run as it was.

Each file is replaced atomically; a directory already in today's format is left as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gan_mn.cli.args import ArgumentParser
from gan_mn.files import atomic_write
from gan_mn.run_log import (
    EARLIER_STEP_COLUMN,
    ReportError,
    metrics_header,
    metrics_rows,
    write_metrics,
)
from gan_mn.runs import flatten

# settings added after runs were saved without them: their value then (the default now)
ADDED_LATER: dict[str, object] = {"model.arch": "dcgan", "model.cuda_graph": False,
                                  "data.per_batch_file": None, "model.num_classes": 0}


def _config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ReportError(f"{run_dir}: no config.yaml (not a gan-mn fit run directory)")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ReportError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ReportError(f"{path}: not a gan-mn fit config (a mapping)")
    return config


def migrate_run(run_dir: Path) -> list[str]:
    """Rewrite ``run_dir`` in today's format; return what was rewritten (empty: nothing
    to do)."""
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a directory")
    config = _config(run_dir)
    done: list[str] = []
    csv_path = run_dir / "metrics.csv"
    if csv_path.is_file() and EARLIER_STEP_COLUMN in (fields := metrics_header(csv_path)):
        d_steps = int((config.get("model") or {}).get("d_steps") or 1)
        rows = metrics_rows(csv_path)
        for row in rows:
            if (row.pop(EARLIER_STEP_COLUMN) or "").strip() and (row.get("step") or "").strip():
                row["step"] = str((int(float(row["step"])) + 1) // d_steps)
        write_metrics(csv_path, [f for f in fields if f != EARLIER_STEP_COLUMN], rows)
        done.append("metrics.csv (steps as generator steps done, no epoch column)")
    present = flatten(config)
    missing = {k: v for k, v in ADDED_LATER.items() if k not in present}
    if missing:
        for key, value in missing.items():
            section, name = key.split(".")
            if not isinstance(config.get(section), dict):  # (absent, or `model:` left empty)
                config[section] = {}
            config[section][name] = value
        path = run_dir / "config.yaml"
        # (the comment LightningCLI opens it with, the Lightning version, is kept)
        lines = path.read_text().splitlines(keepends=True)
        head = "".join(line for line in lines[:next((i for i, line in enumerate(lines)
                                                     if not line.startswith("#")), 0)])
        atomic_write(path, lambda tmp: tmp.write_text(
            head + yaml.safe_dump(config, sort_keys=False)))
        done.append(f"config.yaml ({', '.join(sorted(missing))} as they were)")
    return done


def migrate_main(argv: list[str]) -> int:
    p = ArgumentParser(prog="gan-mn migrate", description="Rewrite run directories saved by "
                       "an earlier gan-mn in today's format (metrics.csv steps, settings "
                       "added since), once, in place.")
    p.add_argument("runs", nargs="+", help="run directories (metrics.csv + config.yaml)")
    a = p.parse_args(argv)
    dirs = [Path(r) for r in a.runs]
    for run_dir in dirs:  # every directory checked before any is rewritten
        if not run_dir.is_dir():
            raise ReportError(f"{run_dir}: not a directory")
        _config(run_dir)
    for run_dir in dirs:
        done = migrate_run(run_dir)
        print(f"{run_dir}: " + ("; ".join(done) if done else "already in today's format"))
    return 0
