"""The MN layers' mixture over training, from the ``mn/<layer>/<field>`` columns that
``gan-mn fit`` logs: per group, the seed mean (and sample std) of each field averaged
over the group's MN layers, beside the FID gap; and one sentence on whether the mixture
changed where a lead ended.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from gan_mn.run_log import RunLog

FIELDS = ("effective_components", "posterior_entropy")
COLUMN = re.compile(r"^mn/(.+)/(\w+)$")


def _layer_mean(run: RunLog, field: str) -> dict[int, float]:
    """``field`` averaged over the run's MN layers, at the steps every layer logged it."""
    columns = [c for key, c in run.columns.items()
               if (m := COLUMN.match(key)) and m.group(2) == field]
    if not columns:
        return {}
    steps = set.intersection(*(set(c) for c in columns))
    return {s: float(np.mean([c[s] for c in columns])) for s in sorted(steps)}


def diagnostics(groups: dict[str, list[RunLog]]) -> dict[str, dict[str, Any]]:
    """Per group whose every run logged diagnostics: the steps all its seeds logged, and
    each field's seed mean and sample std (n - 1; null for one seed) there."""
    out: dict[str, dict[str, Any]] = {}
    for label, members in sorted(groups.items()):
        curves = {f: [_layer_mean(r, f) for r in members] for f in FIELDS}
        if not all(curves[FIELDS[0]]):
            continue
        steps = sorted(set.intersection(*(set(c) for f in FIELDS for c in curves[f])))
        if not steps:
            continue
        entry: dict[str, Any] = {"steps": [float(s) for s in steps], "layers": sorted(
            {m.group(1) for r in members for k in r.columns if (m := COLUMN.match(k))})}
        for f in FIELDS:
            values = np.array([[c[s] for s in steps] for c in curves[f]])
            std = values.std(0, ddof=1) if len(members) > 1 else None
            entry[f] = {"mean": values.mean(0).tolist(),
                        "std": None if std is None else std.tolist()}
        out[label] = entry
    return out


def sentence(label: str, diag: dict[str, Any], lead: dict[str, Any] | None) -> str:
    """Whether the mixture's state changed where the group's lead over the reference
    ended: its mean effective number of components and posterior entropy before and
    after that step, or over the whole run when no lead ended."""
    steps = np.array(diag["steps"])
    eff = np.array(diag["effective_components"]["mean"])
    ent = np.array(diag["posterior_entropy"]["mean"])
    end = None if lead is None else lead.get("never_ahead_after")
    if end is None or not (steps < end).any() or not (steps >= end).any():
        return (f"`{label}`: no lead over the reference ended within the logged steps; over "
                f"them the mixture's effective number of components went from {eff[0]:.2f} "
                f"to {eff[-1]:.2f} and its posterior entropy from {ent[0]:.2f} to "
                f"{ent[-1]:.2f}.")
    before, after = steps < end, steps >= end
    return (f"`{label}`: its lead ended at step {end:,.0f}; before it the mixture had "
            f"{eff[before].mean():.2f} effective components and posterior entropy "
            f"{ent[before].mean():.2f} on average, after it {eff[after].mean():.2f} and "
            f"{ent[after].mean():.2f}.")
