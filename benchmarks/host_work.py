"""What one training step of a norm layer asks of the host, counted where no GPU is needed.

On a GPU a small MN layer's cost is host time: Python, tensor allocations and kernel
launches (their arguments included), not arithmetic. This module counts each of them
for one forward + backward (+ state update), so that tests can hold the counts on any
machine and benchmarks and ``gpu_check`` can print them. It is a development tool, not
part of the package: the layer knows nothing of it (it stubs Triton's own launch call).

- :func:`stubbed_launches` replaces MN's Triton kernels by recorders (nothing runs;
  the values computed are garbage, the host work is the real one);
- :func:`count_host_work`: new tensors (outputs with storage of their own), dispatcher
  operators, Python calls into ``gan_mn`` and the launches' tensor arguments;
- :func:`count_launches`: under Triton's CPU interpreter (``TRITON_INTERPRET=1``), the
  Triton kernels launched and the torch operators that would launch a GPU kernel;
- :func:`host_seconds`: wall time per step, best of several rounds.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gan_mn

PACKAGE = str(Path(gan_mn.__file__).parent)  # the Python calls counted: the package's
TRITON_KERNELS = ("mn_stats", "mn_finalize", "mn_output", "mn_grad_reduce", "mn_grad_tables",
                  "mn_grad_input")


class Launch(NamedTuple):
    kernel: str
    tensors: int  # tensor (pointer) arguments
    scalars: int  # other positional arguments
    constants: int  # keyword (constexpr) arguments
    call: tuple[Any, tuple, dict] | None = None  # (grid, args, kwargs), to compile it later


class HostWork(NamedTuple):
    allocations: int  # tensors with storage of their own
    operators: int  # dispatcher calls (views and metadata included)
    python_calls: int  # calls into gan_mn's Python code
    launches: list[Launch]
    operator_names: list[str]


@contextlib.contextmanager
def stubbed_launches(record: bool = True, keep_calls: bool = False
                     ) -> Iterator[list[Launch]]:
    """MN's Triton kernels' launches recorded instead of run, or made no-ops (for timing
    the rest), restored on exit. The seam is Triton's own: ``kernel[grid](...)`` calls
    the kernel's ``run``, replaced here on each kernel object. ``keep_calls`` keeps each
    launch's grid and arguments (to compile it later); not when counting host work:
    references to the gradients make autograd copy them."""
    from gan_mn.norm.triton import kernels

    launches: list[Launch] = []

    def recorder(name: str) -> Callable[..., None]:
        def run(*args: Any, grid: Any, warmup: bool, **kwargs: Any) -> None:
            if record:
                tensors = sum(isinstance(a, torch.Tensor) for a in args)
                launches.append(Launch(name, tensors, len(args) - tensors, len(kwargs),
                                       (grid, args, kwargs) if keep_calls else None))
        return run

    stubbed = [getattr(kernels, name) for name in TRITON_KERNELS]
    try:
        for name, kernel in zip(TRITON_KERNELS, stubbed, strict=True):
            kernel.run = recorder(name)  # (an instance attribute hides the class's method)
        yield launches
    finally:
        for kernel in stubbed:
            kernel.__dict__.pop("run", None)


def _storages(values: Any) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in torch.utils._pytree.tree_leaves(values)
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes()}


def count_host_work(step: Callable[[], Any], launches: list[Launch] | None = None
                    ) -> HostWork:
    """One call of ``step`` (warmed up by the caller), counted; ``launches``: the list
    :func:`stubbed_launches` records into, if the step runs inside it."""
    names: list[str] = []
    new = [0]

    class Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                               kwargs: dict | None = None) -> Any:
            names.append(func.overloadpacket.__name__)
            out = func(*args, **(kwargs or {}))
            new[0] += len(_storages(out) - _storages((args, kwargs)))
            return out

    calls = [0]

    def profile(frame: Any, event: str, arg: Any) -> None:
        name = frame.f_code.co_filename
        if event == "call" and name.startswith(PACKAGE):
            calls[0] += 1

    before = 0 if launches is None else len(launches)
    with Ops():
        sys.setprofile(profile)
        try:
            step()
        finally:
            sys.setprofile(None)
    return HostWork(new[0], len(names), calls[0], [] if launches is None else launches[before:],
                    names)


def count_launches(fn: Callable[[], Any]) -> dict[str, Any]:
    """Under Triton's CPU interpreter: Triton kernels launched by ``fn`` and torch operators
    that would launch a kernel on a GPU (views, allocations and metadata ops excluded)."""
    from triton.runtime.interpreter import InterpretedFunction

    free = {"empty", "empty_like", "empty_strided", "view", "_unsafe_view", "as_strided",
            "t", "transpose", "permute", "expand", "select", "slice", "unsqueeze", "squeeze",
            "reshape", "detach", "alias", "lift_fresh", "_reshape_alias", "split", "unbind",
            "narrow", "contiguous", "is_same_size"}
    counts = {"triton": 0, "torch": 0}
    inside = [False]
    names: list[str] = []

    class Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                               kwargs: dict | None = None) -> Any:
            name = func.overloadpacket.__name__
            if not inside[0] and name not in free:
                counts["torch"] += 1
                names.append(name)
            return func(*args, **(kwargs or {}))

    original = InterpretedFunction.run

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["triton"] += 1
        inside[0] = True
        try:
            return original(self, *args, **kwargs)
        finally:
            inside[0] = False

    InterpretedFunction.run = run
    try:
        with Ops():
            fn()
    finally:
        InterpretedFunction.run = original
    return {**counts, "ops": names}


def layer_step(layer: torch.nn.Module, x: torch.Tensor, cotangent: torch.Tensor
               ) -> Callable[[], None]:
    """One training forward + backward of ``layer``, gradients set to None first (as an
    optimizer's ``zero_grad`` does)."""
    def step() -> None:
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).backward(cotangent)
    return step


def host_seconds(step: Callable[[], Any], calls: int = 500, rounds: int = 5,
                 sync: Callable[[], Any] = lambda: None) -> float:
    """Seconds per call of ``step``: the best of ``rounds`` rounds of ``calls`` calls."""
    for _ in range(20):
        step()
    sync()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        best = min(best, (time.perf_counter() - start) / calls)
        sync()
    return best
