"""A shuffling sampler whose order is a function of (seed, epoch) and that can resume
mid-epoch, so a run restarted from a checkpoint sees exactly the batches it would have.

It is a ``DistributedSampler`` (one replica when not distributed), so Lightning leaves it
in place under DDP instead of wrapping it, and each rank continues its own share.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import DistributedSampler
from typing_extensions import override


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled by ``seed + epoch``) that skips the first
    ``skip`` samples of the next epoch it yields, once.

    ``__len__`` stays the full epoch so Lightning's batch counting (which resumes at the
    batch the checkpoint recorded) stays right.
    """

    def __init__(self, dataset: Sized, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True,
                         seed=seed, drop_last=True)
        self.skip = 0

    def resume(self, epoch: int, skip: int) -> None:
        """Start at ``epoch``, leaving out its first ``skip`` samples (already trained on)."""
        self.set_epoch(epoch)
        self.skip = max(0, skip)

    @override
    def __iter__(self) -> Iterator[Any]:
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])
