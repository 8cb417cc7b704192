"""Where a group's lead over the reference ends: the FID gap per evaluated step with
intervals over seeds, windows of steps ahead / level / behind, and late quality.

Definitions (also written into report.md; the methods are :mod:`gan_mn.report.stats`'s):
- ``gap`` at a step: the group's seed-mean FID minus the reference's, at the steps both
  evaluated (every seed of each), with Welch's p value at each step.
- a step is ``ahead`` (lower FID is better) or ``behind`` when Welch's test flags it with
  the Benjamini-Hochberg false discovery rate of 5% over the comparison's steps, and
  ``level`` otherwise; ``no interval`` at every step when either group has one seed.
  The gap's interval is Welch's at ``confidence`` = 1 - 0.05 R / m (R of m steps
  flagged), the false-coverage-rate level at which it excludes 0 exactly at the flagged
  steps. ``windows`` are the runs of consecutive evaluated steps in one class.
- ``last_ahead``: the last step at which the group is ahead; ``never_ahead_after``: the
  first evaluated step after it (from there on it is never ahead again), null if it is
  still ahead at the last step or never was.
- ``late``: the mean FID over the last third of the steps every group evaluated (as the
  area under the curve, see :mod:`gan_mn.report.speedup`), and ``best``: the mean of the
  seeds' best FIDs over the steps every group evaluated (a group trained longer is not
  credited with its extra steps); each with its t interval, for the group and the
  reference, and ``late_gap`` / ``best_gap``: the difference from the reference with
  Welch's interval and p value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gan_mn.report.speedup import auc, seed_curves
from gan_mn.report.stats import gap_intervals, mean_interval, step_classes, welch
from gan_mn.run_log import RunLog

CLASSES = ("ahead", "level", "behind")
NO_INTERVAL = "no interval"  # the class of every step when a group has one seed


def unclassed(lead: dict[str, Any]) -> bool:
    """A lead whose steps carry no class (a group with one seed). (Steps where the seeds
    do not vary on either side are ``no interval`` windows of a classed lead.)"""
    return lead["confidence"] is None


def _or_none(values: np.ndarray, keep: np.ndarray) -> list[float | None]:
    return [float(v) if k else None for v, k in zip(values.tolist(), keep, strict=True)]


def _windows(steps: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for step, cls in zip(steps.tolist(), classes, strict=True):
        if out and out[-1]["class"] == cls:
            out[-1]["to"] = step
        else:
            out.append({"class": cls, "from": step, "to": step})
    return out


def lead_analysis(groups: dict[str, list[RunLog]], reference: str,
                  key: str) -> dict[str, dict[str, Any]]:
    """Per group other than ``reference``: its gap curve, windows, where its lead ends,
    and its late and best FID beside the reference's (see the module's definitions)."""
    curves = {label: seed_curves(members, key) for label, members in groups.items()}
    lo = max(steps[0] for steps, _ in curves.values())
    hi = min(steps[-1] for steps, _ in curves.values())
    late_from = hi - (hi - lo) / 3
    ref_steps, ref_fids = curves[reference]
    quality = {label: {"late": auc(steps, values, late_from, hi),
                       "best": mean_interval(values[:, (steps >= lo) & (steps <= hi)].min(1))}
               for label, (steps, values) in curves.items()}
    out: dict[str, dict[str, Any]] = {}
    for label, (steps, fids) in curves.items():
        if label == reference:
            continue
        common = np.intersect1d(steps, ref_steps)
        mine, theirs = fids[:, np.isin(steps, common)], ref_fids[:, np.isin(ref_steps, common)]
        gap = mine.mean(0) - theirs.mean(0)
        entry: dict[str, Any] = {"steps": common.tolist(), "gap": gap.tolist()}
        if min(mine.shape[0], theirs.shape[0]) < 2:  # no spread on one side: no test
            none = [None] * len(common)
            classes = [NO_INTERVAL] * len(common)
            entry.update(ci_low=none, ci_high=none, p=none, confidence=None)
        else:
            p, codes, flagged = step_classes(mine, theirs)
            low, high, level = gap_intervals(mine, theirs, int(flagged))
            tested = np.isfinite(low)  # (seeds that do not vary on either side: no test)
            classes = [CLASSES[c + 1] if t else NO_INTERVAL
                       for c, t in zip(codes.tolist(), tested, strict=True)]
            entry.update(ci_low=_or_none(low, tested), ci_high=_or_none(high, tested),
                         p=_or_none(p, tested), confidence=level)
        ahead = [i for i, c in enumerate(classes) if c == "ahead"]
        last = ahead[-1] if ahead else None
        mq, rq = quality[label], quality[reference]
        entry.update({
            "classes": classes,
            "windows": _windows(common, classes),
            "last_ahead": None if last is None else float(common[last]),
            "never_ahead_after": (None if last is None or last == len(common) - 1
                                  else float(common[last + 1])),
            "late_steps": [float(late_from), float(hi)], "best_steps": [float(lo), float(hi)],
            "late": mq["late"], "reference_late": rq["late"],
            "late_gap": (welch(mq["late"]["per_seed"], rq["late"]["per_seed"])
                         if mq["late"]["value"] is not None else None),
            "best": mq["best"], "reference_best": rq["best"],
            "best_gap": welch(mq["best"]["per_seed"], rq["best"]["per_seed"]),
        })
        out[label] = entry
    return out


def lead_sentence(label: str, reference: str, lead: dict[str, Any]) -> str:
    """One plain sentence: ``ahead from step A to B, then level``, and late/best FID."""
    def step(value: float) -> str:
        return f"{value:,.0f}"

    if unclassed(lead):
        parts = ["a group with one seed has no interval, so no step is classed ahead, level "
                 "or behind"]
        verdict = ""
    else:
        parts = []
        for w in lead["windows"]:
            span = f"at step {step(w['from'])}" if w["from"] == w["to"] else \
                f"from step {step(w['from'])} to {step(w['to'])}"
            parts.append(f"{w['class']} {span}")
        if len(parts) > 1 and lead["windows"][-1]["to"] == lead["steps"][-1]:
            last = lead["windows"][-1]["class"]
            parts[-1] = f"then {last} to the end ({step(lead['windows'][-1]['to'])})"
        tested = any(c != NO_INTERVAL for c in lead["classes"])
        verdict = "; never ahead" if lead["last_ahead"] is None and tested else ""

    late, best = lead["late"], lead["best"]
    late_ok = late["value"] is not None and lead["reference_late"]["value"] is not None
    late_text = (f"late FID (steps {step(lead['late_steps'][0])}-{step(lead['late_steps'][1])})"
                 f" {ci(late)} against {ci(lead['reference_late'])}{_p(lead['late_gap'])}"
                 if late_ok else "no late window")
    best_span = f"steps {step(lead['best_steps'][0])}-{step(lead['best_steps'][1])}"
    return (f"`{label}` against `{reference}`: " + ", ".join(parts) + verdict
            + f"; {late_text}; best FID ({best_span}) {ci(best)} against "
            f"{ci(lead['reference_best'])}{_p(lead['best_gap'])}.")


def ci(q: dict[str, Any]) -> str:
    """``value [low, high]``, or the value alone where there is no interval (one seed)."""
    if q["ci_low"] is None or q["ci_high"] is None:
        return f"{q['value']:.2f}"
    return f"{q['value']:.2f} [{q['ci_low']:.2f}, {q['ci_high']:.2f}]"


def _p(gap: dict[str, Any] | None) -> str:
    """`` (Welch p 0.012)`` after a comparison, nothing where there is no test."""
    return "" if gap is None or gap["p"] is None else f" (Welch p {p_text(gap['p'])})"


def p_text(p: float) -> str:
    """A p value to three decimals, ``<0.001`` below that."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"
