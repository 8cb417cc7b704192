"""GAN losses on discriminator logits: non-saturating (DCGAN) and hinge."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

LossKind = Literal["ns", "hinge"]
LOSS_KINDS = ("ns", "hinge")


def discriminator_loss(kind: LossKind, real: Tensor, fake: Tensor) -> Tensor:
    """Loss the discriminator minimises, given its logits on real and generated images."""
    if kind == "ns":  # -log D(x) - log(1 - D(G(z))), in logit form for stability
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    raise ValueError(f"loss must be one of {LOSS_KINDS}, got {kind!r}")


def generator_loss(kind: LossKind, fake: Tensor) -> Tensor:
    """Loss the generator minimises, given the discriminator's logits on its images."""
    if kind == "ns":  # -log D(G(z)): the non-saturating loss
        return F.softplus(-fake).mean()
    if kind == "hinge":
        return -fake.mean()
    raise ValueError(f"loss must be one of {LOSS_KINDS}, got {kind!r}")
