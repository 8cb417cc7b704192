"""``benchmarks/gpu_check.py --device cpu``: the GPU window's command runs here too (Triton
interpreted, small shapes), so it cannot rot between GPU windows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # real processes
def test_gpu_check_runs_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    # run as its docstring says: a script, benchmarks/ first on sys.path, from elsewhere
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"),
                           "--device", "cpu", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["passed"]
    rows = report["results"]
    sections = {r["section"] for r in rows}
    assert sections == {"numerics", "layers", "counts", "syncs", "graph", "timings", "targets",
                        "compile"}
    numerics = [r for r in rows if r["section"] == "numerics"]
    assert len(numerics) >= 12 and all(r["ok"] for r in numerics)
    names = " ".join(r["name"] for r in numerics)
    for kind in ("K=1", "K=8", "em2", "CL", "mom=None", "affine=False", "given-tau"):
        assert kind in names
    layers = [r for r in rows if r["section"] == "layers"]
    assert len(layers) == 4 and all(r["ok"] for r in layers)
    assert any("vs BatchNorm2d" in r["name"] for r in layers)
    launches = next(r for r in rows if "launches (interpreted)" in r["name"])
    assert launches["ok"] and launches["value"] <= 7
    assert [r["value"] for r in rows if r["section"] == "syncs"] == ["needs CUDA"]
    # the graph-safe step of every family, run eagerly on its fixed buffers: exact
    graph = [r for r in rows if r["section"] == "graph"]
    assert [r["name"].split(" ")[0] for r in graph] == ["dcgan", "sngan", "resnet"]
    assert all(r["ok"] and r["value"] == 0 for r in graph)
    # the Triton layer's host work, recorded (not run) on any device
    work = [r for r in rows if r["name"].startswith("MN triton layer") and "step" in r["name"]]
    assert len(work) == 3 and all(r["ok"] for r in work)
    # GPU targets say nothing on the CPU; the host-time one is the CPU's own measurement
    targets = [r for r in rows if r["section"] == "targets"]
    host = [r for r in targets if r["name"].startswith("host time")]
    assert len(host) == 1 and host[0]["note"] in ("met", "NOT met")
    assert all(r["note"].endswith("no verdict on the CPU") for r in targets if r not in host)
