"""The one place that names runs: a run's label from its settings (the group it belongs
to in a report, and the study's group names) and its directory name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from inspect import signature
from typing import Any

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gan_mn.norm import MixtureNorm2d
from gan_mn.runs import NO_EFFECT_NORM_OPTIONS


def default_label(g_norm: str | Sequence[str], d_norm: str | Sequence[str],
                  norm_kwargs: dict[str, dict[str, Any]] | None = None,
                  arch: str = "dcgan", num_classes: int = 0) -> str:
    """Run label from the architecture and the norms: ``bn``, ``mn-g`` (MN in G only),
    ``mn-gd``, ``none``, or a spelled-out mix such as ``g-mn+bn_d-bn``; for SNGAN's
    families (spectral norm in D) the generator's norm after the family's name
    (``sngan-bn``, ``resnet-mn-g``); a ``c`` before the norm for class-conditional
    models (``cbn``, ``cmn-g``); then each norm option that differs from the layer's
    default, so that settings that differ get names that differ (``mn-g-k5``,
    ``mn-g-em3``, ``bn-momentum0.01``)."""
    g = {g_norm} if isinstance(g_norm, str) else set(g_norm)
    d = {d_norm} if isinstance(d_norm, str) else set(d_norm)
    if arch != "dcgan" and d == {"sn"}:
        label = "mn-g" if g == {"mn"} else "+".join(sorted(g))
    elif g == d and len(g) == 1:
        kind = next(iter(g))
        label = f"{kind}-gd" if kind == "mn" else kind
    elif g == {"mn"} and d <= {"bn", "none"}:
        label = "mn-g"
    else:
        label = f"g-{'+'.join(sorted(g))}_d-{'+'.join(sorted(d))}"
    prefix = ("" if arch == "dcgan" else f"{arch}-") + ("c" if num_classes else "")
    return prefix + label + "".join(f"-{part}" for part in norm_option_names(g | d, norm_kwargs))


def norm_option_names(kinds: set[str], norm_kwargs: dict[str, dict[str, Any]] | None
                      ) -> list[str]:
    """``k5``, ``em3``, ``momentum0.01``...: the options of the used norm kinds that are not
    their layers' defaults (those that change no result, :mod:`gan_mn.runs`, left out)."""
    layers: dict[str, Callable[..., Any]] = {"mn": MixtureNorm2d, "bn": nn.BatchNorm2d,
                                             "sn": spectral_norm}
    short = {"num_components": "k", "em_iters": "em"}
    parts = []
    for kind in sorted(kinds & set(norm_kwargs or {})):
        defaults = {n: p.default for n, p in signature(layers[kind]).parameters.items()}
        for key, value in sorted((norm_kwargs or {})[kind].items()):
            if key not in NO_EFFECT_NORM_OPTIONS and defaults.get(key, object()) != value:
                prefix = "" if kind == "mn" or len(kinds) == 1 else f"{kind}-"
                parts.append(f"{prefix}{short.get(key, key)}{value}")
    return parts


def run_name(label: str, arch: str, seed: int) -> str:
    """A run's directory name: ``<label>-seed<seed>``, with the family first unless the
    label says it (a smoke run of each family gets its own directory, ``sngan-smoke-seed0``,
    not the DCGAN one's)."""
    family = "" if arch == "dcgan" or label.startswith(arch) else f"{arch}-"
    return f"{family}{label}-seed{seed}"
