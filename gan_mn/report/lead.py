"""Where a group's lead over the reference ends: the FID gap per evaluated step with
intervals over seeds, windows of steps ahead / no difference shown / behind, and late
quality.

Definitions (also written into report.md; the methods are :mod:`gan_mn.report.stats`'s):
- ``gap`` at a step: the group's seed-mean FID minus the reference's, at the steps both
  evaluated (every seed of each), with Welch's p value and 95% interval at each step
  (degrees of freedom by the design, :mod:`gan_mn.report.stats`).
- a step is ``ahead`` (lower FID is better) or ``behind`` when it is a finding of the
  report's family of per-step tests (every step of every comparison with the reference,
  Benjamini-Hochberg false discovery rate 5%), and ``level`` ("no difference shown")
  otherwise; ``no interval`` at every step when either group has one seed. A flagged
  step is ``robust`` when Holm's family-wise correction also flags it, else
  ``fragile``. ``windows`` are the runs of consecutive evaluated steps in one class.
- ``detectable``: the lead this design would detect at a step with 80% power, from the
  pooled seed spread there (the median over the comparison's steps, in FID and in seed
  standard deviations); ``not_excluded``: over the level steps, the largest lead their
  intervals allow.
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
from gan_mn.report.stats import (
    detectable_lead,
    difference,
    effect_detected,
    family,
    mean_interval,
    pooled_sd,
    welch,
)
from gan_mn.run_log import RunLog

CLASSES = ("ahead", "level", "behind")
CONFIDENCE_LEVEL = 0.95  # the gap intervals' (Welch's)
NO_INTERVAL = "no interval"  # the class of every step when a group has one seed


def unclassed(lead: dict[str, Any]) -> bool:
    """A lead whose steps carry no class (a group with one seed). (Steps where the seeds
    do not vary on either side are ``no interval`` windows of a classed lead.)"""
    return lead["confidence"] is None


def _or_none(values: np.ndarray, keep: np.ndarray) -> list[float | None]:
    return [float(v) if k else None for v, k in zip(values.tolist(), keep, strict=True)]


def _windows(steps: np.ndarray, classes: list[str],
             robust: np.ndarray) -> list[dict[str, Any]]:
    """Runs of consecutive steps in one class; a window of flagged steps is robust when
    every step of it is."""
    out: list[dict[str, Any]] = []
    for step, cls, sure in zip(steps.tolist(), classes, robust.tolist(), strict=True):
        if out and out[-1]["class"] == cls and (cls not in ("ahead", "behind")
                                                 or out[-1]["robust"] == sure):
            out[-1]["to"] = step
        else:
            out.append({"class": cls, "from": step, "to": step,
                        "robust": bool(sure) if cls in ("ahead", "behind") else None})
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
    tests: dict[str, np.ndarray] = {}  # each comparison's per-step p values (NaN: no test)
    for label, (steps, fids) in curves.items():
        if label == reference:
            continue
        common = np.intersect1d(steps, ref_steps)
        mine, theirs = fids[:, np.isin(steps, common)], ref_fids[:, np.isin(ref_steps, common)]
        gap = mine.mean(0) - theirs.mean(0)
        entry: dict[str, Any] = {"steps": common.tolist(), "gap": gap.tolist()}
        if min(mine.shape[0], theirs.shape[0]) < 2:  # no spread on one side: no test
            none = [None] * len(common)
            entry.update(ci_low=none, ci_high=none, p=none, confidence=None, detectable=None)
            tests[label] = np.full(len(common), np.nan)
        else:
            p, low, high = welch(mine, theirs)
            tested = np.isfinite(low)  # (seeds that do not vary on either side: no test)
            p = np.where(tested, p, np.nan)
            tests[label] = p
            sd = pooled_sd(mine, theirs)
            lead = detectable_lead(mine.shape[0], theirs.shape[0], sd)
            entry.update(ci_low=_or_none(low, tested), ci_high=_or_none(high, tested),
                         p=_or_none(p, tested), confidence=CONFIDENCE_LEVEL,
                         detectable={"fid": float(np.median(lead[tested])) if tested.any()
                                     else None,
                                     "seed_sds": effect_detected(mine.shape[0], theirs.shape[0])
                                     if tested.any() else None})
        out[label] = entry
    flags = _family_flags(tests)
    for label, entry in out.items():
        flagged, robust = flags[label]
        tested = np.isfinite(tests[label])
        gap = np.asarray(entry["gap"])
        if entry["confidence"] is None:
            classes = [NO_INTERVAL] * len(gap)
        else:
            classes = [NO_INTERVAL if not t else ("level" if not f else
                                                  ("ahead" if g < 0 else "behind"))
                       for g, f, t in zip(gap, flagged, tested, strict=True)]
        common = np.asarray(entry["steps"])
        ahead = [i for i, c in enumerate(classes) if c == "ahead"]
        last = ahead[-1] if ahead else None
        level = [i for i, c in enumerate(classes) if c == "level"]
        lows = [entry["ci_low"][i] for i in level if entry["ci_low"][i] is not None]
        mq, rq = quality[label], quality[reference]
        entry.update({
            "classes": classes,
            "robust": [bool(r) for r in robust],
            "windows": _windows(common, classes, robust),
            "not_excluded": max(0.0, -min(lows)) if lows else None,
            "last_ahead": None if last is None else float(common[last]),
            "never_ahead_after": (None if last is None or last == len(common) - 1
                                  else float(common[last + 1])),
            "late_steps": [float(late_from), float(hi)], "best_steps": [float(lo), float(hi)],
            "late": mq["late"], "reference_late": rq["late"],
            "late_gap": (difference(mq["late"]["per_seed"], rq["late"]["per_seed"])
                         if mq["late"]["value"] is not None else None),
            "best": mq["best"], "reference_best": rq["best"],
            "best_gap": difference(mq["best"]["per_seed"], rq["best"]["per_seed"]),
        })
    return out


def _family_flags(tests: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every comparison's per-step tests as one family: which steps are findings, and
    which of those are robust, per comparison."""
    labels = sorted(tests)
    pooled = np.concatenate([tests[k] for k in labels]) if labels else np.zeros(0)
    if not np.isfinite(pooled).any():
        return {k: (np.zeros(len(tests[k]), bool), np.zeros(len(tests[k]), bool))
                for k in labels}
    flagged, robust = family(pooled)
    out, start = {}, 0
    for k in labels:
        n = len(tests[k])
        out[k] = (flagged[start:start + n], robust[start:start + n])
        start += n
    return out


