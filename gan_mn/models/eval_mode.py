"""``sampling``: the one way to sample a generator in a norm mode and leave it as it was."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from gan_mn.norm import revert_sync

NORM_MODES = ("running", "batch")


@contextmanager
def sampling(generator: nn.Module, norm_mode: str = "running") -> Iterator[nn.Module]:
    """The module to sample with; on exit the generator is back in its own mode.

    ``running``: the generator itself in eval mode (its running norm statistics).
    ``batch``: a train-mode copy (batch statistics) with plain norm layers, so sampling
    never moves the generator's statistics and, under DDP, makes no collective calls.
    """
    if norm_mode not in NORM_MODES:
        raise ValueError(f"norm mode must be one of {NORM_MODES}, got {norm_mode!r}")
    was_training = generator.training
    try:
        if norm_mode == "batch":
            yield revert_sync(copy.deepcopy(generator)).train()
        else:
            yield generator.eval()
    finally:
        generator.train(was_training)
