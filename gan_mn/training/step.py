"""One GAN update as plain functions of its inputs, and the same update replayed as a
CUDA graph.

:class:`GANUpdate` is the discriminator step and the generator's backward of a GAN
training step; the Lightning module gives it Lightning's backward, optimiser step and
optimiser toggling, the benchmarks give it plain torch. :class:`CapturedStep` runs any
such function on fixed-address copies of its inputs: on a GPU it captures it once as a
CUDA graph and then replays it, which removes the per-kernel launch cost of small models.
Neither knows about Lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from gan_mn.training.losses import LOSSES


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters take no gradient inside the block (the generator's
    backward must not compute the discriminator's weight gradients)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@dataclass
class GANUpdate:
    """The discriminator update and the generator's backward, in that order.

    ``backward``, ``step_d`` and ``freeze_d`` default to plain torch: ``loss.backward()``,
    ``opt_d.step()`` and :func:`frozen`. The generator's optimiser step is the caller's.
    """

    generator: nn.Module
    discriminator: nn.Module
    loss: str  # a name in LOSSES
    opt_d: torch.optim.Optimizer
    opt_g: torch.optim.Optimizer
    backward: Callable[[Tensor], None] = field(default=Tensor.backward)
    step_d: Callable[[], Any] | None = None
    freeze_d: Callable[[], Any] | None = None

    def discriminator_step(self, real: Tensor, z: Tensor, y_real: Tensor | None = None,
                           y_fake: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """D's loss on ``real`` and ``G(z)``, its backward and D's optimiser step; returns
        the loss and the fake batch (for the generator's step). Class-conditional models
        get the real images' labels ``y_real`` and the fake ones' ``y_fake``."""
        fake = _call(self.generator, z, y_fake)
        loss_d = LOSSES[self.loss].discriminator(_call(self.discriminator, real, y_real),
                                    _call(self.discriminator, fake.detach(), y_fake))
        self.opt_d.zero_grad(set_to_none=True)
        self.backward(loss_d)
        if self.step_d is None:
            self.opt_d.step()
        else:
            self.step_d()
        return loss_d, fake

    def generator_backward(self, fake: Tensor, y_fake: Tensor | None = None) -> Tensor:
        """G's loss on ``fake`` (of classes ``y_fake`` if conditional; through D, whose
        weights take no gradient) and its backward, ready for G's optimiser step."""
        freeze = self.freeze_d or (lambda: frozen(self.discriminator))
        with freeze():
            loss_g = LOSSES[self.loss].generator(_call(self.discriminator, fake, y_fake))
            self.opt_g.zero_grad(set_to_none=True)
            self.backward(loss_g)
        return loss_g

    def __call__(self, real: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """D's step then G's backward on the same fake batch (one D step per G step)."""
        loss_d, fake = self.discriminator_step(real, z)
        return loss_d, self.generator_backward(fake)

    def discriminator_only(self, real: Tensor, z: Tensor) -> tuple[Tensor]:
        """D's step alone: the batches between generator steps (several D steps per G
        step)."""
        return (self.discriminator_step(real, z)[0],)

    def with_fresh_fake(self, real: Tensor, z: Tensor, z_g: Tensor) -> tuple[Tensor, Tensor]:
        """D's last step of a cycle, then G's backward on a new fake batch ``G(z_g)``
        (D has moved since ``G(z)``), as with several D steps per G step."""
        loss_d, _ = self.discriminator_step(real, z)
        return loss_d, self.generator_backward(self.generator(z_g))


def _call(model: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    """An unconditional model on ``x``, a class-conditional one on ``x`` and ``y``."""
    return model(x) if y is None else model(x, y)


class CapturedStep:
    """``fn(*inputs) -> outputs`` (tensors) on fixed-address copies of its inputs.

    On a GPU, the first ``warmup`` calls run eagerly on a side stream (lazy
    initialisations: optimiser state, cuBLAS workspaces, compilation, MN's seeding),
    the next is captured as a CUDA graph, and every call from then on copies the inputs
    into place and replays it: the same kernels, launched at once. Anything ``fn`` does
    besides CUDA work (Python state, host reads) happens during the capture only, so
    ``fn`` must be graph-safe: no host reads, no allocation that depends on values, the
    same shapes every call. Elsewhere (CPU) every call runs ``fn`` eagerly on the same
    buffers, which is how its equivalence with the plain step is tested.

    The returned tensors are the graph's: valid until the next call. :meth:`reset`
    drops the graph (after anything that replaced the tensors it captured, such as an
    optimiser's state being loaded).
    """

    def __init__(self, fn: Callable[..., tuple[Tensor, ...]], warmup: int = 3) -> None:
        self.fn = fn
        self.warmup = warmup
        self.calls = 0
        self.inputs: tuple[Tensor, ...] | None = None
        self.outputs: tuple[Tensor, ...] = ()
        self.graph: torch.cuda.CUDAGraph | None = None

    def reset(self) -> None:
        self.graph, self.inputs, self.outputs, self.calls = None, None, (), 0

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if self.inputs is None or any(a.shape != b.shape for a, b in zip(self.inputs, inputs,
                                                                            strict=True)):
            if self.graph is not None:
                raise ValueError("a captured step needs inputs of the shapes it was captured "
                                 f"with: {[tuple(t.shape) for t in self.inputs or ()]}, got "
                                 f"{[tuple(t.shape) for t in inputs]}")
            self.inputs = tuple(torch.empty_like(t) for t in inputs)
        for buffer, value in zip(self.inputs, inputs, strict=True):
            buffer.copy_(value)
        device = self.inputs[0].device
        if device.type != "cuda":
            self.outputs = self.fn(*self.inputs)
        elif self.graph is not None:
            self.graph.replay()
        elif self.calls < self.warmup:
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                self.outputs = self.fn(*self.inputs)
            torch.cuda.current_stream(device).wait_stream(side)
        else:
            graph = torch.cuda.CUDAGraph()
            # thread-local: the data loader's pinning thread may call CUDA meanwhile
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.outputs = self.fn(*self.inputs)
            self.graph = graph
            graph.replay()  # capturing ran nothing: this is the step
        self.calls += 1
        return self.outputs


Step = Callable[..., tuple[Tensor, ...]]


def generator_cycle(update: GANUpdate, d_steps: int, graphed: bool) -> tuple[Step, Step]:
    """The two calls of a cycle of ``d_steps`` batches: ``d_alone(real, z)`` for the first
    ``d_steps - 1`` (D's step), then ``last(real, z[, z_g])`` (D's step, then G's backward,
    on a fresh fake batch ``G(z_g)`` if D has stepped since ``G(z)``), each a
    :class:`CapturedStep` if ``graphed``."""
    last = update.with_fresh_fake if d_steps > 1 else update
    if graphed:
        return CapturedStep(update.discriminator_only), CapturedStep(last)
    return update.discriminator_only, last
