"""`gan-mn compare`'s lead analysis on synthetic runs whose answers are known by
construction: identical seeds, crossing curves, never ahead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gan_mn.cli import main
from gan_mn.report import build_report, read_run
from tests.helpers.report import write_run

LEAD_STEPS = (100, 200, 300, 400, 500, 600)


def _lead_study(root: Path, group: list[tuple[float, ...]]) -> dict:
    """bn's three seeds against ``group``'s (one FID per LEAD_STEPS each); the lead."""
    bn = [(50, 40, 30, 25, 22, 20), (51, 41, 31, 26, 23, 21), (49, 39, 29, 24, 21, 19)]
    runs = [write_run(root, "bn", s, dict(zip(LEAD_STEPS, f, strict=True)))
            for s, f in enumerate(bn)]
    runs += [write_run(root, "mn-g", s, dict(zip(LEAD_STEPS, f, strict=True)))
             for s, f in enumerate(group)]
    return build_report([read_run(r) for r in runs]).summary["lead"]["mn-g"]


def test_lead_of_identical_runs_is_level_everywhere(tmp_path: Path) -> None:
    same = [(50, 40, 30, 25, 22, 20)] * 3  # every seed alike: no resample moves the mean
    bn_like = _lead_study(tmp_path, same)
    assert bn_like["classes"] == ["level"] * 6
    assert bn_like["last_ahead"] is None and bn_like["never_ahead_after"] is None
    assert bn_like["windows"] == [{"class": "level", "from": 100.0, "to": 600.0,
                                   "robust": None}]


def test_lead_of_crossing_curves_ends_where_they_cross(tmp_path: Path) -> None:
    """10 FID better up to step 300, 10 worse from 400: ahead, then behind; the late
    window (the last third, steps 433-600) and the best FID say which ends better."""
    crossing = [(40, 30, 20, 35, 32, 30), (41, 31, 21, 36, 33, 31), (39, 29, 19, 34, 31, 29)]
    lead = _lead_study(tmp_path, crossing)
    assert lead["classes"] == ["ahead"] * 3 + ["behind"] * 3
    assert lead["gap"] == pytest.approx([-10, -10, -10, 10, 10, 10])
    assert (lead["last_ahead"], lead["never_ahead_after"]) == (300, 400)
    assert [w["class"] for w in lead["windows"]] == ["ahead", "behind"]
    assert lead["late_steps"] == pytest.approx([1300 / 3, 600])
    assert lead["late"]["value"] > lead["reference_late"]["value"]
    assert lead["best"]["value"] == pytest.approx(20.0)  # (20 + 21 + 19) / 3, at step 300
    assert lead["reference_best"]["value"] == pytest.approx(20.0)


def test_lead_never_ahead_and_the_report_files(tmp_path: Path) -> None:
    worse = [(60, 50, 40, 35, 32, 30), (61, 51, 41, 36, 33, 31), (59, 49, 39, 34, 31, 29)]
    runs = tmp_path / "runs"
    lead = _lead_study(runs, worse)
    assert lead["classes"] == ["behind"] * 6
    assert lead["last_ahead"] is None and lead["never_ahead_after"] is None
    out = tmp_path / "report"
    assert main(["compare", *map(str, sorted(runs.iterdir())), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["lead"]["mn-g"]["windows"] == [{"class": "behind", "from": 100.0,
                                                   "to": 600.0, "robust": True}]
    text = (out / "report.md").read_text()
    assert "`mn-g` against `bn`: behind from step 100 to 600 (robust); never ahead" in text
    assert (out / "fid_gap_vs_step.png").stat().st_size > 0
