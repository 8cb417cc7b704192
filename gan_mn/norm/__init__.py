"""Normalization layers: Mixture Normalization (and its class-conditional form), the norm
factory, standing statistics."""

from gan_mn.norm.conditional import (
    ConditionalBatchNorm2d,
    ConditionalMixtureNorm2d,
    ConditionalNorm2d,
)
from gan_mn.norm.factory import NORM_KINDS, make_norm
from gan_mn.norm.mixture import MixtureNorm2d
from gan_mn.norm.standing import standing_statistics
from gan_mn.norm.sync import SyncMixtureNorm2d, revert_sync

__all__ = ["NORM_KINDS", "ConditionalBatchNorm2d", "ConditionalMixtureNorm2d",
           "ConditionalNorm2d", "MixtureNorm2d",
           "SyncMixtureNorm2d", "make_norm", "revert_sync", "standing_statistics"]
