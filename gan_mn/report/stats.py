"""Intervals and tests over seeds, all from ``scipy.stats``: the methods every interval
and p value of a report uses, named once here and in report.md.

- A group's mean of a per-seed value (mean FID over steps, late FID, best FID): Student's
  t interval of the mean over seeds (``ttest_1samp``), 95%.
- A difference between two groups (those values, and the FID gap at each step): Welch's
  t test and 95% interval, which do not assume equal spreads, with the degrees of
  freedom chosen by the design: Satterthwaite's (``ttest_ind(equal_var=False)``) when
  both groups have as many seeds, and Hsu's conservative ``min(n1, n2) - 1`` when they
  differ. Satterthwaite's are too many when the smaller group has few seeds: with 3
  seeds against 8, 8-9% of null studies showed a window. (A permutation test would hold
  its level too, but 3 seeds against 3 have only 20 splits: it could never flag a step.)
- **The family.** Every p value of one kind in a report is read against all the others
  of that kind, over every comparison with the reference: the per-step tests of all
  groups form one family, and the tests of mean FID over steps, late FID and best FID
  another. A step (or a value) is a finding when the Benjamini-Hochberg false discovery
  rate over its family is at most 5% (``false_discovery_control``); with no true
  difference anywhere, at most 1 report in 20 then shows any. It is **robust** when
  Holm's family-wise correction also flags it, **fragile** when only the false discovery
  rate does.
- **What "no difference shown" cannot exclude.** The gap's 95% interval, and the lead
  that the design would detect with 80% power: from the seeds' own spread (the pooled
  standard deviation), the smallest lead the two-sided 5% test detects 80% of the time
  (noncentral t with the test's degrees of freedom; before the family's correction, so
  the report needs at least as much).
- Speed-up per FID level: a percentile bootstrap (``scipy.stats.bootstrap``), each
  group's seeds resampled independently.

A test needs two seeds on each side: with one nothing is classed and no interval is
given.
"""

from __future__ import annotations

import functools
import math
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from scipy import optimize, stats

CONFIDENCE = 0.95
FDR = 0.05
POWER = 0.8  # the power at which a design's detectable lead is stated
RESAMPLES = 2000
SEED = 0  # with the groups' names, the bootstrap's stream: the report is the same every run

METHODS = (
    "Intervals over seeds: a group's mean (mean FID over steps, late FID, best FID) has "
    "Student's t 95% interval; a difference between two groups has Welch's t test and 95% "
    "interval, with Satterthwaite's degrees of freedom when the groups have as many seeds "
    "and Hsu's conservative min(n1, n2) - 1 when they differ. Each kind of test forms one "
    "family "
    "over every comparison with the reference (the per-step tests of all groups; the "
    "tests of mean FID over steps, late and best FID): a finding has a Benjamini-Hochberg "
    "false discovery rate of at most 5% over its family, and is robust when Holm's "
    "family-wise correction also flags it, fragile when only the false discovery rate "
    "does. Where no difference is shown, the gap's interval and the lead that the design "
    "would detect with 80% power (the two-sided 5% test, noncentral t, from the pooled "
    "seed spread) say what is not excluded. Speed-up intervals are percentile bootstraps "
    "(scipy.stats.bootstrap, 2,000 resamples, each group's seeds resampled "
    "independently).")


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


def difference(mine: list[float] | np.ndarray, theirs: list[float] | np.ndarray
               ) -> dict[str, Any]:
    """Difference of seed means (``mine`` - ``theirs``) with Welch's 95% interval and
    two-sided p value (:func:`welch`) and the gap this design detects with 80% power
    (``detectable``); ``None`` where either side has one seed or neither varies."""
    a, b = np.asarray(mine, dtype=float), np.asarray(theirs, dtype=float)
    out: dict[str, Any] = {"gap": float(a.mean() - b.mean()), "ci_low": None,
                           "ci_high": None, "p": None}
    if min(a.size, b.size) < 2 or not _spread(a, b):
        return out
    p, low, high = welch(a[:, None], b[:, None])
    effect = effect_detected(a.size, b.size)
    sd = float(pooled_sd(a[:, None], b[:, None])[0])
    out.update(ci_low=_finite(low[0]), ci_high=_finite(high[0]), p=_finite(p[0]),
               detectable={"fid": sd * effect, "seed_sds": effect})
    return out


def degrees_of_freedom(n_mine: int, n_theirs: int, var_mine: np.ndarray,
                       var_theirs: np.ndarray) -> np.ndarray:
    """Satterthwaite's degrees of freedom for groups of as many seeds, Hsu's
    ``min(n1, n2) - 1`` for groups of different sizes (see the module's notes)."""
    if n_mine != n_theirs:
        return np.full(np.shape(var_mine), float(min(n_mine, n_theirs) - 1))
    a, b = var_mine / n_mine, var_theirs / n_theirs
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a + b) ** 2 / (a**2 / (n_mine - 1) + b**2 / (n_theirs - 1))


