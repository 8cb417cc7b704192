"""Write a Report: plots (matplotlib, headless), report.json and report.md, atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gan_mn.files import atomic_write
from gan_mn.report.analysis import Report, mean_curve
from gan_mn.report.lead import (
    NO_INTERVAL,
    ci,
    lead_sentence,
    p_text,
    unclassed,
    window_text,
)
from gan_mn.report.mixture_section import sentence as diagnostics_sentence
from gan_mn.report.plots import plot, plot_diagnostics, plot_lead, plot_speedup
from gan_mn.report.stats import METHODS


def _inside(report: Report) -> list[str]:
    """report.md's section on the MN layers' mixture, for runs that logged it."""
    s = report.summary
    if "diagnostics" not in s:
        return []
    return ["## Inside MN", "",
            "![FID gap, effective components and posterior entropy against step]"
            "(mn_diagnostics_vs_step.png)", "",
            "Means over each group's MN layers of the effective number of components "
            "(exp of the weights' entropy) and the posterior entropy / log K, seed mean.", "",
            *[f"- {diagnostics_sentence(label, diag, s['lead'].get(label))}"
              for label, diag in sorted(s["diagnostics"].items())], ""]


def _lead(report: Report) -> list[str]:
    """report.md's lead section: a table and one sentence per group."""
    s = report.summary
    ref = s["reference"]
    if not s["lead"]:
        return []
    tests = sum(sum(c != NO_INTERVAL for c in lead["classes"]) for lead in s["lead"].values())
    lines = [f"## Where the lead over `{ref}` ends", "",
             "FID gap = the group's seed-mean FID minus the reference's at each step both "
             "evaluated. Ahead / behind: the step's Welch test is a finding of the "
             f"report's family of {tests or 'no'} per-step tests (every step of every group "
             "against "
             f"`{ref}`) at a false discovery rate of 5% (Benjamini-Hochberg), so that with "
             "no true difference at most 1 report in 20 shows any window; robust: Holm's "
             "family-wise correction flags it too; fragile: only the false discovery rate "
             "does. No difference shown: not a finding, which is not a tie: the gap's 95% "
             "interval (in report.json and the plot) says how large a lead it leaves open, "
             "and the design's 80%-power lead what these seeds could detect." + (
                 " No interval: a group has one seed, so no step is classed." if any(
                     unclassed(lead) for lead in s["lead"].values()) else "") + (
                 " No interval at a step: neither group's seeds vary there, so there is no "
                 "test and the step is not classed." if any(
                     not unclassed(lead) and NO_INTERVAL in lead["classes"]
                     for lead in s["lead"].values()) else ""),
             "",
             "| group | windows | lead not excluded (no difference shown) | 80%-power lead | "
             f"last step ahead | never ahead after | late FID [95%] | `{ref}` late | late: p | "
             f"best FID [95%] | `{ref}` best | best: p |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, lead in sorted(s["lead"].items()):
        windows = "; ".join(window_text(w) for w in lead["windows"])
        open_lead = "n/a" if lead["not_excluded"] is None else f"{lead['not_excluded']:.2f}"
        d = lead.get("detectable")
        power = "n/a" if not d or d["fid"] is None else \
            f"{d['fid']:.2f} ({d['seed_sds']:.1f} seed sds)"
        late = ["n/a" if q["value"] is None else ci(q)
                for q in (lead["late"], lead["reference_late"])]
        best = [ci(q) for q in (lead["best"], lead["reference_best"])]
        after = lead["never_ahead_after"]
        last = "n/a" if unclassed(lead) else _num(lead["last_ahead"], 0)
        lines.append(f"| {label} | {windows} | {open_lead} | {power} | {last} | "
                     f"{'n/a' if after is None else f'{after:.0f}'} | {' | '.join(late)} | "
                     f"{_pval(lead['late_gap'])} | {' | '.join(best)} | "
                     f"{_pval(lead['best_gap'])} |")
    lines.append("")
    lines += [f"- {lead_sentence(label, ref, lead)}" for label, lead in sorted(s["lead"].items())]
    lines += ["", "Late FID: the mean FID over the last third of the steps every group "
              "evaluated; best FID: the mean of the seeds' best over the steps every group "
              "evaluated (gan_mn/report/lead.py).", ""]
    return lines


def verdict(gap: dict[str, Any] | None) -> str:
    """A difference in words: ahead or behind (robust, fragile) when it is a finding of
    its family, else what no difference shown leaves open."""
    if gap is None or gap["p"] is None:
        return "" if gap is None else "no test (a group with one seed)"
    if gap.get("finding"):
        side = "ahead" if gap["gap"] < 0 else "behind"
        return f"{side} ({'robust' if gap.get('robust') else 'fragile'})"
    lead = 0.0 if gap["ci_low"] is None else max(0.0, -gap["ci_low"])
    d = gap["detectable"]
    return (f"no difference shown (a lead of up to {lead:.2f} cannot be excluded; 80% "
            f"power at {d['fid']:.2f}, {d['seed_sds']:.1f} seed sds)")


def _pval(gap: dict[str, Any] | None) -> str:
    """A Welch p value for a table cell, with whether it is a finding of its family
    (robust, fragile); ``n/a`` where there is no test (one seed)."""
    if gap is None or gap["p"] is None:
        return "n/a"
    mark = "" if not gap.get("finding") else (", robust" if gap.get("robust") else ", fragile")
    return p_text(gap["p"]) + mark


def _ci(value: float | None, low: float | None, high: float | None,
        no_interval: bool = False) -> str:
    """``1.23x [0.90, 1.60]``; null bounds are infinite (a resample of the reference
    never reached the level), a speed-up of 0 means the group never did; the ratio alone
    where a group has one seed."""
    def num(x: float | None) -> str:
        return "∞" if x is None else f"{x:.2f}"
    if value is None:
        return "n/a"
    never = " (never)" if value == 0 else ""
    return f"{value:.2f}x{never}" + ("" if no_interval else f" [{num(low)}, {num(high)}]")


def _levels(report: Report) -> list[str]:
    """The speed-up per FID level (steps, and compute where cost ratios were given),
    the AUC, and a verdict per group counted over all levels."""
    s = report.summary
    ref = s["reference"]
    others = [k for k in sorted(s["groups"]) if k != ref]
    rv = s["groups"][ref]["speedup_vs_fid"]
    lines = ["## Speed-up at each FID level", ""]
    if not others:
        return [*lines, f"Only `{ref}` was given: no group to compare with it.", ""]
    lines += [f"Steps to reach FID <= X (seed-mean curve) and speed-up = `{ref}`'s steps / "
              "the group's, with a 95% percentile-bootstrap interval over seeds in brackets.",
              ""]
    lines.append(f"| FID <= X | `{ref}` steps | " + " | ".join(
        f"`{k}` steps | `{k}` speed-up" for k in others) + " |")
    lines.append("|---|---|" + "---|---|" * len(others))
    single = {k: min(len(s["groups"][k]["seeds"]), len(s["groups"][ref]["seeds"])) < 2
              for k in others}
    for i, x in enumerate(rv["thresholds"]):
        cells = []
        for k in others:
            v = s["groups"][k]["speedup_vs_fid"]
            cells += [_num(v["steps_mean_curve"][i], 0),
                      _ci(v["speedup"][i], v["ci_low"][i], v["ci_high"][i], single[k])]
        lines.append(f"| {x:.2f} | {_num(rv['steps_mean_curve'][i], 0)} | "
                     + " | ".join(cells) + " |")
    costed = [k for k in others if s["groups"][k]["cost_ratio"] is not None]
    if costed:
        lines += ["", "In compute: speed-up / the group's per-step cost ratio (measured by "
                  "`benchmarks/norm_overhead.py --runs` on one machine).", "",
                  "| FID <= X | " + " | ".join(
                      f"`{k}` (cost {s['groups'][k]['cost_ratio']:.2f}x)" for k in costed)
                  + " |", "|---|" + "---|" * len(costed)]
        for i, x in enumerate(rv["thresholds"]):
            cells = []
            for k in costed:
                v = s["groups"][k]["cost_adjusted_speedup_vs_fid"]
                cells.append(_ci(v["speedup"][i], v["ci_low"][i], v["ci_high"][i], single[k]))
            lines.append(f"| {x:.2f} | " + " | ".join(cells) + " |")
    lo, hi = s["groups"][ref]["auc"]["steps"]
    lines += ["", f"Mean FID over steps {lo:.0f}-{hi:.0f} (area under the curve / steps; "
              "lower is better) with Student's t 95% interval over seeds, and its difference "
              f"from `{ref}` with Welch's 95% interval and p value "
              "(robust or fragile when it is a finding of the report's family of tests of "
              "mean, late and best FID):", "",
              f"| group | mean FID over steps | per seed | minus `{ref}` [95%] | p | verdict |",
              "|---|---|---|---|---|---|"]
    for k in [ref, *others]:
        a = s["groups"][k]["auc"]
        if a["value"] is None:
            lines.append(f"| `{k}` | n/a | | | | |")
            continue
        d = s["groups"][k]["auc_vs_reference"]
        diff = "" if d is None else ci({**d, "value": d["gap"]})
        lines.append(f"| `{k}` | {ci(a)} | " + ", ".join(f"{v:.2f}" for v in a["per_seed"])
                     + f" | {diff} | {'' if d is None else _pval(d)} | {verdict(d)} |")
    lines += [""]
    for k in others:
        v = s["groups"][k]["speedup_vs_fid"]
        n = len(v["thresholds"])
        if min(len(s["groups"][k]["seeds"]), len(s["groups"][ref]["seeds"])) < 2:
            lines.append(f"- `{k}` vs `{ref}`: a group with one seed has no interval, so no "
                         "verdict (the ratios above are single runs).")
            continue
        faster = sum(lo is not None and lo > 1 for lo in v["ci_low"])
        slower = sum(hi is not None and hi < 1 for hi in v["ci_high"])
        lines.append(f"- `{k}` vs `{ref}` over {n} FID levels: faster (whole interval above 1) "
                     f"at {faster}, slower (whole interval below 1) at {slower}, not "
                     f"distinguishable at {n - faster - slower}.")
    return lines


def _headline(s: dict[str, Any], label: str) -> str:
    """The speed-up in steps to the reference's best FID with its bootstrap interval (the
    first FID level of the speed-up table is that best)."""
    if label == s["reference"]:
        return "1.00x"
    v = s["groups"][label]["speedup_vs_fid"]
    single = min(len(s["groups"][label]["seeds"]),
                 len(s["groups"][s["reference"]]["seeds"])) < 2
    return _ci(v["speedup"][0], v["ci_low"][0], v["ci_high"][0], single)


def _headline_sentence(s: dict[str, Any], label: str) -> str:
    """Whether a group reaches the reference's best FID in fewer steps: a claim only
    where the speed-up's whole interval is above (or below) 1."""
    ref = s["reference"]
    g = s["groups"][label]
    v = g["speedup_vs_fid"]
    if g["speedup_steps"] is None:
        return (f"`{label}`: its seed-mean FID never reached `{ref}`'s best, so no speed-up "
                "to that level is claimed.")
    low, high = v["ci_low"][0], v["ci_high"][0]
    if low is not None and low > 1:
        return (f"`{label}` reaches `{ref}`'s best FID in {g['acceleration_steps']:.0%} "
                f"fewer steps than `{ref}` (speed-up {_headline(s, label)}).")
    if high is not None and high < 1:
        return (f"`{label}` needs {abs(g['acceleration_steps']):.0%} more steps than "
                f"`{ref}` to reach its best FID (speed-up {_headline(s, label)}).")
    return (f"`{label}`: not distinguishable from `{ref}` in steps to `{ref}`'s best FID "
            f"(speed-up {_headline(s, label)}).")


def _fmt(stats: dict[str, Any], digits: int = 2) -> str:
    if stats["mean"] is None:
        done = [f"{v:.{digits}f}" if v is not None else "never" for v in stats["per_seed"]]
        return f"{stats['reached']}/{len(stats['per_seed'])} seeds ({', '.join(done)})"
    if stats["std"] is None:  # one seed
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _pm(mean: float, std: float) -> str:
    """``mean ± std``, or the mean alone for one seed (no spread to show)."""
    return f"{mean:.2f}" if not np.isfinite(std) else f"{mean:.2f} ± {std:.2f}"


def _num(value: float | None, digits: int) -> str:
    return "never" if value is None else f"{value:.{digits}f}"


def markdown(report: Report) -> str:
    """report.md: the table, the speed-up in the paper's terms, and the definitions."""
    s = report.summary
    ref = s["reference"]
    lines = [
        f"# Convergence: {', '.join(sorted(s['groups']))} (reference: {ref})",
        "",
        f"FID metric `{s['fid_key']}`; reference FID = best of `{ref}`'s seed-mean FID "
        f"curve = {s['reference_fid']:.2f}.",
        "",
        "| group | seeds | steps | best FID (mean ± std) | best IS | steps to reach ref. FID "
        "(mean curve; per seed) | minutes to reach (mean curve) | speed-up (steps) [95%] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in sorted(s["groups"], key=lambda k: (k != ref, k)):
        g = s["groups"][label]
        reach = g["steps_to_reach_reference"]
        per_seed = ", ".join("never" if v is None else f"{v:.0f}" for v in reach["per_seed"])
        reached = f"{_num(reach['mean_curve'], 0)}; {per_seed}"
        minutes = g["seconds_to_reach_reference"]["mean_curve"]
        lines.append(
            f"| {label} | {len(g['seeds'])} | {max(g['last_step'])} | {_fmt(g['best_fid'])} "
            f"| {_fmt(g['best_isc']) if 'best_isc' in g else 'n/a'} "
            f"| {reached} | {_num(None if minutes is None else minutes / 60, 1)} "
            f"| {_headline(s, label)} |")
    lines.append("")
    for label in sorted(s["groups"]):
        if label != ref:
            lines.append(f"- {_headline_sentence(s, label)}")
    lines += ["", *_levels(report), "", *_lead(report), *_inside(report)]
    lines += ["", f"Seed-mean `{s['fid_key']}` (± sample std over seeds, n - 1) by step:", ""]
    curves = {label: mean_curve(members, report.fid_key)
              for label, members in sorted(report.runs.items())}
    steps = sorted(set().union(*(c["steps"].tolist() for c in curves.values())))
    lines.append("| step | " + " | ".join(curves) + " |")
    lines.append("|---" * (len(curves) + 1) + "|")
    for step in steps:
        cells = []
        for c in curves.values():
            hit = [i for i, x in enumerate(c["steps"].tolist()) if x == step]
            cells.append(_pm(c["mean"][hit[0]], c["std"][hit[0]]) if hit else "")
        lines.append(f"| {step:.0f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Definitions: best FID is each seed's lowest evaluated FID (mean ± sample standard "
        "deviation over seeds, n - 1). "
        "The reference FID is the lowest point of the reference group's seed-mean FID curve. "
        "Steps to reach is the first evaluated step at or below it, for the seed-mean curve "
        "and per seed. Speed-up = the reference's steps (or training seconds) to reach / the "
        "group's, from the seed-mean curves; acceleration = 1 - 1/speed-up. The time columns "
        "are the runs' own training wall-clock: runs that shared CPU cores do not compare by "
        "it, so no verdict uses it (the cost ratio does). The FID levels, intervals and mean "
        "FID over steps are defined in gan_mn/report/speedup.py.",
        "",
        METHODS,
        "",
    ]
    return "\n".join(lines)


def _relative_runs(summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """The summary with each run's directory relative to ``out``: a report copied with its
    runs, or committed, names no machine's absolute path."""
    base = out.resolve()
    groups = {label: {**g, "runs": [os.path.relpath(Path(r).resolve(), base) for r in g["runs"]]}
              for label, g in summary["groups"].items()}
    return {**summary, "groups": groups}


def write_report(report: Report, out: Path) -> list[Path]:
    """Write every output into ``out``; each file appears complete or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    keys = {"fid": report.fid_key, "isc": report.isc_key}
    for name, key in keys.items():
        if key is None:
            continue
        for x, suffix in (("steps", "step"), ("seconds", "time")):
            path = out / f"{name}_vs_{suffix}.png"
            plot(report, key, x, path)
            written.append(path)
    path = out / "speedup_vs_fid.png"
    plot_speedup(report, path)
    written.append(path)
    if report.summary["lead"]:
        path = out / "fid_gap_vs_step.png"
        plot_lead(report, path)
        written.append(path)
    if "diagnostics" in report.summary:
        path = out / "mn_diagnostics_vs_step.png"
        plot_diagnostics(report, path)
        written.append(path)
    text = json.dumps(_relative_runs(report.summary, out), indent=2, allow_nan=False) + "\n"
    atomic_write(out / "report.json", lambda tmp: tmp.write_text(text))
    md = markdown(report)
    if report.metric_name != "FID":  # the report measured by another metric: its words
        md = md.replace("FID", report.metric_name)
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(md))
    return [*written, out / "report.json", out / "report.md"]
