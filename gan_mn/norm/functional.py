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
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from gan_mn.norm.gmm import TINY, BatchStats, Mixture, SampleView, fit, m_step


def shift_of(x: Tensor) -> Tensor:
    """Per-channel shift ``c``: the first sample's values, which lie within the data."""
    return x[0, :, 0, 0].detach()


def normalize(view: SampleView, z: Tensor, tau: Tensor | None, stats: BatchStats,
              eps: float, weight: Tensor | None, bias: Tensor | None,
              out: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """``y = gamma * xhat + beta`` in sample layout; also returns ``a = tau/sqrt(lambda)``.

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


class _Transformed(NamedTuple):
    view: SampleView
    z: Tensor
    shift: Tensor
    a: Tensor | None
    stats: BatchStats
    out: Tensor

    def outputs(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Output (N, C, H, W) and the batch weights, means, variances, masses."""
        s = self.stats
        return (self.out, s.weight, s.mean + self.shift, s.var, s.mass)


def _transform(x: Tensor, weight: Tensor | None, bias: Tensor | None,
               posteriors: Tensor | None, start: Mixture | None, em_iters: int,
               eps: float, var_floor: float, detach: bool = True) -> _Transformed:
    """Shift, estimate the posteriors (unless given), M-step and normalise.

    Under grad the output is a reshape of the sample-layout result; without grad
    (inside the autograd Function) it is written straight into a fresh
    ``(N, C, H, W)`` tensor, because a Function's output must not be a view for
    in-place ops after it (``ReLU(inplace=True)``) to stay cheap and legal.
    """
    view = SampleView.of(x)
    c = shift_of(x)
    z = view.data - view.col(c)
    z2 = z * z
    tau = posteriors
    if tau is None and start is not None:
        shifted = Mixture(start.weight, start.mean - c, start.var)
        tau, _ = fit(view, z, z2, shifted, em_iters, var_floor)
    if tau is not None and detach:
        tau = tau.detach()
    stats = m_step(view, tau, z, z2)
    if torch.is_grad_enabled():
        out, a = normalize(view, z, tau, stats, eps, weight, bias)
        return _Transformed(view, z, c, a, stats, view.output(out))
    y = torch.empty_like(x)
    _, a = normalize(view, z, tau, stats, eps, weight, bias, out=view.samples(y))
    return _Transformed(view, z, c, a, stats, y)


def mixture_norm_autograd(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                          posteriors: Tensor | None, start: Mixture | None, em_iters: int,
                          eps: float, var_floor: float,
                          detach_posteriors: bool) -> tuple[Tensor, ...]:
    """Same contract as :class:`MixtureNormFunction`, differentiated by autograd.

    With ``detach_posteriors=False`` the gradient also flows through the EM
    posteriors (the option the spec asks to offer); with ``True`` it is the
    reference the analytic backward is tested against.
    """
    res = _transform(x, weight, bias, posteriors, start, em_iters, eps, var_floor,
                     detach=detach_posteriors)
    out, *stats = res.outputs()
    return (out, *(t.detach() for t in stats))


class MixtureNormFunction(torch.autograd.Function):
    """Training-mode MN with posteriors held constant in backprop.

    Inputs: ``x`` (N, C, H, W); affine ``weight``/``bias`` (or None); either fixed
    ``posteriors`` (in the sample layout of ``x``) or a warm-start ``start`` mixture
    (in the coordinates of ``x``) refined by ``em_iters`` EM iterations. Returns the
    output (N, C, H, W) and, as non-differentiable outputs, the batch weights, means, variances
    (biased) and responsibility masses.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em_iters: int,
                eps: float, var_floor: float) -> tuple[Tensor, ...]:
        res = _transform(x, weight, bias, posteriors, start, em_iters, eps, var_floor)
        ctx.save_for_backward(res.z, res.a, res.stats.mass, res.stats.weight, res.stats.mean,
                              torch.rsqrt(res.stats.var + eps), weight)
        ctx.layout = (x.shape, res.view.channels_last)
        ctx.has_bias = bias is not None
        outputs = res.outputs()
        ctx.mark_non_differentiable(*outputs[1:])
        return outputs

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor, *_: Tensor) -> tuple[Tensor | None, ...]:
        z, a, mass, lam, mean, r, weight = ctx.saved_tensors
        with torch.autocast(grad_out.device.type, enabled=False):
            view = SampleView(z, *ctx.layout)
            dy = view.samples(grad_out)
            p = view.reduce(a, dy)  # sum_i a_ik dy_i
            q = view.reduce(a, dy * z)  # sum_i a_ik dy_i z_i
            centred = q - mean * p  # sum_i a_ik dy_i (z_i - m_k)
            grad_weight = (r * centred).sum(0) if weight is not None else None
            grad_bias = view.reduce(None, dy)[0] if ctx.has_bias else None
            gamma = weight if weight is not None else torch.ones_like(r[0])
            # w_ik = a_ik * s_k, with s_k = sqrt(lambda_k) / sum_i tau_ik.
            s = (lam.clamp_min(TINY).sqrt() / mass.clamp_min(TINY)).unsqueeze(1)
            pg = gamma * p
            qg = r * gamma * centred
            u_dy = r * gamma
            u_z = -s * r * r * qg
            u_1 = s * r * (r * qg * mean - pg)
            dx = torch.addcmul(view.expand(a, u_1), z, view.expand(a, u_z))
            dx.addcmul_(dy, view.expand(a, u_dy))
        return (view.output(dx), grad_weight, grad_bias, None, None, None, None, None)

