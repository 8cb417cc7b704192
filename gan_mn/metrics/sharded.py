"""Metrics with the samples split over processes (DDP): each rank generates and extracts
features for its share, rank 0 gathers them and computes the metrics once.

The samples are exactly those of ``compute_metrics`` on one process: the noise comes
from torch-fidelity's own noise stream (``rng_seed``), drawn by every rank in full, and
batch ``b`` is generated on rank ``b % world``; the features are put back in batch
order. The metric arithmetic is torch-fidelity's (``*_featuresdict_to_*``), the same
calls ``calculate_metrics`` makes, and the reference goes through its cache.

This module and :mod:`gan_mn.metrics.classes` (metrics per class) are the places that
use torch-fidelity's internal functions (its public API computes on one process, over
one input, only); torch-fidelity is pinned below 0.5 in pyproject so that a change there
fails at install time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from torch_fidelity.metric_fid import (
    fid_featuresdict_to_statistics,
    fid_featuresdict_to_statistics_cached,
    fid_statistics_to_metric,
)
from torch_fidelity.metric_isc import isc_featuresdict_to_metric
from torch_fidelity.metric_kid import kid_featuresdict_to_metric
from torch_fidelity.metric_prc import prc_featuresdict_to_metric
from torch_fidelity.registry import NOISE_SOURCE_REGISTRY
from torch_fidelity.utils import (
    create_feature_extractor,
    extract_featuresdict_from_input_id_cached,
    get_cacheable_input_name,
    resolve_feature_layer_for_metric,
)

from gan_mn.metrics.fidelity import (
    UInt8Generator,
    check_extractor,
    fidelity_kwargs,
    numbers,
    validate,
)
from gan_mn.metrics.protocol import MetricSettings, Protocol
from gan_mn.models import sampling

Features = dict[int, dict[str, Tensor]]  # batch index -> layer -> (batch, D)


def compute_metrics_sharded(generator: nn.Module, z_dim: int, reference: Dataset,
                            reference_key: str, protocol: Protocol, settings: MetricSettings,
                            *, rank: int, world: int,
                            gather: Callable[[Features], list[Features]]
                            ) -> dict[str, float] | None:
    """``compute_metrics`` over ``world`` processes; every rank calls it, rank 0 gets the
    values (others ``None``). ``gather`` collects each rank's features on every rank
    (e.g. ``torch.distributed.all_gather_object``)."""
    names = validate(settings, len(reference))
    check_extractor(protocol.feature_extractor)
    device = next(generator.parameters()).device
    kwargs = fidelity_kwargs(reference, reference_key, protocol, settings,
                             cuda=device.type == "cuda")
    layers = {m: resolve_feature_layer_for_metric(m, **kwargs) for m in names}
    extractor = create_feature_extractor(protocol.feature_extractor,
                                         sorted(set(layers.values())), **kwargs)
    rng = np.random.RandomState(protocol.seed)
    n, step = protocol.num_samples, kwargs["batch_size"]
    mine: Features = {}
    with sampling(generator, protocol.norm_mode) as sampler, torch.no_grad():
        model = UInt8Generator(sampler)
        for b, start in enumerate(range(0, n, step)):
            noise = NOISE_SOURCE_REGISTRY["normal"](rng, (min(step, n - start), z_dim))
            if b % world != rank:
                continue  # drawn anyway: the stream must stay torch-fidelity's
            feats = extractor.convert_features_tuple_to_dict(extractor(model(noise.to(device))))
            mine[b] = {k: v.cpu() for k, v in feats.items()}
    parts = gather(mine)
    if rank != 0:
        return None
    merged = {b: f for part in parts for b, f in part.items()}
    features = {k: torch.cat([merged[b][k] for b in sorted(merged)]) for k in merged[0]}
    return numbers(protocol, metrics_from_features(features, extractor, layers, kwargs))


def metrics_from_features(features: dict[str, Tensor], extractor: Any, layers: dict[str, str],
             kwargs: dict[str, Any]) -> dict[str, Any]:
    """What ``torch_fidelity.calculate_metrics`` does once input 1's features exist."""
    out: dict[str, Any] = {}
    reference = (extract_featuresdict_from_input_id_cached(2, extractor, **{
        **kwargs, "save_cpu_ram": True}) if kwargs["input2"] is not None else None)
    if "isc" in layers:
        out.update(isc_featuresdict_to_metric(features, layers["isc"], **kwargs))
    if "fid" in layers:
        stats = fid_featuresdict_to_statistics(features, layers["fid"])
        ref = fid_featuresdict_to_statistics_cached(
            reference, get_cacheable_input_name(2, **kwargs), extractor, layers["fid"],
            **kwargs)
        out.update(fid_statistics_to_metric(stats, ref, False))
    if "kid" in layers:
        out.update(kid_featuresdict_to_metric(features, reference, layers["kid"], **kwargs))
    if "prc" in layers:
        out.update(prc_featuresdict_to_metric(features, reference, layers["prc"], **kwargs))
    return out
