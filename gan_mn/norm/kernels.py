"""The kernel sets that run MN's training passes, and the choice between them.

- ``eager``: the torch ops of :mod:`gan_mn.norm.functional` (batched matrix products).
- ``inductor``: the same code in its decomposed form through ``torch.compile``: a few
  single-pass kernels; fast on the CPU.
- ``triton``: hand-written Triton kernels (:mod:`gan_mn.norm.triton_kernels`), six
  launches per forward + backward; for CUDA, where the Inductor path's many small
  launches and guards cost far more than the arithmetic.

``auto`` is ``inductor`` for now: the Triton kernels are tested under Triton's CPU
interpreter only, so they stay opt-in (``kernels="triton"``) until
``benchmarks/cuda_checks.py`` has passed on a GPU; then ``auto`` should pick them for
float32 CUDA tensors.
"""

from __future__ import annotations

import importlib.util
import os
import types
import warnings
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor

from gan_mn.errors import UserError
from gan_mn.norm.functional import (
    Collectives,
    EagerForward,
    EMSettings,
    Forward,
    Layout,
    MixtureState,
    Needs,
    dx_tables,
    eager_backward,
    eager_forward,
    owned,
    update_state,
)
from gan_mn.norm.gmm import TINY, BatchStats, Mixture, SampleView, moments_to_stats

KERNEL_CHOICES = ("auto", "eager", "inductor", "triton")


def _as_forward(res: EagerForward) -> Forward:
    s = res.stats
    stats = BatchStats(s.mass, s.weight, s.mean + res.shift, s.var)
    return Forward(res.out, stats, (res.z, res.a, s.mass, s.weight, s.mean, res.inv_std))


class EagerKernels:
    """Torch ops, any device and dtype, with or without a process group."""

    def forward(self, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                sync: Collectives | None, shift: Tensor | None) -> Forward:
        return _as_forward(eager_forward(x, weight, bias, posteriors, start, em, True,
                                         decomposed=False, sync=sync, shift=shift))

    def backward(self, grad_out: Tensor, saved: tuple[Tensor | None, ...],
                 weight: Tensor | None, layout: Layout, needs: Needs,
                 sync: Collectives | None) -> tuple[Tensor | None, ...]:
        return eager_backward(grad_out, *saved, weight, *layout, decomposed=False, needs=needs,
                              sync=sync)

    def update_state(self, state: MixtureState, x: Tensor, stats: BatchStats,
                     momentum: float | None) -> None:
        update_state(state, x, stats, momentum)


class _Compiled:
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

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():  # inside a compiled model: inline into its graph
            return self.fn(*args, decomposed=True, **kwargs)
        if not _Compiled.failed:
            key = (self.key(*args), *kwargs.items())
            if key not in self.compiled:
                fn = self.fn
                copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                                          fn.__defaults__, fn.__closure__)
                copy.__kwdefaults__ = fn.__kwdefaults__
                self.compiled[key] = torch.compile(copy, dynamic=True)
            try:
                return self.compiled[key](*args, decomposed=True, **kwargs)
            except torch._dynamo.exc.BackendCompilerFailed as err:
                _Compiled.failed = True
                reason = str(err).strip().splitlines()[0]
                warnings.warn(f"MixtureNorm2d: fused kernels unavailable ({reason}); "
                              "using the eager path", RuntimeWarning, stacklevel=2)
        return self.fn(*args, decomposed=False, **kwargs)


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


class InductorKernels(EagerKernels):
    """The eager code, decomposed and compiled by Inductor (eager under a process group:
    compiled code cannot call collectives)."""

    def __init__(self) -> None:
        self._forward = _Compiled(eager_forward, _forward_key)
        self._backward = _Compiled(eager_backward, _backward_key)

    def forward(self, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                sync: Collectives | None, shift: Tensor | None) -> Forward:
        if sync is not None:
            return super().forward(x, weight, bias, posteriors, start, em, sync, shift)
        return _as_forward(self._forward(x, weight, bias, posteriors, start, em, True))

    def backward(self, grad_out: Tensor, saved: tuple[Tensor | None, ...],
                 weight: Tensor | None, layout: Layout, needs: Needs,
                 sync: Collectives | None) -> tuple[Tensor | None, ...]:
        if sync is not None:
            return super().backward(grad_out, saved, weight, layout, needs, sync)
        # one stride pattern for the compiled code (e.g. not sum()'s expanded gradient)
        fmt = torch.channels_last if layout[1] else torch.contiguous_format
        grad_out = grad_out.contiguous(memory_format=fmt)
        dx, gw, gb = self._backward(grad_out, *saved, weight, *layout, needs=needs)
        return owned(dx), gw, gb


