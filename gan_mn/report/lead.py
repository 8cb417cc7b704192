"""Where a group's lead over the reference ends: the FID gap per evaluated step with
bootstrap intervals over seeds, windows of steps ahead / level / behind, and late quality.

Definitions (also written into report.md):
- ``gap`` at a step: the group's seed-mean FID minus the reference's, at the steps both
  evaluated (every seed of each). Its interval: the seeds of each group resampled with
  replacement, as for the speed-up intervals (the same draws, from each group's own
  stream); the 2.5th and 97.5th percentiles of the resampled gaps.
- a step is ``ahead`` when the whole interval is below 0 (lower FID is better),
  ``behind`` when it is above 0, ``level`` otherwise, and ``no interval`` at every step
  when either group has one seed; ``windows`` are the runs of consecutive evaluated
  steps in one class.
- ``last_ahead``: the last step at which the group is ahead; ``never_ahead_after``: the
  first evaluated step after it (from there on it is never ahead again), null if it is
  still ahead at the last step or never was.
- ``late``: the mean FID over the last third of the steps every group evaluated (as the
  area under the curve, see :mod:`gan_mn.report.speedup`), and ``best``: the mean of the
  seeds' best FIDs over the steps every group evaluated (a group trained longer is not
  credited with its extra steps); each with its bootstrap interval, for the group and
  the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gan_mn.report.runs import RunLog
from gan_mn.report.speedup import auc, bootstrap_draws, interval, seed_curves

CLASSES = ("ahead", "level", "behind")
NO_INTERVAL = "no interval"  # the class of every step when a group has one seed


def unclassed(lead: dict[str, Any]) -> bool:
    """A lead whose steps carry no class (a group with one seed)."""
    return NO_INTERVAL in lead["classes"]


def _classify(low: np.ndarray, high: np.ndarray) -> list[str]:
    return ["ahead" if h < 0 else "behind" if lo > 0 else "level"
            for lo, h in zip(low, high, strict=True)]


def _windows(steps: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for step, cls in zip(steps.tolist(), classes, strict=True):
        if out and out[-1]["class"] == cls:
            out[-1]["to"] = step
        else:
            out.append({"class": cls, "from": step, "to": step})
    return out


def _best(fids: np.ndarray, draws: np.ndarray) -> dict[str, Any]:
    per_seed = fids.min(1)
    low, high = interval(per_seed[draws].mean(1)[:, None])
    return {"value": float(per_seed.mean()), "ci_low": float(low[0]),
            "ci_high": float(high[0]), "per_seed": [float(v) for v in per_seed]}


def lead_analysis(groups: dict[str, list[RunLog]], reference: str, key: str,
                  resamples: int = 2000) -> dict[str, dict[str, Any]]:
    """Per group other than ``reference``: its gap curve, windows, where its lead ends,
    and its late and best FID beside the reference's (see the module's definitions)."""
    curves = {label: seed_curves(members, key) for label, members in groups.items()}
    draws = {label: bootstrap_draws(label, values.shape[0], resamples)
             for label, (_, values) in curves.items()}
    lo = max(steps[0] for steps, _ in curves.values())
    hi = min(steps[-1] for steps, _ in curves.values())
    late_from = hi - (hi - lo) / 3
    ref_steps, ref_fids = curves[reference]
    quality = {label: {"late": auc(steps, values, late_from, hi, draws[label]),
                       "best": _best(values[:, (steps >= lo) & (steps <= hi)], draws[label])}
               for label, (steps, values) in curves.items()}
    out: dict[str, dict[str, Any]] = {}
    for label, (steps, fids) in curves.items():
        if label == reference:
            continue
        common = np.intersect1d(steps, ref_steps)
        mine, theirs = fids[:, np.isin(steps, common)], ref_fids[:, np.isin(ref_steps, common)]
        gap = mine.mean(0) - theirs.mean(0)
        boot = mine[draws[label]].mean(1) - theirs[draws[reference]].mean(1)
        low, high = interval(boot)
        # one seed on either side: the interval is a point, so its sign would pass for a verdict
        single = min(mine.shape[0], theirs.shape[0]) < 2
        classes = [NO_INTERVAL] * len(common) if single else _classify(low, high)
        ahead = [i for i, c in enumerate(classes) if c == "ahead"]
        last = ahead[-1] if ahead else None
        out[label] = {
            "steps": common.tolist(),
            "gap": gap.tolist(), "ci_low": low.tolist(), "ci_high": high.tolist(),
            "classes": classes,
            "windows": _windows(common, classes),
            "last_ahead": None if last is None else float(common[last]),
            "never_ahead_after": (None if last is None or last == len(common) - 1
                                  else float(common[last + 1])),
            "late_steps": [float(late_from), float(hi)], "best_steps": [float(lo), float(hi)],
            "late": quality[label]["late"], "reference_late": quality[reference]["late"],
            "best": quality[label]["best"], "reference_best": quality[reference]["best"],
        }
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
        verdict = "; never ahead" if lead["last_ahead"] is None else ""

    def ci(q: dict[str, Any]) -> str:
        return f"{q['value']:.2f} [{q['ci_low']:.2f}, {q['ci_high']:.2f}]"

    late, best = lead["late"], lead["best"]
    late_ok = late["value"] is not None and lead["reference_late"]["value"] is not None
    late_text = (f"late FID (steps {step(lead['late_steps'][0])}-{step(lead['late_steps'][1])})"
                 f" {ci(late)} against {ci(lead['reference_late'])}" if late_ok else
                 "no late window")
    best_span = f"steps {step(lead['best_steps'][0])}-{step(lead['best_steps'][1])}"
    return (f"`{label}` against `{reference}`: " + ", ".join(parts) + verdict
            + f"; {late_text}; best FID ({best_span}) {ci(best)} against "
            f"{ci(lead['reference_best'])}.")
