"""Group runs by label and seed and measure who reaches the baseline's best FID first.

Definitions (also written into report.md):
- ``best_fid``: each seed's lowest logged FID; the group's mean and sample standard
  deviation (n - 1) over seeds.
- ``reference_fid``: the best FID of the reference (baseline) group as a group: the
  minimum over steps of its seed-mean FID curve. (The mean of per-seed bests would be
  below what half of the reference's own seeds ever reach.)
- ``steps_to_reach_reference``: ``per_seed``, the first evaluated step whose FID is at or
  below ``reference_fid`` (null if never), and their ``mean`` when every seed reached it;
  ``mean_curve``, the first step where the group's seed-mean curve reaches it. The same in
  ``seconds_to_reach_reference``, from the training wall-clock.
- ``speedup``: reference's ``mean_curve`` steps (or seconds) / this group's;
  ``acceleration`` = 1 - 1/speedup, the fraction of the baseline's steps saved, which is
  how the paper states its "58% acceleration".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gan_mn.report.lead import lead_analysis
from gan_mn.report.mixture_section import diagnostics
from gan_mn.report.speedup import first_at_or_below, seed_curves, speedup_analysis
from gan_mn.report.stats import family
from gan_mn.run_log import ReportError, RunLog


@dataclass
class Report:
    """Everything ``compare`` writes: the JSON summary plus the curves for the plots."""

    fid_key: str
    isc_key: str | None
    summary: dict[str, Any]
    runs: dict[str, list[RunLog]]
    metric_name: str = "FID"  # what fid_key measures, in the report's words


def _pick(runs: list[RunLog], prefix: str, wanted: str | None, required: bool) -> str | None:
    common = set.intersection(*(set(r.columns) for r in runs))
    if wanted:
        if wanted not in common:
            raise ReportError(f"metric {wanted!r} is not logged by every run "
                              f"(common metrics: {', '.join(sorted(common)) or 'none'})")
        return wanted
    keys = sorted(k for k in common if k.startswith(prefix) and "_std" not in k)
    if len(keys) == 1:
        return keys[0]
    if not keys and not required:
        return None
    if not keys:
        raise ReportError(f"no {prefix.upper()} column common to every run: were the runs "
                          "trained with --metrics.every_n_steps > 0?")
    flag = "--metric" if prefix == "fid" else f"--{prefix}-key"
    raise ReportError(f"several {prefix.upper()} columns ({', '.join(keys)}): choose one "
                      f"with {flag}")


def _stats(values: list[float | None]) -> dict[str, Any]:
    done = [v for v in values if v is not None]
    all_done = len(done) == len(values) and bool(values)
    return {
        "mean": float(np.mean(done)) if all_done else None,
        "std": float(np.std(done, ddof=1)) if all_done and len(done) > 1 else None,
        "per_seed": values,
        "reached": len(done),
    }


def _first_reach(steps: np.ndarray, fid: np.ndarray, seconds: np.ndarray,
                 target: float) -> tuple[float | None, float | None]:
    hit = int(first_at_or_below(fid, np.array([target]))[0])
    if hit < 0:
        return None, None
    t = float(seconds[hit])
    return float(steps[hit]), (t if math.isfinite(t) else None)


def _run_reach(run: RunLog, key: str, target: float) -> tuple[float | None, float | None]:
    steps, fid = run.curve(key)
    return _first_reach(steps, fid, run.seconds_at(steps), target)


def _ratio(reference: float | None, value: float | None) -> float | None:
    if reference is None or value is None or value <= 0:
        return None
    return reference / value


def _check_same_end(runs: list[RunLog], fid: str) -> None:
    """Runs whose last FID evaluations differ (a study in progress) would be compared over
    different steps: a best FID from steps another run never reached. Refused, naming
    the ``--max-step`` that compares them over the steps they share."""
    ends: dict[int, list[str]] = {}
    last = max((int(run.curve(fid)[0].max()) for run in runs if run.curve(fid)[0].size),
               default=None)
    for run in runs:
        bad = {s: v for s, v in run.non_finite.get(fid, {}).items() if last is None or s >= last}
        if bad:
            step, value = max(bad.items())
            raise ReportError(f"{run.path}: {fid} is {value} at step {step}, its last "
                              "evaluation (a diverged run?); compare the steps before it "
                              f"with --max-step {step - 1}")
    for run in runs:
        steps = run.curve(fid)[0]
        if steps.size:
            ends.setdefault(int(steps.max()), []).append(Path(run.path).name)
    if len(ends) > 1:
        detail = "; ".join(f"at {step}: {', '.join(sorted(names))}"
                           for step, names in sorted(ends.items()))
        raise ReportError(f"the runs' last FID evaluations are at different steps ({detail}): "
                          f"compare them over the steps they share with --max-step {min(ends)}")


def build_report(runs: list[RunLog], reference: str | None = None, fid_key: str | None = None,
                 isc_key: str | None = None, num_thresholds: int = 8,
                 cost_ratios: dict[str, float] | None = None, metric_name: str = "FID"
                 ) -> Report:
    """Group ``runs`` by label and measure each group against the ``reference`` label:
    the paper-style figure (steps to the reference's best) and the speed-up at every
    FID level (:mod:`gan_mn.report.speedup`), in steps and, given ``cost_ratios`` per
    label, in compute. ``fid_key`` may name another lower-is-better metric
    (:mod:`gan_mn.report.metrics`), called ``metric_name`` in the report."""
    if not runs:
        raise ReportError("no runs given")
    groups: dict[str, list[RunLog]] = {}
    for run in runs:
        same = [r for r in groups.get(run.label, []) if r.seed == run.seed]
        if same:
            raise ReportError(f"{run.path} and {same[0].path} are both {run.label} seed "
                              f"{run.seed}: give each run once")
        first = groups.setdefault(run.label, [run])[0]
        if first is not run:
            groups[run.label].append(run)
        differ = sorted(k for k in set(first.settings) | set(run.settings)
                        if first.settings.get(k) != run.settings.get(k))
        if differ:
            detail = ", ".join(f"{k} {first.settings.get(k)!r} vs {run.settings.get(k)!r}"
                               for k in differ)
            raise ReportError(f"{first.path} and {run.path} are both labelled {run.label!r} "
                              f"but differ in {detail}: seeds of one group must share their "
                              "settings (give the runs distinct --model.label)")
    for members in groups.values():
        members.sort(key=lambda r: r.seed)
    if reference is None:
        reference = "bn" if "bn" in groups else sorted(groups)[0]
    if reference not in groups:
        raise ReportError(f"reference label {reference!r} is not among the runs' labels "
                          f"({', '.join(sorted(groups))})")
    fid = _pick(runs, "fid", fid_key, required=True)
    assert fid is not None
    _check_same_end(runs, fid)
    isc = _pick(runs, "isc", isc_key, required=False)
    unknown = sorted(set(cost_ratios or {}) - set(groups))
    if unknown:
        raise ReportError(f"cost ratio given for {', '.join(unknown)}, not among the runs' "
                          f"labels ({', '.join(sorted(groups))})")
    if num_thresholds < 2:
        raise ReportError(f"--thresholds must be at least 2, got {num_thresholds}")

    curves = {label: mean_curve(members, fid) for label, members in groups.items()}
    target = float(curves[reference]["mean"].min())
    out: dict[str, Any] = {}
    for label, members in groups.items():
        reach = [_run_reach(r, fid, target) for r in members]
        c = curves[label]
        group_step, group_seconds = _first_reach(c["steps"], c["mean"], c["seconds"], target)
        out[label] = {
            "seeds": [r.seed for r in members],
            "runs": [str(r.path) for r in members],
            "last_step": [int(r.curve(fid)[0].max()) for r in members],
            "best_fid": _stats([float(r.curve(fid)[1].min()) for r in members]),
            "best_mean_curve_fid": float(c["mean"].min()),
            "steps_to_reach_reference": {**_stats([s for s, _ in reach]),
                                         "mean_curve": group_step},
            "seconds_to_reach_reference": {**_stats([t for _, t in reach]),
                                           "mean_curve": group_seconds},
        }
        if isc:
            out[label]["best_isc"] = _stats([float(r.curve(isc)[1].max()) for r in members])
    levels = speedup_analysis(groups, reference, fid, num_thresholds, cost_ratios=cost_ratios)
    for label, entry in levels.items():
        out[label].update(entry)
    ref = out[reference]
    for entry in out.values():
        for unit in ("steps", "seconds"):
            speedup = _ratio(ref[f"{unit}_to_reach_reference"]["mean_curve"],
                             entry[f"{unit}_to_reach_reference"]["mean_curve"])
            entry[f"speedup_{unit}"] = speedup
            entry[f"acceleration_{unit}"] = None if speedup is None else 1.0 - 1.0 / speedup
    lead = lead_analysis(groups, reference, fid)
    summary_family([g["auc_vs_reference"] for g in out.values()]
                   + [lead[k][part] for k in sorted(lead) for part in ("late_gap", "best_gap")])
    summary = {"reference": reference, "reference_fid": target, "fid_key": fid,
               "isc_key": isc, "groups": out, "lead": lead}
    if metric_name != "FID":  # (reports by FID keep their keys as they were)
        summary["metric_name"] = metric_name
    inside = diagnostics(groups)
    if inside:  # runs that logged MN's diagnostics (gan-mn fit does by default)
        summary["diagnostics"] = inside
    return Report(fid, isc, summary, groups, metric_name)


def summary_family(tests: list[dict[str, Any] | None]) -> None:
    """The report's tests of mean FID over steps, late and best FID as one family: each
    gets ``finding`` (Benjamini-Hochberg, 5%) and ``robust`` (Holm too), in place."""
    tested = [t for t in tests if t is not None and t["p"] is not None]
    if not tested:
        return
    flagged, robust = family(np.array([t["p"] for t in tested]))
    for t, f, r in zip(tested, flagged.tolist(), robust.tolist(), strict=True):
        t.update(finding=bool(f), robust=bool(r), family=len(tested))


def mean_curve(members: list[RunLog], key: str) -> dict[str, np.ndarray]:
    """Mean and sample std (n - 1; NaN for one seed) over seeds at the steps every seed
    evaluated, with mean seconds."""
    steps, values = seed_curves(members, key)
    seconds = np.stack([r.seconds_at(steps) for r in members])
    std = values.std(0, ddof=1) if len(members) > 1 else np.full(len(steps), np.nan)
    return {"steps": steps, "mean": values.mean(0), "std": std,
            "seconds": seconds.mean(0)}
