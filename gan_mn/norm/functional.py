"""Mixture normalization of a batch given its posteriors, with an analytic backward.

Training-mode transform (the paper's, Kalayeh & Shah)::

    xhat_i = sum_k a_ik (x_i - m_k) r_k,   a_ik = tau_ik / sqrt(lambda_k),  r_k = (v_k + eps)^-1/2

With the posteriors ``tau`` held constant, each component is a batch norm over
weighted samples (weights ``w_ik = tau_ik / sum_i tau_ik``), so the gradient has
BN's closed form summed over components. :class:`MixtureNormFunction` uses it:
autograd through the same ops would store several activation-sized
intermediates and take about twice the passes.

Everything runs on a shifted copy ``z = x - c`` (``c`` per channel, a constant):
the statistics are shift invariant, and working near the data keeps the
one-pass variance and the likelihood expansion accurate for large offsets.

:class:`MixtureNormFunction` is the one autograd Function: the passes themselves
come from a kernel set (:mod:`gan_mn.norm.kernels`: this module's eager code, the
same code compiled by Inductor, or hand-written Triton kernels), and an optional
:class:`Collectives` object sums the statistics over processes (DDP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from gan_mn.norm.gmm import (
    TINY,
    BatchStats,
    Collectives,
    Mixture,
    fit,
    m_step,
    reseed_dead,
)
from gan_mn.norm.layout import SampleView


class EMSettings(NamedTuple):
    """How a training batch's mixture is estimated and used."""

    iters: int = 1  # EM iterations from the warm start (the last E-step's posteriors normalize)
    eps: float = 1e-5  # added to the component variances when normalizing
    var_floor: float = 1e-5  # smallest variance the E-step uses


Layout = tuple[torch.Size, bool]  # the input's shape, and whether it is channels-last
Needs = tuple[bool, bool, bool]  # which of x, weight, bias need a gradient


class MixtureState(NamedTuple):
    """A layer's buffers that a training batch updates (in place)."""

    running_weight: Tensor  # (K,)
    running_mean: Tensor  # (K, C)
    running_var: Tensor  # (K, C)
    em_weight: Tensor  # (K,): the next batch's warm start
    em_mean: Tensor
    em_var: Tensor
    num_batches_tracked: Tensor  # () long


class StateUpdate(NamedTuple):
    """What a training batch updates, given to the kernels so they fold it into their
    passes: the layer's buffers and its momentum (``None``: a cumulative average)."""

    state: MixtureState
    momentum: float | None


def update_state(state: MixtureState, x: Tensor, stats: BatchStats, momentum: float | None,
                 min_mass: float = 1.0) -> None:
    """Momentum update of the running mixture (cumulative with ``momentum=None``, as
    BatchNorm) and the next warm start: the batch fit, dead components re-seeded
    (:func:`gan_mn.norm.gmm.reseed_dead`). ``stats`` means are in ``x``'s coordinates.
    Channels whose batch statistics are not finite (all of them when the component
    masses are not) keep their state."""
    with torch.no_grad():
        state.num_batches_tracked.add_(1)
        f: Tensor | float = (1.0 / state.num_batches_tracked.to(stats.var.dtype)
                             if momentum is None else momentum)
        n = stats.mass.unsqueeze(1)
        unbiased = stats.var * torch.where(n > 1, n / (n - 1).clamp_min(TINY), 1.0)
        # a non-finite batch (one NaN poisons every posterior) leaves the state as it was,
        # per channel, without a host read: later clean batches start from a clean fit
        weights_ok = torch.isfinite(stats.mass).all()
        channel_ok = (torch.isfinite(stats.mean) & torch.isfinite(stats.var)).all(0) & weights_ok
        for buf, new, ok in ((state.running_weight, stats.weight, weights_ok),
                             (state.running_mean, stats.mean, channel_ok),
                             (state.running_var, unbiased, channel_ok)):
            buf.copy_(torch.where(ok, buf * (1 - f) + new.to(buf.dtype) * f, buf))
        if state.em_weight.shape[0] > 1:
            mix = reseed_dead(SampleView.of(x.detach()), stats, min_mass,
                              state.num_batches_tracked)
            state.em_weight.copy_(torch.where(weights_ok, mix.weight, state.em_weight))
            state.em_mean.copy_(torch.where(channel_ok, mix.mean, state.em_mean))
            state.em_var.copy_(torch.where(channel_ok, mix.var, state.em_var))


