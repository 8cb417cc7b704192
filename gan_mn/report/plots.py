"""The report's plots (matplotlib, headless), each PNG written atomically."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from gan_mn.files import atomic_write
from gan_mn.report.analysis import Report, mean_curve
from gan_mn.report.mixture_section import FIELDS


@contextmanager
def _figure(path: Path, legend_size: float | None = None, rows: int = 1) -> Iterator[Any]:
    """The axes of one plot, or of ``rows`` plots on one step axis (headless
    matplotlib); on exit the grids, the legend (on the first), and the PNG written
    atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(rows, 1, figsize=(6.4, 4.2 if rows == 1 else 2.8 * rows),
                             sharex=True, squeeze=False)
    axes = list(grid[:, 0])
    try:
        yield axes[0] if rows == 1 else axes
        for ax in axes:
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=legend_size)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)


def plot(report: Report, key: str, x: str, path: Path) -> None:
    """Mean over seeds with a +-1 sample-std band, one line per group, against step or
    seconds."""
    with _figure(path) as ax:
        _plot_curves(report, key, x, ax)


def _plot_curves(report: Report, key: str, x: str, ax: Any) -> None:
    for label, members in sorted(report.runs.items()):
        c = mean_curve(members, key)
        xs = c["steps"] if x == "steps" else c["seconds"] / 60.0
        ax.plot(xs, c["mean"], marker="o", ms=3, label=f"{label} (n={len(members)})")
        ax.fill_between(xs, c["mean"] - c["std"], c["mean"] + c["std"], alpha=0.2)
    if key == report.fid_key:
        ax.axhline(report.summary["reference_fid"], color="grey", ls="--", lw=1,
                   label=f"best {report.summary['reference']} (mean)")
    ax.set_xlabel("generator step" if x == "steps" else "training wall-clock (min)")
    ax.set_ylabel(key)


def plot_speedup(report: Report, path: Path) -> None:
    """Speed-up (steps) against the FID target, one line per group with its 95% band."""
    with _figure(path, legend_size=8) as ax:
        _plot_speedup(report, ax)


def _plot_speedup(report: Report, ax: Any) -> None:
    s = report.summary
    ax.axhline(1.0, color="grey", ls="--", lw=1, label=f"1.0: as fast as {s['reference']}")
    for label, g in sorted(s["groups"].items()):
        if label == s["reference"]:
            continue
        v = g["speedup_vs_fid"]
        xs = np.array(v["thresholds"])
        ys, lo, hi = (np.array([np.nan if x is None else x for x in v[k]], dtype=float)
                      for k in ("speedup", "ci_low", "ci_high"))
        line, = ax.plot(xs, ys, marker="o", ms=3,
                        label=f"{label} (n={len(g['seeds'])} seeds, 95% band)")
        top = np.nanmax(np.concatenate([ys, lo, [2.0]])) * 1.5
        ax.fill_between(xs, np.nan_to_num(lo, nan=0.0), np.nan_to_num(hi, nan=top,
                        posinf=top), color=line.get_color(), alpha=0.15)
    thresholds = s["groups"][s["reference"]]["speedup_vs_fid"]["thresholds"]
    if max(thresholds) > min(thresholds):  # (one evaluated step: a single FID level)
        ax.set_xlim(max(thresholds), min(thresholds))
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"{report.metric_name} target X ({s['fid_key']}; harder to the right)")
    ax.set_ylabel(f"speed-up in steps to {report.metric_name} <= X (vs {s['reference']})")


def plot_lead(report: Report, path: Path) -> None:
    """FID gap (group minus reference, seed-mean curves) against step, with its 95% Welch
    band, and 0 marked: below 0 the group is ahead."""
    with _figure(path, legend_size=8) as ax:
        _plot_lead(report, ax)


def _plot_lead(report: Report, ax: Any) -> None:
    s = report.summary
    ax.axhline(0.0, color="grey", ls="--", lw=1, label=f"0: no gap to {s['reference']}")
    for label, lead in sorted(s["lead"].items()):
        seeds = f"n={len(s['groups'][label]['seeds'])} seeds"
        band = "" if lead["confidence"] is None else f", {lead['confidence']:.1%} band"
        line, = ax.plot(lead["steps"], lead["gap"], marker="o", ms=3,
                        label=f"{label} ({seeds}{band})")
        if lead["confidence"] is not None:  # (None: a step without spread, no band)
            low, high = (np.array(lead[k], dtype=float) for k in ("ci_low", "ci_high"))
            ax.fill_between(lead["steps"], low, high, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("generator step")
    ax.set_ylabel(f"{report.metric_name} gap to {s['reference']} (below 0: ahead)")


def plot_diagnostics(report: Report, path: Path) -> None:
    """For each group with MN diagnostics: its FID gap to the reference, the effective
    number of components and the posterior entropy (means over its MN layers; seed mean
    with a +-1 sample-std band) on one step axis."""
    s = report.summary
    with _figure(path, legend_size=8, rows=3) as axes:
        for label, diag in sorted(s["diagnostics"].items()):
            lead = s["lead"].get(label)
            line, = axes[0].plot(lead["steps"] if lead else [], lead["gap"] if lead else [],
                                 marker="o", ms=3, label=label)
            for ax, field in zip(axes[1:], FIELDS, strict=True):
                mean = np.array(diag[field]["mean"])
                ax.plot(diag["steps"], mean, color=line.get_color(), label=label)
                if diag[field]["std"] is not None:
                    std = np.array(diag[field]["std"])
                    ax.fill_between(diag["steps"], mean - std, mean + std,
                                    color=line.get_color(), alpha=0.2)
        axes[0].axhline(0.0, color="grey", ls="--", lw=1)
        axes[0].set_ylabel(f"{report.metric_name} gap to {s['reference']}")
        axes[1].set_ylabel("effective components")
        axes[2].set_ylabel("posterior entropy / log K")
        axes[2].set_xlabel("generator step")
