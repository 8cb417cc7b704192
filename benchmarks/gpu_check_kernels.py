"""The kernel checks of ``benchmarks/gpu_check.py``: numerics against float64 and launch
and sync counts (see that file for the command and what each check requires)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import torch
from host_work import count_host_work, count_launches, layer_step, stubbed_launches
from torch import nn
from torch.profiler import ProfilerActivity, profile

from gan_mn.norm import MixtureNorm2d
from gan_mn.norm.functional import EMSettings, MixtureNormFunction, MixtureState, StateUpdate
from gan_mn.norm.gmm import Mixture
from gan_mn.norm.kernels import EAGER, TRITON

RESULTS: list[dict[str, Any]] = []


def record(section: str, name: str, value: Any, bound: Any = None, ok: bool | None = None,
           note: str = "") -> None:
    """One row of the table: ``ok`` None is a measurement, True/False a check."""
    RESULTS.append({"section": section, "name": name, "value": value, "bound": bound,
                    "ok": ok, "note": note})
    status = {None: "", True: "ok", False: "FAIL"}[ok]
    shown = f"{value:.3g}" if isinstance(value, float) else str(value)
    print(f"{section:<9} {name:<58} {shown:>12} {'' if bound is None else bound!s:>16} "
          f"{status:>4} {note}", flush=True)


# --- numerics ---------------------------------------------------------------------------
def _rel(value: Any, exact: Any) -> float:

    value, exact = value.detach().double(), exact.detach().double()
    return float((value - exact).abs().max() / exact.abs().max().clamp_min(1e-30))


def _mn_run(kernels: Any, dtype: Any, case: dict[str, Any], inputs: dict[str, Any]
            ) -> dict[str, Any]:
    """One training forward + backward + state update of the autograd Function."""

    fmt = torch.channels_last if case["channels_last"] else torch.contiguous_format
    x = inputs["x"].to(dtype).contiguous(memory_format=fmt).clone().requires_grad_()
    affine = [t.to(dtype).clone().requires_grad_() for t in inputs["affine"]] \
        if case["affine"] else []
    w, b = affine or (None, None)
    state = MixtureState(*(t.to(dtype, copy=True) if t.is_floating_point() else t.clone()
                           for t in inputs["state"]))
    tau = inputs.get("tau")
    if tau is not None:
        tau = tau.to(dtype)
        tau = tau.transpose(1, 2).contiguous() if case["channels_last"] else tau
    start = Mixture(*state[3:6]) if case["k"] > 1 and tau is None else None
    if start is not None:
        start = Mixture(*(t.clone() for t in start))
    y = MixtureNormFunction.apply(x, w, b, tau, start, EMSettings(case["em_iters"]), kernels,
                                  None, None, StateUpdate(state, case["momentum"]))
    y.backward(inputs["cotangent"].to(dtype).contiguous(memory_format=fmt))
    names = ("running_weight", "running_mean", "running_var", "em_weight", "em_mean",
             "em_var", "num_batches_tracked")
    out = {"y": y, "dx": x.grad, **dict(zip(names, state, strict=True))}
    if affine:
        out |= {"dweight": w.grad, "dbias": b.grad}
    return out


def _mn_inputs(case: dict[str, Any], device: Any) -> dict[str, Any]:
    """Clustered activations, as a convolution gives them to a norm layer (one cluster per
    component, so that no component is near the one-sample line where it would be
    re-seeded; not rectified: a channel that is zero for a whole component would have no
    variance, and its output would be all rounding), a warm start near the clusters."""

    g = torch.Generator().manual_seed(zlib.crc32(case["name"].encode()) + case.get("seed", 0))
    n, c, h, w = case["shape"]
    k = case["k"]
    centres = torch.randn(k, c, generator=g, dtype=torch.float64) * 2
    labels = torch.arange(n * h * w) % k
    x = (centres[labels] + torch.randn(n * h * w, c, generator=g, dtype=torch.float64))
    x = x.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous() + 1.0
    inputs = {"x": x, "cotangent": torch.randn(n, c, h, w, generator=g, dtype=torch.float64),
              "affine": (torch.rand(c, generator=g, dtype=torch.float64) + 0.5,
                         torch.randn(c, generator=g, dtype=torch.float64))}
    start_mean = centres + 1.0 + 0.3 * torch.randn(k, c, generator=g, dtype=torch.float64)
    inputs["state"] = (torch.full((k,), 1 / k), torch.zeros(k, c), torch.ones(k, c),
                       torch.full((k,), 1 / k), start_mean, torch.ones(k, c) * 1.5,
                       torch.tensor(3))
    if case["given"]:
        tau = torch.softmax(torch.randn(n, k, h * w, generator=g, dtype=torch.float64) * 2, 1)
        inputs["tau"] = tau
    return {key: (tuple(t.to(device) for t in v) if isinstance(v, tuple) else v.to(device))
            for key, v in inputs.items()}


def _cases(device: str) -> list[dict[str, Any]]:
    small = device == "cpu"  # (interpreted: fewer cases, each kind of case still there)
    shapes = [(2, 12, 3, 5)] if small else [(16, 64, 8, 8), (3, 48, 5, 7)]
    ks = (1, 3, 8) if small else (1, 2, 3, 5, 8)
    base = {"momentum": 0.1, "affine": True, "given": False, "em_iters": 1}
    cases = []
    for shape in shapes:
        for k in ks:
            for cl in (False, True):
                for em in (1, 2) if k > 1 and not (small and k == 8) else (k // 8 + 1,):
                    cases.append({**base, "shape": shape, "k": k, "channels_last": cl,
                                  "em_iters": em})
    last = shapes[-1]
    for cl in (False,) if small else (False, True):
        cases.append({**base, "shape": last, "k": 3, "channels_last": cl, "momentum": None})
        cases.append({**base, "shape": last, "k": 3, "channels_last": cl, "affine": False})
    for cl in (False, True):
        for shape in shapes:
            cases.append({**base, "shape": shape, "k": 3, "channels_last": cl, "given": True})
    if not small:  # a DCGAN-sized layer: many partial sums per channel block
        cases += [{**base, "shape": (64, 128, 16, 16), "k": 3, "channels_last": cl}
                  for cl in (False, True)]
    for case in cases:
        n, c, h, w = case["shape"]
        case["name"] = (f"{n}x{c}x{h}x{w} K={case['k']} {'CL' if case['channels_last'] else 'NCHW'}"
                        f" em{case['em_iters']}" + (" mom=None" if case["momentum"] is None else "")
                        + (" affine=False" if not case["affine"] else "")
                        + (" given-tau" if case["given"] else ""))
    return cases


def check_numerics(device: str) -> None:

    for case in _cases(device):
        inputs = _mn_inputs(case, device)
        exact = _mn_run(EAGER, torch.float64, case, inputs)
        eager = _mn_run(EAGER, torch.float32, case, inputs)
        triton = _mn_run(TRITON, torch.float32, case, inputs)
        worst, bound_of_worst, fails = 0.0, 0.0, []
        for key, ref in exact.items():
            if not ref.is_floating_point():
                if not torch.equal(triton[key].cpu(), ref.cpu()):
                    fails.append(key)
                continue
            err = _rel(triton[key], ref)
            bound = 2e-6 if case["given"] else 4 * _rel(eager[key], ref) + 2e-6
            if err > bound:
                fails.append(f"{key} {err:.2e}>{bound:.2e}")
            if err / bound >= worst / max(bound_of_worst, 1e-30):
                worst, bound_of_worst = err, bound
        record("numerics", case["name"], worst, f"<= {bound_of_worst:.2e}", not fails,
               ", ".join(fails))


def _layer_run(layer: nn.Module, x: torch.Tensor, cot: torch.Tensor, autocast: bool
               ) -> list[torch.Tensor]:
    """One training step of a layer on ``x`` (in its dtype): output, gradients, running
    statistics."""
    leaf = x.clone().requires_grad_()
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        y = layer(leaf)
    y.backward(cot.to(y.dtype))
    return [y, leaf.grad, layer.weight.grad, layer.bias.grad, layer.running_mean,
            layer.running_var]


def _layer(kind: str, device: str, dtype: torch.dtype,
           state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A fresh layer, or with ``state`` (the same seeded mixture for every MN layer
    compared: k-means++ draws differ between dtypes)."""
    torch.manual_seed(0)
    if kind == "bn":
        return nn.BatchNorm2d(16).to(device, dtype)
    k1 = kind == "k1"
    layer = MixtureNorm2d(16, 1 if k1 else 3, kernels="triton" if k1 else kind)
    if state is not None:
        layer.load_state_dict(state)
    return layer.to(device, dtype)