class Forward(NamedTuple):
    """What a kernel set's training forward gives the Function."""

    out: Tensor  # (N, C, H, W), in the memory format of x; a tensor of its own (not a view)
    # the batch's mixture, means in the coordinates of x: a call, made only when they are
    # asked for (the Triton kernels' are views of one buffer, and views cost host time)
    stats: Callable[[], BatchStats]
    saved: tuple[Tensor | None, ...]  # the tensors the same kernel set's backward needs
    layout: Any  # and what else it needs (Layout for the torch kernels, a plan for Triton)


class Kernels(Protocol):
    """One implementation of the training forward and backward passes."""

    def forward(self, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                sync: Collectives | None, shift: Tensor | None,
                update: StateUpdate | None) -> Forward:
        """Estimate the posteriors (unless given), M-step and normalize ``x``; then, if
        given, :func:`update_state` the layer's buffers. ``x``, ``weight`` and ``bias``
        may require grad (the Function runs this without grad mode)."""
        ...

    def backward(self, grad_out: Tensor, saved: tuple[Tensor | None, ...],
                 weight: Tensor | None, layout: Any, needs: Needs,
                 sync: Collectives | None) -> tuple[Tensor | None, ...]:
        """Gradients of ``x``, ``weight`` and ``bias`` (None where not needed)."""
        ...

    def posteriors(self, saved: tuple[Tensor | None, ...], layout: Any) -> Tensor | None:
        """The forward's posteriors, in the sample layout of ``x`` (None: one component),
        for a backward that must itself be differentiated (:class:`MixtureNormFunction`)."""
        ...


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


class EagerForward(NamedTuple):
    out: Tensor  # (N, C, H, W)
    z: Tensor  # shifted input, sample layout (what the backward needs)
    a: Tensor | None
    shift: Tensor
    stats: BatchStats  # means in the shifted coordinates
    inv_std: Tensor  # (v_k + eps)^-1/2, (K, C)


def eager_forward(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                  posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                  detach: bool, *, decomposed: bool, sync: Collectives | None = None,
                  shift: Tensor | None = None, update: StateUpdate | None = None
                  ) -> EagerForward:
    """Shift, estimate the posteriors (unless given), M-step and normalise, in torch ops
    (``decomposed``: in the form ``torch.compile`` fuses into single passes), then
    ``update`` the layer's state if given (compiled, into the same kernels).

    Eagerly without grad (inside the autograd Function) the output is written
    straight into a fresh ``(N, C, H, W)`` tensor: a Function's output must not be
    a view for in-place ops after it (``ReLU(inplace=True)``) to stay cheap and legal.
    ``sync``/``shift``: statistics of the batch across processes (eager only).
    """
    view, c, z = shifted_samples(x, decomposed, shift)
    z2 = z * z
    if posteriors is None and start is not None:
        shifted = Mixture(start.weight, start.mean - c, start.var)
        tau, stats = fit(view, z, z2, shifted, em.iters, em.var_floor, detach, sync)
    else:
        tau = posteriors
        stats = m_step(view, tau, z, z2, sync=sync)
    inv_std = torch.rsqrt(stats.var + em.eps)  # compiled, this and normalize's are one op
    if torch.is_grad_enabled() or decomposed:
        out, a = normalize(view, z, tau, stats, em.eps, weight, bias)
        y = view.output(out)
    else:
        y = torch.empty_like(x)
        _, a = normalize(view, z, tau, stats, em.eps, weight, bias, out=view.samples(y))
    if update is not None:
        update_state(update.state, x, stats._replace(mean=stats.mean + c), update.momentum)
    return EagerForward(y, z, a, c, stats, inv_std)


