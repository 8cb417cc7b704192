"""Hand-written Triton kernels for Mixture Normalization's training forward and backward.

Six launches per step (two more per extra EM iteration); the host side, with the buffer
layouts, is :mod:`gan_mn.norm.triton.plan`. Forward: :func:`mn_stats` (posteriors,
stored, and per-block moments), :func:`mn_finalize` (the M-step; after the last EM
iteration also the state update), :func:`mn_output` (the output; it advances
``num_batches_tracked``). Backward: :func:`mn_grad_reduce` (per-block ``sum a dy`` and
``sum a dy z``), :func:`mn_grad_tables` (weight/bias gradients, the ``dx`` tables),
:func:`mn_grad_input` (``dx``). Sums over samples are two-stage (a partial sum per block
of samples, combined in a fixed order): deterministic, no atomics. Activations are
``M = N*H*W`` samples of ``C`` channels read in place through the strides of
``(N, C, H*W)``. Means in and out are in ``x``'s coordinates; inside, samples are shifted
by a per-channel ``c`` (``shift_ptr``, stride ``s_shift``: by default ``x``'s first
sample) and moments are centred on the E-step means, as in :mod:`gan_mn.norm.functional`.
``TRITON_INTERPRET=1``, set before import, runs them on CPU tensors (the tests).
"""

from __future__ import annotations

import triton
import triton.language as tl

from gan_mn.norm import gmm

# the eager code's constants, as compile-time constants of the kernels
TINY: tl.constexpr = tl.constexpr(gmm.TINY)
HASH_MOD: tl.constexpr = tl.constexpr(gmm.HASH_MOD)
HASH_A: tl.constexpr = tl.constexpr(gmm.HASH_A)
HASH_B: tl.constexpr = tl.constexpr(gmm.HASH_B)

# MODE of the posteriors: one component of ones (BN), an E-step, or given in memory.
ONES, ESTEP, GIVEN = 0, 1, 2


