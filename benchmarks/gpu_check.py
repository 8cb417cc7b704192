"""The one command for a GPU window: MN's Triton kernels, host syncs, launch counts and
timings, checked and measured in one run that passes or fails.

Run (the checkout need not be installed: ``PYTHONPATH=.``):

    python benchmarks/gpu_check.py --out gpu_check.json            # on a CUDA GPU
    python benchmarks/gpu_check.py --device cpu                    # Triton interpreted

Sections (``--only`` picks some):

- ``numerics``: the Triton kernels against float64 eager from the same state: output,
  input/weight/bias gradients and every buffer after the state update; both layouts,
  shapes that do not divide the tiles, K in {1, 2, 3, 5, 8}, 1 and 2 EM iterations,
  momentum None, affine False, given posteriors.
  Float32 EM is ill-conditioned for larger K on small batches, so each value must be as
  close to float64 as float32 eager is (``4 * eager's error + 2e-6``, errors relative to
  the reference's largest magnitude); given the posteriors the transform is well
  conditioned and the bound is ``2e-6``.
- ``layers``: the layer under bf16 autocast, and K=1 against ``BatchNorm2d``.
- ``counts``: the Triton layer's host work per step (new tensors <= 6, Python calls into
  gan_mn <= 30, tensor arguments per launch <= 12; launches recorded, not run); kernels
  launched and host syncs per MN layer forward + backward + state update and per whole
  GAN step, from the profiler (under the interpreter: launches counted directly); at
  most 7 launches and no sync.
- ``syncs``: 5 training steps of the GAN module itself (Lightning, EMA on; eager and
  ``cuda_graph``) under ``torch.cuda.set_sync_debug_mode("error")``.
- ``graph``: the captured step against the eager one, 20 steps from one seed.
- ``timings``: whole DCGAN steps (eager BN; MN with the Triton, Inductor and eager
  kernels; captured BN and MN), whole SNGAN steps with 5 D steps (BN and MN, eager and
  captured) and each norm layer's forward + backward, measured side by
  side, with the ratios against their targets (reported, not failed); a small layer's
  host time against BN's with the Triton launches as no-ops (and, on CUDA, real).
- ``compile``: on CUDA, the registers, spills and shared memory of every Triton kernel
  the run compiled (at most 255 registers, no spills), beside the table that
  ``benchmarks/triton_compile.py`` makes without a GPU for sm_80 and sm_90.

Prints a table, writes JSON (``--out``), exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

SECTIONS = ("numerics", "layers", "counts", "syncs", "graph", "timings", "compile")


def _gan(**model: Any) -> Any:
    from gan_mn.training import GAN

    return GAN(**{"sample_every_n_steps": 0, **model})


def check_syncs(device: str, record: Any) -> None:
    """The GAN module's own training step, 5 steps after warm-up (MN seeding, optimiser
    state, the graph's capture) under ``set_sync_debug_mode("error")``: any synchronising
    call raises. Lightning logs every 1000 steps here (a logging step reads its values)."""
    if device == "cpu":
        record("syncs", "5 GAN module steps under set_sync_debug_mode('error')", "needs CUDA")
        return
    import lightning.pytorch as pl
    import torch

    from gan_mn.data import GANDataModule
    from gan_mn.training import EMA

    class SyncDebug(pl.Callback):
        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, i: int) -> None:
            torch.cuda.set_sync_debug_mode("error" if 4 <= trainer.global_step < 9 else 0)

        def on_train_end(self, trainer: Any, module: Any) -> None:
            torch.cuda.set_sync_debug_mode(0)

    for graphed in (False, True):
        name = f"5 GAN module steps, MN triton, EMA{', cuda_graph' if graphed else ''}"
        try:
            torch.manual_seed(0)
            gan = _gan(g_norm="mn", norm_kwargs={"mn": {"kernels": "triton"}},
                       cuda_graph=graphed)
            trainer = pl.Trainer(accelerator="cuda", devices=1, max_steps=10, logger=False,
                                 enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False, log_every_n_steps=1000,
                                 callbacks=[EMA(decay=0.999), SyncDebug()])
            trainer.fit(gan, GANDataModule("synthetic", batch_size=64))
            replays = gan._captured.calls - gan._captured.warmup if graphed else None
            record("syncs", name, "no sync", None, True,
                   "" if replays is None else f"{replays} calls after the capture")
        except RuntimeError as err:
            torch.cuda.set_sync_debug_mode(0)
            record("syncs", name, "synced", None, False, str(err).splitlines()[0][:200])


def check_graph(device: str, record: Any) -> None:
    """The captured update against the eager one for each family at its configs' D steps
    per G step (DCGAN 1; SNGAN's CNN and ResNet 5, spectral norm in D, hinge loss), MN in
    G: the same seed, capturable Adam in both, the largest relative difference of the
    losses. On the CPU the "captured" step runs eagerly on its fixed buffers (tiny widths,
    eager MN kernels), so the difference must be 0."""
    import torch

    from gan_mn.models import build_models
    from gan_mn.training.step import GANUpdate, generator_cycle

    cuda = device == "cuda"
    families = {"dcgan": ({}, 1, "ns"), "sngan": ({"d_norm": "sn"}, 5, "hinge"),
                "resnet": ({"d_norm": "sn"}, 5, "hinge")}
    tiny = {"dcgan": ((32, 16, 8), (8, 16, 32)), "sngan": ((32, 16, 8, 8), (8, 16, 16)),
            "resnet": ((16, 16, 16, 16), (16, 16, 16, 16))}
    defaults = ((512, 256, 128), (64, 128, 256))  # the family's own widths
    torch.backends.cudnn.deterministic = True
    for arch, (norms, d_steps, loss) in families.items():
        losses = []
        for graphed in (False, True):
            torch.manual_seed(0)
            g_ch, d_ch = defaults if cuda else tiny[arch]
            g, d = build_models(arch, 128 if arch != "dcgan" else 100, g_ch, d_ch, "mn",
                                norms.get("d_norm", "bn"),
                                {"mn": {"kernels": "triton" if cuda else "eager"}}, 32)
            g, d = g.to(device), d.to(device)
            opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999),
                                             capturable=cuda) for m in (g, d))
            d_alone, step = generator_cycle(GANUpdate(g, d, loss, opt_d, opt_g), d_steps,
                                            graphed)
            batch = 64 if cuda else 8
            real = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1
            seen = []
            for _ in range(10 if cuda else 3):
                for _ in range(d_steps - 1):
                    d_alone(real, g.sample_latent(batch, device))
                z = g.sample_latent(batch, device)
                z_g = (g.sample_latent(batch, device),) if d_steps > 1 else ()
                loss_d, loss_g = step(real, z, *z_g)
                opt_g.step()
                seen.append(torch.stack([loss_d, loss_g]).detach().clone())
            losses.append(torch.stack(seen))
        diff = float(((losses[1] - losses[0]).abs() / losses[0].abs()).max())
        bound = 1e-4 if cuda else 0.0
        record("graph", f"{arch} ({d_steps} D steps per G step): captured vs eager losses "
               "(max rel. diff)", diff, f"<= {bound:g}", diff <= bound)
    torch.backends.cudnn.deterministic = False


def timings(device: str, record: Any, rounds: int, reps: int) -> None:
    """Whole steps and layers, interleaved round by round (``norm_overhead.race``). On the
    CPU a tiny DCGAN and layers an eighth as wide, batch 8: that the code runs is all."""
    import torch
    from norm_overhead import LAYER_SHAPES, make_layer_step, make_model_step, race

    dev = torch.device(device)
    fmt = torch.contiguous_format
    batch = 64
    size: dict[str, Any] = {}
    shapes = LAYER_SHAPES
    if device == "cpu":
        batch = 8
        size = {"z_dim": 16, "g_channels": (32, 16, 8), "d_channels": (8, 16, 32)}
        shapes = [(f"{name} /8", (8, s[1] // 8, *s[2:])) for name, s in LAYER_SHAPES[::2]]
    mn = {"g_norm": "mn", "d_norm": "bn", **size}
    # (on the CPU not Inductor: its compilation would be most of this smoke run)
    kernels = ("triton", "inductor", "eager") if device == "cuda" else ("eager",)
    bn = {"g_norm": "bn", "d_norm": "bn", **size}
    models: dict[str, tuple[dict[str, Any], bool]] = {"BN": (bn, False)}
    models |= {f"MN {k}": ({**mn, "norm_kwargs": {"mn": {"kernels": k}}}, False)
               for k in kernels}
    if device == "cuda":
        models["BN graphed"] = (bn, True)
        models["MN triton graphed"] = ({**mn, "norm_kwargs": {"mn": {"kernels": "triton"}}},
                                       True)
    torch.manual_seed(0)
    steps = {name: make_model_step(m, dev, fmt, batch, graphed)
             for name, (m, graphed) in models.items()}
    warmup = 5 if device == "cuda" else 1
    t = race(steps, rounds, reps, warmup, dev)
    for name, seconds in t.items():
        record("timings", f"DCGAN step (MN in G), batch {batch}: {name} (ms)", seconds * 1e3,
               None, None, f"{seconds / t['BN']:.2f}x BN")
    best = "MN triton" if device == "cuda" else "MN eager"

    def verdict(met: bool) -> str:
        """The targets are GPU targets: a CPU smoke's tiny shapes and one round say nothing."""
        return ("met" if met else "NOT met") if device == "cuda" else "no verdict on the CPU"

    ratio = t[best] / t["BN"]
    record("targets", f"whole step {best}/BN", ratio, "<= 1.3 (goal 1.15)", None,
           verdict(ratio <= 1.3))
    if device == "cuda":
        graphed = t["MN triton graphed"] * 1e3
        record("targets", "graphed MN step (ms) vs this run's eager BN step", graphed,
               f"< {t['BN'] * 1e3:.2f} (goal 2)", None,
               verdict(graphed < t["BN"] * 1e3))
    sngan_steps(dev, record, rounds, reps, warmup, verdict)
    for name, shape in shapes:
        fns = {"BN": make_layer_step("bn", {}, shape, dev, fmt),
               best: make_layer_step("mn", {"num_components": 3,
                                            "kernels": best.split()[1]}, shape, dev, fmt)}
        lt = race(fns, rounds, reps * 5, warmup, dev)
        ratio = lt[best] / lt["BN"]
        record("targets", f"layer {name} fwd+bwd {best}/BN", ratio, "<= 2", None,
               f"{lt['BN'] * 1e3:.3f} ms BN, {verdict(ratio <= 2)}")


def sngan_steps(dev: Any, record: Any, rounds: int, reps: int, warmup: int,
                verdict: Any) -> None:
    """SNGAN's standard CNN as its configs train it (5 D steps per G step, spectral norm in
    D, hinge loss), MN (Triton) or BN in G, eager and captured: a whole generator step.
    On the CPU tiny widths, MN's eager kernels, and "captured" runs eagerly."""
    import torch
    from norm_overhead import make_model_step, race

    cuda = dev.type == "cuda"
    base = {"arch": "sngan", "z_dim": 128, "d_norm": "sn", "loss": "hinge", "d_steps": 5}
    if not cuda:
        base |= {"g_channels": (32, 16, 8, 8), "d_channels": (8, 16, 16)}
    mn = {**base, "g_norm": "mn",
          "norm_kwargs": {"mn": {"kernels": "triton" if cuda else "eager"}}}
    models = {"BN": ({**base, "g_norm": "bn"}, False), "MN": (mn, False),
              "BN graphed": ({**base, "g_norm": "bn"}, True), "MN graphed": (mn, True)}
    torch.manual_seed(0)
    batch = 64 if cuda else 8
    steps = {name: make_model_step(m, dev, torch.contiguous_format, batch, graphed)
             for name, (m, graphed) in models.items()}
    t = race(steps, rounds, max(1, reps // 5), warmup, dev)
    for name, seconds in t.items():
        record("timings", f"SNGAN step (5 D steps, MN in G), batch {batch}: {name} (ms)",
               seconds * 1e3, None, None, f"{seconds / t['BN']:.2f}x BN")
    record("targets", "graphed SNGAN MN step (ms) vs this run's eager BN step",
           t["MN graphed"] * 1e3, f"< {t['BN'] * 1e3:.2f}", None,
           verdict(t["MN graphed"] < t["BN"]))


def launch_cost(device: str, record: Any) -> None:
    """Where a small MN layer's time goes: host time of an 8x64x4x4 layer's forward +
    backward (GPU work far shorter than its launches) against BatchNorm2d's, with the
    Triton launches replaced by no-ops and (on a GPU) real; the difference over 6
    launches is one launch's host cost. On the CPU only the first: launches are
    interpreted there."""
    import torch
    from host_work import host_seconds, layer_step, stubbed_launches

    from gan_mn.norm import MixtureNorm2d

    dev = torch.device(device)
    x = torch.randn(8, 64, 4, 4, device=dev, requires_grad=True)
    cot = torch.randn_like(x)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    bn = layer_step(torch.nn.BatchNorm2d(64).to(dev), x, cot)
    mn = layer_step(MixtureNorm2d(64, 3, kernels="triton").to(dev), x, cot)
    calls = 200 if device == "cuda" else 100
    host = {"BN": host_seconds(bn, calls, sync=sync)}
    with stubbed_launches(record=False):
        host["MN triton (launches no-ops)"] = host_seconds(mn, calls, sync=sync)
    if device == "cuda":
        host["MN triton"] = host_seconds(mn, calls, sync=sync)
    for name, seconds in host.items():
        record("timings", f"host time, layer 8x64x4x4 fwd+bwd: {name} (us)", seconds * 1e6)
    ratio = host["MN triton (launches no-ops)"] / host["BN"]
    record("targets", "host time MN triton (launches no-ops)/BN", ratio, "<= 1.3", None,
           "met" if ratio <= 1.3 else "NOT met")
    if device == "cuda":
        launch = (host["MN triton"] - host["MN triton (launches no-ops)"]) / 6
        record("timings", "host time of one Triton launch (us)", launch * 1e6)


def compiled_kernels(device: str, record: Any) -> None:
    """What the GPU's own compile of each MN kernel came to: the kernels the sections
    before this one launched, as Triton's JIT cache holds them."""
    from host_work import TRITON_KERNELS

    from gan_mn.norm.triton import kernels as triton_kernels

    if device != "cuda":
        record("compile", "registers and spills of the compiled kernels",
               "needs CUDA", note="benchmarks/triton_compile.py compiles them without one")
        return
    for name in TRITON_KERNELS:
        for caches in getattr(triton_kernels, name).device_caches.values():
            for kernel in caches[0].values():
                kernel._init_handles()  # (done already if it ran: sets n_regs, n_spills)
                ok = kernel.n_regs <= 255 and kernel.n_spills == 0
                record("compile", f"{name} ({kernel.metadata.num_warps} warps) registers",
                       kernel.n_regs, "<= 255, no spills", ok,
                       f"spills {kernel.n_spills}, shared {kernel.metadata.shared} B")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--out", default=None, help="write the results here as JSON")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reps", type=int, default=10, help="steps per timed round")
    a = p.parse_args(argv)
    if a.device == "cpu":  # before anything imports Triton
        os.environ.setdefault("TRITON_INTERPRET", "1")
        a.rounds, a.reps = 1, 1
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    import gpu_check_kernels as kernels  # (beside this script, first on sys.path)
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (use --device cpu)", file=sys.stderr)
        return 2
    import triton

    card = torch.cuda.get_device_name() if a.device == "cuda" else "cpu (Triton interpreted)"
    print(f"gpu_check {time.strftime('%Y-%m-%d %H:%M')}: {card}, torch {torch.__version__}, "
          f"triton {triton.__version__}", flush=True)
    start = time.perf_counter()
    record = kernels.record
    sections = {"numerics": lambda: kernels.check_numerics(a.device),
                "layers": lambda: kernels.check_layers(a.device),
                "counts": lambda: kernels.check_counts(a.device),
                "syncs": lambda: check_syncs(a.device, record),
                "graph": lambda: check_graph(a.device, record),
                "timings": lambda: timings(a.device, record, a.rounds, a.reps),
                "compile": lambda: compiled_kernels(a.device, record)}
    run_timings = sections["timings"]
    sections["timings"] = lambda: (run_timings(), launch_cost(a.device, record))
    for name in a.only:
        began = time.perf_counter()
        try:
            sections[name]()
        except Exception as err:  # one broken section must not hide the others' results
            traceback.print_exc()
            record(name, "section raised", type(err).__name__, None, False,
                   str(err).splitlines()[0][:200] if str(err) else "")
        print(f"# {name}: {time.perf_counter() - began:.0f} s", flush=True)
    failed = [r for r in kernels.RESULTS if r["ok"] is False]
    seconds = time.perf_counter() - start
    print(f"gpu_check: {len(failed)} of {sum(r['ok'] is not None for r in kernels.RESULTS)} "
          f"checks failed, {seconds:.0f} s", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps({
            "device": card, "torch": torch.__version__, "triton": triton.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M"), "seconds": seconds,
            "passed": not failed, "results": kernels.RESULTS}, indent=1, default=str) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
