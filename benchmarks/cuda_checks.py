"""The checks of MN's Triton kernels that only a CUDA GPU can run (prepared on a CPU
machine; not yet run on a GPU as of 2026-11-26).

Run:  python benchmarks/cuda_checks.py            (on a machine with CUDA)

1. Numerics: the Triton kernels against the eager path on CUDA (the real Triton
   compiler, not the interpreter the test suite uses): both layouts, K=1 and K=3, bf16
   autocast; prints the largest differences.
2. Host syncs: a few training steps of a layer under
   ``torch.cuda.set_sync_debug_mode("error")`` (raises at the first synchronising call).
3. Launches: CUDA kernels per forward + backward of ``MixtureNorm2d(256, 3)`` on
   (64, 256, 8, 8), from the profiler, against BN's (target: MN at most 6 + its state
   update).
Then ``python benchmarks/norm_overhead.py --device cuda`` gives the timings.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from gan_mn.norm import MixtureNorm2d


def step(layer: nn.Module, x: torch.Tensor, dtype: torch.dtype | None = None) -> list:
    leaf = x.detach().clone().requires_grad_()
    with torch.autocast("cuda", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        y = layer(leaf)
    y.float().square().mean().backward()
    return [y.float(), leaf.grad, *(p.grad for p in layer.parameters())]


def numerics() -> None:
    for fmt in (torch.contiguous_format, torch.channels_last):
        for k in (1, 3):
            for dtype in (None, torch.bfloat16):
                x = (torch.randn(16, 64, 8, 8, device="cuda") * 2 + 1).contiguous(
                    memory_format=fmt)
                outs = []
                for kernels in ("eager", "triton"):
                    torch.manual_seed(0)
                    layer = MixtureNorm2d(64, k, kernels=kernels).cuda()
                    outs.append(step(layer, x, dtype))
                diff = max(float((a - b).abs().max()) for a, b in zip(*outs, strict=True))
                print(f"numerics {fmt}, K={k}, autocast={dtype}: max |triton - eager| {diff:.2e}")


def syncs() -> None:
    layer = MixtureNorm2d(128, 3, kernels="triton").cuda()
    x = torch.randn(64, 128, 8, 8, device="cuda")
    step(layer, x)  # the one-off seeding reads em_seeded once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            step(layer, x)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    print("syncs: 3 training steps without a host synchronisation")


def launches() -> None:
    x = torch.randn(64, 256, 8, 8, device="cuda")
    for name, layer in (("BN", nn.BatchNorm2d(256)),
                        ("MN triton", MixtureNorm2d(256, 3, kernels="triton"))):
        layer = layer.cuda()
        for _ in range(3):
            step(layer, x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step(layer, x)
            torch.cuda.synchronize()
        events = prof.key_averages()
        kernels = sum(e.count for e in events if e.device_type.name == "CUDA")
        reads = sum(e.count for e in events if e.key in ("aten::item",
                                                          "aten::_local_scalar_dense"))
        print(f"launches {name}: {kernels} CUDA kernels per forward+backward (incl. the "
              f"loss), {reads} host reads")


if __name__ == "__main__":
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    numerics()
    syncs()
    launches()
