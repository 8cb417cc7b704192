"""Host work of one norm layer's training step: MN with the Triton kernels against BN.

Run:  python benchmarks/norm_host.py [--device cuda] [--shape 8 64 4 4] [--components 3]

On a GPU a small MN layer costs host time, not arithmetic. This prints, for one forward +
backward (+ state update) after warm-up, side by side in one run:

- new tensors, dispatcher operators and Python calls into gan_mn, and each Triton
  launch's tensor arguments (launches recorded, not run: ``benchmarks/host_work.py``);
- host time per step of BN, and of MN with its launches replaced by no-ops (and, on
  CUDA, with real launches), best of 5 rounds, with the ratio to BN.

Without CUDA the Triton kernels need ``TRITON_INTERPRET=1``, set here. The counts are what
``tests/norm/test_host_work.py`` holds; the times are reported, not tested.
"""

from __future__ import annotations

import argparse
import os

import torch
from host_work import count_host_work, host_seconds, layer_step, stubbed_launches

from gan_mn.norm import MixtureNorm2d


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--shape", type=int, nargs=4, default=[8, 64, 4, 4],
                   metavar=("N", "C", "H", "W"))
    p.add_argument("--components", type=int, default=3)
    p.add_argument("--calls", type=int, default=500, help="steps per timed round")
    a = p.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    x = torch.randn(*a.shape, device=dev, requires_grad=True)
    cot = torch.randn_like(x)
    layers = {"BN": torch.nn.BatchNorm2d(a.shape[1]),
              "MN triton": MixtureNorm2d(a.shape[1], a.components, kernels="triton")}
    print(f"layer {'x'.join(map(str, a.shape))}, K={a.components}, {dev}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'':10} {'new tensors':>11} {'operators':>9} {'Python calls':>12}  "
          "tensor arguments per launch")
    steps = {}
    for name, layer in layers.items():
        steps[name] = step = layer_step(layer.to(dev), x, cot)
        with stubbed_launches() as launches:
            step()
            step()
            work = count_host_work(step, launches)
        args = " ".join(f"{w.kernel}:{w.tensors}" for w in work.launches) or "-"
        print(f"{name:10} {work.allocations:>11} {work.operators:>9} {work.python_calls:>12}  "
              f"{args}")
    times = {"BN": host_seconds(steps["BN"], a.calls, sync=sync)}
    with stubbed_launches(record=False):
        times["MN triton, launches no-ops"] = host_seconds(steps["MN triton"], a.calls,
                                                           sync=sync)
    if dev.type == "cuda":
        times["MN triton"] = host_seconds(steps["MN triton"], a.calls, sync=sync)
    for name, seconds in times.items():
        print(f"host time {name:28} {seconds * 1e6:8.1f} us  {seconds / times['BN']:.2f}x BN")


if __name__ == "__main__":
    main()
