"""Compile every Triton launch MN makes for NVIDIA GPUs, on a machine without one.

    python benchmarks/triton_compile.py [--targets sm_80 sm_90] [--json out.json]

The layer's launches are recorded, not run (``host_work.stubbed_launches``, beside this script),
with the tiles a 132-SM GPU (an H100) gets, over the cases below; each distinct one is
compiled with its real arguments (so Triton's own specialisation applies: integers equal
to 1, 16-byte alignment) for each target by Triton's NVIDIA backend, given a stand-in
driver that reports the target, down to a cubin with the ``ptxas`` in Triton's wheel.
``cuobjdump`` (also in the wheel) then reads each cubin's registers, shared memory, stack
and local memory. Prints one row per kernel and case: a kernel that fails to compile,
spills (local memory or stack) or needs over 255 registers is a FAIL. Needs no GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

H100_SMS = 132
MAX_REGISTERS = 255
CAPABILITIES = {"sm_80": 80, "sm_90": 90}


class Row(NamedTuple):
    kernel: str
    case: str
    target: str
    registers: int
    shared: int  # bytes, static (cuobjdump) + dynamic (Triton's metadata)
    stack: int
    local: int
    ok: bool


class _Driver:
    """What Triton's JIT asks of the active driver to compile (not to launch)."""

    def __init__(self, capability: int) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", capability, 32)
        self.device = capability  # one JIT cache per target

    def get_current_target(self) -> Any:
        return self.target

    def get_current_device(self) -> int:
        return self.device

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")

    def is_active(self) -> bool:
        return True


@contextlib.contextmanager
def _as_target(capability: int) -> Iterator[None]:
    from triton.runtime import driver

    try:
        previous = driver.active
    except RuntimeError:  # no GPU here: no driver to go back to
        previous = None
    driver.set_active(_Driver(capability))
    try:
        yield
    finally:
        driver.set_active(previous)


@contextlib.contextmanager
def _planned_as_h100() -> Iterator[None]:
    """The layer's Triton kernel set planning tiles for 132 SMs, on the CPU."""
    from gan_mn.norm import kernels
    from gan_mn.norm.triton.plan import TritonKernels

    saved = kernels.TRITON
    kernels.TRITON = TritonKernels(processors=H100_SMS)
    try:
        yield
    finally:
        kernels.TRITON = saved


def _train_step(model: torch.nn.Module, x: torch.Tensor) -> None:
    y = model(x)
    y.backward(torch.randn_like(y))


def _generator(arch: str, size: int) -> Callable[[], None]:
    from gan_mn.models.factory import build_models
    from gan_mn.norm import MixtureNorm2d

    def run() -> None:
        torch.manual_seed(0)
        g, _ = build_models(arch, 100, (512, 256, 128), (64, 128, 256), "mn", "bn",
                            {"mn": {"kernels": "eager"}}, size)
        z = torch.randn(64, g.z_dim)
        # the first step with the eager kernels: every layer seeds its mixture on real
        # activations (k-means++ samples them; a recorded launch leaves its output unset)
        _train_step(g, z)
        for layer in g.modules():
            if isinstance(layer, MixtureNorm2d):
                layer.kernels = "triton"
        _train_step(g, z)  # the warm-started step, recorded (later layers get no values)
    return run


def _layer(shape: tuple[int, ...], channels_last: bool = False, **options: Any
           ) -> Callable[[], None]:
    from gan_mn.norm import MixtureNorm2d

    def run() -> None:
        torch.manual_seed(0)
        layer = MixtureNorm2d(shape[1], kernels="triton", **options)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        for _ in range(2):
            _train_step(layer, torch.randn(shape).contiguous(memory_format=fmt)
                        .requires_grad_())
        layer.eval()(torch.randn(shape))  # evaluation (recorded too, if it launches any)
    return run


def _synced(k: int) -> Callable[[], None]:
    """The synced kernels (partial sums all-reduced between passes) in a one-process gloo
    group: the layer's fit with the group's collectives, as DDP runs it."""
    import torch.distributed as dist

    from gan_mn.norm import SyncMixtureNorm2d
    from gan_mn.norm.sync import _Group

    def run() -> None:
        torch.manual_seed(0)
        layer = SyncMixtureNorm2d(64, num_components=k, kernels="triton")
        x = torch.randn(16, 64, 8, 8, requires_grad=True)
        layer(x)  # seeds the mixture
        fresh = not dist.is_initialized()
        if fresh:
            with socket_port() as port:
                dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                        rank=0, world_size=1)
        try:
            from gan_mn.norm.gmm import Mixture

            start = Mixture(layer.em_weight, layer.em_mean, layer.em_var) if k > 1 else None
            shift = x[0, :, 0, 0].detach().clone()
            y = layer._fit_and_normalize(x, start, _Group(None), shift)
            y.backward(torch.randn_like(y))
        finally:
            if fresh:
                dist.destroy_process_group()
    return run


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