SHOWN = {"ahead": "ahead", "behind": "behind", "level": "no difference shown",
         NO_INTERVAL: NO_INTERVAL}  # a class in report.md's words


def window_text(w: dict[str, Any]) -> str:
    """``ahead 250-500 (robust)``, ``no difference shown 750``: one window, briefly."""
    span = f"{w['from']:,.0f}" + ("" if w["from"] == w["to"] else f"-{w['to']:,.0f}")
    sure = "" if w.get("robust") is None else (" (robust)" if w["robust"] else " (fragile)")
    return f"{SHOWN[w['class']]} {span}{sure}"


def not_excluded_text(lead: dict[str, Any], unit: str = "FID") -> str:
    """What the steps with no difference shown cannot exclude, and what the design would
    detect: ``a lead of up to 2.65 FID cannot be excluded; 80% power at 3.1 FID (1.5
    seed sds)``; empty where every step is a finding or untested."""
    if lead["not_excluded"] is None or lead["detectable"] is None:
        return ""
    d = lead["detectable"]
    return (f"a lead of up to {lead['not_excluded']:.2f} {unit} cannot be excluded at those "
            f"steps; this design detects a lead of {d['fid']:.2f} {unit} "
            f"({d['seed_sds']:.1f} seed sds) with 80% power")


def lead_sentence(label: str, reference: str, lead: dict[str, Any]) -> str:
    """One plain sentence: ``ahead from step A to B (robust), then no difference shown``,
    what that cannot exclude, and late/best FID."""
    def step(value: float) -> str:
        return f"{value:,.0f}"

    if unclassed(lead):
        parts = ["a group with one seed has no interval, so no step is classed ahead, "
                 "behind or without a difference"]
        verdict = ""
    else:
        parts = []
        for w in lead["windows"]:
            span = f"at step {step(w['from'])}" if w["from"] == w["to"] else \
                f"from step {step(w['from'])} to {step(w['to'])}"
            sure = "" if w.get("robust") is None else \
                (" (robust)" if w["robust"] else " (fragile)")
            parts.append(f"{SHOWN[w['class']]} {span}{sure}")
        if len(parts) > 1 and lead["windows"][-1]["to"] == lead["steps"][-1]:
            w = lead["windows"][-1]
            sure = "" if w.get("robust") is None else \
                (" (robust)" if w["robust"] else " (fragile)")
            parts[-1] = f"then {SHOWN[w['class']]} to the end ({step(w['to'])}){sure}"
        tested = any(c != NO_INTERVAL for c in lead["classes"])
        verdict = "; never ahead" if lead["last_ahead"] is None and tested else ""
        excluded = not_excluded_text(lead)
        verdict += f" ({excluded})" if excluded else ""

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
    """`` (p 0.012, a robust finding)`` after a comparison (Welch's test, read against the
    report's family of such tests), nothing where there is no test."""
    return "" if gap is None or gap["p"] is None else f" (p {p_text(gap['p'])}, {finding(gap)})"


def finding(gap: dict[str, Any]) -> str:
    """Whether a summary test is a finding of its family: robust, fragile or not one."""
    if not gap.get("finding"):
        return "not a finding"
    return "a robust finding" if gap.get("robust") else "a fragile finding"


def p_text(p: float) -> str:
    """A p value to three decimals, ``<0.001`` below that."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"
