"""``gan-mn compare --plan``: how many seeds a study needs, from a pilot's own spread.

For each comparison with the reference, at each step both evaluated and for the mean FID
over steps: the pooled seed standard deviation, the observed gap, and the seeds per group
(equal groups) for the report's two-sided 5% test to detect a lead of 1 FID, 2 FID and
the observed gap with 80% power (:func:`gan_mn.report.stats.seeds_needed`: noncentral t).
That is per test, before the report's correction over its family: a report with many
steps and groups needs more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gan_mn.report.speedup import auc, seed_curves
from gan_mn.report.stats import POWER, pooled_sd, seeds_needed
from gan_mn.run_log import ReportError, RunLog

LEADS = (1.0, 2.0)  # FID leads every plan sizes for


def seed_plan(groups: dict[str, list[RunLog]], reference: str,
              key: str) -> dict[str, list[dict[str, Any]]]:
    """Per group other than ``reference``: one row per common step and one for the mean
    FID over steps (``step`` None), each with ``sd``, ``gap`` and ``seeds`` for each lead
    of :data:`LEADS` and for the observed gap (None: more than 1,000, or no gap)."""
    curves = {label: seed_curves(members, key) for label, members in groups.items()}
    if min(len(m) for m in groups.values()) < 2:
        raise ReportError("--plan needs at least two seeds in every group (a pilot's "
                          "spread over seeds)")
    lo = max(steps[0] for steps, _ in curves.values())
    hi = min(steps[-1] for steps, _ in curves.values())
    ref_steps, ref_values = curves[reference]
    out: dict[str, list[dict[str, Any]]] = {}
    for label, (steps, values) in sorted(curves.items()):
        if label == reference:
            continue
        common = np.intersect1d(steps, ref_steps)
        mine = values[:, np.isin(steps, common)]
        theirs = ref_values[:, np.isin(ref_steps, common)]
        rows = [_row(float(s), m, t) for s, m, t in zip(
            common, pooled_sd(mine, theirs), mine.mean(0) - theirs.mean(0), strict=True)]
        a = np.array(auc(steps, values, lo, hi)["per_seed"])[:, None]
        b = np.array(auc(ref_steps, ref_values, lo, hi)["per_seed"])[:, None]
        if a.size and b.size:
            rows.append(_row(None, float(pooled_sd(a, b)[0]), float(a.mean() - b.mean())))
        out[label] = rows
    return out


def _row(step: float | None, sd: float, gap: float) -> dict[str, Any]:
    return {"step": step, "sd": float(sd), "gap": float(gap),
            "seeds": {**{f"{lead:g}": seeds_needed(lead, sd) for lead in LEADS},
                      "observed": seeds_needed(gap, sd)}}


def plan_text(plan: dict[str, list[dict[str, Any]]], reference: str, key: str) -> str:
    """The plan as markdown: one table per comparison."""
    def n(value: int | None) -> str:
        return "> 1000" if value is None else str(value)

    lines = [f"# Seeds per group for 80% power, against `{reference}` (`{key}`)", "",
             f"From the pilot's pooled seed standard deviation (sd): seeds per group for a "
             f"two-sided 5% test to detect each lead with {POWER:.0%} power, before the "
             "report's correction over its family of tests (it needs more).", ""]
    for label, rows in plan.items():
        lines += [f"## `{label}`", "",
                  "| step | sd | observed gap | lead 1 | lead 2 | observed gap |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            where = "mean over steps" if r["step"] is None else f"{r['step']:.0f}"
            s = r["seeds"]
            lines.append(f"| {where} | {r['sd']:.2f} | {r['gap']:+.2f} | {n(s['1'])} | "
                         f"{n(s['2'])} | {n(s['observed'])} |")
        lines.append("")
    return "\n".join(lines)
