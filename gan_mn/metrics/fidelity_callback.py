"""FidelityCallback: IS/FID (and KID, PRC) with torch-fidelity every N training steps.

Logger-agnostic: values go to every attached logger through ``log_metrics`` and to
``trainer.callback_metrics`` (so ``ModelCheckpoint(monitor=...)`` can keep the best).
It needs only two things from the run: the module's ``sampling_generator()`` (or its
``generator``) and a datamodule with ``load_images()``, ``content_key()`` and ``metric_suffix()``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from typing_extensions import override

from gan_mn.data import UInt8Images
from gan_mn.images import grid_image, log_image, save_png
from gan_mn.metrics.classes import check_classes
from gan_mn.metrics.fidelity import (
    MetricsError,
    check_extractor_weights,
    compute_metrics,
    generate,
    load_plugin,
    validate,
)
from gan_mn.metrics.protocol import MetricSettings, NormMode, Protocol
from gan_mn.metrics.sharded import compute_metrics_sharded

log = logging.getLogger(__name__)


class FidelityCallback(Callback):
    """Scores the generator with torch-fidelity during training.

    Args:
        every_n_steps: evaluate every N generator steps (0 disables).
        num_samples: generated images per evaluation.
        metrics: any of ``isc``, ``fid``, ``kid``, ``prc``.
        feature_extractor: a torch-fidelity extractor name (Inception by default).
        feature_extractor_weights_path: local weights, for machines without internet.
        extractor_plugin: Python file or module imported first (registers extractors).
        cache_dir: where reference statistics are cached between runs.
        norm_mode: sample with ``running`` norm statistics (eval mode) or ``batch`` ones.
        batch_size: images per generator / extractor batch.
        seed: noise seed, the same at every evaluation so curves compare like with like.
        kid_subset_size: KID subset size (torch-fidelity's default 1000).
    """

    def __init__(self, every_n_steps: int = 0,
                 num_samples: int = MetricSettings.num_samples,
                 metrics: list[str] | None = None,
                 feature_extractor: str = MetricSettings.feature_extractor,
                 feature_extractor_weights_path: str | None = None,
                 extractor_plugin: str | None = None,
                 cache_dir: str = MetricSettings.cache_dir,
                 norm_mode: NormMode = MetricSettings.norm_mode,
                 batch_size: int = MetricSettings.batch_size,
                 seed: int = MetricSettings.seed,
                 kid_subset_size: int = MetricSettings.kid_subset_size) -> None:
        if every_n_steps < 0:
            raise MetricsError(f"every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.settings = MetricSettings(
            num_samples, tuple(metrics) if metrics is not None else MetricSettings.metrics,
            feature_extractor, feature_extractor_weights_path, extractor_plugin, cache_dir,
            norm_mode, batch_size, seed, kid_subset_size)
        self._last_step = -1
        if every_n_steps:  # fail at start-up, not hours into the run
            load_plugin(extractor_plugin)
            check_extractor_weights(feature_extractor, feature_extractor_weights_path)

    @property
    def enabled(self) -> bool:
        return self.every_n_steps > 0

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.settings.metrics

    def protocol(self, reference: str) -> Protocol:
        return self.settings.protocol(reference)

    def check_data(self, datamodule: Any) -> None:
        """Check the settings against the data (e.g. KID's subset size; for a
        class-conditional run, two samples and two reference images of every class)
        before training."""
        if self.enabled and datamodule is not None:
            validate(self.settings, datamodule.load_images().shape[0])
            classes = int(getattr(datamodule.hparams, "num_classes", 0) or 0)
            if classes:
                check_classes(self.settings.num_samples, classes, datamodule.labels)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.check_data(trainer.datamodule)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.enabled and step % self.every_n_steps == 0 and step not in (0, self._last_step):
            self._last_step = step
            self.evaluate(trainer, pl_module)

    @torch.no_grad()
    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Compute, log and return the metrics for the current generator."""
        datamodule = trainer.datamodule
        generator: nn.Module = (pl_module.sampling_generator() if hasattr(
            pl_module, "sampling_generator") else pl_module.generator)
        protocol = self.protocol(datamodule.metric_suffix())
        args = (generator, generator.z_dim, UInt8Images(datamodule.load_images()),
                datamodule.content_key(), protocol, self.settings)
        values: dict[str, float] | None
        if getattr(generator, "num_classes", 0):  # one process scores, all log the same
            classes = (datamodule.labels, datamodule.class_names)
            values = compute_metrics(*args, classes) if trainer.global_rank == 0 else None
            values = trainer.strategy.broadcast(values, src=0)
        elif trainer.world_size == 1:
            values = compute_metrics(*args)
        else:  # every rank samples its share; rank 0 computes; all log the same values
            values = compute_metrics_sharded(*args, rank=trainer.global_rank,
                                             world=trainer.world_size, gather=_all_gather)
            values = trainer.strategy.broadcast(values, src=0)
        assert values is not None
        step = trainer.global_step
        if trainer.training:  # callback_metrics: what ModelCheckpoint monitors
            for key, value in values.items():
                pl_module.log(key, value, on_step=True, on_epoch=False, logger=False,
                              prog_bar=key == protocol.fid_key(), sync_dist=False)
        for logger in trainer.loggers:
            logger.log_metrics({**values, "metrics/num_samples": self.settings.num_samples},
                               step=step)
        # trainer.log_dir is a collective under DDP: every rank asks, rank 0 writes
        self._log_grid(trainer, generator, step, Path(trainer.log_dir or trainer.default_root_dir))
        log.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
        return values

    @rank_zero_only
    def _log_grid(self, trainer: pl.Trainer, generator: nn.Module, step: int,
                  root: Path) -> None:
        s = self.settings
        images = generate(generator, 64, s.seed, s.norm_mode, s.batch_size)
        path = save_png(grid_image(images),
                        root / "samples" / f"metrics_step_{step:07d}.png")
        log_image(trainer.loggers, "samples/metrics", path, step)


def _all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, on every rank (DDP's default process group)."""
    import torch.distributed as dist

    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts
