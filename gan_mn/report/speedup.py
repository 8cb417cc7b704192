"""Speed-up as a function of the FID target, and the area under the FID curve, with
bootstrap confidence intervals over seeds.

Definitions (also written into report.md):
- thresholds ``X``: evenly spaced from the reference group's best seed-mean FID up to
  its worst (its first evaluations), so every ``X`` is one the reference reaches.
- ``steps(X)``: the first evaluated step at which a FID curve is at or below ``X``
  (per seed, and for the group's seed-mean curve); ``None`` if never.
- ``speedup(X)`` = reference ``steps(X)`` / group ``steps(X)``, from seed-mean curves.
  Its interval: resample the seeds of each group with replacement (the reference's and
  the group's independently, each from a random stream seeded by its name), recompute both
  seed-mean curves and the ratio; the 2.5th and 97.5th percentiles over the resamples.
  A resample that never reaches ``X`` counts as infinitely slow (ratio 0 for the group,
  infinite for the reference).
- ``auc``: the mean FID over the steps every group evaluated (the area under the
  piecewise-linear FID-vs-step curve divided by the step range), averaged over seeds,
  with the same bootstrap. Lower is better; it does not hang on one evaluation.
- ``cost_ratio``: a step of the group costs this many steps of the reference, as
  measured by ``benchmarks/norm_overhead.py --runs`` on one machine;
  ``cost_adjusted_speedup_vs_fid`` = speed-up / cost ratio (above 1: MN reaches ``X``
  in less compute).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from gan_mn.report.runs import ReportError, RunLog

SEED = 0  # with each group's name, its bootstrap stream: the report is the same every run


def first_at_or_below(fid: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Index of the first evaluation at or below each target (-1 if never)."""
    below = fid[None, :] <= np.asarray(targets, dtype=float)[:, None] + 1e-9
    return np.where(below.any(axis=1), np.argmax(below, axis=1), -1)


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


def bootstrap_draws(label: str, seeds: int, resamples: int) -> np.ndarray:
    """``(resamples, seeds)`` seed indices drawn with replacement from a stream of the
    group's own (its name), so that other groups' runs do not move its intervals; the
    same draws serve every analysis of the group (speed-up, AUC, lead)."""
    rng = np.random.default_rng([SEED, zlib.crc32(label.encode())])
    return rng.integers(0, seeds, size=(resamples, seeds))


def _ratio(ref: np.ndarray, grp: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ref / grp
    return np.where(np.isinf(ref) & np.isinf(grp), np.nan, out)


def _json(value: float) -> float | None:
    """Strict JSON: infinities and NaN become null (the report says what null means)."""
    return float(value) if math.isfinite(value) else None


def interval(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2.5th/97.5th percentiles over axis 0, ignoring undefined (NaN) resamples."""
    with np.errstate(invalid="ignore"):
        finite = np.where(np.isnan(samples), np.nan, samples)
        return (np.nanpercentile(finite, 2.5, axis=0, method="lower"),
                np.nanpercentile(finite, 97.5, axis=0, method="higher"))


def speedup_analysis(groups: dict[str, list[RunLog]], reference: str, key: str,
                     num_thresholds: int = 8, resamples: int = 2000,
                     cost_ratios: dict[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Per group: ``speedup_vs_fid``, ``auc``, ``cost_ratio`` and
    ``cost_adjusted_speedup_vs_fid`` (see the module's definitions)."""
    curves = {label: seed_curves(members, key) for label, members in groups.items()}
    common = {label: steps for label, (steps, _) in curves.items()}
    fids = {label: values for label, (_, values) in curves.items()}
    ref_mean = fids[reference].mean(0)
    targets = np.linspace(ref_mean.min(), ref_mean.max(), num_thresholds)
    draws = {label: bootstrap_draws(label, f.shape[0], resamples) for label, f in fids.items()}

    def reach(label: str, rows: np.ndarray | None = None) -> np.ndarray:
        f = fids[label] if rows is None else fids[label][rows]
        return _steps_to(common[label], f.mean(0), targets)

    ref_steps = reach(reference)
    ref_boot = np.stack([reach(reference, d) for d in draws[reference]])
    lo, hi = max(c[0] for c in common.values()), min(c[-1] for c in common.values())
    cost_ratios = {reference: 1.0, **(cost_ratios or {})}
    out: dict[str, dict[str, Any]] = {}
    for label in groups:
        steps = reach(label)
        boot = np.stack([reach(label, d) for d in draws[label]])
        speedup = _ratio(ref_steps, steps)
        ci_low, ci_high = interval(_ratio(ref_boot, boot))
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
            "auc": auc(common[label], fids[label], lo, hi, draws[label]),
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


def auc(steps: np.ndarray, fids: np.ndarray, lo: float, hi: float,
         draws: np.ndarray) -> dict[str, Any]:
    """Mean FID over [lo, hi] per seed (trapezoids), its seed mean and bootstrap interval."""
    if hi <= lo:
        return {"value": None, "ci_low": None, "ci_high": None, "per_seed": [],
                "steps": [lo, hi]}
    grid = np.union1d(steps[(steps >= lo) & (steps <= hi)], [lo, hi])
    per_seed = np.array([np.trapezoid(np.interp(grid, steps, f), grid) / (hi - lo)
                         for f in fids])
    boot = per_seed[draws].mean(1)
    low, high = interval(boot[:, None])
    return {"value": float(per_seed.mean()), "ci_low": float(low[0]),
            "ci_high": float(high[0]), "per_seed": [float(v) for v in per_seed],
            "steps": [float(lo), float(hi)]}
