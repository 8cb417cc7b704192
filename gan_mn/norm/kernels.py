"""The kernel sets that run MN's training passes, and the choice between them.

- ``eager``: the torch ops of :mod:`gan_mn.norm.functional` (batched matrix products).
- ``inductor``: the same code in its decomposed form through ``torch.compile``: a few
  single-pass kernels; fast on the CPU.
- ``triton``: hand-written Triton kernels (:mod:`gan_mn.norm.triton_kernels`), six
  launches per forward + backward + state update; for CUDA, where the Inductor path's
  many small launches and guards cost far more than the arithmetic.

``auto`` picks ``triton`` for float32 CUDA tensors (checked on an H200 by
``benchmarks/gpu_check.py``: every case within its float64 bound) and
``inductor`` elsewhere, up to :data:`COMPILE_MAX_COMPONENTS` components: above that
Inductor's compilation (its code unrolls the components) costs more than it saves,
and ``eager`` runs instead.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import types
import warnings
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gan_mn.errors import UserError
from gan_mn.norm.functional import (
    Collectives,
    EagerForward,
    EMSettings,
    Forward,
    Layout,
    Needs,
    StateUpdate,
    dx_tables,
    eager_backward,
    eager_forward,
    owned,
)
from gan_mn.norm.gmm import TINY, BatchStats, Mixture, SampleView

log = logging.getLogger(__name__)
KERNEL_CHOICES = ("auto", "eager", "inductor", "triton")
# Most components ``auto`` compiles with Inductor (K=20 took a minute before its first step).
COMPILE_MAX_COMPONENTS = 8


def _as_forward(res: EagerForward) -> Forward:
    s = res.stats
    stats = BatchStats(s.mass, s.weight, s.mean + res.shift, s.var)
    return Forward(res.out, stats, (res.z, res.a, s.mass, s.weight, s.mean, res.inv_std))


class EagerKernels:
    """Torch ops, any device and dtype, with or without a process group."""

    def forward(self, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                sync: Collectives | None, shift: Tensor | None,
                update: StateUpdate | None) -> Forward:
        return _as_forward(eager_forward(x, weight, bias, posteriors, start, em, True,
                                         decomposed=False, sync=sync, shift=shift,
                                         update=update))

    def backward(self, grad_out: Tensor, saved: tuple[Tensor | None, ...],
                 weight: Tensor | None, layout: Layout, needs: Needs,
                 sync: Collectives | None) -> tuple[Tensor | None, ...]:
        return eager_backward(grad_out, *saved, weight, *layout, decomposed=False, needs=needs,
                              sync=sync)


class _Compiled:
    """``fn`` with ``decomposed=True`` under ``torch.compile`` (dynamic shapes), built on
    first use. Each variant (``key(*args, **kwargs)``: component count, layout, dtype,
    ...) compiles its own copy of ``fn``: Dynamo's recompile limit counts per code
    object, and past it would run the decomposed code uncompiled, slowly. If no
    Inductor backend works here (no C++ compiler, no Triton) it warns once and all
    kernels run eagerly with ``decomposed=False``; any other error propagates."""

    failed = False  # shared: one broken backend means all kernels fall back
    announced = False  # (the first compilation says so, once)

    def __init__(self, fn: Callable[..., Any], key: Callable[..., Hashable]) -> None:
        self.fn = fn
        self.key = key
        self.compiled: dict[Hashable, Callable[..., Any]] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():  # inside a compiled model: inline into its graph
            return self.fn(*args, decomposed=True, **kwargs)
        if not _Compiled.failed:
            key = self.key(*args, **kwargs)
            if key not in self.compiled:
                if not _Compiled.announced:
                    _Compiled.announced = True
                    log.info("MixtureNorm2d: compiling its fused kernels with Inductor (once per "
                             "process; tens of seconds on a CPU before the first step)")
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
                warnings.warn(f"MixtureNorm2d: compiling its fused kernels failed ({reason}); "
                              "it runs its eager kernels instead (kernels='eager' skips the "
                              "attempt)", RuntimeWarning, stacklevel=2)
        return self.fn(*args, decomposed=False, **kwargs)


def _forward_key(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                 posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                 detach: bool, update: StateUpdate | None = None) -> Hashable:
    channels_last = SampleView.is_channels_last(x)
    k = (start.weight.shape[0] if start is not None
         else None if posteriors is None else posteriors.shape[2 if channels_last else 1])
    updates = None if update is None else update.momentum is None
    return (x.dtype, x.device.type, channels_last, weight is None, bias is None,
            posteriors is None, k, em, detach, updates)


def _backward_key(grad_out: Tensor, z: Tensor, a: Tensor | None, mass: Tensor, *rest: Any,
                  needs: Needs) -> Hashable:
    weight, channels_last = rest[-3], rest[-1]
    return (z.dtype, z.device.type, channels_last, a is None, mass.shape[0], weight is None,
            needs)


class InductorKernels(EagerKernels):
    """The eager code, decomposed and compiled by Inductor, state update included (eager
    under a process group: compiled code cannot call collectives)."""

    def __init__(self) -> None:
        self._forward = _Compiled(eager_forward, _forward_key)
        self._backward = _Compiled(eager_backward, _backward_key)

    def forward(self, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                sync: Collectives | None, shift: Tensor | None,
                update: StateUpdate | None) -> Forward:
        if sync is not None:
            return super().forward(x, weight, bias, posteriors, start, em, sync, shift, update)
        return _as_forward(self._forward(x, weight, bias, posteriors, start, em, True,
                                         update=update))

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


class Blocks(NamedTuple):
    """Tile sizes of the Triton kernels for one input shape."""

    m: int  # samples per program of the row kernels
    c: int  # channels per step of the row kernels' loops (and per program of dx)
    table_c: int  # channels per program of the table kernels
    table_b: int  # partial sums per load of the table kernels


# Elements of a row kernel's [BLOCK_M, KP, BLOCK_C] tile, and of a table kernel's
# [BLOCK_B, KP, BLOCK_C]: small enough to stay in registers.
_TILE = 4096
_TABLE_TILE = 2048


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class TritonKernels:
    """MN's passes as the Triton kernels of :mod:`gan_mn.norm.triton_kernels`.

    float32 only (the layer computes in float32 under autocast), ``K`` up to
    :attr:`MAX_COMPONENTS` (larger mixtures would not fit a tile in registers). Tile sizes
    follow the shape: enough programs to fill the GPU's multiprocessors (two each), each
    tile within a register budget; ``blocks`` fixes them (the tests use small ones, so
    that tiny inputs span several blocks). Under a process group the per-block sums are
    combined and all-reduced in torch between the kernels. ``TRITON_INTERPRET=1`` runs
    them on CPU tensors (slowly): that is how tests check them.
    """

    MAX_COMPONENTS = 16

    def __init__(self, blocks: Blocks | None = None) -> None:
        self.blocks = blocks
        self._processors: dict[torch.device, int] = {}

    @property
    def k(self) -> types.ModuleType:
        """The kernels, imported on first use (``TRITON_INTERPRET`` is read then)."""
        from gan_mn.norm import triton_kernels
        return triton_kernels

    def _blocks(self, x: Tensor, m: int, c: int, kp: int) -> Blocks:
        if self.blocks is not None:
            return self.blocks
        if x.device not in self._processors:  # a host query, once per device
            # (the CPU interpreter runs programs one after another: fewer, larger tiles)
            self._processors[x.device] = (
                torch.cuda.get_device_properties(x.device).multi_processor_count
                if x.is_cuda else 0)
        programs = 2 * self._processors[x.device]
        block_c = min(32, max(16, _pow2(c)))
        block_m = max(16, min(128, _TILE // (kp * block_c)))
        while block_m > 16 and _cdiv(m, block_m) < programs:
            block_m //= 2
        table_c = 8 if c <= 256 else 16
        table_b = max(2, min(_pow2(_cdiv(m, block_m)), _TABLE_TILE // (kp * table_c)))
        return Blocks(block_m, block_c, table_c, table_b)

    @staticmethod
    def _geometry(x: Tensor) -> tuple[int, int, int, tuple[int, int, int]]:
        n, c, h, w = x.shape
        return n * h * w, c, h * w, (x.stride(0), x.stride(1), x.stride(3))

    def forward(self, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                sync: Collectives | None, shift: Tensor | None,
                update: StateUpdate | None) -> Forward:
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
        kp = max(2, _pow2(ncomp))  # arange needs >= 2
        blocks = self._blocks(x, m, c, kp)
        num_blocks = _cdiv(m, blocks.m)
        geometry = (m, c, length, *strides, shift.stride(0))
        f32 = {"device": x.device, "dtype": torch.float32}
        given = posteriors if posteriors is not None else x
        tau = None if mode == k.ONES else torch.empty(m, ncomp, **f32)
        mix = start if mode == k.ESTEP else Mixture(x, x, x)  # unread placeholders
        iters = em.iters if mode == k.ESTEP else 1
        for i in range(iters):
            last = i == iters - 1
            estep = mix
            mass_p = torch.empty(num_blocks, ncomp, **f32)
            s1_p, s2_p = (torch.empty(num_blocks, ncomp, c, **f32) for _ in range(2))
            k.mn_stats[(num_blocks,)](
                x, shift, given, *estep, mass_p, s1_p, s2_p, x if tau is None else tau,
                *geometry, *t_strides, em.var_floor, K=ncomp, KP=kp, MODE=mode,
                SAVE_TAU=last and tau is not None, BLOCK_M=blocks.m, BLOCK_C=blocks.c)
            stats, rstd = self._m_step(x, mass_p, s1_p, s2_p, estep.mean, shift, em, sync,
                                       mode == k.ESTEP, ncomp, kp, blocks,
                                       update if last else None)
            mix = Mixture(stats.weight, stats.mean, stats.var)
        y = torch.empty_like(x)
        nbt = x if update is None else update.state.num_batches_tracked
        k.mn_output[(num_blocks,)](
            x, shift, x if tau is None else tau, stats.weight, stats.mean, rstd,
            x if weight is None else weight, x if bias is None else bias, y, nbt, *geometry,
            K=ncomp, KP=kp, ONE=tau is None, HAS_GAMMA=weight is not None,
            HAS_BETA=bias is not None, COUNT=update is not None, BLOCK_M=blocks.m,
            BLOCK_C=blocks.c)
        saved = (x, shift, tau, stats.mass, stats.weight, stats.mean, rstd)
        return Forward(y, stats, saved)

    def _m_step(self, x: Tensor, mass_p: Tensor, s1_p: Tensor, s2_p: Tensor, centre: Tensor,
                shift: Tensor, em: EMSettings, sync: Collectives | None, has_centre: bool,
                ncomp: int, kp: int, blocks: Blocks, update: StateUpdate | None
                ) -> tuple[BatchStats, Tensor]:
        """Combine the blocks' moments (first all-reduced in torch under a process group),
        the M-step, and the state update if given: one kernel."""
        m, c, length, strides = self._geometry(x)
        count: Tensor | None = None
        if sync is not None:
            mass, s1, s2, count = sync.sum_moments(mass_p.sum(0), s1_p.sum(0), s2_p.sum(0),
                                                   float(m))
            mass_p, s1_p, s2_p = mass.reshape(1, -1), s1.unsqueeze(0), s2.unsqueeze(0)
        f32 = {"device": x.device, "dtype": torch.float32}
        mass, weight = (torch.empty(ncomp, **f32) for _ in range(2))
        mean, var, rstd = (torch.empty(ncomp, c, **f32) for _ in range(3))
        state = update.state if update is not None else (x,) * 7  # unread placeholders
        momentum = None if update is None else update.momentum
        self.k.mn_finalize[(_cdiv(c, blocks.table_c),)](
            mass_p, s1_p, s2_p, centre, shift, x if count is None else count,
            mass, weight, mean, var, rstd, *state, x,
            mass_p.shape[0], m, c, length, *strides, shift.stride(0), float(m), em.eps,
            0.0 if momentum is None else float(momentum), 1.0,
            K=ncomp, KP=kp, HAS_CENTRE=has_centre, COUNT_IN_MEMORY=count is not None,
            UPDATE=update is not None, CUMULATIVE=momentum is None, WARM=ncomp > 1,
            BLOCK_B=blocks.table_b, BLOCK_C=blocks.table_c)
        return BatchStats(mass, weight, mean, var), rstd

    def backward(self, grad_out: Tensor, saved: tuple[Tensor | None, ...],
                 weight: Tensor | None, layout: Layout, needs: Needs,
                 sync: Collectives | None) -> tuple[Tensor | None, ...]:
        x, shift, tau, mass, lam, mean, rstd = saved
        assert x is not None and shift is not None
        assert mass is not None and lam is not None and mean is not None and rstd is not None
        k = self.k
        grad_out = grad_out.contiguous(memory_format=torch.channels_last if layout[1]
                                       else torch.contiguous_format)
        m, c, length, strides = self._geometry(x)
        ncomp = mass.shape[0]
        kp = max(2, _pow2(ncomp))  # arange needs >= 2
        blocks = self._blocks(x, m, c, kp)
        num_blocks = _cdiv(m, blocks.m)
        geometry = (m, c, length, *strides, shift.stride(0))
        rows = {"K": ncomp, "KP": kp, "ONE": tau is None, "BLOCK_M": blocks.m,
                "BLOCK_C": blocks.c}
        tau_arg = x if tau is None else tau
        f32 = {"device": x.device, "dtype": torch.float32}
        p_p, u_p = (torch.empty(num_blocks, ncomp, c, **f32) for _ in range(2))
        k.mn_grad_reduce[(num_blocks,)](grad_out, x, shift, tau_arg, lam, p_p, u_p, *geometry,
                                        **rows)
        if sync is None:
            t0, t1, t2 = (torch.empty(ncomp, c, **f32) for _ in range(3))
            gw, gb = (torch.empty(c, **f32) for _ in range(2))
            k.mn_grad_tables[(_cdiv(c, blocks.table_c),)](
                p_p, u_p, shift, mass, lam, mean, rstd, x if weight is None else weight,
                t0, t1, t2, gw, gb, num_blocks, c, shift.stride(0), K=ncomp, KP=kp,
                HAS_GAMMA=weight is not None, BLOCK_B=blocks.table_b, BLOCK_C=blocks.table_c)
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
            grid = (num_blocks, _cdiv(c, blocks.c))
            k.mn_grad_input[grid](grad_out, x, shift, tau_arg, lam, t0, t1, t2, dx, *geometry,
                                  **rows)
        return dx, gw if needs[1] else None, gb if needs[2] else None


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


EAGER = EagerKernels()
INDUCTOR = InductorKernels()
TRITON = TritonKernels()


@functools.cache
def triton_available() -> bool:
    """Whether Triton can be imported (it ships with CUDA builds of torch)."""
    return importlib.util.find_spec("triton") is not None


def select_kernels(choice: str, x: Tensor, num_components: int) -> EagerKernels | TritonKernels:
    """The kernel set for ``x`` under the layer's ``kernels`` option (one of
    ``KERNEL_CHOICES``, checked when the layer is built). Inside a model that is itself
    being compiled, the Inductor set inlines its decomposed code into the model's graph."""
    if choice == "auto":
        if x.is_cuda and x.dtype == torch.float32 and triton_available() and \
                num_components <= TritonKernels.MAX_COMPONENTS:
            choice = "triton"
        else:
            choice = "inductor" if num_components <= COMPILE_MAX_COMPONENTS else "eager"
    if choice == "triton":
        if torch.compiler.is_compiling():  # a compiled model: inline the decomposed code
            return INDUCTOR
        # (UserError: a setting the user chose, found at the first training batch)
        if not triton_available():
            raise UserError("kernels='triton' needs Triton (it comes with CUDA builds of torch)")
        if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise UserError("MN kernels='triton' needs CUDA tensors (or TRITON_INTERPRET=1 "
                            "to interpret them on a CPU); use kernels='auto' here")
        if x.dtype != torch.float32 or num_components > TritonKernels.MAX_COMPONENTS:
            return EAGER
        return TRITON
    return INDUCTOR if choice == "inductor" else EAGER
