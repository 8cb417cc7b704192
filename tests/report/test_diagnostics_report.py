"""`gan-mn compare` on runs that logged MN's diagnostics: the figure, report.json's
per-group curves and report.md's sentence; nothing for runs without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gan_mn.cli import main
from tests.helpers.report import FID, write_run

LAYERS = ("generator.net.1", "generator.net.4")


def _with_diagnostics(run: Path, effective: dict[int, float]) -> None:
    """Append the rows fit's diagnostics callback writes (own rows, at logging steps)."""
    keys = [f"mn/{layer}/{field}" for layer in LAYERS
            for field in ("effective_components", "posterior_entropy")]
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [line + "," * len(keys) for line in lines[1:]]
    for step, eff in effective.items():
        cells = dict.fromkeys(header, "") | {"step": str(step)}
        values = [eff, 0.5, eff + 0.2, 0.3]  # the layers' values; their means: eff + 0.1, 0.4
        rows.append(",".join([cells[h] for h in header] + [str(v) for v in values]))
    (run / "metrics.csv").write_text("\n".join([",".join(header + keys), *rows]) + "\n")


def test_the_diagnostics_figure_and_sentence(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, "bn", s, {100: 30.0 + s / 4, 200: 20.0 + s / 4,
                                          300: 10.0 + s / 4, 400: 8.0 + s / 4})
            for s in range(3)]
    for seed in range(3):  # ahead at 100-200 (10 lower), level after: the lead ends at 300
        off = seed / 2
        run = write_run(tmp_path, "mn-g", seed,
                        {100: 20.0 + off, 200: 10.0 + off, 300: 10.0 + off, 400: 8.0 + off})
        _with_diagnostics(run, {100: 2.5, 200: 2.5, 300: 1.5, 400: 1.5})
        runs.append(run)
    out = tmp_path / "out"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["fid_key"] == FID and list(report["diagnostics"]) == ["mn-g"]
    diag = report["diagnostics"]["mn-g"]
    assert diag["steps"] == [100, 200, 300, 400]
    assert diag["effective_components"]["mean"] == pytest.approx([2.6, 2.6, 1.6, 1.6])
    assert diag["posterior_entropy"]["mean"] == pytest.approx([0.4] * 4)
    assert (out / "mn_diagnostics_vs_step.png").stat().st_size > 0
    md = (out / "report.md").read_text()
    lead = report["lead"]["mn-g"]
    assert lead["never_ahead_after"] == 300, lead["classes"]
    assert ("`mn-g`: its lead ended at step 300; before it the mixture had 2.60 effective "
            "components and posterior entropy 0.40 on average, after it 1.60 and 0.40.") in md


def test_runs_without_diagnostics_get_no_section(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, label, s, {100: 20.0 + s, 200: 10.0 + s})
            for label in ("bn", "mn-g") for s in range(2)]
    out = tmp_path / "out"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    assert "diagnostics" not in json.loads((out / "report.json").read_text())
    assert "Inside MN" not in (out / "report.md").read_text()
    assert not (out / "mn_diagnostics_vs_step.png").exists()
