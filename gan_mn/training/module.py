"""The GAN LightningModule: manual optimisation of a generator and discriminator of one
of the three families (DCGAN, SNGAN's standard CNN, SNGAN's ResNet), nothing else.

Models, losses, data and metrics live elsewhere; this module wires them to Lightning.
``trainer.global_step`` counts generator updates (the discriminator's optimiser steps
are not counted), so ``max_steps`` and every ``*_every_n_steps`` mean generator steps,
as GAN papers count them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from typing_extensions import override

from gan_mn.errors import OptionError, UserError
from gan_mn.images import grid_image, log_image, save_png
from gan_mn.labels import default_label
from gan_mn.models import FAMILIES, build_models, sampling
from gan_mn.norm import make_norm
from gan_mn.training.finite_watch import FiniteWatch, check_state_finite
from gan_mn.training.losses import LOSSES
from gan_mn.training.step import GANUpdate, Step, generator_cycle

# the CLI's choices (`gan-mn fit --help`), read from the registries
Arch = Literal[FAMILIES.names()]  # type: ignore[valid-type]
LossName = Literal[LOSSES.names()]  # type: ignore[valid-type]


class GAN(pl.LightningModule):
    """A GAN of one family (``arch``) trained with manual optimisation: ``d_steps``
    discriminator steps, then one generator step.

    Args:
        label: name of the configuration in reports (e.g. ``bn``, ``mn-g``); derived
            from the architecture and the norms when not given.
        arch: ``dcgan`` (Radford et al.), ``sngan`` (SNGAN's standard CNN) or ``resnet``
            (SNGAN's CIFAR-10 ResNet); see :mod:`gan_mn.models`.
        z_dim, g_channels, d_channels: model sizes (DCGAN: 100, 512/256/128, 64/128/256;
            the DCGAN widths left as they are mean the family's own for the others).
        g_norm, d_norm: ``bn``, ``mn``, ``sn`` (spectral norm on the weights) or ``none``,
            for all norm layers or one per layer.
        norm_kwargs: options per norm kind, e.g. ``{"mn": {"num_components": 3}}``.
        loss: ``ns`` (non-saturating) or ``hinge``.
        lr_g, lr_d, betas: Adam settings (DCGAN: 2e-4, (0.5, 0.999)).
        d_steps: discriminator steps (each on a new batch) per generator step.
        sample_every_n_steps: save a fixed-noise sample grid every N generator steps
            (0: never); the noise is stored in the checkpoint.
        num_grid_samples: images in that grid.
        image_size: 32 or 64 (set from ``data.image_size`` by the CLI); at 64 the default
            widths gain one block on each side, as in the DCGAN paper.
        cuda_graph: on a GPU, capture the discriminator step and the generator's
            backward as one CUDA graph after three eager steps and replay it every step
            (:class:`~gan_mn.training.step.CapturedStep`; Adam becomes ``capturable``);
            with several D steps per G step, the batches of D's step alone are a second
            graph. One process, float32. On a CPU the same step runs
            eagerly on fixed buffers (it equals the plain step bit for bit). ``auto``
            (resolved by ``gan-mn fit``): capture where these allow, else run eagerly and
            say why in one line.
        num_classes: 0 (unconditional) or the data's number of classes: a
            class-conditional generator (conditional BN/MN) and a projection
            discriminator, trained on the data's labels; the sample grid has one row per
            class. Its steps run eagerly (no ``cuda_graph``).
    """

    def __init__(self, label: str | None = None,
                 arch: Arch = "dcgan", z_dim: int = 100,
                 g_channels: Sequence[int] = (512, 256, 128),
                 d_channels: Sequence[int] = (64, 128, 256),
                 g_norm: str | list[str] = "bn", d_norm: str | list[str] = "bn",
                 norm_kwargs: dict[str, dict[str, Any]] | None = None,
                 loss: LossName = "ns", lr_g: float = 2e-4, lr_d: float = 2e-4,
                 betas: tuple[float, float] = (0.5, 0.999), d_steps: int = 1,
                 sample_every_n_steps: int = 500, num_grid_samples: int = 64,
                 image_size: int = 32, cuda_graph: bool | Literal["auto"] = False,
                 num_classes: int = 0) -> None:
        super().__init__()
        if d_steps < 1:
            raise UserError(f"d_steps must be at least 1, got {d_steps}")
        if not (lr_g > 0 and lr_d > 0):
            raise UserError(f"learning rates must be positive, got lr_g={lr_g}, lr_d={lr_d}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise UserError(f"betas must be two numbers in [0, 1), got {list(betas)}")
        if sample_every_n_steps < 0 or num_grid_samples < 1:
            raise UserError("sample_every_n_steps must be >= 0 and num_grid_samples >= 1")
        if cuda_graph == "auto":
            raise UserError("cuda_graph 'auto' is resolved by gan-mn fit from the trainer's "
                            "settings; pass True or False to the module itself")
        if cuda_graph and num_classes:
            raise UserError("class-conditional models run eagerly: leave --model.cuda_graph "
                            "off (or auto)")
        self.save_hyperparameters()
        self.label = label or default_label(g_norm, d_norm, norm_kwargs, arch, num_classes)
        try:  # the registries' names, and every option given, even for a kind no layer uses
            LOSSES[loss]
            for kind, kwargs in (norm_kwargs or {}).items():
                make_norm(kind, 4, **kwargs)
            self.generator, self.discriminator = build_models(
                arch, z_dim, g_channels, d_channels, g_norm, d_norm, norm_kwargs, image_size,
                num_classes)
        except TypeError as err:  # an unknown option in norm_kwargs
            raise UserError(f"invalid norm_kwargs: {err}") from err
        except OptionError as err:  # a norm or model option out of range, as the user set it
            raise UserError(str(err)) from err
        if num_classes:  # one row per class, as many columns as the grid's size allows
            per_class = max(1, round(num_grid_samples / num_classes))
            self.register_buffer("fixed_labels",
                                 torch.arange(num_classes).repeat_interleave(per_class))
            num_grid_samples = per_class * num_classes
        else:
            self.fixed_labels: Tensor | None = None
        self.register_buffer("fixed_noise", self.generator.sample_latent(num_grid_samples))
        self.automatic_optimization = False
        self._last_grid_step = -1
        self.train_seconds = 0.0  # wall time inside training steps, kept across resumes
        self._batch_start = 0.0
        self._finite = FiniteWatch()
        self._update: GANUpdate | None = None  # built with the optimisers, per fit
        self._last_losses: dict[str, Tensor] = {}
        self._captured: Step | None = None  # captured: the batch that ends with G's step
        self._captured_d: Step | None = None  # captured: the batches of D's step alone

    @override
    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.generator(z, y)

    @override
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        h = self.hparams
        # A captured step keeps Adam's step counts on the device (torch refuses that on CPU).
        capturable = {"capturable": True} if h.cuda_graph and self.device.type == "cuda" else {}
        return [torch.optim.Adam(self.generator.parameters(), lr=h.lr_g, betas=tuple(h.betas),
                                 **capturable),
                torch.optim.Adam(self.discriminator.parameters(), lr=h.lr_d,
                                 betas=tuple(h.betas), **capturable)]

    @override
    def on_fit_start(self) -> None:
        self._update, self._captured, self._captured_d = None, None, None  # a new capture

    @override
    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        self._step(batch, batch_idx)
        # Training time: this step only. Callbacks (evaluations, checkpoint writes) run
        # after it and data loading before it; the first step's compilation counts.
        self.train_seconds += time.perf_counter() - self._batch_start

    def _gan_update(self) -> GANUpdate:
        """The update through Lightning: its backward (precision plugins, hooks), D's step
        through the strategy but not ``LightningOptimizer.step``, which would count it in
        ``global_step``, and its optimiser toggling for G's backward."""
        if self._update is None:
            opt_g, opt_d = self.optimizers()
            strategy = self.trainer.strategy
            self._update = GANUpdate(
                self.generator, self.discriminator, self.hparams.loss, opt_d, opt_g,
                backward=self.manual_backward,
                step_d=lambda: strategy.optimizer_step(opt_d.optimizer, closure=_no_closure),
                freeze_d=lambda: self.toggled_optimizer(opt_g))
            if self.hparams.cuda_graph:
                self._captured_d, self._captured = generator_cycle(
                    self._update, self.hparams.d_steps, graphed=True)
        return self._update

    def _step(self, batch: Tensor | tuple[Tensor, Tensor], batch_idx: int) -> None:
        """One batch: D's step, then G's when the cycle of ``d_steps`` batches ends. A
        class-conditional batch is ``(images, labels)``; the fake batches' labels are drawn
        uniformly after their noise, from the same seeded (and checkpointed) generator
        (``sample_labels`` draws nothing for an unconditional one)."""
        h = self.hparams
        update = self._gan_update()
        opt_g = self.optimizers()[0]
        real, y_real = batch if isinstance(batch, (tuple, list)) else (batch, None)
        n = real.shape[0]
        z = self.generator.sample_latent(n, self.device)
        y_fake = self.generator.sample_labels(n, self.device)
        generator_step = self._batches_done(batch_idx) % h.d_steps == 0
        if not generator_step:  # a D step alone
            loss_d = (self._captured_d(real, z)[0] if self._captured_d is not None
                      else update.discriminator_step(real, z, y_real, y_fake)[0])
            self._after_step(loss_d)
            return
        if self._captured is not None:  # (unconditional only: cuda_graph is refused else)
            # the noise of G's fresh fake batch drawn here, after z, as the plain step does
            z_g = () if h.d_steps == 1 else (self.generator.sample_latent(n, self.device),)
            loss_d, loss_g = self._captured(real, z, *z_g)
        else:
            loss_d, fake = update.discriminator_step(real, z, y_real, y_fake)
            if h.d_steps > 1:  # the fake batch above is stale: D has moved since
                z_g = self.generator.sample_latent(n, self.device)
                y_fake = self.generator.sample_labels(n, self.device)
                fake = self.generator(z_g, y_fake)
            loss_g = update.generator_backward(fake, y_fake)
        opt_g.step()
        self._after_step(loss_d, loss_g)

    def _after_step(self, loss_d: Tensor, loss_g: Tensor | None = None) -> None:
        """Note non-finite values on the device; log at Lightning's logging steps only
        (each logged value is read back then, a host sync on a GPU; logging every step
        would also cost launches for values nobody writes)."""
        losses = (loss_d,) if loss_g is None else (loss_d, loss_g)
        self._last_losses = {"loss/d": loss_d.detach()} | (
            {} if loss_g is None else {"loss/g": loss_g.detach()})
        self._finite.observe(self.global_step, [self.generator, self.discriminator], *losses)
        logging = self._logging_step()
        if self.device.type == "cpu" or logging:
            self._finite.check()
        if logging:
            # every row at the generator steps done, as the evaluations' rows and the
            # sample grids are (Lightning would use its 0-based batch index otherwise)
            self.log("step", torch.tensor(float(self.global_step)))
            self.log("loss/d", loss_d.detach())
            if loss_g is not None:
                self.log("loss/g", loss_g.detach())

    def _batches_done(self, batch_idx: int) -> int:
        """Batches trained on, this one included, across epochs and resumes: the D/G
        cycle runs on through an epoch's end (the batch index restarts there)."""
        trainer = self._trainer
        if trainer is None:
            return batch_idx + 1
        return trainer.fit_loop.epoch_loop.total_batch_idx + 1

    def _logging_step(self) -> bool:
        return True if self._trainer is None else logging_step(self.trainer)

    # --- sampling -------------------------------------------------------------------------
    def sampling_generator(self) -> nn.Module:
        """The generator to sample from: the weight-averaged (EMA) one when a
        ``WeightAveraging`` callback is training it, otherwise the live one."""
        trainer = self._trainer
        for cb in trainer.callbacks if trainer is not None else []:
            # Lightning keeps the AveragedModel privately and offers no public accessor
            # (lightning 2.6; pinned below 2.7 in pyproject): this is the one place we read it
            average = getattr(cb, "_average_model", None)
            if isinstance(cb, WeightAveraging) and average is not None:
                return average.module.generator
        return self.generator

    # --- bookkeeping ----------------------------------------------------------------------
    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """No checkpoint of a diverged model: raising here happens before anything is
        written, so the previous checkpoint stays."""
        self._finite.check()
        check_state_finite(checkpoint["state_dict"], self.global_step)
        checkpoint["train_seconds"] = self.train_seconds

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A run that trained with an EMA callback keeps its averaged weights in
        ``state_dict`` and the live ones in ``current_model_state``. Resumed by a
        Trainer without such a callback, it trains on from the live weights, the ones its
        optimiser moments belong to (not from the average); loaded without a Trainer
        (``load_from_checkpoint``), it keeps the average."""
        self.train_seconds = float(checkpoint.get("train_seconds", 0.0))
        self._update, self._captured, self._captured_d = None, None, None  # new optimisers
        trainer = self._trainer
        if trainer is None:  # loaded to sample or evaluate: the averaged weights, as saved
            return
        averaging = any(isinstance(cb, WeightAveraging) for cb in trainer.callbacks)
        if "current_model_state" in checkpoint and not averaging:
            rank_zero_warn("the checkpoint was trained with an EMA callback, which this run "
                           "does not have: training continues from the live weights and "
                           "the average is dropped")
            checkpoint["state_dict"] = checkpoint.pop("current_model_state")
            checkpoint.pop("averaging_state", None)

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Training time so far (for time-to-FID plots), then the sample grid when due.
        The last step is always logged, directly to the loggers when Lightning would not
        (a run shorter than ``log_every_n_steps`` still writes its metrics.csv)."""
        if self._logging_step():  # a host tensor: logging it copies nothing to the device
            self.log("time/train_seconds", torch.tensor(self.train_seconds))
        elif self._trainer is not None and 0 < self.trainer.max_steps <= self.global_step:
            row = {k: float(v) for k, v in self._last_losses.items()}
            for logger in self.loggers:
                logger.log_metrics({**row, "time/train_seconds": self.train_seconds},
                                   step=self.global_step)
        n, step = self.hparams.sample_every_n_steps, self.global_step
        if n and step % n == 0 and step != self._last_grid_step:
            self._last_grid_step = step
            self.save_sample_grid(step)

    @torch.no_grad()
    def save_sample_grid(self, step: int) -> Path:
        """Fixed-noise grid in eval mode (running norm statistics) as
        ``<run dir>/samples/step_XXXXXXX.png``, also sent to the loggers."""
        labels = () if self.fixed_labels is None else (self.fixed_labels,)
        with sampling(self.sampling_generator()) as generator:
            images = generator(self.fixed_noise, *labels)
        root = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        per_row = len(images) // self.hparams.num_classes if labels else None
        path = save_png(grid_image(images, per_row), root / "samples" / f"step_{step:07d}.png")
        log_image(self.loggers, "samples/fixed_noise", path, step)
        return path


def logging_step(trainer: pl.Trainer) -> bool:
    """Whether Lightning writes the logged values after the current batch (its
    ``log_every_n_steps`` counts batches, across epochs and resumes)."""
    every = trainer.log_every_n_steps
    return every > 0 and (trainer.fit_loop.epoch_loop.total_batch_idx + 1) % every == 0


def _no_closure() -> None:
    """Manual optimisation has already run backward; the step needs no closure."""
