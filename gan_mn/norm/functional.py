"""Mixture normalization of a batch given its posteriors, with an analytic backward.

Training-mode transform (``../shared/docs/mixture-normalization.md``)::

    xhat_i = sum_k a_ik (x_i - m_k) r_k,   a_ik = tau_ik / sqrt(lambda_k),  r_k = (v_k + eps)^-1/2

With the posteriors ``tau`` held constant, each component is a batch norm over
weighted samples (weights ``w_ik = tau_ik / sum_i tau_ik``), so the gradient has
BN's closed form summed over components. :class:`MixtureNormFunction` uses it:
autograd through the same ops would store several activation-sized
intermediates and take about twice the passes.

Everything runs on a shifted copy ``z = x - c`` (``c`` per channel, a constant):
the statistics are shift invariant, and working near the data keeps the
one-pass variance and the likelihood expansion accurate for large offsets.

``fused=True`` runs the same code through ``torch.compile`` (dynamic shapes, one
compilation serves every layer size), with contractions in their decomposed
form so that each E-step, M-step, output and gradient is a single pass.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gan_mn.norm.gmm import TINY, BatchStats, Mixture, MomentSync, SampleView, fit, m_step

# Sums (K, C) tables over processes in the backward (see gan_mn.norm.sync).
TableSync = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def shifted_samples(x: Tensor, decomposed: bool = False,
                    shift: Tensor | None = None) -> tuple[SampleView, Tensor, Tensor]:
    """``x`` as samples, the per-channel shift ``c`` and ``z = x - c`` (sample layout).

    ``c`` is the first sample's values (within the data, and a constant) unless
    ``shift`` gives one (synchronized layers need the same shift on every process).
    """
    view = SampleView.of(x, decomposed)
    c = x[0, :, 0, 0].detach() if shift is None else shift
    return view, c, view.data - view.col(c)


def normalize(view: SampleView, z: Tensor, tau: Tensor | None, stats: Mixture | BatchStats,
              eps: float, weight: Tensor | None, bias: Tensor | None,
              out: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """``y = gamma * xhat + beta`` in sample layout; also returns ``a = tau/sqrt(lambda)``.

    ``stats`` gives ``lambda_k``, ``m_k`` and ``v_k`` (``.weight``, ``.mean``, ``.var``):
    the batch's M-step in training, the running mixture in eval.

    Written as ``y = z * (A @ S) + A @ B + beta`` with ``(K, C)`` tables ``S, B`` so the
    per-component terms never materialise ``K`` activation-sized tensors.
    ``out``, if given, receives ``y`` (a sample-layout view of the final tensor).
    """
    scale = torch.rsqrt(stats.var + eps)
    if weight is not None:
        scale = scale * weight
    a = None if tau is None else tau * view.col(stats.weight.clamp_min(TINY).rsqrt())
    shift = view.expand(a, -stats.mean * scale, add=bias)
    return torch.addcmul(shift, z, view.expand(a, scale), out=out), a


class _Forward(NamedTuple):
    out: Tensor  # (N, C, H, W)
    z: Tensor  # shifted input, sample layout (what the backward needs)
    a: Tensor | None
    shift: Tensor
    stats: BatchStats
    inv_std: Tensor  # (v_k + eps)^-1/2, (K, C)


def _forward(x: Tensor, weight: Tensor | None, bias: Tensor | None,
             posteriors: Tensor | None, start: Mixture | None, em_iters: int,
             eps: float, var_floor: float, detach: bool, *, decomposed: bool,
             sync: MomentSync | None = None, shift: Tensor | None = None) -> _Forward:
    """Shift, estimate the posteriors (unless given), M-step and normalise.

    Eagerly without grad (inside the autograd Function) the output is written
    straight into a fresh ``(N, C, H, W)`` tensor: a Function's output must not be
    a view for in-place ops after it (``ReLU(inplace=True)``) to stay cheap and legal.
    ``sync``/``shift``: statistics of the batch across processes (eager only).
    """
    view, c, z = shifted_samples(x, decomposed, shift)
    z2 = z * z
    if posteriors is None and start is not None:
        shifted = Mixture(start.weight, start.mean - c, start.var)
        tau, stats = fit(view, z, z2, shifted, em_iters, var_floor, detach, sync)
    else:
        tau = posteriors
        stats = m_step(view, tau, z, z2, sync=sync)
    inv_std = torch.rsqrt(stats.var + eps)  # compiled, this and normalize's are one op
    if torch.is_grad_enabled() or decomposed:
        out, a = normalize(view, z, tau, stats, eps, weight, bias)
        return _Forward(view.output(out), z, a, c, stats, inv_std)
    y = torch.empty_like(x)
    _, a = normalize(view, z, tau, stats, eps, weight, bias, out=view.samples(y))
    return _Forward(y, z, a, c, stats, inv_std)


def _backward(grad_out: Tensor, z: Tensor, a: Tensor | None, mass: Tensor, lam: Tensor,
              mean: Tensor, r: Tensor, weight: Tensor | None, shape: torch.Size,
              channels_last: bool, *, decomposed: bool,
              sync: TableSync | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of input, weight and bias with the posteriors held constant.

    Per component, BN's closed form over weighted samples ``w_ik = a_ik s_k``:
    ``dx_i = sum_k a_ik [g r_k dy_i - s_k r_k P_k - s_k r_k^2 Q_k (z_i - m_k)]`` with
    ``P_k = g sum_i a_ik dy_i`` and ``Q_k = g r_k sum_i a_ik dy_i (z_i - m_k)``.
    ``sync`` sums ``P`` and ``Q`` over processes for the input gradient; the weight
    and bias gradients stay local, as SyncBatchNorm's, for DDP to average.
    """
    view = SampleView(z, shape, channels_last, decomposed)
    dy = view.samples(grad_out)
    p = view.reduce(a, dy)  # sum_i a_ik dy_i
    centred = view.reduce(a, dy * z) - mean * p  # sum_i a_ik dy_i (z_i - m_k)
    grad_weight = (r * centred).sum(0)
    # sum_k sqrt(lambda_k) a_ik = sum_k tau_ik = 1, so sum_i dy_i comes for free.
    grad_bias = (lam.clamp_min(TINY).sqrt().unsqueeze(1) * p).sum(0)
    if sync is not None:
        p, centred = sync(p, centred)
    gamma = weight if weight is not None else torch.ones_like(r[0])
    s = (lam.clamp_min(TINY).sqrt() / mass.clamp_min(TINY)).unsqueeze(1)
    qg = r * gamma * centred
    dx = torch.addcmul(view.expand(a, s * r * (r * qg * mean - gamma * p)),
                       z, view.expand(a, -s * r * r * qg))
    dx = torch.addcmul(dx, dy, view.expand(a, r * gamma))
    return view.output(dx), grad_weight, grad_bias


