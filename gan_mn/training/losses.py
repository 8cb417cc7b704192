"""GAN losses on discriminator logits (:data:`LOSSES`, where each is registered once):
non-saturating (DCGAN) and hinge."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

from gan_mn.registry import Registry


class Loss(NamedTuple):
    """What the discriminator minimises given its logits on real and generated images,
    and what the generator minimises given the logits on its images."""

    discriminator: Callable[[Tensor, Tensor], Tensor]
    generator: Callable[[Tensor], Tensor]


LOSSES: Registry[Loss] = Registry("loss")
# -log D(x) - log(1 - D(G(z))) in logit form, for stability; the generator's -log D(G(z))
LOSSES.register("ns", Loss(lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
                           lambda fake: F.softplus(-fake).mean()))
LOSSES.register("hinge", Loss(lambda real, fake: F.relu(1.0 - real).mean()
                              + F.relu(1.0 + fake).mean(),
                              lambda fake: -fake.mean()))
