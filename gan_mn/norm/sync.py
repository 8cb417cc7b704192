"""``SyncMixtureNorm2d``: Mixture Normalization over the global batch of a process group.

Each process holds a slice of the batch. Every EM M-step all-reduces the component
moments (mass, first and second moments, sample count) so all processes fit the same
mixture to the whole batch; the backward all-reduces the two ``(K, C)`` tables the
input gradient needs. Posteriors and outputs stay local, so the traffic per layer and
step is a few ``K x C`` tables whatever the batch size. The first seeding (k-means++ on
one batch) runs on the group's first rank and is broadcast, as is each step's warm
start (it may re-seed a dead component at a random local sample).

Outside an initialised process group, or with one process, it is ``MixtureNorm2d``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor, nn

from gan_mn.norm.gmm import Mixture
from gan_mn.norm.mixture import MixtureNorm2d


class _Group:
    """The :class:`~gan_mn.norm.functional.Collectives` of one process group
    (``None``: the default, WORLD)."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.src = 0 if group is None else dist.get_global_rank(group, 0)

    def sum_moments(self, mass: Tensor, s1: Tensor, s2: Tensor, count: float
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        k, c = s1.shape
        flat = torch.cat([mass, s1.reshape(-1), s2.reshape(-1),
                          mass.new_full((1,), count)])
        if flat.requires_grad:  # posteriors not detached: differentiate through the sum
            flat = dist_fn.all_reduce(flat, group=self.group)
        else:
            dist.all_reduce(flat, group=self.group)
        s1_, s2_ = flat[k:k + k * c].view(k, c), flat[k + k * c:k + 2 * k * c].view(k, c)
        return flat[:k], s1_, s2_, flat[-1]

    def sum_tables(self, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        flat = torch.cat([p.reshape(-1), q.reshape(-1)])
        dist.all_reduce(flat, group=self.group)
        return flat[:p.numel()].view_as(p), flat[p.numel():].view_as(q)

    def broadcast(self, *tensors: Tensor) -> None:
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.broadcast(flat, self.src, group=self.group)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


class SyncMixtureNorm2d(MixtureNorm2d):
    """``MixtureNorm2d`` whose training statistics cover the whole batch of a process
    group (DDP), as ``nn.SyncBatchNorm`` does for BN. Same arguments, plus
    ``process_group``. The same autograd Function as one process, given the group's
    collectives: Inductor kernels run eagerly while synchronizing (compiled code cannot
    call collectives); Triton kernels all-reduce between their passes.
    """

    def __init__(self, *args: Any, process_group: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def _group(self) -> _Group | None:
        if not (dist.is_available() and dist.is_initialized()):
            return None
        if dist.get_world_size(self.process_group) == 1:
            return None
        return _Group(self.process_group)

    def _train(self, x: Tensor) -> Tensor:
        group = self._group()
        if group is None:
            return super()._train(x)
        start: Mixture | None = None
        if self.num_components > 1:
            self._warm_start_synced(x, group)
            start = Mixture(self.em_weight, self.em_mean, self.em_var)
            # centre on the mixture's own mean: the same on every rank, near the data
            shift = (start.weight.unsqueeze(1) * start.mean).sum(0).detach()
        else:  # BN: the first rank's first sample, as one process would
            shift = self._first_sample(x, group)
        y = self._fit_and_normalize(x, start, group, shift)
        if self.num_components > 1:  # a re-seeded component must be the same everywhere
            with torch.no_grad():
                group.broadcast(self.em_weight, self.em_mean, self.em_var)
        return y

    @torch.no_grad()
    def _first_sample(self, x: Tensor, group: _Group) -> Tensor:
        shift = x[0, :, 0, 0].detach().clone()
        group.broadcast(shift)
        return shift

    @torch.no_grad()
    def _warm_start_synced(self, x: Tensor, group: _Group) -> None:
        if self._seeded is None:
            self._seeded = bool(self.em_seeded)
        if not self._seeded:  # seed on every rank, keep the first rank's
            self._warm_start(x)
            group.broadcast(self.em_weight, self.em_mean, self.em_var)

    @classmethod
    def convert_sync_mixturenorm(cls, module: nn.Module, process_group: Any = None
                                 ) -> nn.Module:
        """Replace every ``MixtureNorm2d`` in ``module`` by a ``SyncMixtureNorm2d``
        sharing its parameters and buffers (as ``nn.SyncBatchNorm.convert_sync_batchnorm``)."""
        out = module
        if isinstance(module, MixtureNorm2d) and not isinstance(module, SyncMixtureNorm2d):
            out = _copy_into(cls.__new__(cls), module)
            out.process_group = process_group
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_mixturenorm(child, process_group))
        return out

def revert_sync(module: nn.Module) -> nn.Module:
    """``module`` with ``SyncMixtureNorm2d`` and ``nn.SyncBatchNorm`` back to their
    one-process layers (sharing parameters and buffers): e.g. a copy to sample from in
    train mode on one process, which must make no collective calls."""
    out = module
    if isinstance(module, SyncMixtureNorm2d):
        out = _copy_into(MixtureNorm2d.__new__(MixtureNorm2d), module)
        out.__dict__.pop("process_group", None)
    elif isinstance(module, nn.SyncBatchNorm):
        out = _copy_into(nn.BatchNorm2d.__new__(nn.BatchNorm2d), module)
        out.__dict__.pop("process_group", None)
    for name, child in module.named_children():
        out.add_module(name, revert_sync(child))
    return out


def _copy_into(new: nn.Module, old: nn.Module) -> Any:
    """``new`` takes over ``old``'s state: the same Parameter and buffer objects."""
    new.__dict__.update(old.__dict__)
    new._parameters = dict(old._parameters)
    new._buffers = dict(old._buffers)
    new._modules = dict(old._modules)
    return new


__all__ = ["SyncMixtureNorm2d", "revert_sync"]


MixtureNorm2d.sync_class = SyncMixtureNorm2d