def check_layers(device: str) -> None:
    """Through the layer, on clustered activations: under bf16 autocast, Triton and eager
    against float64 on the same bf16 input and output gradient (the input's rounding is
    shared; the output's is bf16's); K=1 against BatchNorm2d (float64 BN the reference)."""
    f64, f32, bf16 = torch.float64, torch.float32, torch.bfloat16
    for cl in (False, True):
        case = {"name": f"layer {cl}", "shape": (4, 16, 5, 7), "k": 3, "given": False}
        inputs = _mn_inputs(case, device)
        fmt = torch.channels_last if cl else torch.contiguous_format
        x = inputs["x"].contiguous(memory_format=fmt)
        cot = inputs["cotangent"].contiguous(memory_format=fmt)
        name = "CL" if cl else "NCHW"
        xq, cq = x.to(bf16), cot.to(bf16)
        seeded = _layer("eager", device, f32)
        seeded(x.to(f32))  # k-means++ and one step: the warm start all three begin from
        state = seeded.state_dict()
        ref = _layer_run(_layer("eager", device, f64, state), xq.to(f64), cq.to(f64), False)
        eager = _layer_run(_layer("eager", device, f32, state), xq, cq, True)
        tri = _layer_run(_layer("triton", device, f32, state), xq, cq, True)
        errs = [(_rel(t, r), 2 * _rel(e, r) + 1e-2)
                for t, e, r in zip(tri, eager, ref, strict=True)]
        record("layers", f"layer 4x16x5x7 K=3 {name} bf16 autocast",
               max(e for e, _ in errs), "<= 2*eager+1e-2", all(e <= b for e, b in errs))
        ref = _layer_run(_layer("bn", device, f64), x.to(f64), cot.to(f64), False)
        bn = _layer_run(_layer("bn", device, f32), x.to(f32), cot.to(f32), False)
        k1 = _layer_run(_layer("k1", device, f32), x.to(f32), cot.to(f32), False)
        errs = [(_rel(t.reshape(r.shape), r), 4 * _rel(e, r) + 2e-6)
                for t, e, r in zip(k1, bn, ref, strict=True)]
        record("layers", f"layer 4x16x5x7 K=1 {name} vs BatchNorm2d",
               max(e for e, _ in errs), "<= 4*BN32+2e-6", all(e <= b for e, b in errs))