class TritonKernels:
    """MN's passes as the Triton kernels of :mod:`gan_mn.norm.triton_kernels`.

    float32 only (the layer computes in float32 under autocast). Under a process group
    the per-block sums are combined and all-reduced in torch between the kernels.
    ``TRITON_INTERPRET=1`` runs them on CPU tensors (slowly): that is how tests check them.
    """

    def __init__(self, block_m: int = 64, block_c: int = 32) -> None:
        self.block_m = block_m
        self.block_c = block_c

    @property
    def k(self) -> types.ModuleType:
        """The kernels, imported on first use (``TRITON_INTERPRET`` is read then)."""
        from gan_mn.norm import triton_kernels
        return triton_kernels

    def _geometry(self, x: Tensor) -> tuple[int, int, int, tuple[int, int, int]]:
        n, c, h, w = x.shape
        return n * h * w, c, h * w, (x.stride(0), x.stride(1), x.stride(3))

    def forward(self, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                sync: Collectives | None, shift: Tensor | None) -> Forward:
        k = self.k
        if not (x.is_contiguous() or SampleView.is_channels_last(x)):
            x = x.contiguous()
        m, c, length, strides = self._geometry(x)
        shift = x[0, :, 0, 0] if shift is None else shift.contiguous()
        if posteriors is not None:
            kdim = 2 if SampleView.is_channels_last(x) else 1
            mode, ncomp = k.GIVEN, posteriors.shape[kdim]
            t_strides = (posteriors.stride(0), posteriors.stride(kdim),
                         posteriors.stride(3 - kdim))
        else:
            mode, ncomp, t_strides = (k.ONES, 1, (0, 0, 0)) if start is None else \
                (k.ESTEP, start.weight.shape[0], (0, 0, 0))
        kp = max(2, 1 << (ncomp - 1).bit_length())  # arange needs >= 2
        blocks = _cdiv(m, self.block_m)
        geometry = (m, c, length, *strides, shift.stride(0), *t_strides, em.var_floor)
        consts = {"K": ncomp, "KP": kp, "MODE": mode, "BLOCK_M": self.block_m,
                  "BLOCK_C": self.block_c}
        f32 = {"device": x.device, "dtype": torch.float32}
        tau = posteriors if posteriors is not None else x
        mix = start if mode == k.ESTEP else Mixture(x, x, x)  # unread placeholders
        estep = mix
        for _ in range(em.iters if mode == k.ESTEP else 1):
            estep = mix
            mass_p = torch.empty(blocks, ncomp, **f32)
            s1_p, s2_p = (torch.empty(blocks, ncomp, c, **f32) for _ in range(2))
            k.mn_stats[(blocks,)](x, shift, tau, *estep, mass_p, s1_p, s2_p, *geometry,
                                  **consts)
            stats, rstd = self._m_step(mass_p, s1_p, s2_p, estep.mean, shift, m, em, sync,
                                       mode == k.ESTEP, ncomp, kp)
            mix = Mixture(stats.weight, stats.mean, stats.var)
        y = torch.empty_like(x)
        a = torch.empty(m, ncomp, **f32)
        k.mn_output[(blocks,)](x, shift, tau, *estep, stats.weight, stats.mean, rstd,
                               x if weight is None else weight, x if bias is None else bias,
                               y, a, *geometry, HAS_GAMMA=weight is not None,
                               HAS_BETA=bias is not None, SAVE_A=True, **consts)
        return Forward(y, stats, (x, shift, a, stats.mass, stats.weight, stats.mean, rstd))

    def _m_step(self, mass_p: Tensor, s1_p: Tensor, s2_p: Tensor, centre: Tensor,
                shift: Tensor, count: int, em: EMSettings, sync: Collectives | None,
                has_centre: bool, ncomp: int, kp: int) -> tuple[BatchStats, Tensor]:
        """Combine the blocks' moments: in one kernel, or in torch around an all-reduce."""
        c = s1_p.shape[2]
        if sync is not None:
            mass, s1, s2, total = sync.sum_moments(mass_p.sum(0), s1_p.sum(0), s2_p.sum(0),
                                                   float(count))
            origin = centre - shift if has_centre else torch.zeros_like(s1)
            stats = moments_to_stats(mass, s1, s2, total, origin)
            stats = stats._replace(mean=stats.mean + shift)
            return stats, torch.rsqrt(stats.var + em.eps)
        f32 = {"device": s1_p.device, "dtype": torch.float32}
        mass, weight = (torch.empty(ncomp, **f32) for _ in range(2))
        mean, var, rstd = (torch.empty(ncomp, c, **f32) for _ in range(3))
        self.k.mn_finalize[(_cdiv(c, self.block_c),)](
            mass_p, s1_p, s2_p, centre, shift, mass, weight, mean, var, rstd,
            mass_p.shape[0], c, shift.stride(0), float(count), em.eps,
            K=ncomp, KP=kp, HAS_CENTRE=has_centre, BLOCK_C=self.block_c)
        return BatchStats(mass, weight, mean, var), rstd

    def update_state(self, state: MixtureState, x: Tensor, stats: BatchStats,
                     momentum: float | None) -> None:
        """One kernel (plus the counter increment and, with K > 1, the random picks torch
        draws exactly as the eager path does, so both re-seed the same samples)."""
        ncomp, c = stats.mean.shape
        if not (x.is_contiguous() or SampleView.is_channels_last(x)):
            x = x.contiguous()
        m, _, length, strides = self._geometry(x)
        state.num_batches_tracked.add_(1)
        idx = (torch.randint(m, (ncomp,), device=x.device) if ncomp > 1
               else state.num_batches_tracked)  # (unread placeholder)
        self.k.mn_update_state[(_cdiv(c, self.block_c),)](
            stats.mass, stats.weight, stats.mean, stats.var, *state, idx, x, c, length,
            *strides, 0.0 if momentum is None else float(momentum), 1.0, K=ncomp,
            KP=max(2, 1 << (ncomp - 1).bit_length()), CUMULATIVE=momentum is None,
            WARM=ncomp > 1, BLOCK_C=self.block_c)

    def backward(self, grad_out: Tensor, saved: tuple[Tensor | None, ...],
                 weight: Tensor | None, layout: Layout, needs: Needs,
                 sync: Collectives | None) -> tuple[Tensor | None, ...]:
        x, shift, a, mass, lam, mean, rstd = saved
        assert x is not None and shift is not None and a is not None
        assert mass is not None and lam is not None and mean is not None and rstd is not None
        k = self.k
        grad_out = grad_out.contiguous(memory_format=torch.channels_last if layout[1]
                                       else torch.contiguous_format)
        m, c, length, strides = self._geometry(x)
        ncomp = a.shape[1]
        kp = max(2, 1 << (ncomp - 1).bit_length())  # arange needs >= 2
        blocks = _cdiv(m, self.block_m)
        geometry = (m, c, length, *strides, shift.stride(0))
        sizes = {"K": ncomp, "KP": kp, "BLOCK_M": self.block_m, "BLOCK_C": self.block_c}
        f32 = {"device": x.device, "dtype": torch.float32}
        p_p, u_p = (torch.empty(blocks, ncomp, c, **f32) for _ in range(2))
        k.mn_grad_reduce[(blocks,)](grad_out, x, shift, a, p_p, u_p, *geometry, **sizes)
        if sync is None:
            t0, t1, t2 = (torch.empty(ncomp, c, **f32) for _ in range(3))
            gw, gb = (torch.empty(c, **f32) for _ in range(2))
            k.mn_grad_tables[(_cdiv(c, self.block_c),)](
                p_p, u_p, shift, mass, lam, mean, rstd, x if weight is None else weight,
                t0, t1, t2, gw, gb, blocks, c, shift.stride(0), K=ncomp, KP=kp,
                HAS_GAMMA=weight is not None, BLOCK_C=self.block_c)
        else:
            p, mean_z = p_p.sum(0), mean - shift
            centred = u_p.sum(0) - mean_z * p
            gw = (rstd * centred).sum(0)
            gb = (lam.clamp_min(TINY).sqrt().unsqueeze(1) * p).sum(0)
            if needs[0]:
                p, centred = sync.sum_tables(p, centred)
            gamma = weight if weight is not None else torch.ones_like(rstd[0])
            t0, t1, t2 = dx_tables(p, centred, lam, mass, mean_z, rstd, gamma)
        dx = None
        if needs[0]:
            dx = torch.empty_like(x)
            grid = (blocks, _cdiv(c, self.block_c))
            k.mn_grad_input[grid](grad_out, x, shift, a, t0, t1, t2, dx, *geometry, **sizes)
        return dx, gw if needs[1] else None, gb if needs[2] else None


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


