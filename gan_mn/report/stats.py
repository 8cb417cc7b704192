"""Intervals and tests over seeds, all from ``scipy.stats``: the methods every interval
of a report uses, named once here and in report.md.

- A group's mean of a per-seed value (mean FID over steps, late FID, best FID): Student's
  t interval of the mean over seeds (``ttest_1samp``), 95%.
- A difference between two groups (the same values, and the FID gap at each step):
  Welch's t test and interval (``ttest_ind(equal_var=False)``), which does not assume
  equal spreads.
- Steps classed ahead / behind: Welch's test at each step both groups evaluated, with
  the Benjamini-Hochberg false discovery rate of 5% over the steps of one comparison
  (``false_discovery_control``). With no true difference at any step this flags a step
  in at most 5% of studies, so a window of steps is a claim about the whole curve; each
  step's interval is Welch's at the level that matches (Benjamini-Yekutieli's
  false-coverage-rate interval, 1 - 0.05 R / m for R of m steps flagged), so a step is
  flagged exactly when its interval excludes 0.
- Speed-up per FID level: a percentile bootstrap (``scipy.stats.bootstrap``), each
  group's seeds resampled independently.

A t interval needs two seeds: with one on either side nothing is classed and no
interval is given.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
FDR = 0.05
RESAMPLES = 2000
SEED = 0  # with the groups' names, the bootstrap's stream: the report is the same every run
AHEAD, LEVEL, BEHIND = -1, 0, 1  # step classes as numbers (lower FID is better: -1 ahead)

METHODS = (
    "Intervals over seeds: a group's mean (mean FID over steps, late FID, best FID) has "
    "Student's t 95% interval; a difference between two groups has Welch's t interval and "
    "test; steps are classed ahead or behind by Welch's test at each step with the "
    "Benjamini-Hochberg false discovery rate of 5% over the steps of each comparison, and "
    "each step's gap interval is Welch's at the matching false-coverage-rate level "
    "(Benjamini-Yekutieli), so a step is classed exactly when its interval excludes 0; "
    "speed-up intervals are percentile bootstraps (scipy.stats.bootstrap, 2,000 "
    "resamples, each group's seeds resampled independently).")


@contextmanager
def _quiet() -> Iterator[None]:
    """scipy's and numpy's warnings on seeds with no spread (identical values), on levels
    never reached (infinite steps) and on the percentile of such draws: each of these
    cases is handled where it arises (NaN p is no flag, NaN draws are left out)."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        yield


def mean_interval(per_seed: list[float] | np.ndarray) -> dict[str, Any]:
    """The seed mean with Student's t interval (``None`` bounds for one seed)."""
    values = np.asarray(per_seed, dtype=float)
    out: dict[str, Any] = {"value": float(values.mean()), "ci_low": None, "ci_high": None,
                           "per_seed": [float(v) for v in values]}
    if values.size > 1:
        with _quiet():
            ci = stats.ttest_1samp(values, 0.0).confidence_interval(CONFIDENCE)
        out["ci_low"], out["ci_high"] = _finite(ci.low), _finite(ci.high)
    return out