# --- launch and sync counts ---------------------------------------------------------------
def check_host_work(device: str) -> None:
    """The Triton layer's host work per step (8x64x4x4, K=3, launches recorded, not run):
    what the per-shape plan holds it to, on any device."""
    shape = (8, 64, 4, 4)
    layer = MixtureNorm2d(64, 3, kernels="triton").to(device)
    x = torch.randn(*shape, device=device, requires_grad=True)
    step = layer_step(layer, x, torch.randn(*shape, device=device))
    with stubbed_launches() as launches:
        step()
        step()
        work = count_host_work(step, launches)
    widest = max(launch.tensors for launch in work.launches)
    record("counts", "MN triton layer 8x64x4x4 step: new tensors", work.allocations, "<= 6",
           work.allocations <= 6, f"{work.operators} operators: {work.operator_names}")
    record("counts", "MN triton layer step: Python calls into gan_mn", work.python_calls,
           "<= 30", work.python_calls <= 30)
    record("counts", "MN triton layer step: most tensor arguments of a launch", widest, "<= 12",
           widest <= 12, " ".join(f"{w.kernel} {w.tensors}" for w in work.launches))


def check_counts(device: str) -> None:
    check_host_work(device)
    if device == "cpu":
        layer = MixtureNorm2d(8, 3, kernels="triton")
        x = torch.randn(4, 8, 3, 5).relu().requires_grad_()
        step = layer_step(layer, x, torch.randn(4, 8, 3, 5))
        step()  # seeds the mixture
        n = count_launches(step)
        total = n["triton"] + n["torch"]
        record("counts", "MN triton layer fwd+bwd+update: launches (interpreted)", total,
               "<= 7", total <= 7, f"{n['triton']} Triton, torch ops: {n['ops']}")
        for what in ("profiler kernels per layer and per GAN step", "host syncs"):
            record("counts", what, "needs CUDA")
        return

    try:  # run by gpu_check.py: benchmarks/ is first on sys.path
        from norm_overhead import make_model_step
    except ImportError:  # imported as benchmarks.gpu_check_kernels (the tests)
        from benchmarks.norm_overhead import make_model_step

    waits = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
             "cudaMemcpy")

    def profiled(fn: Callable[[], None]) -> tuple[int, int, int]:
        """Kernels, ``_local_scalar_dense`` calls (CPU tensors' too: Adam's step counts)
        and synchronising CUDA calls of one call of ``fn`` (after 5: a captured step's
        warm-up and capture), less those of profiling nothing."""
        for _ in range(5):
            fn()
        counts = []
        for work in (lambda: None, fn):
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                work()
                torch.cuda.synchronize()
            events = prof.key_averages()
            counts.append((sum(e.count for e in events if e.device_type.name == "CUDA"),
                           sum(e.count for e in events if e.key == "aten::_local_scalar_dense"),
                           sum(e.count for e in events if e.key in waits)))
        (k0, r0, s0), (k1, r1, s1) = counts
        return k1 - k0, r1 - r0, s1 - s0

    x = torch.randn(64, 256, 8, 8, device="cuda").relu().requires_grad_()
    cot = torch.randn_like(x)
    layers = {"BN": nn.BatchNorm2d(256)} | {
        f"MN {k}": MixtureNorm2d(256, 3, kernels=k) for k in ("triton", "inductor", "eager")}
    for name, layer in layers.items():
        kernels, reads, syncs = profiled(layer_step(layer.cuda(), x, cot))
        limit = name == "MN triton"
        record("counts", f"{name} layer 64x256x8x8 fwd+bwd+update: kernels", kernels,
               "<= 7" if limit else None, kernels <= 7 if limit else None)
        record("counts", f"{name} layer: host reads / syncs", f"{reads} / {syncs}", "0 syncs",
               syncs == 0)
    steps = {"BN": ({"g_norm": "bn", "d_norm": "bn"}, False),
             "MN triton": ({"g_norm": "mn", "d_norm": "bn",
                            "norm_kwargs": {"mn": {"kernels": "triton"}}}, False),
             "MN triton graphed": ({"g_norm": "mn", "d_norm": "bn",
                                    "norm_kwargs": {"mn": {"kernels": "triton"}}}, True)}
    for name, (model, graphed) in steps.items():
        torch.manual_seed(0)
        step = make_model_step(model, torch.device("cuda"), torch.contiguous_format, 64, graphed)
        kernels, reads, syncs = profiled(step)
        record("counts", f"GAN step {name}: kernels", kernels)
        record("counts", f"GAN step {name}: host reads / syncs", f"{reads} / {syncs}",
               "0 syncs", syncs == 0)
