"""What a ``MixtureNorm2d`` layer's mixture looks like on a batch: is it still a mixture,
or has it collapsed towards one component (BatchNorm)?

Computed on demand (at logging steps, or by ``evaluate``), never in the training step:
every value is a device tensor, read back only by whoever logs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn

from gan_mn.norm.gmm import TINY, Mixture, e_step
from gan_mn.norm.layout import SampleView
from gan_mn.norm.mixture import MixtureNorm2d

FIELDS = ("effective_components", "posterior_entropy", "separation", "min_weight",
          "below_one_sample")


@torch.no_grad()
def mixture_diagnostics(layer: MixtureNorm2d, x: Tensor) -> dict[str, Tensor]:
    """The layer's current mixture (its warm start ``em_*``: the last batch's fit) on the
    batch ``x`` (``(N, C, H, W)``, the layer's input):

    - ``weight_<i>``: the mixture weights, largest first, and ``min_weight``;
    - ``effective_components``: exp(entropy of the weights), from 1 (one component
      holds everything: BatchNorm) to K (equal weights);
    - ``posterior_entropy``: the samples' mean posterior entropy / log K, from 0 (every
      sample in one component: hard assignments) to 1 (no component preferred);
    - ``separation``: the mean over component pairs of the distance between their means,
      in units of the pooled within-component standard deviation (root mean square over
      channels); far above 1 for distinct components;
    - ``below_one_sample``: components whose posterior mass in ``x`` is below one sample,
      the ones the layer re-seeds.
    """
    k = layer.num_components
    weight = layer.em_weight.float()
    mean = layer.em_mean.float()
    var = layer.em_var.float().clamp_min(layer.eps)
    view = SampleView.of(x.detach().float())
    centre = (weight.unsqueeze(1) * mean).sum(0)
    z = view.data - view.col(centre)
    tau = e_step(view, z, z * z, Mixture(weight, mean - centre, var), layer.eps)
    entropy = (-torch.xlogy(tau, tau).sum(view.kdim).mean()).clamp_min(0.0)
    mass = tau.sum(dim=[d for d in range(tau.dim()) if d != view.kdim])
    w = weight.clamp_min(TINY)
    pooled = (weight.unsqueeze(1) * var).sum(0)  # within-component variance per channel
    i, j = torch.triu_indices(k, k, 1, device=mean.device)
    gaps = ((mean[i] - mean[j]) ** 2 / pooled).mean(1).sqrt()
    out = {f"weight_{n}": v for n, v in enumerate(weight.sort(descending=True).values)}
    return out | {
        "min_weight": weight.min(),
        "effective_components": torch.exp(-(w * w.log()).sum()),
        "posterior_entropy": entropy / math.log(k) if k > 1 else entropy * 0,
        "separation": gaps.mean() if k > 1 else torch.zeros((), device=mean.device),
        "below_one_sample": (mass < 1.0).sum().float(),
    }


@contextmanager
def recording(model: nn.Module) -> Iterator[dict[str, dict[str, Tensor]]]:
    """While open, the diagnostics of every ``MixtureNorm2d`` (K > 1) of ``model`` on its
    first training-mode input, by layer name (``generator.net.1``); the hooks are removed
    on exit, so nothing runs outside."""
    values: dict[str, dict[str, Tensor]] = {}

    def record(name: str, layer: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        if layer.training and name not in values:
            assert isinstance(layer, MixtureNorm2d)
            values[name] = mixture_diagnostics(layer, args[0])

    handles = [layer.register_forward_hook(partial(record, name))
               for name, layer in model.named_modules()
               if isinstance(layer, MixtureNorm2d) and layer.num_components > 1]
    try:
        yield values
    finally:
        for handle in handles:
            handle.remove()


def flat(values: dict[str, dict[str, Tensor]]) -> dict[str, float]:
    """``{"mn/<layer>/<field>": value}``, read back in one transfer."""
    keys = [f"mn/{name}/{field}" for name, fields in values.items() for field in fields]
    if not keys:
        return {}
    stacked = torch.stack([v.float() for fields in values.values() for v in fields.values()])
    return dict(zip(keys, stacked.tolist(), strict=True))
