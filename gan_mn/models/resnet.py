"""SNGAN's CIFAR-10 ResNet (Miyato et al., 2018, Table 4), norms per block.

Generator: ``z (128) -> linear -> 256@4x4 -> 3 up-sampling residual blocks (256) -> norm,
ReLU, 3x3 conv -> 3@32x32 -> tanh``; a block is ``norm, ReLU, 2x nearest up-sampling, 3x3
conv, norm, ReLU, 3x3 conv`` plus an up-sampled 1x1-conv shortcut. Discriminator: an
"optimized" first block (``3x3 conv, ReLU, 3x3 conv, 2x2 average pool`` plus a pooled 1x1
shortcut), a down-sampling block and two plain blocks of 128 channels (``ReLU, 3x3 conv,
ReLU, 3x3 conv``, pooled with a 1x1 shortcut when down-sampling), then ReLU, a sum over
positions and a linear head; the paper puts spectral norm on all of it (``d_norm: sn``).

Norm kinds are per block (G: the three blocks and the final norm; D: the four blocks):
``bn``/``mn`` put that norm before each ReLU of the block, ``sn`` spectral norm on the
block's convolutions, ``none`` neither. The linear layers, G's output convolution and
G's first projection take ``sn`` only when the whole network is ``sn``. Weights are
Xavier-uniform (gain sqrt(2) inside residual branches, 1 elsewhere), biases zero.
Class-conditional (``num_classes`` > 0): conditional norms in G, and a projection term
on D's pooled features beside its linear head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gan_mn.errors import OptionError
from gan_mn.models.layers import (
    LatentGenerator,
    NormKwargs,
    NormSpec,
    Projection,
    SpectralNorms,
    check_conditional_kinds,
    check_num_classes,
    check_projection,
    conditioned,
    edge_kind,
    norm_after,
    per_layer,
)

RESNET_WIDTHS = ((256, 256, 256, 256), (128, 128, 128, 128))


def _conv(cin: int, cout: int, size: int, gain: float) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, size, 1, size // 2)
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return conv


class UpBlock(nn.Module):
    """``norm, ReLU, up, conv3x3, norm, ReLU, conv3x3`` + ``up, conv1x1``."""

    def __init__(self, cin: int, cout: int, kind: str, norm_kwargs: NormKwargs | None,
                 sn: SpectralNorms, num_classes: int = 0) -> None:
        super().__init__()
        self.norm1 = norm_after(kind, cin, norm_kwargs, num_classes)
        self.conv1 = sn(_conv(cin, cout, 3, math.sqrt(2)), kind)
        self.norm2 = norm_after(kind, cout, norm_kwargs, num_classes)
        self.conv2 = sn(_conv(cout, cout, 3, math.sqrt(2)), kind)
        self.shortcut = sn(_conv(cin, cout, 1, 1.0), kind)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = F.interpolate(F.relu(conditioned(self.norm1, x, y)), scale_factor=2)
        h = self.conv2(F.relu(conditioned(self.norm2, self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class DownBlock(nn.Module):
    """``[ReLU,] conv3x3, ReLU, conv3x3 [, pool]`` + a ``conv1x1 [, pool]`` shortcut (pooled
    before the 1x1 in the first, "optimized", block; identity when the block keeps both
    width and size)."""

    def __init__(self, cin: int, cout: int, kind: str, norm_kwargs: NormKwargs | None,
                 sn: SpectralNorms, first: bool, down: bool) -> None:
        super().__init__()
        self.first, self.down = first, down
        self.norm1 = nn.Identity() if first else norm_after(kind, cin, norm_kwargs)
        self.conv1 = sn(_conv(cin, cout, 3, math.sqrt(2)), kind)
        self.norm2 = norm_after(kind, cout, norm_kwargs)
        self.conv2 = sn(_conv(cout, cout, 3, math.sqrt(2)), kind)
        learnable = down or cin != cout
        self.shortcut = sn(_conv(cin, cout, 1, 1.0), kind) if learnable else None

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(self.norm1(x))
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.shortcut is None:
            return h + x
        if self.first:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class ResNetGenerator(LatentGenerator):
    """``(N, z_dim)`` -> ``(N, 3, 32, 32)`` in ``[-1, 1]``. ``channels``: the projection's
    width, then one per up-sampling block."""

    def __init__(self, z_dim: int = 128, channels: Sequence[int] = RESNET_WIDTHS[0],
                 norm: NormSpec = "bn", norm_kwargs: NormKwargs | None = None,
                 num_classes: int = 0) -> None:
        super().__init__(z_dim, num_classes)
        if len(channels) < 2:
            raise OptionError(f"the ResNet generator needs at least 2 widths, got "
                              f"{list(channels)}")
        kinds = per_layer(norm, len(channels), "generator norm")  # blocks, then the last
        check_conditional_kinds(kinds, num_classes)
        sn = SpectralNorms(norm_kwargs)
        edge = edge_kind(kinds)
        self.width = channels[0]
        self.project = sn(nn.Linear(z_dim, 4 * 4 * channels[0]), edge)
        nn.init.xavier_uniform_(self.project.weight)
        nn.init.zeros_(self.project.bias)
        self.blocks = nn.Sequential(*(UpBlock(cin, cout, kind, norm_kwargs, sn, num_classes)
                                      for cin, cout, kind in zip(channels[:-1], channels[1:],
                                                                 kinds, strict=False)))
        self.norm = norm_after(kinds[-1], channels[-1], norm_kwargs, num_classes)
        self.out = sn(_conv(channels[-1], 3, 3, 1.0), edge)
        sn.apply()

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        self.check_labels(y)
        h = self.project(z).reshape(z.shape[0], self.width, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(conditioned(self.norm, h, y))))


class ResNetDiscriminator(nn.Module):
    """``(N, 3, S, S)`` -> logits ``(N,)``. ``channels``: one per block; the first two
    down-sample."""

    def __init__(self, channels: Sequence[int] = RESNET_WIDTHS[1], norm: NormSpec = "sn",
                 norm_kwargs: NormKwargs | None = None, num_classes: int = 0) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if len(channels) < 2:
            raise OptionError(f"the ResNet discriminator needs at least 2 widths, got "
                              f"{list(channels)}")
        kinds = per_layer(norm, len(channels), "discriminator norm")
        sn = SpectralNorms(norm_kwargs)
        blocks, prev = [], 3
        for i, (width, kind) in enumerate(zip(channels, kinds, strict=True)):
            blocks.append(DownBlock(prev, width, kind, norm_kwargs, sn, first=i == 0,
                                    down=i < 2))
            prev = width
        self.blocks = nn.Sequential(*blocks)
        self.head = sn(nn.Linear(prev, 1), edge_kind(kinds))
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.projection = Projection(num_classes, prev, sn, edge_kind(kinds)) \
            if num_classes else None
        sn.apply()

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        check_projection(self.projection, y)
        features = F.relu(self.blocks(x)).sum((2, 3))
        out = self.head(features).flatten()
        return out if self.projection is None else out + self.projection(features, y)
