"""`gan-mn compare` on small synthetic run logs whose answers are known by construction."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gan_mn.cli import main
from gan_mn.report import build_report, read_run
from tests.helpers.report import FID, ISC, write_run

STEPS = (100, 200, 300, 400)


def study(root: Path) -> list[Path]:
    """bn bottoms out at 30 (mean curve) at step 400; mn-g goes below 30 at step 200
    (both seeds), and is 1.5x slower per step."""
    return [
        write_run(root, "bn", 0, dict(zip(STEPS, (50, 40, 35, 31), strict=True))),
        write_run(root, "bn", 1, dict(zip(STEPS, (52, 42, 33, 29), strict=True))),
        write_run(root, "mn-g", 0, dict(zip(STEPS, (40, 30, 25, 24), strict=True)), 1.5),
        write_run(root, "mn-g", 1, dict(zip(STEPS, (42, 28, 27, 26), strict=True)), 1.5),
    ]


def test_known_answers(tmp_path: Path) -> None:
    report = build_report([read_run(r) for r in study(tmp_path)])
    s = report.summary
    assert s["reference"] == "bn" and s["fid_key"] == FID and s["isc_key"] == ISC
    assert s["reference_fid"] == pytest.approx(30.0)  # mean curve at 400: (31 + 29) / 2
    bn, mn = s["groups"]["bn"], s["groups"]["mn-g"]
    assert bn["best_fid"]["per_seed"] == [31, 29] and bn["best_fid"]["mean"] == 30
    assert mn["best_fid"]["mean"] == pytest.approx(25.0)
    assert mn["best_fid"]["std"] == pytest.approx(2 ** 0.5)  # sample std of 24 and 26
    # bn seed 0 never gets to 30; seed 1 does at 400; the mean curve at 400.
    assert bn["steps_to_reach_reference"]["per_seed"] == [None, 400]
    assert bn["steps_to_reach_reference"]["mean"] is None
    assert bn["steps_to_reach_reference"]["mean_curve"] == 400
    assert mn["steps_to_reach_reference"]["per_seed"] == [200, 200]
    assert mn["steps_to_reach_reference"]["mean_curve"] == 200  # mean (30+28)/2 = 29
    assert mn["speedup_steps"] == pytest.approx(2.0)
    assert mn["acceleration_steps"] == pytest.approx(0.5)
    # Seconds come from time/train_seconds, interpolated: bn 400 s, mn-g 200 * 1.5 = 300 s.
    assert bn["seconds_to_reach_reference"]["mean_curve"] == pytest.approx(400)
    assert mn["seconds_to_reach_reference"]["mean_curve"] == pytest.approx(300)
    assert mn["speedup_seconds"] == pytest.approx(400 / 300)
    assert mn["best_isc"]["mean"] == pytest.approx(10 - 2.5)


def test_group_that_never_reaches(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, "bn", 0, {100: 40, 200: 20}),
            write_run(tmp_path, "mn-g", 0, {100: 45, 200: 25})]
    s = build_report([read_run(r) for r in runs]).summary
    mn = s["groups"]["mn-g"]
    assert mn["steps_to_reach_reference"] == {
        "mean": None, "std": None, "per_seed": [None], "reached": 0, "mean_curve": None}
    assert mn["speedup_steps"] is None


def test_runs_with_one_label_but_different_settings_are_not_pooled(tmp_path: Path) -> None:
    """K=3 and K=5 runs both labelled mn-g are not seeds of one group."""
    runs = [write_run(tmp_path / "a", "mn-g", 0, {100: 40}),
            write_run(tmp_path / "b", "mn-g", 1, {100: 41})]
    for run, k in zip(runs, (3, 5), strict=True):
        config = run / "config.yaml"
        config.write_text(config.read_text() + f"  norm_kwargs:\n    mn:\n"
                          f"      num_components: {k}\n      kernels: eager\n")
    with pytest.raises(ValueError, match=r"both labelled 'mn-g' but differ in "
                                         r"model.norm_kwargs.mn.num_components 3 vs 5"):
        build_report([read_run(r) for r in runs])
    # the kernel choice changes no result: those runs do pool
    (runs[1] / "config.yaml").write_text((runs[1] / "config.yaml").read_text()
                                         .replace("num_components: 5", "num_components: 3")
                                         .replace("kernels: eager", "kernels: inductor"))
    assert build_report([read_run(r) for r in runs]).summary["groups"]["mn-g"]["seeds"] == [0, 1]


def test_one_seed_gets_no_verdict(tmp_path: Path) -> None:
    from gan_mn.report.render import markdown

    runs = [write_run(tmp_path, "bn", 0, {100: 40, 200: 20}),
            write_run(tmp_path, "mn-g", 0, {100: 30, 200: 25})]
    md = markdown(build_report([read_run(r) for r in runs]))
    assert "`mn-g` vs `bn`: a group with one seed has no interval, so no verdict" in md
    assert "faster (whole interval above 1)" not in md


def test_resumed_rows_keep_the_last_value(tmp_path: Path) -> None:
    run = write_run(tmp_path, "bn", 0, {100: 40, 200: 30},
                    extra_rows=f"35,,,{200},\n")  # a resumed run logged step 200 again
    steps, fid = read_run(run).curve(FID)
    assert list(steps) == [100, 200] and list(fid) == [40, 35]


def test_cli_writes_every_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = study(tmp_path / "runs")
    out = tmp_path / "report"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    names = {"fid_vs_step.png", "fid_vs_time.png", "isc_vs_step.png", "isc_vs_time.png",
             "speedup_vs_fid.png", "fid_gap_vs_step.png", "report.json", "report.md"}
    assert {p.name for p in out.iterdir()} == names
    assert all((out / n).stat().st_size > 0 for n in names)
    assert (out / "fid_vs_step.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "report.json").read_text())
    assert summary["groups"]["mn-g"]["speedup_steps"] == pytest.approx(2.0)
    md = (out / "report.md").read_text()
    assert "| mn-g | 2 | 400 | 25.00 ± 1.41 |" in md  # sample std (n - 1) of 24 and 26
    assert "`mn-g` reaches `bn`'s best FID in 50% fewer steps" in md
    assert "| 200 | 41.00 ± 1.41 | 29.00 ± 1.41 |" in md  # seed means by step
    assert str(out / "report.md") in capsys.readouterr().out


LINEAR = (100, 200, 300, 400)


def test_speedup_at_every_fid_level(tmp_path: Path) -> None:
    """Identical seeds: the intervals collapse onto the known ratios."""
    runs = [write_run(tmp_path, "bn", s, dict(zip(LINEAR, (50, 40, 30, 20), strict=True)))
            for s in (0, 1)]
    runs += [write_run(tmp_path, "mn-g", s, dict(zip(LINEAR, (40, 30, 20, 15), strict=True)))
             for s in (0, 1)]
    s = build_report([read_run(r) for r in runs], num_thresholds=4,
                     cost_ratios={"mn-g": 1.5}).summary
    mn, bn = s["groups"]["mn-g"], s["groups"]["bn"]
    v = mn["speedup_vs_fid"]
    assert v["thresholds"] == pytest.approx([20, 30, 40, 50])
    assert bn["speedup_vs_fid"]["steps_mean_curve"] == [400, 300, 200, 100]
    assert v["steps_mean_curve"] == [300, 200, 100, 100]
    assert v["steps_per_seed"] == [[300, 200, 100, 100]] * 2
    expected = [400 / 300, 1.5, 2.0, 1.0]
    assert v["speedup"] == pytest.approx(expected)
    assert v["ci_low"] == pytest.approx(expected) and v["ci_high"] == pytest.approx(expected)
    assert bn["speedup_vs_fid"]["speedup"] == pytest.approx([1.0] * 4)
    # mean FID over steps 100-400 by trapezoids: bn 35; mn-g (3500 + 2500 + 1750) / 300
    assert bn["auc"]["value"] == pytest.approx(35.0)
    assert mn["auc"]["value"] == pytest.approx(7750 / 300)
    assert mn["auc"]["ci_low"] == pytest.approx(7750 / 300)
    assert mn["cost_ratio"] == 1.5 and bn["cost_ratio"] == 1.0
    adjusted = mn["cost_adjusted_speedup_vs_fid"]
    assert adjusted["speedup"] == pytest.approx([x / 1.5 for x in expected])


def test_speedup_intervals_cover_the_seed_spread(tmp_path: Path) -> None:
    """Different seeds: a real interval around the estimate; a level never reached is 0."""
    bn = [(50, 40, 30, 20), (52, 44, 28, 22), (48, 38, 32, 18)]
    mn = [(40, 30, 25, 24), (45, 28, 26, 25), (38, 33, 24, 23)]
    runs = [write_run(tmp_path, "bn", i, dict(zip(LINEAR, f, strict=True)))
            for i, f in enumerate(bn)]
    runs += [write_run(tmp_path, "mn-g", i, dict(zip(LINEAR, f, strict=True)))
             for i, f in enumerate(mn)]
    v = build_report([read_run(r) for r in runs], num_thresholds=5).summary[
        "groups"]["mn-g"]["speedup_vs_fid"]
    assert v["thresholds"][0] == pytest.approx(20.0)
    assert v["speedup"][0] == 0.0 and v["steps_mean_curve"][0] is None  # mn-g stalls at 24
    for est, lo, hi in zip(v["speedup"][1:], v["ci_low"][1:], v["ci_high"][1:], strict=True):
        assert lo <= est <= hi
    assert any(lo < hi for lo, hi in zip(v["ci_low"], v["ci_high"], strict=True))
    again = build_report([read_run(r) for r in runs], num_thresholds=5).summary
    assert again["groups"]["mn-g"]["speedup_vs_fid"] == v  # a fixed bootstrap stream


def test_a_groups_intervals_do_not_depend_on_the_other_groups(tmp_path: Path) -> None:
    """Each group's bootstrap has its own random stream: adding a run to another group
    (or a new group, here one that sorts before it) leaves its intervals as they were."""
    bn = [(50, 40, 30, 20), (52, 44, 28, 22), (48, 38, 32, 18)]
    # 8 seeds: enough distinct resamples that another random stream moves the percentiles
    mn = [(40 + i, 30 + (3 * i) % 7 * 1.3, 25 + (5 * i) % 4 * 0.7, 24 - i / 3) for i in range(8)]
    runs = [write_run(tmp_path, "bn", i, dict(zip(LINEAR, f, strict=True)))
            for i, f in enumerate(bn)]
    runs += [write_run(tmp_path, "mn-g", i, dict(zip(LINEAR, f, strict=True)))
             for i, f in enumerate(mn)]
    others = [write_run(tmp_path, "mn-d", i, dict(zip(LINEAR, f, strict=True)))
              for i, f in enumerate([(45, 35, 30, 25), (47, 37, 29, 21), (44, 39, 27, 22)])]

    def mn_g(paths: list[Path]) -> dict:
        g = build_report([read_run(r) for r in paths], num_thresholds=5).summary["groups"]
        return {k: g["mn-g"][k] for k in ("speedup_vs_fid", "auc")}

    alone = mn_g(runs)
    assert mn_g(runs + others[:2]) == alone
    assert mn_g(runs + others) == alone


def test_cost_ratios_from_the_benchmark_json(tmp_path: Path) -> None:
    runs = study(tmp_path / "runs")
    cost = tmp_path / "cost.json"
    cost.write_text(json.dumps({"ratios": {"bn": 1.0, "mn-g": 1.25}}))
    out = tmp_path / "report"
    assert main(["compare", *map(str, runs), "--out", str(out), "--cost", str(cost)]) == 0
    summary = json.loads((out / "report.json").read_text())
    assert summary["groups"]["mn-g"]["cost_ratio"] == 1.25
    md = (out / "report.md").read_text()
    assert "`mn-g` (cost 1.25x)" in md and "## Speed-up at each FID level" in md


@pytest.mark.parametrize("case, message", [
    ("bad_cost_ratio", "expected LABEL=RATIO"),
    ("unknown_cost_label", "cost ratio given for resnet"),
    ("no_csv", "no metrics.csv"),
    ("wandb_only", "wandb run, which compare does not read"),
    ("no_config", "no config.yaml"),
    ("duplicate", "are both bn seed 0"),
    ("no_fid", "it logged no FID"),
    ("bad_reference", "reference label 'resnet'"),
    ("zero_cost", "cost ratios must be positive and finite, got bn=0.0"),
    ("negative_cost", "cost ratios must be positive and finite, got bn=-1.0"),
    ("nan_cost", "cost ratios must be positive and finite, got bn=nan"),
    ("bad_thresholds", "argument --thresholds: invalid int value: 'many'"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               case: str, message: str) -> None:
    good = write_run(tmp_path / "a", "bn", 0, {100: 40})
    args = [str(good)]
    if case in ("no_csv", "wandb_only"):
        bare = tmp_path / "bare"
        (bare / ("wandb" if case == "wandb_only" else "x")).mkdir(parents=True)
        args = [str(bare)]
    elif case == "no_config":
        (good / "config.yaml").unlink()
    elif case == "duplicate":
        args.append(str(write_run(tmp_path / "b", "bn", 0, {100: 41})))
    elif case == "no_fid":
        (good / "metrics.csv").write_text("loss/d,step\n0.5,50\n")
    out = tmp_path / "out"
    cost = tmp_path / "cost.json"
    for name, value in (("zero", "0"), ("negative", "-1"), ("nan", "NaN")):
        if case == f"{name}_cost":
            cost.write_text('{"ratios": {"bn": ' + value + "}}")
    extra = {"bad_reference": ["--reference", "resnet"],
             "bad_cost_ratio": ["--cost-ratio", "bn=fast"],
             "unknown_cost_label": ["--cost-ratio", "resnet=2"],
             "bad_thresholds": ["--thresholds", "many"]}.get(case, [])
    if case.endswith("_cost"):
        extra = ["--cost", str(cost)]
    assert main(["compare", *args, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()  # nothing half-written


def test_a_row_cut_short_is_left_out_with_a_warning(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A killed run's half-written last row ("6" of "600") is not an evaluation at step 6:
    the report is the one without it."""
    whole = study(tmp_path / "whole")
    cut = study(tmp_path / "cut")
    with open(cut[0] / "metrics.csv", "a") as f:
        f.write(",29.5,7,,6")  # no newline: the write stopped there
    with open(cut[1] / "metrics.csv", "a") as f:
        f.write(",28\n")  # fewer fields than the header
    expected = build_report([read_run(r) for r in whole]).summary
    report = build_report([read_run(r) for r in cut]).summary
    assert json.dumps(report).replace("/cut/", "/whole/") == json.dumps(expected)
    assert f"{cut[0] / 'metrics.csv'}: line 14 is not a whole row" in caplog.text
    assert f"{cut[1] / 'metrics.csv'}: line 14 is not a whole row" in caplog.text


