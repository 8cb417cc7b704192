"""How far is MN's one warm-started EM iteration from a converged mixture fit?

Run:  python benchmarks/em_convergence.py --data SUBSET.npz   (``train_x``: uint8 N,3,32,32)

Trains the standard DCGAN with MN in every norm layer (K=3, defaults) on real
CIFAR-10 images for ``--steps`` steps. Every ``--every`` steps, at every MN layer,
it takes the layer's input and its warm start (the previous batch's fit) and runs
EM from there for 1, 2, 3, 5 iterations and for ``--reference`` iterations (taken
as converged), then prints, per iteration count, against the converged fit:
- the mean absolute difference of the normalized outputs, relative to their std;
- the fraction of samples whose most likely component differs.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_mn.models import DCGANDiscriminator, DCGANGenerator
from gan_mn.norm import MixtureNorm2d
from gan_mn.norm.functional import normalize, shifted_samples
from gan_mn.norm.gmm import Mixture, fit

ITERS = (1, 2, 3, 5)


def load_images(path: Path) -> Tensor:
    """CIFAR-10 training images of an npz (``train_x``: uint8 N,3,32,32) in [-1, 1]."""
    if not path.is_file():
        raise SystemExit(f"error: --data {path} is not a file")
    with np.load(path) as data:
        if "train_x" not in data:
            raise SystemExit(f"error: {path} has no 'train_x' array")
        images = torch.from_numpy(data["train_x"]).float()
    return images / 127.5 - 1.0


@torch.no_grad()
def compare(layer: MixtureNorm2d, x: Tensor, reference: int) -> dict[int, tuple[float, float]]:
    """Output deviation and assignment changes of each iteration count vs the reference."""
    view, c, z = shifted_samples(x)
    z2 = z * z
    start = Mixture(layer.em_weight, layer.em_mean - c, layer.em_var)
    results = {}
    for iters in (*ITERS, reference):
        tau, stats = fit(view, z, z2, start, iters, layer.eps)
        out, _ = normalize(view, z, tau, stats, layer.eps, layer.weight, layer.bias)
        results[iters] = (out, tau.argmax(view.kdim))
    ref_out, ref_label = results.pop(reference)
    scale = ref_out.std()
    return {i: (float((o - ref_out).abs().mean() / scale),
                float((lab != ref_label).float().mean())) for i, (o, lab) in results.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="npz with train_x (uint8)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--reference", type=int, default=50, help="EM iterations taken as converged")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    images = load_images(args.data)
    g, d = DCGANGenerator(norm="mn"), DCGANDiscriminator(norm="mn")
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    layers = {f"{net}.{name}": m for net, model in (("G", g), ("D", d))
              for name, m in model.named_modules() if isinstance(m, MixtureNorm2d)}
    measuring = {"on": False}
    totals: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))

    def hook(name: str):  # measure on the layer's input, before it updates its state
        def pre(layer: nn.Module, inputs: tuple[Tensor]) -> None:
            if measuring["on"] and layer.training and bool(layer.em_seeded):
                for i, v in compare(layer, inputs[0].detach(), args.reference).items():
                    totals[name][i].append(v)
        return pre

    for name, layer in layers.items():
        layer.register_forward_pre_hook(hook(name))
    ones, zeros = torch.ones(args.batch), torch.zeros(args.batch)
    for step in range(args.steps):
        measuring["on"] = step > 0 and step % args.every == 0
        real = images[torch.randint(len(images), (args.batch,))]
        fake = g(g.sample_latent(args.batch))
        loss_d = (F.binary_cross_entropy_with_logits(d(real), ones)
                  + F.binary_cross_entropy_with_logits(d(fake.detach()), zeros))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        measuring["on"] = False  # one measurement per layer and step
        loss_g = F.binary_cross_entropy_with_logits(d(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

    print(f"DCGAN, MN K=3 everywhere, {args.steps} steps on {len(images)} CIFAR-10 images, "
          f"measured every {args.every} steps against {args.reference} EM iterations")
    print(f"{'layer':<10}" + "".join(f"{f'{i} it: dev / moved':>22}" for i in ITERS))
    for name, per_iter in totals.items():
        means = [np.mean(per_iter[i], axis=0) for i in ITERS]
        print(f"{name:<10}" + "".join(f"{f'{dev:.4f} / {moved:.3f}':>22}" for dev, moved in means))


if __name__ == "__main__":
    main()