def welch(mine: list[float] | np.ndarray, theirs: list[float] | np.ndarray,
          confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Difference of seed means (``mine`` - ``theirs``) with Welch's interval and
    two-sided p value; ``None`` where either side has one seed."""
    a, b = np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float)
    out: dict[str, Any] = {"gap": float(a.mean() - b.mean()), "ci_low": None,
                           "ci_high": None, "p": None}
    if min(a.size, b.size) < 2 or not _spread(a, b):
        return out  # (no spread on either side: Welch's test is undefined)
    with _quiet():
        res = stats.ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(confidence)
    out.update(ci_low=_finite(ci.low), ci_high=_finite(ci.high), p=_finite(res.pvalue))
    return out


def step_classes(mine: np.ndarray, theirs: np.ndarray,
                 fdr: float = FDR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch p values and classes (``AHEAD``/``LEVEL``/``BEHIND``) at each step.

    ``mine`` and ``theirs`` are ``(..., seeds, steps)``; any leading axes are independent
    studies (the simulation test runs thousands at once). Returns the p values, the
    classes (both ``(..., steps)``) and the number of steps flagged per study.
    """
    with _quiet():
        res = stats.ttest_ind(mine, theirs, axis=-2, equal_var=False)
    p = np.where(_spread(mine, theirs, axis=-2), np.asarray(res.pvalue, dtype=float), np.nan)
    p = np.nan_to_num(p, nan=1.0)  # no spread: no test
    flagged = stats.false_discovery_control(p, axis=-1) <= fdr
    gap = mine.mean(-2) - theirs.mean(-2)
    classes = np.where(flagged, np.sign(gap), LEVEL).astype(int)
    return p, classes, flagged.sum(-1)


def gap_intervals(mine: np.ndarray, theirs: np.ndarray,
                  flagged: int, fdr: float = FDR) -> tuple[np.ndarray, np.ndarray, float]:
    """Welch intervals of the gap at each step of one study, at the false-coverage-rate
    level ``1 - fdr * max(flagged, 1) / steps`` that matches the classes."""
    level = 1.0 - fdr * max(int(flagged), 1) / mine.shape[-1]
    with _quiet():
        res = stats.ttest_ind(mine, theirs, axis=-2, equal_var=False)
        ci = res.confidence_interval(level)
    spread = _spread(mine, theirs, axis=-2)
    return (np.where(spread, np.asarray(ci.low, dtype=float), np.nan),
            np.where(spread, np.asarray(ci.high, dtype=float), np.nan), level)


def _spread(mine: np.ndarray, theirs: np.ndarray, axis: int = 0) -> np.ndarray:
    """Whether the seeds vary on either side (Welch's test needs a standard error)."""
    return (np.ptp(mine, axis=axis) > 0) | (np.ptp(theirs, axis=axis) > 0)


def bootstrap_ratio(reference: np.ndarray, group: np.ndarray,
                    reference_statistic: Callable[[np.ndarray], np.ndarray],
                    group_statistic: Callable[[np.ndarray], np.ndarray],
                    name: str) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of ``reference_statistic(reference) / group_statistic(group)``,
    each ``(seeds, steps)`` array's seeds resampled independently
    (``scipy.stats.bootstrap``; the stream is seeded by ``name``).

    The statistics map ``(..., seeds, steps)`` to ``(..., levels)``. A resample in which
    neither reaches a level (infinity over infinity) is left out of that level's
    percentiles; one in which only the group never does counts as a ratio of 0. With
    one seed on either side there is nothing to resample: NaN bounds.
    """
    if min(reference.shape[0], group.shape[0]) < 2:
        nan = np.full(reference_statistic(reference).shape, np.nan)
        return nan, nan.copy()
    # The groups may share different steps (a seed missing an evaluation): padded with NaN
    # to one width for scipy, cut back to each group's own steps inside the statistic.
    n_ref, n_grp = reference.shape[1], group.shape[1]
    width = max(n_ref, n_grp)
    reference, group = (np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan)
                        for a in (reference, group))

    def ratio(ref: np.ndarray, grp: np.ndarray, axis: int = -1) -> np.ndarray:
        # scipy gives (steps, batch, seeds); the statistics take (batch, seeds, steps)
        r, g = (np.moveaxis(x, 0, -1) for x in (ref, grp))
        return np.moveaxis(reference_statistic(r[..., :n_ref])
                           / group_statistic(g[..., :n_grp]), -1, 0)

    rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
    tail = 100 * (1 - CONFIDENCE) / 2
    with _quiet():
        res = stats.bootstrap((reference, group), ratio, axis=0, vectorized=True,
                              paired=False, n_resamples=RESAMPLES, method="percentile",
                              rng=rng)
        draws = res.bootstrap_distribution.T  # (resamples, levels), NaN: neither reached
        return (np.nanpercentile(draws, tail, axis=0, method="lower"),
                np.nanpercentile(draws, 100 - tail, axis=0, method="higher"))


def _finite(value: Any) -> float | None:
    v = float(value)
    return v if np.isfinite(v) else None