EAGER = EagerKernels()
INDUCTOR = InductorKernels()
TRITON = TritonKernels()


def triton_available() -> bool:
    """Whether Triton can be imported (it ships with CUDA builds of torch)."""
    return importlib.util.find_spec("triton") is not None


def select_kernels(choice: str, x: Tensor) -> EagerKernels | TritonKernels:
    """The kernel set for ``x`` under the layer's ``kernels`` option (one of
    ``KERNEL_CHOICES``, checked when the layer is built). Inside a model that is itself
    being compiled, the Inductor set inlines its decomposed code into the model's graph."""
    if choice == "auto":
        choice = "inductor"  # see the module docstring: Triton is opt-in until run on a GPU
    if choice == "triton":
        if torch.compiler.is_compiling():  # a compiled model: inline the decomposed code
            return INDUCTOR
        # (UserError: a setting the user chose, found at the first training batch)
        if not triton_available():
            raise UserError("kernels='triton' needs Triton (it comes with CUDA builds of torch)")
        if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise UserError("MN kernels='triton' needs CUDA tensors (or TRITON_INTERPRET=1 "
                            "to interpret them on a CPU); use kernels='auto' here")
        return TRITON if x.dtype == torch.float32 else EAGER
    return INDUCTOR if choice == "inductor" else EAGER
