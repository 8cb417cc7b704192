"""Gaussian-mixture estimation on mini-batch activations, as batched tensor ops.

The activations ``(N, C, H, W)`` are treated as ``M = N*H*W`` samples in ``R^C``
(BN's convention), through :class:`gan_mn.norm.layout.SampleView` (their memory layout,
no copy).

All functions here are plain differentiable torch code: the autograd Function in
:mod:`gan_mn.norm.functional` runs them without grad and supplies an analytic
backward; the reference path (posteriors not detached) differentiates them.
No function here synchronises with the host.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from gan_mn.norm.layout import SampleView

# Smallest responsibility mass and mixture weight used as a divisor: keeps an
# empty component finite (its posteriors are ~0, so it contributes nothing).
TINY = 1e-12
# the re-seeding hash (pick_index, and the Triton kernels' _pick): modulus and multipliers
HASH_MOD, HASH_A, HASH_B = 4294967296, 2146121005, 740048493
# Posteriors below exp(-40) (4e-18, far below float32's resolution of a sum of them)
# are exactly 0: left to underflow, they become subnormal numbers, which x86 CPUs handle
# in slow microcode in every later product (a DCGAN discriminator's MN layer, where most
# samples sit far from two of its three components, ran about 7x slower for it).
LOG_TAU_FLOOR = -40.0


class Mixture(NamedTuple):
    """Diagonal GMM parameters: weights ``(K,)``, means and variances ``(K, C)``."""

    weight: Tensor
    mean: Tensor
    var: Tensor


class Collectives(Protocol):
    """Sums over the processes of a group (see :mod:`gan_mn.norm.sync`); ``None``
    wherever one is taken means one process."""

    def sum_moments(self, mass: Tensor, s1: Tensor, s2: Tensor, count: float
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A mini-batch's moments and sample count -> those of the global batch."""
        ...

    def sum_tables(self, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """The backward's two ``(K, C)`` tables, summed."""
        ...




class BatchStats(NamedTuple):
    """What the M-step measures on a batch (means in the shifted coordinates)."""

    mass: Tensor  # sum_i tau_ik, (K,)
    weight: Tensor  # lambda_k = mass / M
    mean: Tensor  # m_k, (K, C)
    var: Tensor  # v_k (biased, as BN), (K, C)


def e_step(view: SampleView, z: Tensor, z2: Tensor, mix: Mixture, var_floor: float) -> Tensor:
    """Posteriors ``tau_ik`` of samples ``z`` (and their squares ``z2``) under ``mix``."""
    var = mix.var.clamp_min(var_floor)
    bias = mix.weight.clamp_min(TINY).log() - 0.5 * var.log().sum(1)
    loglik = -0.5 * view.sq_dist(z, z2, mix.mean, var.reciprocal()) + view.col(bias)
    rel = loglik - loglik.amax(dim=view.kdim, keepdim=True)
    e = torch.where(rel > LOG_TAU_FLOOR, rel.clamp_min(LOG_TAU_FLOOR).exp(), 0.0)
    return e / e.sum(dim=view.kdim, keepdim=True)


def m_step(view: SampleView, tau: Tensor | None, z: Tensor, z2: Tensor,
           centre: Tensor | None = None, sync: Collectives | None = None) -> BatchStats:
    """Weights, means and (biased) variances of the soft components ``tau``.

    ``centre`` ``(K, C)``, a point near each component's mean (the mixture the
    posteriors came from), makes the variances more accurate; the result does
    not depend on it otherwise, so it carries no gradient. ``sync`` sums the
    moments over processes (the same ``centre`` everywhere), for a global batch.
    """
    if centre is None:
        k = 1 if tau is None else tau.shape[view.kdim]
        centre = z.new_zeros(k, z.shape[view.kdim])
    centre = centre.detach()
    mass, s1, s2 = view.centred_moments(tau, z, z2, centre)
    count: Tensor | float = view.num_samples
    if sync is not None:
        mass, s1, s2, count = sync.sum_moments(mass, s1, s2, float(view.num_samples))
    return moments_to_stats(mass, s1, s2, count, centre)


def moments_to_stats(mass: Tensor, s1: Tensor, s2: Tensor, count: Tensor | float,
                     centre: Tensor) -> BatchStats:
    """The M-step from the moments ``sum tau``, ``sum tau (z - centre)`` and
    ``sum tau (z - centre)^2`` over ``count`` samples."""
    denom = mass.clamp_min(TINY).unsqueeze(1)
    offset = s1 / denom
    var = (s2 / denom - offset * offset).clamp_min(0.0)
    return BatchStats(mass, mass / count, centre + offset, var)


def fit(view: SampleView, z: Tensor, z2: Tensor, start: Mixture, iters: int,
        var_floor: float, detach: bool = False,
        sync: Collectives | None = None) -> tuple[Tensor, BatchStats]:
    """``iters`` EM iterations from ``start``: the last posteriors and their M-step.

    ``detach`` holds the last posteriors constant for the gradient of the M-step.
    """
    mix = start
    for i in range(iters):
        tau = e_step(view, z, z2, mix, var_floor)
        if detach and i == iters - 1:
            tau = tau.detach()
        stats = m_step(view, tau, z, z2, centre=mix.mean, sync=sync)
        mix = Mixture(stats.weight, stats.mean, stats.var)
    return tau, stats


def kmeans_pp(view: SampleView, z: Tensor, z2: Tensor, k: int) -> Tensor:
    """k-means++ centres ``(k, C)`` drawn from the samples, on device (no host sync)."""
    m = view.num_samples
    # Per-sample squared norms and products flatten to the sample index in both layouts.
    sq_norm = z2.sum(view.kdim).reshape(-1)
    first = torch.randint(m, (1,), device=z.device)
    centres = [view.pick(first)]
    best = None
    for _ in range(1, k):
        c = centres[-1]
        cross = view.project(z, c).reshape(-1)
        dist = (sq_norm - 2.0 * cross + (c * c).sum()).clamp_min(0.0)
        best = dist if best is None else torch.minimum(best, dist)
        # A floor keeps the draw valid when every sample sits on a centre.
        nxt = torch.multinomial(best + TINY, 1)
        centres.append(view.pick(nxt))
    return torch.cat(centres, 0)


def seed(view: SampleView, z: Tensor, z2: Tensor, k: int, iters: int,
         var_floor: float) -> Mixture:
    """Initial mixture: k-means++ centres, the batch variance, then ``iters`` EM steps."""
    whole = m_step(view, None, z, z2)
    start = Mixture(
        torch.full((k,), 1.0 / k, device=z.device, dtype=z.dtype),
        kmeans_pp(view, z, z2, k),
        whole.var.expand(k, -1).clamp_min(var_floor),
    )
    if iters < 1:
        return start
    _, stats = fit(view, z, z2, start, iters, var_floor)
    return Mixture(stats.weight, stats.mean, stats.var)


def pick_index(count: Tensor, k: int, m: int) -> Tensor:
    """``(k,)`` sample indices in ``[0, m)`` for batch ``count`` (a device scalar): where a
    dead component re-seeds. An integer hash of ``(count, component)``, computed on the
    device in int64 (every product stays below 2**63) and identically by the Triton
    kernels (``_pick``): no host read, no draw on torch's random stream (so MN and BN
    runs of one seed draw the same noise), and a resumed run picks what an
    uninterrupted one would."""
    mod = HASH_MOD
    ks = torch.arange(k, device=count.device, dtype=torch.int64)
    h = ((count.long() % mod) * HASH_A + ks * HASH_B + 1) % mod
    h = h ^ (h >> 16)
    h = (h * HASH_A) % mod
    h = h ^ (h >> 15)
    h = (h * HASH_B) % mod
    h = h ^ (h >> 16)
    return h % m


def reseed_dead(view: SampleView, stats: BatchStats, min_mass: float, count: Tensor
                ) -> Mixture:
    """The batch fit as the next warm start, with dead components moved onto samples.

    ``stats`` are in the coordinates of ``view``. A component whose responsibility
    mass fell below ``min_mass`` samples would otherwise stay empty for good (its
    prior goes to zero); it restarts at sample :func:`pick_index` (``count``: the
    batches seen, this one included) with the batch's overall variance and an equal
    share of the weight. Branch-free: no host sync.
    """
    k = stats.weight.shape[0]
    dead = stats.mass < min_mass
    lam = stats.weight.unsqueeze(1)
    total_mean = (lam * stats.mean).sum(0)
    total_var = ((lam * (stats.var + stats.mean**2)).sum(0) - total_mean**2).clamp_min(0.0)
    picks = view.pick(pick_index(count, k, view.num_samples))
    mean = torch.where(dead.unsqueeze(1), picks.to(stats.mean.dtype), stats.mean)
    var = torch.where(dead.unsqueeze(1), total_var.expand(k, -1), stats.var)
    weight = torch.where(dead, torch.full_like(stats.weight, 1.0 / k), stats.weight)
    return Mixture(weight / weight.sum(), mean, var)
