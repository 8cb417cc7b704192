"""``gan-mn compare RUN_DIR ... --out DIR``: the convergence report from run directories."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from gan_mn.cli.args import ArgumentParser
from gan_mn.report.analysis import build_report
from gan_mn.report.metrics import report_metric
from gan_mn.report.render import write_report
from gan_mn.run_log import ReportError, RunLog, read_run


def compare_main(argv: list[str]) -> int:
    p = ArgumentParser(prog="gan-mn compare", description="The convergence report (plots, "
                       "report.json, report.md) of gan-mn fit run directories.")
    p.add_argument("runs", nargs="+", help="run directories (metrics.csv + config.yaml)")
    p.add_argument("--out", default=None, help="directory for the plots and report "
                   "(required unless --plan)")
    p.add_argument("--plan", action="store_true",
                   help="print how many seeds per group would detect a lead of 1 and 2 FID "
                        "and the observed gap with 80%% power, from these runs' spread; "
                        "writes nothing")
    p.add_argument("--reference", default=None,
                   help="baseline label (default: bn, else the first label; compare says "
                        "which)")
    p.add_argument("--metric", "--fid-key", dest="metric", default=None, metavar="KEY",
                   help="the column the report is built on: a FID when runs log several, "
                        "or intra-class FID (ifid...), KID (kid...), class accuracy "
                        "(cacc..., read as class error, 1 - accuracy); default: the FID")
    p.add_argument("--isc-key", default=None, help="IS column when runs log several")
    p.add_argument("--thresholds", type=int, default=8,
                   help="FID levels for the speed-up curve (default 8)")
    p.add_argument("--cost", default=None, metavar="JSON",
                   help="per-step cost ratios per label, as written by "
                        "`benchmarks/norm_overhead.py --runs ... --json FILE`")
    p.add_argument("--cost-ratio", action="append", default=[], metavar="LABEL=RATIO",
                   help="a label's per-step cost relative to the reference (repeatable)")
    p.add_argument("--max-step", type=int, default=None, metavar="STEP",
                   help="compare the runs as if they had stopped at STEP (runs of unequal "
                        "length, a study in progress)")
    a = p.parse_args(argv)
    if a.out is None and not a.plan:
        raise ReportError("--out is required (the report's folder), unless --plan")
    out = Path(a.out or ".")
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out}: exists and is not a directory")
    if a.max_step is not None and a.max_step < 1:
        raise ReportError(f"--max-step must be a positive step, got {a.max_step}")
    logged = [read_run(r) for r in a.runs]
    for run in logged:
        inside = out.resolve() == run.path.resolve() or run.path.resolve() in \
            out.resolve().parents
        if inside:
            raise ReportError(f"--out {out} is inside the run directory {run.path}: the report "
                              "would be written among the run's files; pick another folder")
    runs = logged if a.max_step is None else [r.up_to(a.max_step) for r in logged]
    for run, whole in zip(runs, logged, strict=True):
        if not any(key.startswith("fid") for key in run.columns):
            raise ReportError(f"{run.path}: " + _why_no_fid(whole, a.max_step))
    metric, name = a.metric, "FID"
    if metric is not None:
        runs, metric, name = report_metric(runs, metric)
    if a.plan:
        return _plan(runs, a.reference, metric)
    report = build_report(runs, a.reference, metric, a.isc_key,
                          a.thresholds, _cost_ratios(a.cost, a.cost_ratio), name)
    reference = report.summary["reference"]
    if a.reference is None and reference != "bn":
        print(f"gan-mn compare: no `bn` runs, so `{reference}` is the reference (choose one "
              "with --reference)", file=sys.stderr)
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise ReportError(f"--out {out}: cannot write there")
    for path in write_report(report, out):
        print(path)
    return 0


def _plan(runs: list[RunLog], reference: str | None, metric: str | None) -> int:
    """``--plan``: the seeds each comparison needs, printed (the report's grouping and
    checks first)."""
    from gan_mn.report.plan import plan_text, seed_plan

    report = build_report(runs, reference, metric)
    ref, key = report.summary["reference"], report.fid_key
    print(plan_text(seed_plan(report.runs, ref, key), ref, key))
    return 0


def _why_no_fid(run: RunLog, max_step: int | None) -> str:
    """Why a run has no FID to compare, in the user's terms."""
    if not run.columns:
        return "its metrics.csv has no rows (a run stopped before its first logged step?)"
    if not any(key.startswith("fid") for key in run.columns):
        return ("it logged no FID (trained with --metrics.every_n_steps 0, as smoke.yaml "
                "does?)")
    first = min(min(c) for k, c in run.columns.items() if k.startswith("fid"))
    return f"its first FID evaluation is at step {first}, after --max-step {max_step}"


def _cost_ratios(path: str | None, pairs: list[str]) -> dict[str, float]:
    """Cost ratios from the benchmark's JSON (``{"ratios": {label: ratio}}``) and flags."""
    ratios: dict[str, float] = {}
    if path:
        try:
            data = json.loads(Path(path).read_text())
            ratios.update({str(k): float(v) for k, v in data["ratios"].items()})
        except OSError as err:
            raise ReportError(f"--cost {path}: {err.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ReportError(f"--cost {path}: not the JSON `benchmarks/norm_overhead.py "
                              "--runs ... --json` writes") from None
        bad = {k: v for k, v in ratios.items() if not 0 < v < float("inf")}
        if bad:
            raise ReportError(f"--cost {path}: cost ratios must be positive and finite, got "
                              + ", ".join(f"{k}={v}" for k, v in sorted(bad.items())))
    for pair in pairs:
        label, _, value = pair.partition("=")
        try:
            ratio = float(value)
        except ValueError:
            ratio = float("nan")
        if not label or not ratio > 0 or ratio == float("inf"):
            raise ReportError(f"--cost-ratio {pair!r}: expected LABEL=RATIO with RATIO > 0")
        ratios[label] = ratio
    return ratios
