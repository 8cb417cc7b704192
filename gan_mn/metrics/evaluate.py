"""Score a checkpoint: ``gan-mn evaluate`` without the argument parsing."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import torch

from gan_mn.data import GANDataModule, UInt8Images
from gan_mn.errors import UserError
from gan_mn.metrics.fidelity import (
    balanced_labels,
    check_extractor_weights,
    compute_metrics,
    load_plugin,
)
from gan_mn.metrics.protocol import MetricSettings
from gan_mn.norm.mixture_summary import flat, recording
from gan_mn.training import load_run

log = logging.getLogger(__name__)
FEW_SAMPLES = 2048  # Inception's feature size: fewer samples, a rank-deficient covariance


def reference_data(spec: str | None, data_hparams: dict[str, Any] | None, image_size: int,
                   data_root: str | None = None) -> GANDataModule:
    """The reference images: ``None`` (the checkpoint's training data), ``cifar10-train``,
    ``cifar10-test`` or a folder of images."""
    if spec is None:
        if not data_hparams:
            raise UserError("the checkpoint does not record its training data; "
                             "pass --reference DIR or cifar10-train")
        keep = ("dataset", "root", "split", "image_size", "download")
        hparams = {k: v for k, v in data_hparams.items() if k in keep}
        if data_root:
            hparams["root"] = data_root
        return GANDataModule(**hparams)
    if spec in ("cifar10-train", "cifar10-test"):
        root = data_root or ((data_hparams or {}).get("root") if (data_hparams or {}).get(
            "dataset") == "cifar10" else None) or "data"
        return GANDataModule("cifar10", root=root, split=spec.split("-")[1])
    return GANDataModule("imagefolder", root=spec, image_size=image_size)


def mixture_state(gan: torch.nn.Module, training: GANDataModule, device: str,
                  seed: int) -> dict[str, float]:
    """The MN layers' diagnostics (``mn/<layer>/<field>``, as training logs them) on one
    training batch: the generator on seeded noise, the discriminator on the first
    ``batch_size`` training images, each layer fitting that batch as in training, on a
    copy (the checkpoint's state is left as it was)."""
    model = copy.deepcopy(gan).to(device).train()
    batch = int(training.hparams.batch_size)
    noise = torch.randn(batch, model.generator.z_dim, generator=torch.Generator().manual_seed(seed))
    images = training.load_images()[:batch].to(device).float().div(127.5).sub(1.0)
    classes = model.generator.num_classes
    made = () if not classes else (balanced_labels(0, batch, classes).to(device),)
    real = () if not classes else (training.labels[:batch].to(device),)
    with torch.no_grad(), recording(model) as values:
        model.generator(noise.to(device), *made)
        model.discriminator(images, *real)
    return flat(values)


def evaluate_checkpoint(checkpoint: str | Path, settings: MetricSettings, *,
                        reference: str | None = None, data_root: str | None = None,
                        device: str | None = None) -> dict[str, Any]:
    """Metric values and the protocol that produced them, as one flat record."""
    if settings.num_samples < FEW_SAMPLES and {"fid", "kid"} & set(settings.metrics):
        log.warning("FID/KID from %d samples is biased upward and shifts with the sample "
                    "count: compare it only with values from as many samples (%d or more, "
                    "and 10,000-50,000 as papers report, give stable values)",
                    settings.num_samples, FEW_SAMPLES)
    load_plugin(settings.extractor_plugin)
    check_extractor_weights(settings.feature_extractor, settings.feature_extractor_weights_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    run = load_run(checkpoint)
    generator = run.gan.generator.to(device)
    size = int((run.data_hparams or {}).get("image_size", 32))
    data = reference_data(reference, run.data_hparams, size, data_root)
    protocol = settings.protocol(data.metric_suffix())
    start = time.perf_counter()
    values = compute_metrics(generator, generator.z_dim, UInt8Images(data.load_images()),
                             data.content_key(), protocol, settings,
                             (data.labels, data.class_names) if data.labels is not None else None)
    inside = mixture_state(run.gan, data if reference is None else reference_data(
        None, run.data_hparams, size, data_root), device, settings.seed)
    return {**values, **inside, "checkpoint": str(run.path), "step": run.step, "ema": run.ema,
            "num_samples": settings.num_samples, "reference": data.source_label(),
            "reference_key": data.content_key(), "feature_extractor": settings.feature_extractor,
            "feature_extractor_weights": settings.feature_extractor_weights_path,
            "norm_mode": settings.norm_mode, "seed": settings.seed,
            "seconds": round(time.perf_counter() - start, 3)}