def cases() -> dict[str, Callable[[], None]]:
    """The generator shapes of each family, and the layer's options one at a time."""
    out = {f"{arch} G {size}px": _generator(arch, size)
           for arch, size in (("dcgan", 32), ("dcgan", 64), ("sngan", 32), ("resnet", 32))}
    shape = (64, 128, 16, 16)
    for k in (1, 2, 3, 5, 16):
        out[f"K={k}"] = _layer(shape, num_components=k)
        out[f"K={k} channels_last"] = _layer(shape, channels_last=True, num_components=k)
    out["K=3 not affine"] = _layer(shape, affine=False)
    out["K=3 3 EM iterations"] = _layer(shape, em_iters=3)
    out["K=3 cumulative momentum"] = _layer(shape, momentum=None)
    out["K=3 batch of one"] = _layer((1, 128, 8, 8))
    out["K=1 batch of one"] = _layer((1, 128, 8, 8), num_components=1)
    out["K=1 synced"] = _synced(1)
    out["K=3 synced"] = _synced(3)
    return out


def record(case: Callable[[], None]) -> list[Any]:
    """The Triton launches ``case`` makes (recorded with their arguments, not run)."""
    from host_work import stubbed_launches

    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"  # (CPU tensors reach the Triton kernel set)
    try:
        with _planned_as_h100(), stubbed_launches(keep_calls=True) as launches:
            case()
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous
    return launches


def compile_launch(kernel: Any, call: tuple[Any, tuple, dict], capability: int) -> Any:
    """``kernel`` (a ``JITFunction``) compiled for ``sm_<capability>`` with a recorded
    launch's arguments; raises what Triton's compiler raises."""
    import triton

    if not isinstance(kernel, triton.runtime.jit.JITFunction):
        raise RuntimeError("an interpreted kernel (TRITON_INTERPRET=1 when it was defined) "
                           "cannot be compiled: run without TRITON_INTERPRET")
    grid, args, kwargs = call
    with _as_target(capability):
        return kernel.warmup(*args, grid=grid, **kwargs)


def resources(compiled: Any) -> dict[str, int]:
    """Registers, shared memory, stack and local memory of a compiled kernel's cubin."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        text = subprocess.run([str(tool), "--dump-resource-usage", str(cubin)],
                              capture_output=True, text=True, check=True).stdout
    found = {k: int(v) for k, v in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", text)}
    return {"registers": found["REG"], "stack": found.get("STACK", 0),
            "local": found.get("LOCAL", 0),
            "shared": found.get("SHARED", 0) + int(compiled.metadata.shared)}


def compile_all(targets: tuple[str, ...] = ("sm_80", "sm_90"),
                only: list[str] | None = None) -> list[Row]:
    """Every distinct launch of every case, compiled for each target."""
    from gan_mn.norm.triton import kernels as triton_kernels

    rows: list[Row] = []
    for name, case in cases().items():
        if only is not None and name not in only:
            continue
        seen: set[tuple[str, int]] = set()
        for launch in record(case):
            kernel = getattr(triton_kernels, launch.kernel)
            for target in targets:
                compiled = compile_launch(kernel, launch.call, CAPABILITIES[target])
                if (target, id(compiled)) in seen:  # the same specialisation again
                    continue
                seen.add((target, id(compiled)))
                r = resources(compiled)
                ok = r["local"] == 0 and r["stack"] == 0 and r["registers"] <= MAX_REGISTERS
                rows.append(Row(launch.kernel, name, target, r["registers"], r["shared"],
                                r["stack"], r["local"], ok))
    return rows


def table(rows: list[Row]) -> str:
    lines = [f"{'kernel':<16} {'case':<28} {'target':<6} {'regs':>5} {'shared B':>9} "
             f"{'stack':>6} {'local':>6}"]
    lines += [f"{r.kernel:<16} {r.case:<28} {r.target:<6} {r.registers:>5} {r.shared:>9} "
              f"{r.stack:>6} {r.local:>6}{'' if r.ok else '  FAIL'}" for r in rows]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", nargs="+", default=["sm_80", "sm_90"],
                   choices=sorted(CAPABILITIES))
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = p.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("triton_compile: unset TRITON_INTERPRET (it makes every kernel interpreted)",
              file=sys.stderr)
        return 2
    rows = compile_all(tuple(a.targets))
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps([r._asdict() for r in rows], indent=1) + "\n")
    bad = [r for r in rows if not r.ok]
    print(f"{len(rows)} compiled kernels, {len(bad)} over the limits "
          f"(spills, stack or more than {MAX_REGISTERS} registers)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
