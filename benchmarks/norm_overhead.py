"""Cost of Mixture Normalization against Batch Normalization, measured side by side.

Run:  python benchmarks/norm_overhead.py [--device cuda] [--memory-format channels_last]
      python benchmarks/norm_overhead.py --runs STUDY/runs/*-seed0 --json cost.json

With ``--runs``, the whole generator step of each run directory's own model (its
``config.yaml``: family, norms per network, their options, widths, D steps; one run per
label) is timed instead, and
``--json`` writes the per-step cost ratios to the reference label that
``gan-mn compare --cost`` reads.

Times, in one process and interleaved round by round (so drift hits both alike):
1. one whole DCGAN training step (the training module's own update: D step on real +
   fake, then G step; Adam, batch 64, non-saturating BCE loss) with every norm layer
   BN, then MN (K=3) with each of its kernel sets: Inductor, eager torch ops, and on
   CUDA the hand-written Triton kernels;
2. each norm layer alone, forward + backward, at the DCGAN's norm shapes.
Prints medians and the ratios to BN; warm-up calls absorb MN's one-off
compilation. Inputs are random tensors: no layer's cost depends on the values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from gan_mn.models import DCGAN_WIDTHS, build_models
from gan_mn.norm import make_norm
from gan_mn.training.step import GANUpdate, generator_cycle

# (name, shape) of every norm layer in the standard 32x32 DCGAN at batch 64.
LAYER_SHAPES = [
    ("G 512@4x4", (64, 512, 4, 4)),
    ("G 256@8x8", (64, 256, 8, 8)),
    ("G 128@16x16", (64, 128, 16, 16)),
    ("D 128@8x8", (64, 128, 8, 8)),
    ("D 256@4x4", (64, 256, 4, 4)),
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def variants(num_components: int, device: torch.device) -> dict[str, tuple[str, dict[str, Any]]]:
    """The norm layers compared: BN and MN with each kernel set this device runs."""
    mn = {"num_components": num_components}
    kernels = ["triton", "inductor", "eager"] if device.type == "cuda" else ["inductor", "eager"]
    return {"BN": ("bn", {}), **{f"MN {k}": ("mn", {**mn, "kernels": k}) for k in kernels}}


def make_step(norm: str, norm_kwargs: dict[str, Any], device: torch.device,
              fmt: torch.memory_format, batch: int) -> Callable[[], None]:
    """A closure running one full GAN training step with ``norm`` everywhere."""
    kw = {norm: norm_kwargs}
    return make_model_step({"g_norm": norm, "d_norm": norm, "norm_kwargs": kw}, device, fmt,
                           batch)


def make_model_step(model: dict[str, Any], device: torch.device, fmt: torch.memory_format,
                    batch: int, graphed: bool = False
                    ) -> Callable[[], tuple[torch.Tensor, ...]]:
    """A closure running one generator step of the GAN that ``model`` (a run config's
    ``model`` section: family, widths, norms, loss, D steps) describes: the training
    module's own update (:class:`~gan_mn.training.step.GANUpdate`, plain torch), with
    ``d_steps`` discriminator steps, then G's Adam step. With ``graphed``, the update is a
    :class:`~gan_mn.training.step.CapturedStep` (a CUDA graph after three eager calls) and
    Adam is ``capturable``, as ``--model.cuda_graph true``."""
    kw = model.get("norm_kwargs") or {}
    dcgan = DCGAN_WIDTHS[32]
    g, d = build_models(model.get("arch", "dcgan"), model.get("z_dim", 100),
                        model.get("g_channels", dcgan[0]), model.get("d_channels", dcgan[1]),
                        model["g_norm"], model["d_norm"], kw, 32)
    g, d = g.to(device, memory_format=fmt), d.to(device, memory_format=fmt)
    capturable = graphed and device.type == "cuda"  # (on the CPU "graphed" runs eagerly)
    adam = {"lr": 2e-4, "betas": (0.5, 0.999), **({"capturable": True} if capturable else {})}
    opt_g = torch.optim.Adam(g.parameters(), **adam)
    opt_d = torch.optim.Adam(d.parameters(), **adam)
    d_steps = model.get("d_steps", 1)
    d_alone, last = generator_cycle(GANUpdate(g, d, model.get("loss", "ns"), opt_d, opt_g),
                                    d_steps, graphed)
    real = (torch.rand(batch, 3, 32, 32, device=device) * 2 - 1).contiguous(memory_format=fmt)

    def step() -> tuple[torch.Tensor, ...]:
        for _ in range(d_steps - 1):
            d_alone(real, g.sample_latent(batch, device))
        z = g.sample_latent(batch, device)
        z_g = (g.sample_latent(batch, device),) if d_steps > 1 else ()
        losses = last(real, z, *z_g)
        opt_g.step()
        return losses

    return step


def make_layer_step(norm: str, norm_kwargs: dict[str, Any], shape: tuple[int, ...],
                    device: torch.device, fmt: torch.memory_format) -> Callable[[], None]:
    """A closure running one forward + backward of a single norm layer."""
    layer: nn.Module = make_norm(norm, shape[1], **norm_kwargs).to(device)
    x = torch.randn(shape, device=device).relu().contiguous(memory_format=fmt)
    x.requires_grad_(True)
    grad = torch.randn(shape, device=device).contiguous(memory_format=fmt)

    def step() -> None:
        x.grad = None
        layer(x).backward(grad)

    return step


def race(fns: dict[str, Callable[[], object]], rounds: int, reps: int, warmup: int,
         device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function, interleaving them round by round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / reps)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--memory-format", choices=["contiguous", "channels_last"],
                   default="contiguous")
    p.add_argument("--num-components", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reps", type=int, default=3, help="calls per timed round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--skip-layers", action="store_true", help="only the whole step")
    p.add_argument("--runs", nargs="+", default=None,
                   help="run directories: time each label's own model (config.yaml)")
    p.add_argument("--reference", default="bn", help="label the ratios are to (--runs)")
    p.add_argument("--json", default=None, help="write the ratios here (--runs)")
    args = p.parse_args()
    device = torch.device(args.device)
    fmt = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}[
        args.memory_format]
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"memory format {args.memory_format}, MN K={args.num_components}, batch {args.batch}")

    if args.runs:
        run_models(args, device, fmt)
        return
    kinds = variants(args.num_components, device)

    def report(name: str, t: dict[str, float], unit: float, digits: int) -> None:
        cells = [f"{k} {t[k] * unit:8.{digits}f} ms" for k in kinds]
        ratios = [f"{k}/BN {t[k] / t['BN']:.3f}x" for k in kinds if k != "BN"]
        print(f"{name:<16} " + "   ".join(cells + ratios))

    steps = {k: make_step(n, kw, device, fmt, args.batch) for k, (n, kw) in kinds.items()}
    report("whole G+D step", race(steps, args.rounds, args.reps, args.warmup, device), 1e3, 2)
    if args.skip_layers:
        return
    for name, shape in LAYER_SHAPES:
        fns = {k: make_layer_step(n, kw, shape, device, fmt) for k, (n, kw) in kinds.items()}
        report(name, race(fns, args.rounds, args.reps * 5, args.warmup, device), 1e3, 3)

def run_models(args: argparse.Namespace, device: torch.device, fmt: torch.memory_format) -> None:
    """Whole-step cost of each run label's model, side by side, as ratios to the reference."""
    models: dict[str, dict[str, Any]] = {}
    for run in args.runs:
        config = yaml.safe_load((Path(run) / "config.yaml").read_text())
        models.setdefault(config["model"]["label"], config["model"])
    if args.reference not in models:
        raise SystemExit(f"--reference {args.reference!r} is not among the runs' labels "
                         f"({', '.join(sorted(models))})")
    steps = {label: make_model_step(m, device, fmt, args.batch) for label, m in models.items()}
    t = race(steps, args.rounds, args.reps, args.warmup, device)
    ratios = {label: t[label] / t[args.reference] for label in models}
    for label in sorted(models, key=lambda k: (k != args.reference, k)):
        print(f"{label:<12} {t[label] * 1e3:8.2f} ms   {ratios[label]:.3f}x {args.reference}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "reference": args.reference, "ratios": ratios,
            "ms_per_step": {k: v * 1e3 for k, v in t.items()},
            "device": str(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "batch": args.batch,
            "rounds": args.rounds, "reps": args.reps}, indent=2) + "\n")


if __name__ == "__main__":
    main()