class _Kernel:
    """``fn`` with ``decomposed=True`` under ``torch.compile`` (dynamic shapes), built on
    first use. Each variant (``key(*args)``: component count, layout, dtype, ...)
    compiles its own copy of ``fn``: Dynamo's recompile limit counts per code
    object, and past it would run the decomposed code uncompiled, slowly. If no
    Inductor backend works here (no C++ compiler, no Triton) it warns once and all
    kernels run eagerly with ``decomposed=False``; any other error propagates."""

    failed = False  # shared: one broken backend means all kernels fall back

    def __init__(self, fn: Callable[..., Any], key: Callable[..., Hashable]) -> None:
        self.fn = fn
        self.key = key
        self.compiled: dict[Hashable, Callable[..., Any]] = {}

    def __call__(self, *args: Any) -> Any:
        if not _Kernel.failed:
            key = self.key(*args)
            if key not in self.compiled:
                fn = self.fn
                copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                                          fn.__defaults__, fn.__closure__)
                copy.__kwdefaults__ = fn.__kwdefaults__
                self.compiled[key] = torch.compile(copy, dynamic=True)
            try:
                return self.compiled[key](*args, decomposed=True)
            except torch._dynamo.exc.BackendCompilerFailed as err:
                _Kernel.failed = True
                reason = str(err).strip().splitlines()[0]
                warnings.warn(f"MixtureNorm2d: fused kernels unavailable ({reason}); "
                              "using the eager path", RuntimeWarning, stacklevel=2)
        return self.fn(*args, decomposed=False)


def _forward_key(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                 posteriors: Tensor | None, start: Mixture | None, *rest: Any) -> Hashable:
    channels_last = SampleView.is_channels_last(x)
    k = (start.weight.shape[0] if start is not None
         else None if posteriors is None else posteriors.shape[2 if channels_last else 1])
    return (x.dtype, x.device.type, channels_last, weight is None, bias is None,
            posteriors is None, k, *rest)


