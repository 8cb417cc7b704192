"""The host side of MN's Triton kernels (:mod:`gan_mn.norm.triton.kernels`): one plan per
input shape, then six launches per training step.

On a GPU a small MN layer's cost is host time (the kernels run for microseconds), so a
step does only what must change from step to step. Everything that depends on the
input's shape, strides, device, component count and flags (tile sizes, grids, scalar
arguments, compile-time constants) is worked out once, in a :class:`Plan`, together
with its scratch buffers: the forward's and the backward's partial sums and the ``dx``
tables. Scratch can be shared by every call of the shape: each pass has read its
scratch before the next pass starts (one stream), and a captured CUDA graph keeps
their addresses. Saved tensors cannot: a discriminator's layers run twice before one
backward. A step allocates the output, the posteriors and one statistics buffer
forward, and the three gradients backward; no views, no host reads.

Few pointers per launch: the statistics are one buffer ``[mass K | weight K | mean KC |
var KC | rstd KC]``, the forward's partial sums ``[mass BK | s1 BKC | s2 BKC (| count)]``,
the backward's ``[p BKC | u BKC]`` (``B`` blocks of samples), then the ``dx`` tables
``[T0 | T1 | T2]``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gan_mn.norm.functional import (
    EMSettings,
    Forward,
    Needs,
    StateUpdate,
    dx_tables,
)
from gan_mn.norm.gmm import TINY, BatchStats, Collectives, Mixture
from gan_mn.norm.layout import SampleView


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
_MAX_PLANS = 64  # shapes kept (a training run has a few; eval batches may add some)


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.cache
def _kernels() -> Any:
    """The kernel module, imported on first use (``TRITON_INTERPRET`` is read then)."""
    from gan_mn.norm.triton import kernels
    return kernels


def unpack_stats(buffer: Tensor, k: int, c: int) -> BatchStats:
    """The batch statistics the kernels write into one buffer ``[mass K | weight K | mean
    KC | var KC | rstd KC]``, as views (made only when asked for: on a GPU each costs
    host time)."""
    table = buffer[2 * k:].view(3, k, c)
    return BatchStats(buffer[:k], buffer[k:2 * k], table[0], table[1])


def _rstd(buffer: Tensor, k: int, c: int) -> Tensor:
    """The statistics buffer's last table, ``1 / sqrt(var + eps)``."""
    return buffer[2 * k + 2 * k * c:].view(k, c)


class Plan:
    """One input shape's launches: all but the tensors that change from step to step."""

    def __init__(self, x: Tensor, mode: int, ncomp: int, t_strides: tuple[int, int, int],
                 shift: Tensor | None, flags: tuple[bool, bool, bool, bool, bool],
                 blocks: Blocks) -> None:
        has_gamma, has_beta, update, cumulative, synced = flags
        n, c, h, w = x.shape
        self.m, self.c, self.ncomp, self.mode = n * h * w, c, ncomp, mode
        self.device = x.device
        k = _kernels()
        self.memory_format = (torch.channels_last if SampleView.is_channels_last(x)
                              else torch.contiguous_format)
        s_shift = x.stride(1) if shift is None else shift.stride(0)
        self.geometry = (self.m, c, h * w, x.stride(0), x.stride(1), x.stride(3), s_shift)
        self.t_strides = t_strides
        kp = max(2, _pow2(ncomp))  # arange needs >= 2
        self.num_blocks = b = _cdiv(self.m, blocks.m)
        self.rows_grid = (b,)
        self.tables_grid = (_cdiv(c, blocks.table_c),)
        self.dx_grid = (b, _cdiv(c, blocks.c))
        self.stats_size = 2 * ncomp + 3 * ncomp * c
        self.tau_shape = None if mode == k.ONES else (self.m, ncomp)
        f32 = {"device": x.device, "dtype": torch.float32}
        self.part = torch.empty(b * ncomp * (1 + 2 * c), **f32)
        self.grad_part = torch.empty(2 * b * ncomp * c + 3 * ncomp * c, **f32)
        self.tables = self.grad_part[2 * b * ncomp * c:]
        sizes = {"K": ncomp, "KP": kp}
        rows = {**sizes, "BLOCK_M": blocks.m, "BLOCK_C": blocks.c}
        tables = {**sizes, "BLOCK_B": blocks.table_b, "BLOCK_C": blocks.table_c}
        one = self.tau_shape is None
        estep = mode == k.ESTEP
        # [not the last EM iteration, the last]
        self.stats_args = [{**rows, "MODE": mode, "SAVE_TAU": last and not one}
                           for last in (False, True)]
        self.finalize_args = [
            {**tables, "HAS_CENTRE": estep, "COUNT_IN_MEMORY": synced, "UPDATE": last and update,
             "CUMULATIVE": cumulative, "WARM": ncomp > 1} for last in (False, True)]
        self.output_args = {**rows, "ONE": one, "HAS_GAMMA": has_gamma, "HAS_BETA": has_beta,
                            "COUNT": update}
        self.grad_rows_args = {**rows, "ONE": one}
        self.grad_tables_args = {**tables, "HAS_GAMMA": has_gamma}

    def partial_sums(self, sync: Collectives) -> Tensor:
        """The blocks' moments combined and all-reduced (in torch), with the global count
        after them: the partial sums of one block."""
        b, k, c = self.num_blocks, self.ncomp, self.c
        mass, s1, s2 = (self.part[:b * k].view(b, k), self.part[b * k:b * k * (1 + c)],
                        self.part[b * k * (1 + c):])
        mass, s1, s2, count = sync.sum_moments(mass.sum(0), s1.view(b, k, c).sum(0),
                                               s2.view(b, k, c).sum(0), float(self.m))
        return torch.cat((mass.reshape(-1), s1.reshape(-1), s2.reshape(-1),
                          count.reshape(1).to(mass.dtype)))


