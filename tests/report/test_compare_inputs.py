"""What `gan-mn compare` says about inputs it cannot use as given, through the entry
point: the run and the real cause in one line (exit 2, nothing written), which reference
it took, and well-formed output for one group or one evaluated step."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from gan_mn.cli import main
from tests.helpers.cli import error
from tests.helpers.report import FID, write_run


def _compare(*args: str) -> int:
    return main(["compare", *args])


def test_out_inside_a_run_directory_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    runs = [write_run(tmp_path, "bn", s, {100: 20.0, 200: 10.0 + s}) for s in range(2)]
    before = sorted(p.name for p in runs[0].iterdir())
    assert _compare(*map(str, runs), "--out", str(runs[0] / "report")) == 2
    assert "is inside the run directory" in error(capsys)
    assert sorted(p.name for p in runs[0].iterdir()) == before


@pytest.mark.parametrize(("case", "message"), [
    ("header only", "metrics.csv has no rows"),
    ("no fid", "it logged no FID (trained with --metrics.every_n_steps 0"),
    ("max step", "its first FID evaluation is at step 100, after --max-step 50"),
])
def test_a_run_without_fid_is_named_with_the_cause(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   case: str, message: str) -> None:
    good = write_run(tmp_path, "bn", 0, {100: 20.0, 200: 10.0})
    bad = write_run(tmp_path, "mn-g", 0, {100: 20.0, 200: 10.0})
    if case == "header only":
        (bad / "metrics.csv").write_text(f"{FID},step\n")
    elif case == "no fid":
        (bad / "metrics.csv").write_text("loss/d,step\n0.5,50\n")
    extra = ["--max-step", "50"] if case == "max step" else []
    assert _compare(str(good), str(bad), "--out", str(tmp_path / "out"), *extra) == 2
    line = error(capsys)
    assert str(bad if case != "max step" else good) in line and message in line
    assert not (tmp_path / "out").exists()


def test_without_bn_the_reference_taken_is_named(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    runs = [write_run(tmp_path, label, s, {100: 20.0, 200: 10.0 + s})
            for label in ("sngan-bn", "sngan-mn-g") for s in range(2)]
    assert _compare(*map(str, runs), "--out", str(tmp_path / "out")) == 0
    assert "no `bn` runs, so `sngan-bn` is the reference" in capsys.readouterr().err


def test_one_group_and_one_step_give_well_formed_output(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, "bn", s, {100: 10.0 + s}) for s in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's identical-limits warning leaked
        assert _compare(*map(str, runs), "--out", str(tmp_path / "out")) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Only `bn` was given: no group to compare with it." in md
    table: list[str] = []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:  # every row of a table has the header's number of cells
            assert len({row.count("|") for row in table}) == 1, table
        table = []


def test_one_data_folder_named_relative_and_absolute_is_one_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "images"
    data.mkdir()
    monkeypatch.chdir(tmp_path)
    runs = []
    for seed, root in enumerate(("images", str(data))):
        run = write_run(tmp_path / "runs", "bn", seed, {100: 20.0, 200: 10.0 + seed})
        with open(run / "config.yaml", "a") as f:
            f.write(f"data:\n  dataset: imagefolder\n  root: {root}\n")
        runs.append(run)
    assert _compare(*map(str, runs), "--out", str(tmp_path / "out")) == 0


def test_help_shows_defaults_the_offline_extractor_and_no_markup(
        capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("evaluate", "compare"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    text = capsys.readouterr().out
    assert "(default: 10000)" in text and "cifar10-proxy is built in" in text
    assert "``" not in text


@pytest.mark.parametrize("hole", ["missing", "nan", "inf"])
def test_a_seed_missing_a_middle_evaluation_is_compared_over_what_it_has(
        tmp_path: Path, hole: str) -> None:
    """One seed with no finite FID at step 200 (no row, or NaN/inf logged): the report is
    built; that step is left out of its group's curves, the other steps are compared."""
    for seed in range(3):
        write_run(tmp_path, "bn", seed, {100: 30 + seed, 200: 25 + seed, 300: 20 + seed})
        fids = {100: 29 + seed, 200: 24 + seed, 300: 19.5 + seed}
        if seed == 1:
            if hole == "missing":
                del fids[200]
            else:
                fids[200] = float(hole)
        write_run(tmp_path, "mn-g", seed, fids)
    assert main(["compare", *map(str, sorted(tmp_path.glob("*-seed*"))), "--out",
                 str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["groups"]["mn-g"]


def test_seeds_with_no_spread_get_no_verdict(tmp_path: Path) -> None:
    """Identical curves within each group: Welch's test is undefined, so no step is
    classed ahead or behind, and no p value is printed as < 0.001."""
    for seed in range(3):
        write_run(tmp_path, "bn", seed, {100: 30, 200: 25, 300: 20})
        write_run(tmp_path, "mn-g", seed, {100: 25, 200: 20, 300: 15})
    assert main(["compare", *map(str, sorted(tmp_path.glob("*-seed*"))), "--out",
                 str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "ahead from" not in text and "p < 0.001" not in text and "<0.001" not in text
    assert "`mn-g` against `bn`: no interval from step 100 to 300; late FID" in text


def test_a_non_finite_last_evaluation_is_named(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for seed in range(2):
        write_run(tmp_path, "bn", seed, {100: 30, 200: 25 + seed})
        write_run(tmp_path, "mn-g", seed, {100: 29, 200: float("nan") if seed else 24})
    assert main(["compare", *map(str, sorted(tmp_path.glob("*-seed*"))), "--out",
                 str(tmp_path / "out")]) == 2
    assert (f"{tmp_path / 'mn-g-seed1'}: {FID} is nan at step 200, its last evaluation"
            in error(capsys))
