"""The kernel sets that run MN's training passes, and the choice between them.

- ``eager``: the torch ops of :mod:`gan_mn.norm.functional` (batched matrix products).
- ``inductor``: the same code in its decomposed form through ``torch.compile``: a few
  single-pass kernels; fast on the CPU.
- ``triton``: hand-written Triton kernels (:mod:`gan_mn.norm.triton.kernels`), six
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
from typing import Any

import torch
from torch import Tensor

from gan_mn.norm.functional import (
    EagerForward,
    EMSettings,
    Forward,
    Layout,
    Needs,
    StateUpdate,
    eager_backward,
    eager_forward,
    owned,
)
from gan_mn.norm.gmm import TINY, BatchStats, Collectives, Mixture
from gan_mn.norm.layout import SampleView
from gan_mn.norm.triton.plan import TritonKernels

log = logging.getLogger(__name__)
KERNEL_CHOICES = ("auto", "eager", "inductor", "triton")
# Most components ``auto`` compiles with Inductor (K=20 took a minute before its first step).
COMPILE_MAX_COMPONENTS = 8


def _as_forward(res: EagerForward, x: Tensor) -> Forward:
    s = res.stats
    stats = BatchStats(s.mass, s.weight, s.mean + res.shift, s.var)
    return Forward(owned(res.out), lambda: stats,
                   (res.z, res.a, s.mass, s.weight, s.mean, res.inv_std),
                   (x.shape, SampleView.is_channels_last(x)))


class EagerKernels:
    """Torch ops, any device and dtype, with or without a process group."""

    def forward(self, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                posteriors: Tensor | None, start: Mixture | None, em: EMSettings,
                sync: Collectives | None, shift: Tensor | None,
                update: StateUpdate | None) -> Forward:
        return _as_forward(eager_forward(x, weight, bias, posteriors, start, em, True,
                                         decomposed=False, sync=sync, shift=shift,
                                         update=update), x)

    def backward(self, grad_out: Tensor, saved: tuple[Tensor | None, ...],
                 weight: Tensor | None, layout: Layout, needs: Needs,
                 sync: Collectives | None) -> tuple[Tensor | None, ...]:
        # (detached: under create_graph no second-order path runs through the weight, as
        # with the other kernel sets)
        weight = None if weight is None else weight.detach()
        return eager_backward(grad_out, *saved, weight, *layout, decomposed=False, needs=needs,
                              sync=sync)

    def posteriors(self, saved: tuple[Tensor | None, ...], layout: Layout) -> Tensor | None:
        """``tau = a * sqrt(lambda)`` from the saved ``a = tau / sqrt(lambda)``."""
        _, a, _, lam, *_ = saved
        if a is None or lam is None:
            return None
        root = lam.clamp_min(TINY).sqrt()
        return a * (root if layout[1] else root.unsqueeze(-1))


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
        # Plain tensors, not Parameters: torch.compile keeps Parameter shapes static, which
        # would compile once per channel count (x too: one graph whether or not it
        # requires grad).
        x, weight, bias = (None if t is None else t.detach() for t in (x, weight, bias))
        return _as_forward(self._forward(x, weight, bias, posteriors, start, em, True,
                                         update=update), x)

    def backward(self, grad_out: Tensor, saved: tuple[Tensor | None, ...],
                 weight: Tensor | None, layout: Layout, needs: Needs,
                 sync: Collectives | None) -> tuple[Tensor | None, ...]:
        if sync is not None:
            return super().backward(grad_out, saved, weight, layout, needs, sync)
        # one stride pattern for the compiled code (e.g. not sum()'s expanded gradient)
        fmt = torch.channels_last if layout[1] else torch.contiguous_format
        grad_out = grad_out.contiguous(memory_format=fmt)
        weight = None if weight is None else weight.detach()
        dx, gw, gb = self._backward(grad_out, *saved, weight, *layout, needs=needs)
        return owned(dx), gw, gb


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
        # (ValueError, as the library's other argument errors; gan-mn fit refuses these
        # settings before training, in gan_mn.cli.fit_settings)
        if not triton_available():
            raise ValueError("kernels='triton' needs Triton (it comes with CUDA builds of "
                             "torch)")
        if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError("MN kernels='triton' needs CUDA tensors (or TRITON_INTERPRET=1 "
                             "to interpret them on a CPU); use kernels='auto' here")
        if x.dtype != torch.float32 or num_components > TritonKernels.MAX_COMPONENTS:
            return EAGER
        return TRITON
    return INDUCTOR if choice == "inductor" else EAGER