@triton.jit
def _samples(x_ptr, shift_ptr, rows, row_ok, cs, c_ok, L, s_n, s_c, s_l, s_shift):
    """``z = x - c`` for a ``[BLOCK_M, BLOCK_C]`` tile (zeros outside), ``c``, the offsets
    and the mask."""
    offs = ((rows // L).to(tl.int64) * s_n + (rows % L).to(tl.int64) * s_l)[:, None] \
        + cs.to(tl.int64)[None, :] * s_c
    mask = row_ok[:, None] & c_ok[None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(shift_ptr + cs * s_shift, mask=c_ok, other=0.0).to(tl.float32)
    return tl.where(mask, x - c[None, :], 0.0), c, offs, mask


@triton.jit
def _table(ptr, ks, k_ok, cs, c_ok, C, other):
    """A ``(K, C)`` table's ``[KP, BLOCK_C]`` tile."""
    return tl.load(ptr + ks[:, None] * C + cs[None, :], mask=k_ok[:, None] & c_ok[None, :],
                   other=other)


@triton.jit
def _wide(n):
    """``n`` as an int64 scalar (Triton passes an argument equal to 1 as a constant)."""
    return tl.full([], 0, tl.int64) + n


@triton.jit
def _stat_vector(st_ptr, which: tl.constexpr, K: tl.constexpr):
    """A ``(K,)`` field of the statistics buffer: 0 mass, 1 weight."""
    return st_ptr + which * K


@triton.jit
def _stat_table(st_ptr, which: tl.constexpr, K: tl.constexpr, C):
    """A ``(K, C)`` field of the statistics buffer: 0 mean, 1 variance, 2 ``(v+eps)^-1/2``."""
    return st_ptr + 2 * K + which * (K * C)


@triton.jit
def _rows(M, K: tl.constexpr, KP: tl.constexpr, BLOCK_M: tl.constexpr):
    """This program's block of samples and the component indices, with their masks."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ks = tl.arange(0, KP)
    return rows, rows < M, ks, ks < K


@triton.jit
def _channel_block(C, K: tl.constexpr, KP: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's block of channels and the component indices, with their masks."""
    cs = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = cs < C
    ks = tl.arange(0, KP)
    k_ok = ks < K
    return cs, c_ok, ks, k_ok, k_ok[:, None] & c_ok[None, :]


@triton.jit
def _shifted_means(mean_ptr, ks, k_ok, cs, c_ok, C, c):
    """A ``(K, C)`` table of means (``x``'s coordinates) as ``[KP, BLOCK_C]`` tile in the
    shifted coordinates ``x - c`` (zeros outside)."""
    tmask = k_ok[:, None] & c_ok[None, :]
    return tl.where(tmask, _table(mean_ptr, ks, k_ok, cs, c_ok, C, 0.0) - c[None, :], 0.0)


@triton.jit
def _scaled_posteriors(tau_ptr, lam_ptr, rows, row_ok, ks, k_ok,
                       K: tl.constexpr, ONE: tl.constexpr):
    """``a = tau / sqrt(lambda)`` ``[BLOCK_M, KP]`` from the stored ``(M, K)`` posteriors
    (all ones for one component)."""
    valid = row_ok[:, None] & k_ok[None, :]
    if ONE:
        tau = tl.where(valid, 1.0, 0.0)
    else:
        tau = tl.load(tau_ptr + rows.to(tl.int64)[:, None] * K + ks[None, :], mask=valid,
                      other=0.0)
    lam = tl.load(lam_ptr + ks, mask=k_ok, other=1.0)
    return tau / tl.sqrt(tl.maximum(lam, TINY))[None, :]


@triton.jit
def _posteriors(x_ptr, shift_ptr, tau_ptr, w_ptr, mean_ptr, var_ptr,
                rows, row_ok, ks, k_ok,
                C, L, s_n, s_c, s_l, s_shift, t_n, t_k, t_l, var_floor,
                K: tl.constexpr, MODE: tl.constexpr, BLOCK_M: tl.constexpr,
                KP: tl.constexpr, BLOCK_C: tl.constexpr):
    """Posteriors ``tau`` ``[BLOCK_M, KP]`` of a block of samples (zero outside): all ones
    (MODE 0, one component), the E-step of mixture ``w, mean, var`` (1), or loaded with
    strides ``t_*`` (2)."""
    valid = row_ok[:, None] & k_ok[None, :]
    if MODE == 0:
        tau = tl.where(valid, 1.0, 0.0)
    elif MODE == 2:
        offs = (rows // L)[:, None].to(tl.int64) * t_n + ks[None, :] * t_k \
            + (rows % L)[:, None].to(tl.int64) * t_l
        tau = tl.load(tau_ptr + offs, mask=valid, other=0.0).to(tl.float32)
    else:
        dist = tl.zeros([BLOCK_M, KP], dtype=tl.float32)
        logdet = tl.zeros([KP], dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            cs = c0 + tl.arange(0, BLOCK_C)
            c_ok = cs < C
            z, c, _, _ = _samples(x_ptr, shift_ptr, rows, row_ok, cs, c_ok,
                                  L, s_n, s_c, s_l, s_shift)
            mean = _shifted_means(mean_ptr, ks, k_ok, cs, c_ok, C, c)
            var = tl.maximum(_table(var_ptr, ks, k_ok, cs, c_ok, C, 1.0), var_floor)
            var = tl.where(k_ok[:, None] & c_ok[None, :], var, 1.0)
            d = z[:, None, :] - mean[None, :, :]
            dist += tl.sum(d * d / var[None, :, :], axis=2)
            logdet += tl.sum(tl.log(var), axis=1)
        w = tl.load(w_ptr + ks, mask=k_ok, other=1.0)
        loglik = -0.5 * dist + (tl.log(tl.maximum(w, TINY)) - 0.5 * logdet)[None, :]
        loglik = tl.where(k_ok[None, :], loglik, float("-inf"))
        e = tl.exp(loglik - tl.max(loglik, axis=1)[:, None])
        tau = tl.where(valid, e / tl.sum(e, axis=1)[:, None], 0.0)
    return tau


@triton.jit
def mn_stats(x_ptr, shift_ptr, tau_ptr, w_ptr, mean_ptr, var_ptr, part_ptr, tau_out,
             M, C, L, s_n, s_c, s_l, s_shift, t_n, t_k, t_l, var_floor,
             K: tl.constexpr, KP: tl.constexpr, MODE: tl.constexpr, SAVE_TAU: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """A block of samples' posteriors (stored if SAVE_TAU) and moments ``sum tau``,
    ``sum tau (z - d)``, ``sum tau (z - d)^2`` (``d``: the E-step means, or 0)."""
    pid = tl.program_id(0)
    bk = tl.num_programs(0).to(tl.int64) * K
    mass_part, s1_part = part_ptr, part_ptr + bk
    s2_part = s1_part + bk * C
    rows, row_ok, ks, k_ok = _rows(M, K, KP, BLOCK_M)
    tau = _posteriors(x_ptr, shift_ptr, tau_ptr, w_ptr, mean_ptr, var_ptr, rows, row_ok,
                      ks, k_ok, C, L, s_n, s_c, s_l, s_shift, t_n, t_k, t_l, var_floor,
                      K, MODE, BLOCK_M, KP, BLOCK_C)
    if SAVE_TAU:
        tl.store(tau_out + rows.to(tl.int64)[:, None] * K + ks[None, :], tau,
                 mask=row_ok[:, None] & k_ok[None, :])
    tl.store(mass_part + pid * K + ks, tl.sum(tau, axis=0), mask=k_ok)
    for c0 in range(0, C, BLOCK_C):
        cs = c0 + tl.arange(0, BLOCK_C)
        c_ok = cs < C
        z, c, _, _ = _samples(x_ptr, shift_ptr, rows, row_ok, cs, c_ok,
                              L, s_n, s_c, s_l, s_shift)
        tmask = k_ok[:, None] & c_ok[None, :]
        if MODE == 1:
            centre = _shifted_means(mean_ptr, ks, k_ok, cs, c_ok, C, c)
        else:
            centre = tl.zeros([KP, BLOCK_C], dtype=tl.float32)
        d = z[:, None, :] - centre[None, :, :]
        td = tau[:, :, None] * d
        offs = pid.to(tl.int64) * K * C + ks[:, None] * C + cs[None, :]
        tl.store(s1_part + offs, tl.sum(td, axis=0), mask=tmask)
        tl.store(s2_part + offs, tl.sum(td * d, axis=0), mask=tmask)


@triton.jit
def _sum_blocks(part_ptr, B, ks, k_ok, cs, c_ok, C,
                K: tl.constexpr, KP: tl.constexpr, BLOCK_B: tl.constexpr,
                BLOCK_C: tl.constexpr):
    """``sum_b part[b]`` of ``(B, K, C)`` partial sums, as a ``[KP, BLOCK_C]`` tile:
    ``BLOCK_B`` blocks per load, in a fixed order."""
    bs = tl.arange(0, BLOCK_B)
    tile = (ks[:, None] * C + cs[None, :])[None, :, :]
    tmask = (k_ok[:, None] & c_ok[None, :])[None, :, :]
    acc = tl.zeros([KP, BLOCK_C], dtype=tl.float32)
    for b0 in range(0, B, BLOCK_B):
        b = b0 + bs
        offs = b.to(tl.int64)[:, None, None] * (K * C) + tile
        acc += tl.sum(tl.load(part_ptr + offs, mask=(b < B)[:, None, None] & tmask,
                              other=0.0), axis=0)
    return acc


@triton.jit
def _sum_mass(mass_part, B, ks, k_ok, K: tl.constexpr, KP: tl.constexpr,
              BLOCK_B: tl.constexpr):
    """``sum_b mass[b]`` of ``(B, K)`` partial masses -> ``[KP]``."""
    bs = tl.arange(0, BLOCK_B)
    acc = tl.zeros([KP], dtype=tl.float32)
    for b0 in range(0, B, BLOCK_B):
        b = b0 + bs
        acc += tl.sum(tl.load(mass_part + b.to(tl.int64)[:, None] * K + ks[None, :],
                              mask=(b < B)[:, None] & k_ok[None, :], other=0.0), axis=0)
    return acc


@triton.jit
def _pick(count, ks, M):
    """The sample a dead component ``k`` re-seeds at after batch ``count``: the hash of
    :func:`gan_mn.norm.gmm.pick_index` (int64; every product stays below 2**63)."""
    h = ((count % HASH_MOD) * HASH_A + ks.to(tl.int64) * HASH_B + 1) % HASH_MOD
    h = h ^ (h >> 16)
    h = (h * HASH_A) % HASH_MOD
    h = h ^ (h >> 15)
    h = (h * HASH_B) % HASH_MOD
    h = h ^ (h >> 16)
    return h % M


@triton.jit
def mn_finalize(part_ptr, centre_ptr, shift_ptr, st_ptr,
                rw_ptr, rmean_ptr, rvar_ptr, ew_ptr, emean_ptr, evar_ptr, nbt_ptr, x_ptr,
                B, M, C, L, s_n, s_c, s_l, s_shift, count, eps, momentum, min_mass,
                K: tl.constexpr, KP: tl.constexpr, HAS_CENTRE: tl.constexpr,
                COUNT_IN_MEMORY: tl.constexpr, UPDATE: tl.constexpr,
                CUMULATIVE: tl.constexpr, WARM: tl.constexpr,
                BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr):
    """The M-step from ``B`` blocks' moments (centred on ``centre`` if given, else ``c``;
    ``count`` samples, read after the sums if COUNT_IN_MEMORY) for a block of channels.
    With UPDATE also the state, in place, as :func:`gan_mn.norm.functional.update_state`:
    running averages (cumulative if CUMULATIVE) and, if WARM, the next warm start, a
    component below ``min_mass`` moved onto sample :func:`_pick`. ``centre`` may be
    ``em_mean``: each program reads its channels before it writes them. The counter is
    advanced by :func:`mn_output`, which runs after."""
    pid = tl.program_id(0)
    cs, c_ok, ks, k_ok, mask = _channel_block(C, K, KP, BLOCK_C)
    bk = _wide(B) * K
    mass = _sum_mass(part_ptr, B, ks, k_ok, K, KP, BLOCK_B)
    s1 = _sum_blocks(part_ptr + bk, B, ks, k_ok, cs, c_ok, C, K, KP, BLOCK_B, BLOCK_C)
    s2 = _sum_blocks(part_ptr + bk * (1 + C), B, ks, k_ok, cs, c_ok, C, K, KP, BLOCK_B,
                     BLOCK_C)
    if COUNT_IN_MEMORY:
        total = tl.load(part_ptr + bk * (1 + 2 * C))
    else:
        total = count
    denom = tl.maximum(mass, TINY)[:, None]
    offset = s1 / denom
    var = tl.maximum(s2 / denom - offset * offset, 0.0)
    if HAS_CENTRE:
        mean = _table(centre_ptr, ks, k_ok, cs, c_ok, C, 0.0) + offset
    else:
        mean = tl.load(shift_ptr + cs * s_shift, mask=c_ok, other=0.0)[None, :] + offset
    lam = mass / total
    offs = ks[:, None] * C + cs[None, :]
    tl.store(_stat_table(st_ptr, 0, K, C) + offs, mean, mask=mask)
    tl.store(_stat_table(st_ptr, 1, K, C) + offs, var, mask=mask)
    tl.store(_stat_table(st_ptr, 2, K, C) + offs, 1.0 / tl.sqrt(var + eps), mask=mask)
    first = pid == 0
    tl.store(_stat_vector(st_ptr, 0, K) + ks, mass, mask=k_ok & first)
    tl.store(_stat_vector(st_ptr, 1, K) + ks, lam, mask=k_ok & first)
    if UPDATE:
        # a non-finite batch leaves the state as it was (per channel; every channel when
        # the masses are not finite), as update_state does; NaN fails every comparison
        big = 3.0e38
        finite_k = tl.sum(tl.where(k_ok & ~(mass < big), 1, 0), axis=0) == 0
        finite = (tl.abs(mean) < big) & (var < big)
        keep = (tl.sum(tl.where(mask & ~finite, 1, 0), axis=0) == 0) & finite_k
        mask = mask & keep[None, :]
        first = first & finite_k
        done = tl.load(nbt_ptr) + 1  # batches including this one
        if CUMULATIVE:
            f = 1.0 / done.to(tl.float32)
        else:
            f = momentum
        n = mass[:, None]
        unbiased = var * tl.where(n > 1, n / tl.maximum(n - 1, TINY), 1.0)
        running_mean = _table(rmean_ptr, ks, k_ok, cs, c_ok, C, 0.0)
        running_var = _table(rvar_ptr, ks, k_ok, cs, c_ok, C, 0.0)
        tl.store(rmean_ptr + offs, running_mean * (1 - f) + mean * f, mask=mask)
        tl.store(rvar_ptr + offs, running_var * (1 - f) + unbiased * f, mask=mask)
        running_weight = tl.load(rw_ptr + ks, mask=k_ok, other=0.0)
        tl.store(rw_ptr + ks, running_weight * (1 - f) + lam * f, mask=k_ok & first)
        if WARM:
            dead = mass < min_mass
            lam_c = tl.where(k_ok, lam, 0.0)[:, None]
            total_mean = tl.sum(lam_c * mean, axis=0)
            total_var = tl.maximum(tl.sum(lam_c * (var + mean * mean), axis=0)
                                   - total_mean * total_mean, 0.0)
            idx = _pick(done, ks, M)
            picks = tl.load(x_ptr + ((idx // L) * s_n + (idx % L) * s_l)[:, None]
                            + cs.to(tl.int64)[None, :] * s_c, mask=mask, other=0.0)
            tl.store(emean_ptr + offs, tl.where(dead[:, None], picks.to(tl.float32), mean),
                     mask=mask)
            tl.store(evar_ptr + offs, tl.where(dead[:, None], total_var[None, :], var),
                     mask=mask)
            weight = tl.where(k_ok, tl.where(dead, 1.0 / K, lam), 0.0)
            tl.store(ew_ptr + ks, weight / tl.sum(weight, axis=0), mask=k_ok & first)


@triton.jit
def mn_output(x_ptr, shift_ptr, tau_ptr, st_ptr, gamma_ptr, beta_ptr, y_ptr, nbt_ptr,
              M, C, L, s_n, s_c, s_l, s_shift,
              K: tl.constexpr, KP: tl.constexpr, ONE: tl.constexpr,
              HAS_GAMMA: tl.constexpr, HAS_BETA: tl.constexpr, COUNT: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """``y = sum_k a_k (x - m_k) r_k gamma + beta`` for a block of samples, from the
    stored posteriors; ``y`` has the strides of ``x``. With COUNT, the first program
    advances ``num_batches_tracked`` (after :func:`mn_finalize` has read it)."""
    rows, row_ok, ks, k_ok = _rows(M, K, KP, BLOCK_M)
    a = _scaled_posteriors(tau_ptr, _stat_vector(st_ptr, 1, K), rows, row_ok, ks, k_ok, K, ONE)
    for c0 in range(0, C, BLOCK_C):
        cs = c0 + tl.arange(0, BLOCK_C)
        c_ok = cs < C
        z, c, offs, mask = _samples(x_ptr, shift_ptr, rows, row_ok, cs, c_ok,
                                    L, s_n, s_c, s_l, s_shift)
        scale = _table(_stat_table(st_ptr, 2, K, C), ks, k_ok, cs, c_ok, C, 0.0)
        if HAS_GAMMA:
            scale = scale * tl.load(gamma_ptr + cs, mask=c_ok, other=0.0)[None, :]
        mean = _table(_stat_table(st_ptr, 0, K, C), ks, k_ok, cs, c_ok, C, 0.0) - c[None, :]
        t = (z[:, None, :] - mean[None, :, :]) * scale[None, :, :]
        y = tl.sum(a[:, :, None] * t, axis=1)
        if HAS_BETA:
            y += tl.load(beta_ptr + cs, mask=c_ok, other=0.0)[None, :]
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)
    if COUNT:
        if tl.program_id(0) == 0:
            tl.store(nbt_ptr, tl.load(nbt_ptr) + 1)


@triton.jit
def mn_grad_reduce(dy_ptr, x_ptr, shift_ptr, tau_ptr, st_ptr, part_ptr,
                   M, C, L, s_n, s_c, s_l, s_shift,
                   K: tl.constexpr, KP: tl.constexpr, ONE: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """Per block of samples: ``sum_i a_ik dy_i`` and ``sum_i a_ik dy_i z_i``
    (``dy`` has the strides of ``x``)."""
    pid = tl.program_id(0)
    p_part = part_ptr
    u_part = part_ptr + tl.num_programs(0).to(tl.int64) * K * C
    rows, row_ok, ks, k_ok = _rows(M, K, KP, BLOCK_M)
    a = _scaled_posteriors(tau_ptr, _stat_vector(st_ptr, 1, K), rows, row_ok, ks, k_ok, K, ONE)
    for c0 in range(0, C, BLOCK_C):
        cs = c0 + tl.arange(0, BLOCK_C)
        c_ok = cs < C
        z, _, offs, mask = _samples(x_ptr, shift_ptr, rows, row_ok, cs, c_ok,
                                    L, s_n, s_c, s_l, s_shift)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        ad = a[:, :, None] * dy[:, None, :]
        out = pid.to(tl.int64) * K * C + ks[:, None] * C + cs[None, :]
        tmask = k_ok[:, None] & c_ok[None, :]
        tl.store(p_part + out, tl.sum(ad, axis=0), mask=tmask)
        tl.store(u_part + out, tl.sum(ad * z[:, None, :], axis=0), mask=tmask)


@triton.jit
def mn_grad_tables(part_ptr, shift_ptr, st_ptr, gamma_ptr, tables_ptr, gw_out, gb_out,
                   B, C, s_shift,
                   K: tl.constexpr, KP: tl.constexpr, HAS_GAMMA: tl.constexpr,
                   BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr):
    """Combine the blocks' sums; weight and bias gradients; the tables of
    ``dx_i = sum_k a_ik (T0_k + z_i T1_k + dy_i T2_k)`` (the closed form of
    :func:`gan_mn.norm.functional.dx_tables`)."""
    cs, c_ok, ks, k_ok, mask = _channel_block(C, K, KP, BLOCK_C)
    p = _sum_blocks(part_ptr, B, ks, k_ok, cs, c_ok, C, K, KP, BLOCK_B, BLOCK_C)
    u = _sum_blocks(part_ptr + _wide(B) * K * C, B, ks, k_ok, cs, c_ok, C, K, KP,
                    BLOCK_B, BLOCK_C)
    c = tl.load(shift_ptr + cs * s_shift, mask=c_ok, other=0.0)
    mean = _shifted_means(_stat_table(st_ptr, 0, K, C), ks, k_ok, cs, c_ok, C, c)
    r = _table(_stat_table(st_ptr, 2, K, C), ks, k_ok, cs, c_ok, C, 0.0)
    centred = u - mean * p
    root_lam = tl.sqrt(tl.maximum(tl.load(_stat_vector(st_ptr, 1, K) + ks, mask=k_ok, other=0.0),
                                  TINY))
    tl.store(gw_out + cs, tl.sum(r * centred, axis=0), mask=c_ok)
    tl.store(gb_out + cs, tl.sum(root_lam[:, None] * p, axis=0), mask=c_ok)
    if HAS_GAMMA:
        gamma = tl.load(gamma_ptr + cs, mask=c_ok, other=0.0)[None, :]
    else:
        gamma = tl.full([1, BLOCK_C], 1.0, tl.float32)
    mass = tl.load(_stat_vector(st_ptr, 0, K) + ks, mask=k_ok, other=1.0)
    s = (root_lam / tl.maximum(mass, TINY))[:, None]
    qg = r * gamma * centred
    offs = ks[:, None] * C + cs[None, :]
    tl.store(tables_ptr + offs, s * r * (r * qg * mean - gamma * p), mask=mask)
    tl.store(tables_ptr + K * C + offs, -s * r * r * qg, mask=mask)
    tl.store(tables_ptr + 2 * K * C + offs, r * gamma, mask=mask)


@triton.jit
def mn_grad_input(dy_ptr, x_ptr, shift_ptr, tau_ptr, st_ptr, tables_ptr, dx_ptr,
                  M, C, L, s_n, s_c, s_l, s_shift,
                  K: tl.constexpr, KP: tl.constexpr, ONE: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """``dx`` for a ``[BLOCK_M, BLOCK_C]`` tile (``dy`` and ``dx`` have the strides of ``x``)."""
    rows, row_ok, ks, k_ok = _rows(M, K, KP, BLOCK_M)
    cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = cs < C
    a = _scaled_posteriors(tau_ptr, _stat_vector(st_ptr, 1, K), rows, row_ok, ks, k_ok, K, ONE)
    z, _, offs, mask = _samples(x_ptr, shift_ptr, rows, row_ok, cs, c_ok,
                                L, s_n, s_c, s_l, s_shift)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    t0 = _table(tables_ptr, ks, k_ok, cs, c_ok, C, 0.0)
    t1 = _table(tables_ptr + K * C, ks, k_ok, cs, c_ok, C, 0.0)
    t2 = _table(tables_ptr + 2 * K * C, ks, k_ok, cs, c_ok, C, 0.0)
    terms = t0[None, :, :] + z[:, None, :] * t1[None, :, :] + dy[:, None, :] * t2[None, :, :]
    dx = tl.sum(a[:, :, None] * terms, axis=1)
    tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