def test_runs_of_one_label_on_other_data_are_not_pooled(tmp_path: Path) -> None:
    a = write_run(tmp_path, "bn", 0, {100: 40})
    b = write_run(tmp_path, "bn", 1, {100: 41})
    for run, root in ((a, "/data/cifar-subset"), (b, "/data/other-images")):
        with open(run / "config.yaml", "a") as f:
            f.write(f"data:\n  dataset: imagefolder\n  root: {root}\n")
    with pytest.raises(ValueError, match=re.escape(
            "differ in data.root '/data/cifar-subset' vs '/data/other-images'")):
        build_report([read_run(a), read_run(b)])


def test_metric_columns_chosen_by_flag(tmp_path: Path) -> None:
    """Runs logging two FID columns (two extractors): compare asks which, and takes the
    one named; --isc-key likewise."""
    runs = []
    for seed in (0, 1):
        run = write_run(tmp_path, "bn", seed, {100: 40, 200: 30})
        text = (run / "metrics.csv").read_text().splitlines()
        rows = [text[0] + ",fid2k_other,isc2k_other"] + [
            line + (",5,3" if line.startswith(",") else ",,") for line in text[1:]]
        (run / "metrics.csv").write_text("\n".join(rows) + "\n")
        runs.append(read_run(run))
    with pytest.raises(ValueError, match=r"several FID columns .*--metric"):
        build_report(runs)
    report = build_report(runs, fid_key="fid2k_other", isc_key="isc2k_other").summary
    assert report["fid_key"] == "fid2k_other" and report["isc_key"] == "isc2k_other"
    assert report["groups"]["bn"]["best_fid"]["mean"] == 5.0
    assert report["groups"]["bn"]["best_isc"]["mean"] == 3.0