def welch(mine: np.ndarray, theirs: np.ndarray, confidence: float = CONFIDENCE
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's two-sided p value and interval of the gap at each step, ``(..., seeds,
    steps)`` each (leading axes independent studies), with :func:`degrees_of_freedom`;
    p 1 and NaN bounds where neither side's seeds vary."""
    n1, n2 = mine.shape[-2], theirs.shape[-2]
    v1, v2 = mine.var(-2, ddof=1), theirs.var(-2, ddof=1)
    se = np.sqrt(v1 / n1 + v2 / n2)
    gap = mine.mean(-2) - theirs.mean(-2)
    df = degrees_of_freedom(n1, n2, v1, v2)
    spread = _spread(mine, theirs, axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(spread, gap / np.where(spread, se, 1.0), 0.0)
        p = np.where(spread, 2 * stats.t.sf(np.abs(t), df), 1.0)
        half = stats.t.ppf(0.5 + confidence / 2, df) * se
    return (p, np.where(spread, gap - half, np.nan), np.where(spread, gap + half, np.nan))


def family(p: np.ndarray, fdr: float = FDR) -> tuple[np.ndarray, np.ndarray]:
    """Which p values of one family (the last axis; leading axes independent studies) are
    findings at false discovery rate ``fdr`` (Benjamini-Hochberg), and which of those are
    robust (Holm's family-wise correction at ``fdr`` too)."""
    p = np.nan_to_num(np.asarray(p, dtype=float), nan=1.0)
    flagged = stats.false_discovery_control(p, axis=-1) <= fdr
    m = p.shape[-1]
    order = np.argsort(p, axis=-1)
    ranked = np.take_along_axis(p, order, axis=-1)
    holm = np.maximum.accumulate(np.minimum(ranked * (m - np.arange(m)), 1.0), axis=-1)
    robust = np.empty_like(flagged)
    np.put_along_axis(robust, order, holm <= fdr, axis=-1)
    return flagged, robust & flagged


def detectable_lead(n_mine: int, n_theirs: int, sd: float | np.ndarray,
                    power: float = POWER, alpha: float = FDR) -> np.ndarray:
    """The smallest gap a two-sided ``alpha`` test detects with ``power`` between groups
    of these many seeds, whose seeds spread by ``sd`` (noncentral t, pooled variance);
    NaN below two seeds on a side."""
    if min(n_mine, n_theirs) < 2:
        return np.nan * np.asarray(sd, dtype=float)
    return np.asarray(sd, dtype=float) * effect_detected(n_mine, n_theirs, power, alpha)


def seeds_needed(gap: float, sd: float, power: float = POWER, alpha: float = FDR,
                 most: int = 1000) -> int | None:
    """Seeds per group (equal groups) for a two-sided ``alpha`` test to detect ``gap``
    with ``power``, given the seed spread ``sd``; None for no gap or beyond ``most``."""
    if gap == 0 or not np.isfinite(gap):
        return None
    if not sd > 0:
        return 2
    effect = abs(gap) / sd
    if effect_detected(most, most, power, alpha) > effect:
        return None
    lo, hi = 2, most
    while lo < hi:  # the effect a design detects shrinks as its seeds grow
        mid = (lo + hi) // 2
        if effect_detected(mid, mid, power, alpha) <= effect:
            hi = mid
        else:
            lo = mid + 1
    return lo


@functools.lru_cache(maxsize=4096)  # a plan asks for the same designs many times
def effect_detected(n1: int, n2: int, power: float = POWER, alpha: float = FDR) -> float:
    """The standardised gap (in seed standard deviations) that the two-sided ``alpha``
    test between ``n1`` and ``n2`` seeds detects with ``power`` (equal spreads; the
    test's degrees of freedom: ``n1 + n2 - 2`` for equal groups, Hsu's for others)."""
    df = n1 + n2 - 2 if n1 == n2 else min(n1, n2) - 1
    scale = math.sqrt(1 / n1 + 1 / n2)
    crit = stats.t.ppf(1 - alpha / 2, df)
    high = 4 * (crit + stats.norm.ppf(power)) * scale  # beyond it the power is ~1
    return float(optimize.brentq(lambda e: t_power(e / scale, df, crit) - power, 0.0, high))


def t_power(nc: float, df: int, crit: float, nodes: int = 4000) -> float:
    """P(|T| > crit) for a noncentral t with ``df`` degrees of freedom and noncentrality
    ``nc``: the normal part's tail averaged over the chi-square part's quantiles (midpoint
    rule; ``scipy.stats.nct`` returns NaN in its far tails at few degrees of freedom)."""
    u = (np.arange(nodes) + 0.5) / nodes
    shift = crit * np.sqrt(stats.chi2.ppf(u, df) / df)
    return float(np.mean(stats.norm.sf(shift - nc) + stats.norm.cdf(-shift - nc)))


def pooled_sd(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """The pooled seed standard deviation at each step, ``(seeds, steps)`` each."""
    n1, n2 = mine.shape[-2], theirs.shape[-2]
    var = ((n1 - 1) * mine.var(-2, ddof=1) + (n2 - 1) * theirs.var(-2, ddof=1)) / (n1 + n2 - 2)
    return np.asarray(np.sqrt(var), dtype=float)


def _spread(mine: np.ndarray, theirs: np.ndarray, axis: int = 0) -> np.ndarray:
    """Whether the seeds vary on either side (Welch's test needs a standard error)."""
    return np.asarray((np.ptp(mine, axis=axis) > 0) | (np.ptp(theirs, axis=axis) > 0))


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