class TritonKernels:
    """MN's passes as the Triton kernels of :mod:`gan_mn.norm.triton.kernels`.

    float32 only (the layer computes in float32 under autocast), ``K`` up to
    :attr:`MAX_COMPONENTS` (larger mixtures would not fit a tile in registers). Tile sizes
    follow the shape: enough programs to fill the GPU's multiprocessors (two each), each
    tile within a register budget; ``blocks`` fixes them (the tests use small ones, so
    that tiny inputs span several blocks). Under a process group the per-block sums are
    combined and all-reduced in torch between the kernels. ``TRITON_INTERPRET=1`` runs
    them on CPU tensors (slowly): that is how tests check them.
    """

    MAX_COMPONENTS = 16

    def __init__(self, blocks: Blocks | None = None, processors: int | None = None) -> None:
        self.blocks = blocks
        self._plans: dict[Any, Plan] = {}
        self._processors: dict[torch.device, int] = {}
        self.processors = processors  # tiles as for a GPU of this many SMs, on any device

    def _blocks(self, x: Tensor, m: int, c: int, kp: int) -> Blocks:
        if self.blocks is not None:
            return self.blocks
        if self.processors is not None:
            self._processors[x.device] = self.processors
        if x.device not in self._processors:  # a host query, once per device
            # (the CPU interpreter runs programs one after another: fewer, larger tiles)
            self._processors[x.device] = (
                torch.cuda.get_device_properties(x.device).multi_processor_count
                if x.is_cuda else 0)
        programs = 2 * self._processors[x.device]
        # more than 8 components: 16 channels a step (K=16 at 32 took 160-168 registers in
        # mn_stats and mn_grad_reduce, 3 programs per SM; at 16, 95-105 and 4: see
        # docs/performance.md, "Compiled for the GPUs users have")
        block_c = min(32 if kp <= 8 else 16, max(16, _pow2(c)))
        block_m = max(16, min(128, _TILE // (kp * block_c)))
        while block_m > 16 and _cdiv(m, block_m) < programs:
            block_m //= 2
        table_c = 8 if c <= 256 else 16
        table_b = max(2, min(_pow2(_cdiv(m, block_m)), _TABLE_TILE // (kp * table_c)))
        return Blocks(block_m, block_c, table_c, table_b)

    def _plan(self, key: Any, x: Tensor, posteriors: Tensor | None, start: Mixture | None,
              shift: Tensor | None) -> Plan:
        k = _kernels()
        if posteriors is not None:
            kdim = 2 if SampleView.is_channels_last(x) else 1
            mode, ncomp = k.GIVEN, posteriors.shape[kdim]
            t_strides = (posteriors.stride(0), posteriors.stride(kdim),
                         posteriors.stride(3 - kdim))
        else:
            mode, ncomp = (k.ONES, 1) if start is None else (k.ESTEP, start.weight.shape[0])
            t_strides = (0, 0, 0)
        n, c, h, w = x.shape
        blocks = self._blocks(x, n * h * w, c, max(2, _pow2(ncomp)))
        if len(self._plans) >= _MAX_PLANS:
            self._plans.pop(next(iter(self._plans)))
        plan = self._plans[key] = Plan(x, mode, ncomp, t_strides, shift, key[-1], blocks)
        return plan

    def forward(self, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                sync: Collectives | None, shift: Tensor | None,
                update: StateUpdate | None) -> Forward:
        if not (x.is_contiguous() or SampleView.is_channels_last(x)):
            x = x.contiguous()
        flags = (weight is not None, bias is not None, update is not None,
                 update is not None and update.momentum is None, sync is not None)
        key = (x.shape, x.stride(), x.dtype, x.device,
               None if posteriors is None else (posteriors.shape, posteriors.stride()),
               None if start is None else start.weight.shape[0],
               None if shift is None else shift.stride(0), flags)
        plan = self._plans.get(key) or self._plan(key, x, posteriors, start, shift)
        k = _kernels()
        tau = None if plan.tau_shape is None else torch.empty(
            plan.tau_shape, device=plan.device, dtype=torch.float32)
        shift_arg, tau_arg = x if shift is None else shift, x if tau is None else tau
        mix = (x, x, x) if start is None or posteriors is not None else start
        if update is None:
            state, momentum = (x,) * 7, 0.0
        else:
            state, momentum = update.state, update.momentum
            momentum = 0.0 if momentum is None else float(momentum)
        iters = em.iters if plan.mode == k.ESTEP else 1
        for i in range(iters):
            last = i == iters - 1
            st = torch.empty(plan.stats_size, device=plan.device, dtype=torch.float32)
            k.mn_stats[plan.rows_grid](x, shift_arg, x if posteriors is None else posteriors,
                                       *mix, plan.part, tau_arg, *plan.geometry,
                                       *plan.t_strides, em.var_floor,
                                       **plan.stats_args[last])
            part, blocks = (plan.part, plan.num_blocks) if sync is None else \
                (plan.partial_sums(sync), 1)
            k.mn_finalize[plan.tables_grid](part, mix[1], shift_arg, st, *state, x, blocks,
                                            *plan.geometry, float(plan.m), em.eps, momentum,
                                            1.0, **plan.finalize_args[last])
            if not last:
                stats = unpack_stats(st, plan.ncomp, plan.c)
                mix = (stats.weight, stats.mean, stats.var)
        y = torch.empty_like(x)
        k.mn_output[plan.rows_grid](x, shift_arg, tau_arg, st, x if weight is None else weight,
                                    x if bias is None else bias, y, state[6], *plan.geometry,
                                    **plan.output_args)
        return Forward(y, functools.partial(unpack_stats, st, plan.ncomp, plan.c),
                       (x, shift, tau, st), plan)

    def posteriors(self, saved: tuple[Tensor | None, ...], plan: Plan) -> Tensor | None:
        """``tau`` (rows in sample order, ``(M, K)``) in the sample layout of ``x``."""
        x, _, tau, _ = saved
        if tau is None or x is None:
            return None
        t = tau.view(x.shape[0], x.shape[2] * x.shape[3], -1)
        return t if plan.memory_format == torch.channels_last else t.transpose(1, 2)

    def backward(self, grad_out: Tensor, saved: tuple[Tensor | None, ...],
                 weight: Tensor | None, plan: Plan, needs: Needs,
                 sync: Collectives | None) -> tuple[Tensor | None, ...]:
        x, shift, tau, st = saved
        assert x is not None and st is not None
        k = _kernels()
        grad_out = grad_out.contiguous(memory_format=plan.memory_format)
        shift_arg, tau_arg = x if shift is None else shift, x if tau is None else tau
        k.mn_grad_reduce[plan.rows_grid](grad_out, x, shift_arg, tau_arg, st, plan.grad_part,
                                         *plan.geometry, **plan.grad_rows_args)
        if sync is None:
            gw = torch.empty(plan.c, device=plan.device, dtype=torch.float32)
            gb = torch.empty(plan.c, device=plan.device, dtype=torch.float32)
            k.mn_grad_tables[plan.tables_grid](
                plan.grad_part, shift_arg, st, x if weight is None else weight, plan.tables,
                gw, gb, plan.num_blocks, plan.c, plan.geometry[-1], **plan.grad_tables_args)
            tables = plan.tables
        else:
            gw, gb, tables = _synced_tables(plan, x[0, :, 0, 0] if shift is None else shift,
                                            st, weight, needs, sync)
        dx = None
        if needs[0]:
            dx = torch.empty_like(x)
            k.mn_grad_input[plan.dx_grid](grad_out, x, shift_arg, tau_arg, st, tables, dx,
                                          *plan.geometry, **plan.grad_rows_args)
        return dx, gw if needs[1] else None, gb if needs[2] else None


def _synced_tables(plan: Plan, shift: Tensor, st: Tensor, weight: Tensor | None,
                   needs: Needs, sync: Collectives) -> tuple[Tensor, Tensor, Tensor]:
    """Under a process group: the blocks' sums combined in torch, the weight and bias
    gradients (local, as DDP expects), the sums all-reduced, then the ``dx`` tables."""
    b, k, c = plan.num_blocks, plan.ncomp, plan.c
    stats = unpack_stats(st, k, c)
    p = plan.grad_part[:b * k * c].view(b, k, c).sum(0)
    u = plan.grad_part[b * k * c:2 * b * k * c].view(b, k, c).sum(0)
    mean_z, rstd, lam = stats.mean - shift, _rstd(st, k, c), stats.weight
    centred = u - mean_z * p
    gw = (rstd * centred).sum(0)
    gb = (lam.clamp_min(TINY).sqrt().unsqueeze(1) * p).sum(0)
    if needs[0]:
        p, centred = sync.sum_tables(p, centred)
    gamma = weight if weight is not None else torch.ones_like(rstd[0])
    tables = torch.stack(dx_tables(p, centred, lam, stats.mass, mean_z, rstd, gamma))
    return gw, gb, tables