def test_runs_without_a_time_column(tmp_path: Path) -> None:
    """(Trained with the CSV logger but no time logged): no time, steps still compare."""
    runs = study(tmp_path)
    for run in runs:
        lines = (run / "metrics.csv").read_text().splitlines()
        (run / "metrics.csv").write_text("\n".join(
            ",".join(line.split(",")[:-1]) for line in lines) + "\n")
    report = build_report([read_run(r) for r in runs]).summary
    mn = report["groups"]["mn-g"]
    assert mn["speedup_steps"] == pytest.approx(2.0) and mn["speedup_seconds"] is None
    assert mn["seconds_to_reach_reference"]["mean_curve"] is None


def test_one_seed_shows_no_spread(tmp_path: Path) -> None:
    out = tmp_path / "out"
    runs = [write_run(tmp_path, "bn", 0, {100: 40, 200: 30}),
            write_run(tmp_path, "mn-g", 0, {100: 35, 200: 28})]
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| mn-g | 1 | 200 | 28.00 |" in md and "| 200 | 30.00 | 28.00 |" in md
    # a point interval's sign is no verdict: no step is ahead (the gap is -5 and -2)
    lead = json.loads((out / "report.json").read_text())["lead"]["mn-g"]
    assert lead["classes"] == ["no interval"] * 2 and lead["last_ahead"] is None
    assert ("`mn-g` against `bn`: a group with one seed has no interval, so no step is "
            "classed ahead, behind or without a difference; late FID") in md
    assert "ahead from" not in md and "ahead at" not in md and "; never ahead" not in md
    assert "No interval: a group has one seed, so no step is classed." in md
    assert "| mn-g | no interval 100-200 | n/a | n/a | n/a | n/a |" in md


