"""Gaussian-mixture estimation on mini-batch activations, as batched tensor ops.

The activations ``(N, C, H, W)`` are treated as ``M = N*H*W`` samples in ``R^C``
(BN's convention). :class:`SampleView` presents them that way *without copying*,
for both memory formats, so that every reduction over samples and every
per-sample expansion of a ``(K, C)`` table is one batched matrix product.

All functions here are plain differentiable torch code: the autograd Function in
:mod:`gan_mn.norm.functional` runs them without grad and supplies an analytic
backward; the reference path (posteriors not detached) differentiates them.
No function here synchronises with the host.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor

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


class SampleView:
    """``(N, C, H, W)`` activations as ``M = N*H*W`` samples in ``R^C``, no copy.

    Data are kept as ``N`` blocks of ``L = H*W`` samples: ``(N, C, L)`` for NCHW
    input, ``(N, L, C)`` for channels-last; posteriors as ``(N, K, L)`` or
    ``(N, L, K)`` likewise. In eager mode every contraction is one ``bmm`` over
    the ``N`` blocks (faster here than one skinny GEMM, contiguous output).
    With ``decomposed=True`` contractions are written as sums over the ``K``
    components of broadcast products: slow eagerly, but what ``torch.compile``
    fuses with the surrounding element-wise work into single passes.
    """

    def __init__(self, data: Tensor, shape: torch.Size, channels_last: bool,
                 decomposed: bool = False) -> None:
        self.data = data
        self.shape = shape
        self.channels_last = channels_last
        self.decomposed = decomposed
        self.num_samples = shape[0] * shape[2] * shape[3]
        self.kdim = 2 if channels_last else 1  # the channel / component axis
        self.sample_dims = (0, 1) if channels_last else (0, 2)

    @classmethod
    def of(cls, x: Tensor, decomposed: bool = False) -> SampleView:
        """View ``x`` as samples; its memory format picks the layout."""
        view = cls(x, x.shape, cls.is_channels_last(x), decomposed)
        view.data = view.samples(x)
        return view

    @staticmethod
    def is_channels_last(x: Tensor) -> bool:
        """Whether ``x`` gets the channels-last layout (other strides are copied to NCHW)."""
        # A 1x1 map is both contiguous and channels-last: take the NCHW branch.
        return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)

    def samples(self, t: Tensor) -> Tensor:
        """Another ``(N, C, H, W)`` tensor in this view's sample layout (a view if it can)."""
        n, c, h, w = self.shape
        if self.channels_last:
            return t.permute(0, 2, 3, 1).reshape(n, h * w, c)
        return t.reshape(n, c, h * w)

    def output(self, t: Tensor) -> Tensor:
        """Back from sample layout to ``(N, C, H, W)`` (same memory format)."""
        n, c, h, w = self.shape
        if self.channels_last:
            return t.reshape(n, h, w, c).permute(0, 3, 1, 2)
        return t.reshape(n, c, h, w)

    def col(self, v: Tensor) -> Tensor:
        """A per-channel (or per-component) vector, shaped to broadcast over samples."""
        return v if self.channels_last else v.unsqueeze(-1)

    def _tables(self, u: Tensor) -> Tensor:
        """A ``(K, C)`` table repeated (without copying) for each of the ``N`` blocks."""
        return u.expand(self.shape[0], *u.shape)

    def _component(self, a: Tensor, k: int) -> Tensor:
        """Posterior column ``k``, shaped to broadcast against the data."""
        return a.narrow(self.kdim, k, 1)

    def project(self, t: Tensor, w: Tensor) -> Tensor:
        """``sum_c t_ic w_kc``: samples x ``(K, C)`` -> posterior layout (eager form only:
        decomposed code computes distances directly, see :meth:`sq_dist`)."""
        if self.channels_last:
            return torch.bmm(t, self._tables(w.t()))
        return torch.bmm(self._tables(w), t)

    def reduce(self, a: Tensor | None, t: Tensor) -> Tensor:
        """``sum_i a_ik t_ic`` -> ``(K, C)``; ``a=None`` is one component of ones."""
        if a is None:
            return t.sum(self.sample_dims).unsqueeze(0)
        if self.decomposed:  # blocks first, then across them: shorter float32 sums
            return torch.stack([(self._component(a, k) * t).sum(self.sample_dims[1]).sum(0)
                                for k in range(a.shape[self.kdim])])
        if self.channels_last:
            return torch.bmm(a.transpose(1, 2), t).sum(0)
        return torch.bmm(a, t.transpose(1, 2)).sum(0)

    def expand(self, a: Tensor | None, u: Tensor, add: Tensor | None = None) -> Tensor:
        """``add_c + sum_k a_ik u_kc`` for every sample (``add`` per channel, optional).

        With ``a=None`` (one component of ones) the result only broadcasts.
        """
        if a is None:
            return self.col(u[0] if add is None else u[0] + add)
        if self.decomposed:
            out = sum(self._component(a, k) * self.col(u[k]) for k in range(u.shape[0]))
            return out if add is None else out + self.col(add)
        if self.channels_last:
            tables = self._tables(u)
            return torch.bmm(a, tables) if add is None else torch.baddbmm(add, a, tables)
        tables = self._tables(u.t())
        return torch.bmm(tables, a) if add is None else torch.baddbmm(add[:, None], tables, a)

    def sq_dist(self, z: Tensor, z2: Tensor, centre: Tensor, prec: Tensor) -> Tensor:
        """``sum_c (z_ic - centre_kc)^2 prec_kc`` -> posterior layout.

        Eagerly by the expansion ``z^2 p - 2 z (centre p) + centre^2 p``: two
        contractions of ``z`` and ``z2 = z*z``. Decomposed, directly (``z2`` unused):
        exact, and free in a fused kernel that reads ``z`` once either way.
        """
        if self.decomposed:
            return torch.stack([((z - self.col(ck)) ** 2 * self.col(pk)).sum(self.kdim)
                                for ck, pk in zip(centre, prec, strict=True)], self.kdim)
        const = (centre * centre * prec).sum(1)
        return self.project(z2, prec) - 2.0 * self.project(z, centre * prec) + self.col(const)

    def centred_moments(self, a: Tensor | None, z: Tensor, z2: Tensor,
                        centre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``sum_i a_ik``, ``sum_i a_ik (z_i - d_k)`` and ``sum_i a_ik (z_i - d_k)^2``.

        Centring each component on a point ``d_k`` near its mean avoids the
        cancellation of one-pass variances; decomposed it costs no extra pass.
        Eagerly the moments come from the contractions of ``z`` and ``z2``.
        """
        mass = self.mass(a)
        if self.decomposed and a is not None:
            def moments(power: int) -> Tensor:
                return torch.stack([
                    (self._component(a, k) * (z - self.col(dk)) ** power)
                    .sum(self.sample_dims[1]).sum(0) for k, dk in enumerate(centre)])
            return mass, moments(1), moments(2)
        r1, r2 = self.reduce(a, z), self.reduce(a, z2)
        n = mass.unsqueeze(1)
        return mass, r1 - centre * n, r2 - 2.0 * centre * r1 + centre * centre * n

    def mass(self, a: Tensor | None) -> Tensor:
        """``sum_i a_ik`` -> ``(K,)``."""
        if a is None:
            return torch.full((1,), float(self.num_samples), device=self.data.device,
                              dtype=self.data.dtype)
        return a.sum(self.sample_dims[1]).sum(0)

    def pick(self, index: Tensor) -> Tensor:
        """Rows ``index`` (flat sample indices, on device) of the samples -> ``(len, C)``."""
        length = self.shape[2] * self.shape[3]
        if self.channels_last:
            return self.data[index // length, index % length, :]
        return self.data[index // length, :, index % length]


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