def _backward_key(grad_out: Tensor, z: Tensor, a: Tensor | None, mass: Tensor, *rest: Any
                  ) -> Hashable:
    weight, channels_last = rest[-3], rest[-1]
    return (z.dtype, z.device.type, channels_last, a is None, mass.shape[0], weight is None)


def _owned(t: Tensor) -> Tensor:
    """A Function output must not be a view (compiled code may return one)."""
    return t.clone() if t._base is not None else t


_FUSED_FORWARD = _Kernel(_forward, _forward_key)
_FUSED_BACKWARD = _Kernel(_backward, _backward_key)


def _call(kernel: _Kernel, args: tuple[Any, ...], fused: bool) -> Any:
    """Run a kernel: compiled, eager, or (inside a model that is itself being
    compiled) its decomposed code inlined into the caller's graph."""
    if not fused:
        return kernel.fn(*args, decomposed=False)
    if torch.compiler.is_compiling():
        return kernel.fn(*args, decomposed=True)
    return kernel(*args)


class MixtureNormFunction(torch.autograd.Function):
    """Training-mode MN with posteriors held constant in backprop.

    Inputs: ``x`` (N, C, H, W); affine ``weight``/``bias`` (or None); either fixed
    ``posteriors`` (in the sample layout of ``x``: ``(N, K, H*W)``, or ``(N, H*W, K)``
    for channels-last) or a warm-start ``start`` mixture (in the coordinates of
    ``x``) refined by ``em_iters`` EM iterations; ``fused`` selects the compiled
    kernels. Returns the output (N, C, H, W) and, as non-differentiable outputs,
    the batch weights, means, variances (biased) and responsibility masses.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em_iters: int,
                eps: float, var_floor: float, fused: bool = False) -> tuple[Tensor, ...]:
        # Plain tensors, not Parameters: torch.compile keeps Parameter shapes static,
        # which would compile once per channel count.
        # (x too: one graph whether or not it requires grad.)
        w, b = (None if t is None else t.detach() for t in (weight, bias))
        args = (x.detach(), w, b, posteriors, start, em_iters, eps, var_floor, True)
        res = _call(_FUSED_FORWARD, args, fused)
        stats = res.stats
        ctx.save_for_backward(res.z, res.a, stats.mass, stats.weight, stats.mean,
                              res.inv_std, weight)
        ctx.layout = (x.shape, SampleView.is_channels_last(x))
        ctx.fused = fused
        ctx.affine = (weight is not None, bias is not None)
        outputs = (_owned(res.out), stats.weight, stats.mean + res.shift, stats.var, stats.mass)
        ctx.mark_non_differentiable(*outputs[1:])
        return outputs

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor, *_: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.fused:  # one stride pattern for the compiled code (e.g. not sum()'s expand)
            fmt = torch.channels_last if ctx.layout[1] else torch.contiguous_format
            grad_out = grad_out.contiguous(memory_format=fmt)
        *saved, weight = ctx.saved_tensors
        args = (grad_out, *saved, None if weight is None else weight.detach(), *ctx.layout)
        with torch.autocast(grad_out.device.type, enabled=False):
            dx, grad_weight, grad_bias = _call(_FUSED_BACKWARD, args, ctx.fused)
        return (dx, grad_weight if ctx.affine[0] else None, grad_bias if ctx.affine[1] else None,
                None, None, None, None, None, None)


def mixture_norm_autograd(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                          posteriors: Tensor | None, start: Mixture | None, em_iters: int,
                          eps: float, var_floor: float,
                          detach_posteriors: bool) -> tuple[Tensor, ...]:
    """Same contract as :class:`MixtureNormFunction`, differentiated by autograd.

    With ``detach_posteriors=False`` the gradient also flows through the EM
    posteriors (the option the spec asks to offer); with ``True`` it is the
    reference the analytic backward is tested against.
    """
    res = _forward(x, weight, bias, posteriors, start, em_iters, eps, var_floor,
                   detach_posteriors, decomposed=False)
    stats = res.stats
    return (res.out, *(t.detach() for t in (stats.weight, stats.mean + res.shift, stats.var,
                                              stats.mass)))