def test_max_step_compares_runs_of_unequal_length_over_the_steps_they_share(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(A study stopped early: bn reached 400, mn-g 300.) Without --max-step they are
    refused, naming it; --max-step 300 reports what runs that all stopped at 300 would:
    bn's best is not taken from a step mn-g never saw."""
    bn = ((50, 40, 35, 31), (52, 42, 33, 29))
    mn = ((40, 30, 25), (42, 28, 27))

    def write(root: Path, last: int) -> list[Path]:
        return ([write_run(root, "bn", seed, {s: v for s, v in zip(STEPS, f, strict=True)
                                             if s <= last}) for seed, f in enumerate(bn)]
                + [write_run(root, "mn-g", seed, dict(zip(STEPS, f, strict=False)), 1.5)
                   for seed, f in enumerate(mn)])

    partial, short = write(tmp_path / "partial", 400), write(tmp_path / "short", 300)
    out, expected = tmp_path / "out", tmp_path / "expected"
    assert main(["compare", *map(str, partial), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "at 300: mn-g-seed0, mn-g-seed1; at 400: bn-seed0, bn-seed1" in err, err
    assert err.endswith("--max-step 300") and not out.exists()
    assert main(["compare", *map(str, partial), "--out", str(out), "--max-step", "300"]) == 0
    assert main(["compare", *map(str, short), "--out", str(expected)]) == 0
    mine, theirs = (json.loads((d / "report.json").read_text()) for d in (out, expected))
    assert json.dumps(mine).replace("/partial/", "/short/") == json.dumps(theirs)
    assert mine["reference_fid"] == pytest.approx(34.0)  # bn's mean curve at 300


def test_class_accuracy_is_compared_as_class_error(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``--metric cacc...``: the report is built on the class error (1 - accuracy), lower
    is better as for FID, and says so in its words; intra-class FID is read as it is;
    IS is refused (neither a distance nor an error)."""
    runs = []
    for label, accuracy in (("cbn", (0.2, 0.4)), ("cmn-g-k5", (0.3, 0.6))):
        for seed in (0, 1):
            run = write_run(tmp_path / "runs", label, seed, {100: 40, 200: 30})
            text = (run / "metrics.csv").read_text().splitlines()
            values = iter(accuracy)
            rows = [text[0] + ",cacc2k_cifar10-proxy,ifid2k_train"] + [
                line + (",," if line.startswith(",")  # (training rows: no FID)
                        else f",{next(values) + seed / 100},{50 - seed}") for line in text[1:]]
            (run / "metrics.csv").write_text("\n".join(rows) + "\n")
            runs.append(str(run))
    out = tmp_path / "class"
    assert main(["compare", *runs, "--out", str(out), "--reference", "cbn", "--metric",
                 "cacc2k_cifar10-proxy"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["metric_name"] == "class error" and report["fid_key"] == "cerr2k_cifar10-proxy"
    assert report["groups"]["cmn-g-k5"]["best_fid"]["mean"] == pytest.approx(1 - 0.605)
    text = (out / "report.md").read_text()
    assert "best class error" in text and "FID" not in text
    assert main(["compare", *runs, "--out", str(tmp_path / "ifid"), "--reference", "cbn",
                 "--metric", "ifid2k_train"]) == 0
    assert "intra-class FID" in (tmp_path / "ifid" / "report.md").read_text()
    capsys.readouterr()
    assert main(["compare", *runs, "--out", str(tmp_path / "isc"), "--metric", "isc2k"]) == 2
    assert "--metric isc2k: the report needs a distance or an error" in \
        capsys.readouterr().err
    assert not (tmp_path / "isc").exists()


def test_plan_prints_the_seeds_each_comparison_needs(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``--plan``: per step and for the mean FID over steps, the pooled seed spread, the
    observed gap and the seeds per group for leads of 1 and 2 FID and for that gap; it
    writes nothing, and a group of one seed has no spread to plan from."""
    import numpy as np

    from gan_mn.report.stats import pooled_sd, seeds_needed

    bn = [{100: 40.0, 200: 30.0}, {100: 42.0, 200: 31.0}, {100: 41.0, 200: 29.5}]
    mn = [{100: 38.0, 200: 29.0}, {100: 39.5, 200: 30.5}, {100: 37.0, 200: 28.0}]
    runs = [str(write_run(tmp_path / "runs", "bn", s, f)) for s, f in enumerate(bn)]
    runs += [str(write_run(tmp_path / "runs", "mn-g", s, f)) for s, f in enumerate(mn)]
    assert main(["compare", *runs, "--plan"]) == 0
    text = capsys.readouterr().out
    a = np.array([[f[100]] for f in mn])
    b = np.array([[f[100]] for f in bn])
    sd, gap = float(pooled_sd(a, b)[0]), float(a.mean() - b.mean())
    row = (f"| 100 | {sd:.2f} | {gap:+.2f} | {seeds_needed(1.0, sd)} | "
           f"{seeds_needed(2.0, sd)} | {seeds_needed(gap, sd)} |")
    assert "## `mn-g`" in text and row in text and "| mean over steps |" in text
    assert not any(p.name in ("report.md", "report.json") for p in tmp_path.rglob("*"))
    one = runs[:3] + runs[3:4]
    assert main(["compare", *one, "--plan"]) == 2
    assert "--plan needs at least two seeds in every group" in capsys.readouterr().err
