"""Standing statistics: recompute running norm statistics from a set of batches.

GAN generators are often evaluated with statistics averaged over many batches
of their own activations rather than the momentum averages left by training.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gan_mn.norm.mixture import MixtureNorm2d


@torch.no_grad()
def standing_statistics(module: nn.Module, batches: Iterable[Any]) -> int:
    """Set the running statistics of every MN/BN layer in ``module`` to their exact
    average over ``batches`` (each passed as ``module(batch)``, or ``module(*batch)``
    for a tuple or list). Returns the number of batches used.

    Only the norm layers run in training mode; everything else keeps its mode, and
    modes and momenta are restored afterwards. MN keeps its warm-start mixture, so
    component identities carry over. Raises ``ValueError`` if ``batches`` is empty
    (the statistics are then left untouched).
    """
    norms = [m for m in module.modules() if isinstance(m, (MixtureNorm2d, _BatchNorm))]
    saved = [(m, m.training, m.momentum) for m in norms]
    count = 0
    try:
        for batch in batches:
            if count == 0:
                for m in norms:
                    m.reset_running_stats()
                    m.momentum = None  # cumulative average over the batches
                    m.train()
            module(*batch) if isinstance(batch, (tuple, list)) else module(batch)
            count += 1
    finally:
        for m, training, momentum in saved:
            m.train(training)
            m.momentum = momentum
    if count == 0:
        raise ValueError("batches is empty: standing statistics need at least one batch")
    return count
