"""Every Triton launch MN makes compiles for sm_80 and sm_90 without a GPU, with no spills
and at most 255 registers (``benchmarks/triton_compile.py``, run as its docstring says:
Triton compiles only outside the interpreter the tests run under); and the check itself
fails on a kernel the interpreter runs but the compiler rejects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "triton_compile.py"
KERNELS = {"mn_stats", "mn_finalize", "mn_output", "mn_grad_reduce", "mn_grad_tables",
           "mn_grad_input"}
BROKEN = '''
import sys
import torch, triton, triton.language as tl
sys.path.insert(0, {benchmarks!r})
import triton_compile

@triton.jit
def doubled(x_ptr, n):
    # tl.static_range unrolls at compile time: its bound must be a constexpr. The
    # interpreter takes a runtime n; the compiler does not.
    offsets = tl.arange(0, 16)
    for _ in tl.static_range(n):
        tl.store(x_ptr + offsets, tl.load(x_ptr + offsets) * 2)

x = torch.ones(16)
if {interpret}:
    doubled[(1,)](x, 3)
    assert torch.equal(x, torch.full((16,), 8.0))
    print("interpreted: ok")
else:
    triton_compile.compile_launch(doubled, ((1,), (x, 3), {{}}), 90)
    print("compiled: ok")
'''


def _env(interpret: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return {**env, "TRITON_INTERPRET": "1"} if interpret else env


@pytest.mark.slow  # compiles a few hundred kernels (about two minutes on 2 cores)
def test_every_launch_compiles_for_sm80_and_sm90(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)], cwd=tmp_path,
                          env=_env(False), capture_output=True, text=True, timeout=900)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert rows and all(r["ok"] and r["local"] == 0 and r["stack"] == 0 for r in rows)
    sys.path.insert(0, str(SCRIPT.parent))
    import triton_compile

    cases = set(triton_compile.cases())
    for target in ("sm_80", "sm_90"):
        mine = [r for r in rows if r["target"] == target]
        assert {r["case"] for r in mine} == cases  # every case launched and compiled
        assert {r["kernel"] for r in mine} == KERNELS
    assert max(r["registers"] for r in rows) <= 255
    assert "0 over the limits" in done.stdout


def test_evaluation_launches_no_triton_kernel() -> None:
    """Eval mode runs torch ops (the running mixture's E-step and the transform): nothing
    of it needs compiling for a GPU."""
    sys.path.insert(0, str(SCRIPT.parent))
    import triton_compile

    from gan_mn.norm import MixtureNorm2d

    layer = MixtureNorm2d(16, kernels="triton").eval()
    assert triton_compile.record(lambda: layer(torch.randn(4, 16, 5, 5))) == []


@pytest.mark.slow  # fresh interpreters
def test_the_check_fails_on_a_kernel_the_interpreter_accepts(tmp_path: Path) -> None:
    results = {}
    for interpret in (True, False):
        script = tmp_path / f"broken_{interpret}.py"
        script.write_text(BROKEN.format(benchmarks=str(SCRIPT.parent), interpret=interpret))
        results[interpret] = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                                            env=_env(interpret), capture_output=True,
                                            text=True, timeout=300)
    assert results[True].returncode == 0 and "interpreted: ok" in results[True].stdout
    assert results[False].returncode != 0 and "CompilationError" in results[False].stderr
