"""``SampleView``: ``(N, C, H, W)`` activations seen as ``M = N*H*W`` samples in ``R^C``
(BN's convention) without copying, for both memory formats, so that every reduction over
samples and every per-sample expansion of a ``(K, C)`` table is one batched matrix
product. The memory layout alone; the mixture maths is :mod:`gan_mn.norm.gmm`'s."""

from __future__ import annotations

import torch
from torch import Tensor


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
