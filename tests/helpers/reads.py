"""A record of the values a computation reads back to the host.

On a GPU each such read waits for every queued kernel; on the CPU nothing waits, so the
tests record the operators that would: ``_local_scalar_dense`` (what ``.item()``,
``float()``, ``int()`` and ``bool()`` of a tensor become) and the operators whose output
size depends on the values (``nonzero``, ``masked_select``, ``unique``...) or that
answer on the host (``equal``, ``is_nonzero``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

READ_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "equal", "is_nonzero",
            "unique", "_unique2", "unique_consecutive", "repeat_interleave", "item")


@dataclass
class Read:
    op: str
    tensor: torch.Tensor | None  # the tensor read (first argument)
    stack: list[str]  # file:line of the Python frames that asked, innermost last
    tag: Any  # what the recorder was told was running (e.g. the batch index)

    def came_from(self, fragment: str) -> bool:
        return any(fragment in frame for frame in self.stack)


@dataclass
class HostReads(TorchDispatchMode):
    """Records every read (with ``tag`` at the time) while active."""

    reads: list[Read] = field(default_factory=list)
    tag: Any = None

    def __post_init__(self) -> None:
        super().__init__()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        name = func.overloadpacket.__name__
        if name in READ_OPS:
            first = args[0] if args and isinstance(args[0], torch.Tensor) else None
            stack = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()[:-2]]
            self.reads.append(Read(name, first, stack, self.tag))
        return func(*args, **(kwargs or {}))


@dataclass
class OpLog(TorchDispatchMode):
    """Every operator dispatched while active, as ``(tag, name)``: the work a step does."""

    ops: list[tuple[Any, str]] = field(default_factory=list)
    tag: Any = None

    def __post_init__(self) -> None:
        super().__init__()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        self.ops.append((self.tag, func.overloadpacket.__name__))
        return func(*args, **(kwargs or {}))
