"""Speed-up as a function of the FID target, and the area under the FID curve, with
confidence intervals over seeds.

Definitions (also written into report.md):
- thresholds ``X``: evenly spaced from the reference group's best seed-mean FID up to
  its worst (its first evaluations), so every ``X`` is one the reference reaches.
- ``steps(X)``: the first evaluated step at which a FID curve is at or below ``X``
  (per seed, and for the group's seed-mean curve); ``None`` if never.
- ``speedup(X)`` = reference ``steps(X)`` / group ``steps(X)``, from seed-mean curves.
  Its interval: a percentile bootstrap over seeds (:func:`gan_mn.report.stats.bootstrap_ratio`:
  the reference's and the group's seeds resampled independently, both seed-mean curves
  and the ratio recomputed). A resample that never reaches ``X`` counts as infinitely
  slow (ratio 0 for the group, infinite for the reference).
- ``auc``: the mean FID over the steps every group evaluated (the area under the
  piecewise-linear FID-vs-step curve divided by the step range), averaged over seeds,
  with Student's t interval over seeds, and ``auc_vs_reference``: its difference from the
  reference with Welch's interval and p value (:mod:`gan_mn.report.stats`). Lower is
  better; it does not hang on one evaluation.
- ``cost_ratio``: a step of the group costs this many steps of the reference, as
  measured by ``benchmarks/norm_overhead.py --runs`` on one machine;
  ``cost_adjusted_speedup_vs_fid`` = speed-up / cost ratio (above 1: MN reaches ``X``
  in less compute).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from gan_mn.report.stats import bootstrap_ratio, difference, mean_interval
from gan_mn.run_log import ReportError, RunLog


def first_at_or_below(fid: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the first evaluation at or below each target (-1 if never); ``fid`` is
    ``(..., steps)`` and the result ``(..., targets)``."""
    below = fid[..., None, :] <= np.asarray(targets, dtype=float)[:, None] + 1e-9
    return np.where(below.any(axis=-1), np.argmax(below, axis=-1), -1)


def _steps_to(steps: np.ndarray, fid: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """First evaluated step at or below each target (inf if never)."""
    hit = first_at_or_below(fid, targets)
    return np.where(hit >= 0, steps[np.maximum(hit, 0)], np.inf)


def seed_curves(members: list[RunLog], key: str) -> tuple[np.ndarray, np.ndarray]:
    """The steps every seed evaluated and each seed's values there, ``(seeds, steps)``."""
    curves = [r.curve(key) for r in members]
    common = sorted(set.intersection(*(set(s.tolist()) for s, _ in curves)))
    if not common:
        raise ReportError(f"the {members[0].label} runs share no evaluated step for {key}")
    steps = np.array(common, dtype=float)
    return steps, np.stack([np.interp(steps, s, v) for s, v in curves])  # exact: common steps


def _ratio(ref: np.ndarray, grp: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ref / grp
    return np.where(np.isinf(ref) & np.isinf(grp), np.nan, out)


def _json(value: float) -> float | None:
    """Strict JSON: infinities and NaN become null (the report says what null means)."""
    return float(value) if math.isfinite(value) else None


def mean_curve_reach(steps: np.ndarray, targets: np.ndarray
                     ) -> Callable[[np.ndarray], np.ndarray]:
    """The statistic of a group's ``(..., seeds, steps)`` FIDs: the first step its
    seed-mean curve reaches each target (inf if never)."""
    return lambda fids: _steps_to(steps, fids.mean(-2), targets)


def speedup_analysis(groups: dict[str, list[RunLog]], reference: str, key: str,
                     num_thresholds: int = 8,
                     cost_ratios: dict[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Per group: ``speedup_vs_fid``, ``auc``, ``cost_ratio`` and
    ``cost_adjusted_speedup_vs_fid`` (see the module's definitions)."""
    curves = {label: seed_curves(members, key) for label, members in groups.items()}
    common = {label: steps for label, (steps, _) in curves.items()}
    fids = {label: values for label, (_, values) in curves.items()}
    ref_mean = fids[reference].mean(0)
    targets = np.linspace(ref_mean.min(), ref_mean.max(), num_thresholds)

    def reach(label: str) -> np.ndarray:
        return _steps_to(common[label], fids[label].mean(0), targets)

    ref_steps = reach(reference)
    lo, hi = max(c[0] for c in common.values()), min(c[-1] for c in common.values())
    cost_ratios = {reference: 1.0, **(cost_ratios or {})}
    aucs = {label: auc(common[label], fids[label], lo, hi) for label in groups}
    out: dict[str, dict[str, Any]] = {}
    for label in groups:
        steps = reach(label)
        speedup = _ratio(ref_steps, steps)
        if label == reference:
            ci_low, ci_high = speedup, speedup
        else:
            ci_low, ci_high = bootstrap_ratio(
                fids[reference], fids[label],
                mean_curve_reach(common[reference], targets),
                mean_curve_reach(common[label], targets),
                name=f"{reference}/{label}")
        per_seed = [_steps_to(common[label], f, targets) for f in fids[label]]
        entry: dict[str, Any] = {
            "speedup_vs_fid": {
                "thresholds": [float(t) for t in targets],
                "steps_mean_curve": [_json(s) for s in steps],
                "steps_per_seed": [[_json(s) for s in seed] for seed in per_seed],
                "speedup": [_json(s) for s in speedup],
                "ci_low": [_json(s) for s in ci_low],
                "ci_high": [_json(s) for s in ci_high],
            },
            "auc": aucs[label],
            "auc_vs_reference": (None if label == reference or aucs[label]["value"] is None
                                 else difference(aucs[label]["per_seed"],
                                                 aucs[reference]["per_seed"])),
            "cost_ratio": cost_ratios.get(label),
            "cost_adjusted_speedup_vs_fid": None,
        }
        cost = cost_ratios.get(label)
        if cost is not None:
            entry["cost_adjusted_speedup_vs_fid"] = {
                "speedup": [_json(s / cost) for s in speedup],
                "ci_low": [_json(s / cost) for s in ci_low],
                "ci_high": [_json(s / cost) for s in ci_high],
            }
        out[label] = entry
    return out


def auc(steps: np.ndarray, fids: np.ndarray, lo: float, hi: float) -> dict[str, Any]:
    """Mean FID over [lo, hi] per seed (trapezoids), its seed mean and t interval."""
    if hi <= lo:
        return {"value": None, "ci_low": None, "ci_high": None, "per_seed": [],
                "steps": [lo, hi]}
    grid = np.union1d(steps[(steps >= lo) & (steps <= hi)], [lo, hi])
    per_seed = [np.trapezoid(np.interp(grid, steps, f), grid) / (hi - lo) for f in fids]
    return {**mean_interval(per_seed), "steps": [float(lo), float(hi)]}
