"""``MixtureNorm2d``: a drop-in for ``nn.BatchNorm2d`` that normalizes per mixture component."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.lazy import LazyModuleMixin

from gan_mn.errors import OptionError
from gan_mn.norm.functional import (
    EMSettings,
    MixtureNormFunction,
    MixtureState,
    StateUpdate,
    mixture_norm_autograd,
    normalize,
    shifted_samples,
    update_state,
)
from gan_mn.norm.gmm import BatchStats, Collectives, Mixture, e_step, seed
from gan_mn.norm.kernels import KERNEL_CHOICES, select_kernels
from gan_mn.norm.layout import SampleView
from gan_mn.norm.options import check_count, check_eps, check_flag, check_momentum


class MixtureNorm2d(nn.Module):
    """Mixture Normalization (Kalayeh & Shah, arXiv:1806.02892) over ``(N, C, H, W)``.

    Training mode fits a ``K``-component diagonal GMM to the batch's ``N*H*W``
    samples and normalizes each against its soft component:
    ``y = gamma * sum_k tau_k / sqrt(lambda_k) * (x - m_k) / sqrt(v_k + eps) + beta``.
    ``K = 1`` is exactly ``BatchNorm2d``.

    Estimation (our choices, see docs/design.md): the mixture is seeded once by k-means++
    and ``seed_iters`` EM iterations on the first training batch, then each batch
    runs ``em_iters`` EM iterations warm-started from the previous batch's fit
    (``em_*`` buffers), which keeps component identity stable from step to step.
    ``running_*`` buffers hold BN-style momentum averages of the batch weights,
    means and unbiased variances; eval mode takes posteriors and statistics from
    them. A component whose responsibility mass falls below one sample is re-seeded
    at a sample chosen by a hash of the batch count (:func:`gan_mn.norm.gmm.pick_index`:
    no draw from torch's random stream, so re-seeding leaves the run's randomness as it
    was), with the batch's overall variance and an equal share of the weight. Estimation
    runs in float32 even under autocast; the output keeps the input's dtype.

    Args:
        num_features: channels ``C``.
        num_components: mixture components ``K``.
        eps: added to the component variances (and the variance floor of the GMM).
        momentum: running-average factor, or ``None`` for a cumulative average.
        affine: learn per-channel ``weight`` and ``bias`` as BN does.
        em_iters: EM iterations per training batch (the last E-step's posteriors normalize).
        seed_iters: EM iterations after k-means++ seeding on the first batch.
        detach_posteriors: treat posteriors as constants in backprop (the paper's
            choice, and the fast analytic backward); ``False`` differentiates
            through the EM iterations with autograd.
        kernels: what runs the training-mode forward and backward
            (:mod:`gan_mn.norm.kernels`): ``"auto"`` (Triton on a CUDA GPU in float32,
            Inductor elsewhere; eager above 8 components, where compiling costs more
            than it saves), ``"triton"`` (hand-written, CUDA), ``"inductor"``
            (``torch.compile``d single-pass kernels: one compilation of a few seconds
            on first use serves every size; without a working backend it warns once
            and runs eagerly) or ``"eager"`` (plain torch ops).
    """

    num_batches_tracked: Tensor
    # what nn.SyncBatchNorm converts to: SyncMixtureNorm2d, set where it is defined
    # (gan_mn/norm/sync.py, imported with the package), which imports this module
    sync_class: type[MixtureNorm2d]

    def __init__(self, num_features: int, num_components: int = 3, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, em_iters: int = 1,
                 seed_iters: int = 10, detach_posteriors: bool = True, kernels: str = "auto",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.num_features = check_count("num_features", num_features)
        self.num_components = check_count("num_components", num_components)
        self.em_iters = check_count("em_iters", em_iters)
        check_count("seed_iters", seed_iters, least=0)
        check_eps(eps)
        check_momentum(momentum)
        check_flag("affine", affine)
        check_flag("detach_posteriors", detach_posteriors)
        if kernels not in KERNEL_CHOICES:
            raise OptionError(f"kernels must be one of {', '.join(KERNEL_CHOICES)}; "
                              f"got {kernels!r}")
        self.seed_iters = seed_iters
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.detach_posteriors = detach_posteriors
        self.kernels = kernels
        factory = {"device": device, "dtype": dtype}
        k, c = num_components, num_features
        if affine:
            self.weight = nn.Parameter(torch.empty(c, **factory))
            self.bias = nn.Parameter(torch.empty(c, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        for prefix in ("running", "em"):
            self.register_buffer(f"{prefix}_weight", torch.empty(k, **factory))
            self.register_buffer(f"{prefix}_mean", torch.empty(k, c, **factory))
            self.register_buffer(f"{prefix}_var", torch.empty(k, c, **factory))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long,
                                                                 device=device))
        self.register_buffer("em_seeded", torch.tensor(False, device=device))
        self._seeded: bool | None = None  # host copy of em_seeded, read once after a load
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Reset the eval statistics (not the warm-start mixture, so identities persist)."""
        self.running_weight.fill_(1.0 / self.num_components)
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Everything back to construction state; the next training batch re-seeds."""
        self.reset_running_stats()
        self.em_weight.fill_(1.0 / self.num_components)
        self.em_mean.zero_()
        self.em_var.fill_(1.0)
        self.em_seeded.fill_(False)
        self._seeded = False
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, num_components={self.num_components}, eps={self.eps}, "
                f"momentum={self.momentum}, affine={self.affine}, em_iters={self.em_iters}"
                + ("" if self.kernels == "auto" else f", kernels={self.kernels!r}"))

    @classmethod
    def convert_batchnorm(cls, module: nn.Module, **mn_options: Any) -> nn.Module:
        """``module`` with every ``nn.BatchNorm2d`` replaced by a ``MixtureNorm2d`` (as
        ``nn.SyncBatchNorm.convert_sync_batchnorm`` does for SyncBatchNorm): MN into any
        model in one line, e.g. ``MixtureNorm2d.convert_batchnorm(generator,
        num_components=3)``.

        Each MN layer takes the BN layer's ``eps``, ``momentum`` and ``affine`` unless
        ``mn_options`` say otherwise, and its state: the affine weight and bias, the
        running mean as every component's mean, the running variance as every
        component's variance (equal weights), the batch count. Its warm-start mixture is
        seeded on its first training batch. With ``num_components=1`` the converted model
        computes what the original did, in training and in eval mode. A module that is
        itself a BatchNorm2d is returned converted; others are changed in place.
        ``nn.SyncBatchNorm`` layers become ``SyncMixtureNorm2d`` in their process group;
        a model with nothing to convert is returned with a warning.
        """
        converted: list[nn.Module] = []
        out = cls._convert(module, mn_options, converted)
        if not converted:
            warnings.warn("convert_batchnorm: the module has no BatchNorm2d or SyncBatchNorm "
                          "layer; nothing was converted", stacklevel=2)
        return out

    @classmethod
    def _convert(cls, module: nn.Module, mn_options: dict[str, Any],
                 converted: list[nn.Module]) -> nn.Module:
        if isinstance(module, LazyModuleMixin) and isinstance(module, _BatchNorm) \
                and module.has_uninitialized_params():
            raise ValueError("convert_batchnorm: a LazyBatchNorm2d does not know its channels "
                             "yet; run one forward through the model first")
        if isinstance(module, nn.SyncBatchNorm):  # a model already converted for DDP
            sync = cls if issubclass(cls, MixtureNorm2d.sync_class) else \
                MixtureNorm2d.sync_class
            converted.append(module)
            return sync._from_batchnorm(
                module, {"process_group": module.process_group, **mn_options})
        if isinstance(module, nn.BatchNorm2d):
            converted.append(module)
            return cls._from_batchnorm(module, mn_options)
        if callable(getattr(module, "to_mixture_norm", None)):  # ConditionalBatchNorm2d
            converted.append(module)
            return module.to_mixture_norm(lambda bn: cls._convert(bn, mn_options, []))
        for name, child in module.named_children():
            new = cls._convert(child, mn_options, converted)
            if new is not child:
                setattr(module, name, new)
        return module

    @classmethod
    def _from_batchnorm(cls, bn: _BatchNorm, mn_options: dict[str, Any]) -> MixtureNorm2d:
        if not bn.track_running_stats:
            raise ValueError("convert_batchnorm: a BatchNorm2d without running statistics "
                             "(track_running_stats=False) has no MN counterpart: MN keeps "
                             "running statistics for eval mode")
        options = {"eps": bn.eps, "momentum": bn.momentum, "affine": bn.affine, **mn_options}
        like = bn.running_mean
        mn = cls(bn.num_features, device=like.device, dtype=like.dtype, **options)
        with torch.no_grad():
            if mn.affine and bn.affine:
                mn.weight.copy_(bn.weight)
                mn.bias.copy_(bn.bias)
            mn.running_mean.copy_(bn.running_mean.expand_as(mn.running_mean))
            mn.running_var.copy_(bn.running_var.expand_as(mn.running_var))
            mn.num_batches_tracked.copy_(bn.num_batches_tracked)
        mn.train(bn.training)
        return mn

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        # read now (a load is no hot path): a forward that read it would break
        # torch.compile's graph on a data-dependent branch
        self._seeded = None if self.em_seeded.is_meta else bool(self.em_seeded)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> MixtureNorm2d:
        """``.half()``, ``.bfloat16()`` or ``.to(dtype)`` of a model keep this layer's
        parameters and state in float32, where the mixture is estimated; the output
        keeps the input's dtype."""
        super()._apply(fn, recurse)
        for tensors in (self._parameters, self._buffers):
            for name, t in tensors.items():
                if t is not None and t.dtype in (torch.float16, torch.bfloat16):
                    if isinstance(t, nn.Parameter):
                        t.data = t.data.float()
                    else:
                        tensors[name] = t.float()
        return self

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"input has {x.shape[1]} channels, expected num_features="
                             f"{self.num_features}")
        if x.numel() == 0:
            raise ValueError(f"input must not be empty, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"input must be floating point, got {x.dtype}")
        samples = x.shape[0] * x.shape[2] * x.shape[3]
        if self.training and samples <= self.num_components:  # (K=1: as BatchNorm2d)
            raise ValueError(f"num_components={self.num_components} needs more samples per "
                             f"channel than components when training: the batch has "
                             f"{samples} (N*H*W)")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        out_dtype = x.dtype
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous()  # the kernels read NCHW or NHWC memory; other strides: NCHW
        run = self._train if self.training else self._eval
        if torch.is_autocast_enabled(x.device.type):  # estimate in float32 (spec)
            with torch.autocast(x.device.type, enabled=False):
                y = run(x)
        else:  # (entering the context costs microseconds a step; GPU steps are that short)
            y = run(x)
        return y if y.dtype == out_dtype else y.to(out_dtype)

    def _train(self, x: Tensor) -> Tensor:
        start = self._warm_start(x) if self.num_components > 1 else None
        return self._fit_and_normalize(x, start)

    def _fit_and_normalize(self, x: Tensor, start: Mixture | None,
                           sync: Collectives | None = None, shift: Tensor | None = None
                           ) -> Tensor:
        """EM from ``start``, normalize, update the running and warm-start mixtures."""
        em = EMSettings(self.em_iters, self.eps, self.eps)
        # (read from the dicts: nn.Module.__getattr__ costs a GPU step's host time here)
        p, b = self._parameters, self._buffers
        args = (x, p["weight"], p["bias"], None, start, em)
        state = MixtureState(b["running_weight"], b["running_mean"], b["running_var"],
                             b["em_weight"], b["em_mean"], b["em_var"], b["num_batches_tracked"])
        if self.detach_posteriors:  # the kernels fold the state update into their passes
            kernels = select_kernels(self.kernels, x, self.num_components)
            return MixtureNormFunction.apply(*args, kernels, sync, shift,
                                             StateUpdate(state, self.momentum))
        y, weight, mean, var, mass = mixture_norm_autograd(*args, False, sync, shift)
        update_state(state, x, BatchStats(mass, weight, mean, var), self.momentum)
        return y

    def _eval(self, x: Tensor) -> Tensor:
        view = SampleView.of(x)
        # Centre on the mixture's mean so the likelihood expansion stays accurate.
        c = (self.running_weight.unsqueeze(1) * self.running_mean).sum(0)
        z = view.data - view.col(c)
        mix = Mixture(self.running_weight, self.running_mean - c, self.running_var)
        tau = None
        if self.num_components > 1:
            tau = e_step(view, z, z * z, mix, self.eps)
            if self.detach_posteriors:
                tau = tau.detach()
        out, _ = normalize(view, z, tau, mix, self.eps, self.weight, self.bias)
        return view.output(out)

    def _warm_start(self, x: Tensor) -> Mixture:
        if not self._seeded:
            self._seed(x)
        b = self._buffers
        return Mixture(b["em_weight"], b["em_mean"], b["em_var"])

    @torch.no_grad()
    def _seed(self, x: Tensor) -> None:
        if self._seeded is None:
            self._seeded = bool(self.em_seeded)  # one host read per load, not per step
            if self._seeded:
                return
        view, c, z = shifted_samples(x.detach())
        mix = seed(view, z, z * z, self.num_components, self.seed_iters, self.eps)
        self.em_weight.copy_(mix.weight)
        self.em_mean.copy_(mix.mean + c)
        self.em_var.copy_(mix.var)
        self.em_seeded.fill_(True)
        self._seeded = True
