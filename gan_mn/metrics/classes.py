"""Metrics of a class-conditional generator, from one class-balanced sample (image ``i``
of class ``i % K``) whose features are extracted once:

- IS, FID, KID and PRC over the whole sample, as for an unconditional generator;
- **intra-class FID**: the mean over classes of each class's FID against that class's
  reference images (reference statistics cached per class, by torch-fidelity);
- **class accuracy**: the share of images that the built-in ``cifar10-proxy``
  classifier assigns to the class they were generated for; only for data whose classes
  are CIFAR-10's (its batch files, or a class-per-folder copy with its class names).

With ``n`` samples each class's FID uses ``n / K`` of them: it is biased upward more
than the overall FID, and compares only with values from as many samples.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from torch_fidelity.metric_fid import (
    fid_features_to_statistics,
    fid_input_id_to_statistics_cached,
    fid_statistics_to_metric,
)
from torch_fidelity.utils import (
    create_feature_extractor,
    get_featuresdict_from_dataset,
    resolve_feature_layer_for_metric,
)

from gan_mn.data.datamodule import UInt8Images
from gan_mn.data.sources import CIFAR10_CLASSES
from gan_mn.metrics.fidelity import (
    balanced_labels,
    check_cache,
    fidelity_kwargs,
    generate,
    numbers,
    reference_cache_name,
)
from gan_mn.metrics.protocol import CLASSIFIER, MetricsError, MetricSettings, Protocol
from gan_mn.metrics.sharded import metrics_from_features

LOGITS = "logits_unbiased"  # the classifier's class scores


def compute_class_metrics(generator: nn.Module, reference: Dataset, labels: Tensor,
                          class_names: tuple[str, ...], reference_key: str,
                          protocol: Protocol, settings: MetricSettings) -> dict[str, float]:
    """``compute_metrics``'s values for a class-conditional generator, with intra-class
    FID and (CIFAR-10 classes) class accuracy; ``labels`` are the reference's."""
    classes = int(generator.num_classes)
    if len(class_names) != classes:
        raise MetricsError(f"the generator has {classes} classes, the reference "
                           f"{len(class_names)}")
    check_classes(protocol.num_samples, classes, labels)
    cuda = next(generator.parameters()).device.type == "cuda"
    kwargs = fidelity_kwargs(reference, reference_key, protocol, settings, cuda=cuda)
    check_cache(kwargs)
    layers = {m: resolve_feature_layer_for_metric(m, **kwargs) for m in settings.metrics}
    fid_layer = resolve_feature_layer_for_metric("fid", **kwargs)
    accuracy = tuple(class_names) == CIFAR10_CLASSES
    same = accuracy and protocol.feature_extractor == CLASSIFIER
    wanted = set(layers.values()) | {fid_layer} | ({LOGITS} if same else set())
    extractor = create_feature_extractor(protocol.feature_extractor, sorted(wanted), **kwargs)
    images = UInt8Images(generate(generator, protocol.num_samples, protocol.seed,
                                  protocol.norm_mode, settings.batch_size))
    features = _features(images, extractor, kwargs)
    values = numbers(protocol, metrics_from_features(features, extractor, layers, kwargs))
    made = balanced_labels(0, protocol.num_samples, classes)
    base = reference_cache_name(reference_key, protocol.feature_extractor,
                                settings.feature_extractor_weights_path)
    values[protocol.key("intra_class_fid")] = _intra_class_fid(
        features[fid_layer], made, reference, labels, extractor, fid_layer,
        {**kwargs, "input2_cache_name": base})
    if accuracy:
        logits = features[LOGITS] if same else _features(images, create_feature_extractor(
            CLASSIFIER, [LOGITS], cuda=cuda, verbose=False), kwargs)[LOGITS]
        values[protocol.class_accuracy_key()] = float(
            (logits.argmax(1) == made).float().mean())
    return values


def check_classes(num_samples: int, classes: int, labels: Tensor) -> None:
    """Intra-class FID needs two generated and two reference images of every class."""
    counts = torch.bincount(labels, minlength=classes)
    if num_samples < 2 * classes or int(counts.min()) < 2:
        raise MetricsError(f"intra-class FID needs at least 2 images of each class: "
                           f"{num_samples} samples for {classes} classes, and the "
                           f"reference's smallest class has {int(counts.min())}")


def _features(images: Dataset, extractor: object, kwargs: dict) -> dict[str, Tensor]:
    return get_featuresdict_from_dataset(images, extractor, kwargs["batch_size"],
                                         kwargs["cuda"], save_cpu_ram=True, verbose=False)


def _intra_class_fid(features: Tensor, made: Tensor, reference: Dataset, labels: Tensor,
                     extractor: object, layer: str, kwargs: dict) -> float:
    """The mean over classes of FID(generated of class c, reference of class c)."""
    digest = hashlib.sha1(labels.numpy().tobytes()).hexdigest()[:8]
    base = kwargs["input2_cache_name"]
    fids = []
    for c in range(int(labels.max()) + 1):
        subset = torch.utils.data.Subset(reference, torch.nonzero(labels == c).flatten())
        per_class = {**kwargs, "input2": subset, "save_cpu_ram": True,  # (no workers)
                     "input2_cache_name": f"{base}-labels{digest}-class{c}"}
        check_cache(per_class)
        ref = fid_input_id_to_statistics_cached(2, extractor, layer, **per_class)
        gen = fid_features_to_statistics(features[made == c])
        fids.append(fid_statistics_to_metric(gen, ref, False)["frechet_inception_distance"])
    return float(sum(fids) / len(fids))
