"""The lead analysis's verdicts are right as often as they say: simulated studies, many at
once (vectorised), with no true difference and with a true lead.

Each study: two groups of seeds whose FID curves are one shared decreasing curve plus
independent Gaussian noise per seed and step, with a spread that changes along the
curve (larger early, as in the committed studies). A percentile bootstrap over 3 seeds
(the seeds' range) flags about a fifth of such steps and a window in nearly every study.
"""

from __future__ import annotations

import numpy as np
import pytest

from gan_mn.report.stats import AHEAD, BEHIND, FDR, LEVEL, step_classes

STUDIES = 2000


def _studies(seeds: int, steps: int, noise: float, lead_sds: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(studies, seeds, steps)`` FID curves of a group and a reference; the group is
    ``lead_sds`` seed standard deviations lower at every step."""
    t = np.linspace(250, 6000, steps)
    curve = 6.0 + 30.0 * np.exp(-t / 800.0)
    sd = noise * (0.3 + 0.05 * curve)  # per-step seed spread, larger where FID is high
    shape = (STUDIES, seeds, steps)
    reference = curve + sd * rng.standard_normal(shape)
    group = curve - lead_sds * sd + sd * rng.standard_normal(shape)
    return group, reference


@pytest.mark.parametrize("seeds", [3, 8])
@pytest.mark.parametrize("steps", [8, 24])
@pytest.mark.parametrize("noise", [0.5, 2.0])
def test_no_true_difference_flags_few_steps_and_few_studies(seeds: int, steps: int,
                                                            noise: float) -> None:
    rng = np.random.default_rng([seeds, steps, int(noise * 10)])
    group, reference = _studies(seeds, steps, noise, 0.0, rng)
    _, classes, flagged = step_classes(group, reference)
    step_rate = float((classes != LEVEL).mean())
    study_rate = float((flagged > 0).mean())
    # nominal: at most FDR (5%) of studies show any window; 2,000 studies give a
    # standard error of 0.5 percentage points
    assert study_rate <= 0.9 * 0.10, (step_rate, study_rate)
    assert study_rate <= FDR + 0.015, (step_rate, study_rate)
    assert step_rate <= FDR, (step_rate, study_rate)


def test_a_true_lead_is_seen_at_most_steps_with_8_seeds() -> None:
    rng = np.random.default_rng(1)
    group, reference = _studies(8, 24, 1.0, 2.0, rng)
    _, classes, _ = step_classes(group, reference)
    assert (classes == AHEAD).mean() > 0.75
    assert (classes == BEHIND).mean() == 0.0


def test_a_true_lag_is_behind_and_a_lead_at_3_seeds_is_seen_often() -> None:
    rng = np.random.default_rng(2)
    group, reference = _studies(3, 16, 1.0, -4.0, rng)  # 4 seed sds worse everywhere
    _, classes, _ = step_classes(group, reference)
    assert (classes == BEHIND).mean() > 0.5 and (classes == AHEAD).mean() == 0.0


def test_the_classes_are_the_steps_whose_interval_excludes_zero() -> None:
    """One study: the false-coverage-rate intervals agree with the classes exactly."""
    from gan_mn.report.stats import gap_intervals

    rng = np.random.default_rng(3)
    group, reference = _studies(5, 12, 1.0, 1.5, rng)
    for mine, theirs in zip(group[:50], reference[:50], strict=True):
        _, classes, flagged = step_classes(mine, theirs)
        low, high, level = gap_intervals(mine, theirs, int(flagged))
        excludes = np.where(high < 0, AHEAD, np.where(low > 0, BEHIND, LEVEL))
        assert np.array_equal(excludes, classes)
        assert 1 - FDR <= level < 1