def dx_tables(p: Tensor, centred: Tensor, lam: Tensor, mass: Tensor, mean: Tensor, r: Tensor,
              gamma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(K, C)`` tables of ``dx_i = sum_k a_ik (T0_k + z_i T1_k + dy_i T2_k)``.

    Per component, BN's closed form over weighted samples ``w_ik = a_ik s_k``:
    ``dx_i = sum_k a_ik [g r_k dy_i - s_k r_k P_k - s_k r_k^2 Q_k (z_i - m_k)]`` with
    ``P_k = g sum_i a_ik dy_i`` (``p``) and ``Q_k = g r_k sum_i a_ik dy_i (z_i - m_k)``
    (``centred`` is the sum without ``g r_k``); ``mean`` in the coordinates of ``z``.
    """
    s = (lam.clamp_min(TINY).sqrt() / mass.clamp_min(TINY)).unsqueeze(1)
    qg = r * gamma * centred
    return s * r * (r * qg * mean - gamma * p), -s * r * r * qg, r * gamma


def eager_backward(grad_out: Tensor, z: Tensor, a: Tensor | None, mass: Tensor, lam: Tensor,
                   mean: Tensor, r: Tensor, weight: Tensor | None, shape: torch.Size,
                   channels_last: bool, *, decomposed: bool, needs: Needs = (True, True, True),
                   sync: Collectives | None = None) -> tuple[Tensor | None, ...]:
    """Gradients of input, weight and bias with the posteriors held constant.

    ``sync`` sums the two tables the input gradient needs over processes; the weight
    and bias gradients stay local, as SyncBatchNorm's, for DDP to average. Nothing is
    computed for an input that needs no gradient.
    """
    view = SampleView(z, shape, channels_last, decomposed)
    dy = view.samples(grad_out)
    p = view.reduce(a, dy)  # sum_i a_ik dy_i
    centred = view.reduce(a, dy * z) - mean * p  # sum_i a_ik dy_i (z_i - m_k)
    grad_weight = (r * centred).sum(0) if needs[1] else None
    # sum_k sqrt(lambda_k) a_ik = sum_k tau_ik = 1, so sum_i dy_i comes for free.
    grad_bias = (lam.clamp_min(TINY).sqrt().unsqueeze(1) * p).sum(0) if needs[2] else None
    if not needs[0]:
        return None, grad_weight, grad_bias
    if sync is not None:
        p, centred = sync.sum_tables(p, centred)
    gamma = weight if weight is not None else torch.ones_like(r[0])
    t0, t1, t2 = dx_tables(p, centred, lam, mass, mean, r, gamma)
    dx = torch.addcmul(view.expand(a, t0), z, view.expand(a, t1))
    dx = torch.addcmul(dx, dy, view.expand(a, t2))
    return view.output(dx), grad_weight, grad_bias


def owned(t: Tensor | None) -> Tensor | None:
    """A tensor of its own: Function outputs and gradients must not be views of the
    compiled code's buffers (in-place ops after the layer, e.g. ``ReLU(inplace=True)``)."""
    return t.clone() if t is not None and t._base is not None else t


class MixtureNormFunction(torch.autograd.Function):
    """Training-mode MN with posteriors held constant in backprop.

    Inputs: ``x`` (N, C, H, W); affine ``weight``/``bias`` (or None); either fixed
    ``posteriors`` (in the sample layout of ``x``: ``(N, K, H*W)``, or ``(N, H*W, K)``
    for channels-last) or a warm-start ``start`` mixture (in the coordinates of
    ``x``) refined by ``em.iters`` EM iterations, or neither (one component: BN);
    ``kernels`` runs the passes; ``sync`` (with a ``shift`` common to all processes)
    takes the statistics over a process group; ``update`` is the layer's state, updated
    in place. Returns the output (N, C, H, W); with ``with_stats`` also, as
    non-differentiable outputs, the batch weights, means, variances (biased) and
    responsibility masses (the layer does not ask for them: a step makes no views).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                kernels: Kernels, sync: Collectives | None = None,
                shift: Tensor | None = None, update: StateUpdate | None = None,
                with_stats: bool = False) -> Tensor | tuple[Tensor, ...]:
        res = kernels.forward(x, weight, bias, posteriors, start, em, sync, shift, update)
        # The statistics outputs take no gradient: autograd need not make zeros for them.
        ctx.set_materialize_grads(False)
        # (x, bias and given posteriors too, for a backward under create_graph)
        ctx.save_for_backward(*res.saved, weight, x, bias, posteriors)
        ctx.layout = res.layout
        ctx.kernels = kernels
        ctx.sync = sync
        ctx.em, ctx.shift = em, shift
        if not with_stats:
            return res.out
        s = res.stats()
        outputs = (res.out, s.weight, s.mean, s.var, s.mass)
        ctx.mark_non_differentiable(*outputs[1:])
        return outputs

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor | None, *_: Tensor | None
                 ) -> tuple[Tensor | None, ...]:
        *saved, weight, x, bias, posteriors = ctx.saved_tensors
        if grad_out is None:  # the output was not used: nothing flows back
            return (None,) * 11
        if torch.is_grad_enabled():  # create_graph: this backward is differentiated in turn
            if posteriors is None:
                posteriors = ctx.kernels.posteriors(tuple(saved), ctx.layout)
            grads = differentiable_backward(grad_out, x, weight, bias, posteriors, ctx.em,
                                            tuple(ctx.needs_input_grad[:3]), ctx.sync,
                                            ctx.shift)
            return (*grads, None, None, None, None, None, None, None, None)
        args = (grad_out, tuple(saved), weight, ctx.layout, tuple(ctx.needs_input_grad[:3]),
                ctx.sync)
        if torch.is_autocast_enabled(grad_out.device.type):
            with torch.autocast(grad_out.device.type, enabled=False):
                grads = ctx.kernels.backward(*args)
        else:
            grads = ctx.kernels.backward(*args)
        return (*grads, None, None, None, None, None, None, None, None)


def differentiable_backward(grad_out: Tensor, x: Tensor, weight: Tensor | None,
                            bias: Tensor | None, posteriors: Tensor | None, em: EMSettings,
                            needs: Needs, sync: Collectives | None, shift: Tensor | None
                            ) -> tuple[Tensor | None, ...]:
    """The Function's gradients as a graph of their own (for R1 and gradient penalties):
    the forward again in eager torch ops with the forward's posteriors held constant (the
    same function the analytic backward differentiates), differentiated by autograd with
    ``create_graph``. Runs only under ``create_graph``; the usual backward is untouched."""
    inputs = [t for t, need in zip((x, weight, bias), needs, strict=True)
              if need and t is not None]
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        y = eager_forward(x, weight, bias, posteriors, None, em, True, decomposed=False,
                          sync=sync, shift=shift).out
        found = iter(torch.autograd.grad(y, inputs, grad_out, create_graph=True,
                                         allow_unused=True))
    return tuple(next(found) if need and t is not None else None
                 for t, need in zip((x, weight, bias), needs, strict=True))


def mixture_norm_autograd(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                          posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                          detach_posteriors: bool, sync: Collectives | None = None,
                          shift: Tensor | None = None) -> tuple[Tensor, ...]:
    """Same contract as :class:`MixtureNormFunction`, differentiated by autograd
    through the eager passes (and, with ``sync``, differentiable all-reduces).

    With ``detach_posteriors=False`` the gradient also flows through the EM
    posteriors (an option of the layer's specification); with ``True`` it is the
    reference the analytic backward is tested against.
    """
    res = eager_forward(x, weight, bias, posteriors, start, em, detach_posteriors,
                        decomposed=False, sync=sync, shift=shift)
    stats = res.stats
    return (res.out, *(t.detach() for t in (stats.weight, stats.mean + res.shift, stats.var,
                                              stats.mass)))
