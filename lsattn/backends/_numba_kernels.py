"""Numba CPU kernels: fused per-token scans, parallel over the flattened batch.

Imported only when the ``numba`` backend computes something (through the ``"module:function"``
strings of ``numba_cpu.OPS``), so ``import lsattn`` never imports Numba.

Every kernel takes C-contiguous arrays of one dtype (float32 or float64: one compiled
specialisation each; every element read is widened, all working state is float64) with one
flattened batch axis ``B`` and runs one
``prange`` iteration per batch element; the state lives in small local arrays (``d_k x d_v``
for the exp-kernel, ``L x d_k x d_v`` for the log-linear operators), never ``T x d_k x d_v``.
The state layouts are exactly those of the array-API twins (see ``numba_cpu``), so a stream may
move between backends.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

_JIT = dict(parallel=True, cache=True, nogil=True)

#: entries per task of :func:`_count_nonfinite`
_FINITE_BLOCK = 1 << 15


@numba.njit(**_JIT)
def _count_nonfinite(bits, expo, neg_inf):
    """Entries of a float array, given as its bit patterns ``bits`` (1-D int32 / int64), that are NaN
    or infinite (all exponent bits ``expo`` set), other than ``neg_inf`` (the pattern of -inf, or 0:
    none allowed); one parallel pass over blocks, integer compares only (they vectorise)."""
    n = bits.shape[0]
    nb = (n + _FINITE_BLOCK - 1) // _FINITE_BLOCK
    bad = np.zeros(nb, np.int64)
    for b in prange(nb):
        bad[b] = _count_block(bits[b * _FINITE_BLOCK : min(n, (b + 1) * _FINITE_BLOCK)], expo, neg_inf)
    return bad.sum()


@numba.njit
def _count_block(w, expo, neg_inf):
    """:func:`_count_nonfinite` of one block (its own loop from 0: the compares vectorise)."""
    c = 0
    for i in range(w.shape[0]):
        c += ((w[i] & expo) == expo) & (w[i] != neg_inf)
    return c


#: per dtype: (the integer type of its bit patterns, the exponent mask, the pattern of -inf)
_FLOAT_BITS = {"float32": (np.int32, np.int32(0x7F800000), np.int32(-0x800000)),
               "float64": (np.int64, np.int64(0x7FF0000000000000), np.int64(-0x10000000000000))}


def all_finite(x, neg_ok):
    """``lsattn._nonfinite.FAST_FINITE``'s check of a NumPy array (registered below): whether every
    entry of a C-contiguous float32 / float64 ``x`` is finite (``-inf`` allowed when neg_ok), on
    every Numba thread; None for other arrays (the prologue's NumPy reductions check those)."""
    if x.dtype.name not in _FLOAT_BITS or not x.flags.c_contiguous:
        return None
    it, expo, neg_inf = _FLOAT_BITS[x.dtype.name]
    bits = x.reshape(-1).view(it)
    bits.flags.writeable = False  # one specialisation per dtype (read-only and writable inputs)
    return int(_count_nonfinite(bits, expo, neg_inf if neg_ok else it(0))) == 0


def _register_finite():
    from .._nonfinite import FAST_FINITE

    FAST_FINITE[np.ndarray] = all_finite


_register_finite()


# ---- exp-kernel attention -------------------------------------------------------------------------
#
# State after keys s < t (per batch element), the same as the array-API summary:
#   m_i = max_s k_si,  n_j = max_s log_v_sj (log values only),
#   S_ij = sum_s exp(k_si - m_i) v'_sj  with v' = v (signed) or exp(log_v - n) (log values),
#   z_i = sum_s exp(k_si - m_i).
# A query reads it with the row shift r = max_i (q_i + m_i): A_i = exp(q_i + m_i - r) <= 1,
#   num_j = sum_i A_i S_ij, den = sum_i A_i z_i (>= 1 once a key is in), y_j = num_j / den.

@numba.njit(**_JIT)
def ek_causal(q, k, vals, rows, seg, m0, n0, S0, z0, log_values, lo, out, m1, n1, S1, z1):
    """Causal scan. q, k (B, T, d_k); vals (B, T, d_v); seg (N + 1,) int64: the tokens
    ``seg[i] .. seg[i + 1] - 1`` are stream ``i`` (packed segments; ``[0, T]``: one stream); the
    incoming states of the ``B N`` streams (row ``b N + i``) in m0, n0, S0, z0 (n unused unless
    log_values). Writes out (B, T, d_v) and the final states into m1, n1, S1, z1 (same rows).
    One ``prange`` iteration per (batch element, stream)."""
    dk = q.shape[2]
    B = rows.shape[1]  # row b of input i: its row rows[i, b] (broadcast inputs: shared rows)
    N = seg.shape[0] - 1
    dv = vals.shape[2]
    for row in prange(B * N):
        b, sg = row // N, row % N
        m = m0[row].astype(np.float64)  # float64 working state for every input dtype
        n = n0[row].astype(np.float64)
        S = S0[row].astype(np.float64)
        z = z0[row].astype(np.float64)
        f = np.empty(dk, np.float64)
        e = np.empty(dk, np.float64)
        g = np.empty(dv, np.float64)
        ev = np.empty(dv, np.float64)
        num = np.empty(dv, np.float64)
        for t in range(seg[sg], seg[sg + 1]):
            # key t joins the state; a new per-feature maximum rescales that row (factor <= 1)
            for i in range(dk):
                ki = k[rows[1, b], t, i]
                if ki > m[i]:
                    f[i] = math.exp(m[i] - ki)
                    e[i] = 1.0
                    m[i] = ki
                else:
                    f[i] = 1.0
                    e[i] = math.exp(ki - m[i])
            if log_values:
                for j in range(dv):
                    lv = max(vals[rows[2, b], t, j], lo)  # log v = -inf: the finite stand-in
                    if lv > n[j]:
                        g[j] = math.exp(n[j] - lv)
                        ev[j] = 1.0
                        n[j] = lv
                    else:
                        g[j] = 1.0
                        ev[j] = math.exp(lv - n[j])
            r = q[rows[0, b], t, 0] + m[0]
            for i in range(1, dk):
                r = max(r, q[rows[0, b], t, i] + m[i])
            den = 0.0
            num[:] = 0.0
            for i in range(dk):
                a = math.exp(q[rows[0, b], t, i] + m[i] - r)
                z[i] = z[i] * f[i] + e[i]
                den += a * z[i]
                fi, ei = f[i], e[i]
                if log_values:
                    for j in range(dv):
                        s = S[i, j] * fi * g[j] + ei * ev[j]
                        S[i, j] = s
                        num[j] += a * s
                else:
                    for j in range(dv):
                        s = S[i, j] * fi + ei * vals[rows[2, b], t, j]
                        S[i, j] = s
                        num[j] += a * s
            _ek_finish(num, den, n, log_values, lo, out[b, t])
        m1[row] = m.astype(m1.dtype)  # the state is stored in the input dtype
        n1[row] = n.astype(n1.dtype)
        S1[row] = S.astype(S1.dtype)
        z1[row] = z.astype(z1.dtype)


@numba.njit(inline="always")
def _ek_finish(num, den, n, log_values, lo, dst):
    """y = num / den, or log y = log num + n - log den with -inf where nothing visible is non-zero."""
    if not log_values:
        for j in range(num.shape[0]):
            dst[j] = num[j] / den
        return
    ld = math.log(den)
    for j in range(num.shape[0]):
        y = (math.log(num[j]) if num[j] > 0 else lo) + n[j] - ld
        dst[j] = y if y > lo / 2 else -np.inf


@numba.njit(**_JIT)
def ek_full(q, k, vals, rows, log_values, lo, out):
    """Non-causal: every query reads the summary of all keys. q (B, Tq, d_k), k (B, Tk, d_k),
    vals (B, Tk, d_v) -> out (B, Tq, d_v)."""
    Tq, dk = q.shape[1:]
    B = rows.shape[1]  # row b of input i: its row rows[i, b] (broadcast inputs: shared rows)
    Tk = k.shape[1]
    dv = vals.shape[2]
    for b in prange(B):
        m = np.empty(dk, np.float64)
        n = np.zeros(dv, np.float64)
        for i in range(dk):
            m[i] = k[rows[1, b], 0, i]
            for s in range(1, Tk):
                m[i] = max(m[i], k[rows[1, b], s, i])
        if log_values:
            for j in range(dv):
                n[j] = max(vals[rows[2, b], 0, j], lo)
                for s in range(1, Tk):
                    n[j] = max(n[j], vals[rows[2, b], s, j])
        S = np.zeros((dk, dv), np.float64)
        z = np.zeros(dk, np.float64)
        ev = np.empty(dv, np.float64)
        for s in range(Tk):
            for j in range(dv):
                ev[j] = math.exp(max(vals[rows[2, b], s, j], lo) - n[j]) if log_values else vals[rows[2, b], s, j]
            for i in range(dk):
                e = math.exp(k[rows[1, b], s, i] - m[i])
                z[i] += e
                for j in range(dv):
                    S[i, j] += e * ev[j]
        num = np.empty(dv, np.float64)
        for t in range(Tq):
            r = q[rows[0, b], t, 0] + m[0]
            for i in range(1, dk):
                r = max(r, q[rows[0, b], t, i] + m[i])
            den = 0.0
            num[:] = 0.0
            for i in range(dk):
                a = math.exp(q[rows[0, b], t, i] + m[i] - r)
                den += a * z[i]
                for j in range(dv):
                    num[j] += a * S[i, j]
            _ek_finish(num, den, n, log_values, lo, out[b, t])


# ---- log-linear Mamba-2 and Gated DeltaNet ----------------------------------------------------------
#
# Lazy decay. Before token t, slot j (Fenwick level j + 1) holds the bucket B_t^{j+1} (non-empty iff
# bit j of t is set) *relative to its reference*, the newest token r in it: for Mamba-2
#     S_j = sum_{s in bucket} exp(a_{s+1} + ... + a_r) k_s v_s^T,      D_j = a_{r+1} + ... + a_t,
# so the bucket decayed to t is exp(D_j) S_j. Only the scalar D_j moves every token; a read is
# lambda[t, j+1] exp(D_j) S_j^T q_t, and the merge at token t (z = trailing zeros of t + 1: token t
# and slots 0 .. z-1 become slot z, empty before because bit z of t is clear) rescales the merged
# slots by exp(D_j) into the new reference t. With a <= 0 every factor is <= 1 (no overflow).
# Per token: O(popcount(t) d_k d_v) reads + O((z + 1) d_k d_v) merge, instead of also decaying
# every slot. Gated DeltaNet: the scalar part exp(a_t) of A_t = exp(a_t)(I - beta_t k_t k_t^T) goes
# to D_j as well; the projection (I - beta_t k_t k_t^T) is applied to every occupied slot (fused
# with its read). Inner loops run over d_v (contiguous) so LLVM vectorises them.

#: block size of the Mamba-2 block path (a power of two)
BLOCK = 16


@numba.njit(**_JIT)
def loglinear_scan(q, k, v, log_decay, beta, lam, rows, seg, offs, nlev, levels0, gated, out, levels1):
    """q, k (B, T, d_k); v (B, T, d_v); log_decay, beta (B, T) (beta unused unless gated);
    lam (B, T, L); seg (N + 1,) int64: the tokens ``seg[i] .. seg[i + 1] - 1`` are stream ``i``,
    continued at offset ``offs[i]`` (``[0, T]``, ``[p]``: one stream); nlev = max(1, bit_length of the
    largest ``offs[i] + n_i``); levels0 (B N, >= bit_length(offs[i]), d_k, d_v) in the ``levels`` layout
    (slot j decayed to p - 1; row ``b N + i``). Writes out (B, T, d_v) and, when levels1 has a slot
    axis (>= every bit_length(offs[i] + n_i) > 0), the final levels in the same layout (rescaled to
    p + n_i - 1; zeros where empty). One ``prange`` iteration per (batch element, stream).

    Mamba-2 (not gated) runs whole aligned blocks of BLOCK tokens at once (:func:`_mamba_block`)
    and the tokens before the first / after the last whole block one by one (:func:`_token`)."""
    dk = q.shape[2]
    B = rows.shape[1]  # row b of input i: its row rows[i, b] (broadcast inputs: shared rows)
    N = seg.shape[0] - 1
    dv = v.shape[2]
    L1 = levels1.shape[1]
    G = BLOCK
    lev = level_table(G)  # Fenwick levels of (t, s) inside an aligned block
    for row in prange(B * N):
        b, sg = row // N, row % N
        s0, T, p = seg[sg], seg[sg + 1] - seg[sg], offs[sg]
        S = np.zeros((nlev, dk, dv), np.float64)  # float64 working state for every input dtype
        D = np.zeros(nlev, np.float64)
        for j in range(levels0.shape[1]):
            if (p >> j) & 1:  # the incoming levels are their own references (D = 0)
                for a in range(dk):
                    for c in range(dv):
                        S[j, a, c] = levels0[row, j, a, c]
        o = np.empty(dv, np.float64)
        kS = np.empty(dv, np.float64)
        acc = np.empty((G, dv), np.float64)  # scratch of the block path
        cum = np.empty(G, np.float64)
        P = np.empty((G, G), np.float64)
        kT = np.empty((dk, G), np.float64)
        Wq = np.empty((G, dk), np.float64)
        qb, kb, vb, ab = q[rows[0, b], s0:], k[rows[1, b], s0:], v[rows[2, b], s0:], log_decay[rows[3, b], s0:]
        bb, lb, ob = beta[rows[4, b], s0:], lam[rows[5, b], s0:], out[b, s0:]
        i = 0
        while i < T:
            if not gated and (p + i) % G == 0 and i + G <= T:
                _mamba_block(qb, kb, vb, ab, lb, p, i, S, D, lev, acc, cum, P, kT, Wq, ob)
                i += G
            else:
                _token(qb, kb, vb, ab, bb, lb, p, i, gated, S, D, o, kS, ob)
                i += 1
        end = p + T
        for j in range(L1):  # the levels layout: every slot decayed to p + T - 1, zeros where empty
            g = math.exp(D[j]) if (end >> j) & 1 else 0.0
            for a in range(dk):
                for c in range(dv):
                    levels1[row, j, a, c] = g * S[j, a, c]


@numba.njit(cache=True)
def level_table(G):
    """(G, G) int64: the Fenwick level bit_length(t xor s) of positions t, s of an aligned block of G."""
    lev = np.empty((G, G), np.int64)
    for t in range(G):
        for s in range(G):
            x, n = t ^ s, 0
            while x > 0:
                x >>= 1
                n += 1
            lev[t, s] = n
    return lev


@numba.njit(inline="always")
def _merge(S, D, zt, t, bt, k, v):
    """Token t (its write bt k v^T) and slots 0 .. zt-1 become slot zt, referenced at t."""
    dk, dv = k.shape[0], v.shape[0]
    for a in range(dk):
        bk = bt * k[a]
        for c in range(dv):
            S[zt, a, c] = bk * v[c]
    for j in range(zt):
        g = math.exp(D[j])
        for a in range(dk):
            for c in range(dv):
                S[zt, a, c] += g * S[j, a, c]
    D[zt] = 0.0


@numba.njit(inline="always")
def _token(q, k, v, log_decay, beta, lam, p, i, gated, S, D, o, kS, out):
    """One token (one batch element: q (T, d_k), ...): reads of the occupied slots (Gated DeltaNet:
    the projection applied first), output, Fenwick merge."""
    dk, dv = q.shape[1], v.shape[1]
    t = p + i
    at = np.float64(log_decay[i])
    bt = np.float64(beta[i]) if gated else 1.0
    qk = 0.0
    for a in range(dk):
        qk += np.float64(q[i, a]) * k[i, a]
    own = np.float64(lam[i, 0]) * bt * qk
    for c in range(dv):
        o[c] = own * v[i, c]
    u, j = t, 0
    while u > 0:  # occupied slots: the set bits of t
        if u & 1:
            D[j] += at
            w = lam[i, j + 1] * math.exp(D[j])
            if gated:  # S_j <- (I - beta k k^T) S_j, read fused
                kS[:] = 0.0
                for a in range(dk):
                    ka = np.float64(k[i, a])
                    for c in range(dv):
                        kS[c] += ka * S[j, a, c]
                for a in range(dk):
                    bk = bt * k[i, a]
                    wq = w * q[i, a]
                    for c in range(dv):
                        s = S[j, a, c] - bk * kS[c]
                        S[j, a, c] = s
                        o[c] += wq * s
            else:
                for a in range(dk):
                    wq = w * q[i, a]
                    for c in range(dv):
                        o[c] += wq * S[j, a, c]
        u >>= 1
        j += 1
    for c in range(dv):
        out[i, c] = o[c]
    u, zt = t + 1, 0
    while (u & 1) == 0:
        u >>= 1
        zt += 1
    _merge(S, D, zt, t, bt, k[i], v[i])


@numba.njit(inline="always")
def _mamba_block(q, k, v, log_decay, lam, p, i0, S, D, lev, acc, cum, P, kT, Wq, out):
    """Tokens i0 .. i0 + G - 1 of one batch element, G = BLOCK, p + i0 a multiple of G: slots
    below log2 G are empty at the start and slots from log2 G up do not change inside the block, so
    each is read by all G queries in one pass (its rows stay in L1); pairs inside the block are one
    masked G x G product (weights lambda[t, level] exp(a_{s+1} + ... + a_t), summed over that
    stretch); at the end the block's keys and the merged slots become slot ctz(p + i0 + G).
    Scratch: acc (G, d_v), cum (G,), P (G, G), kT (d_k, G), Wq (G, d_k)."""
    G = acc.shape[0]
    dk, dv = q.shape[1], v.shape[1]
    t0 = p + i0
    g = 0
    while (1 << g) < G:
        g += 1
    run = 0.0
    for s in range(G):
        run += np.float64(log_decay[i0 + s])
        cum[s] = run
    acc[:, :] = 0.0
    u, j = t0 >> g, g
    while u > 0:  # occupied slots from g up: the set bits of t0 (the same for the whole block)
        if u & 1:
            for s in range(G):
                w = lam[i0 + s, j + 1] * math.exp(D[j] + cum[s])
                for a in range(dk):
                    Wq[s, a] = w * q[i0 + s, a]
            a4 = dk - dk % 4
            for a in range(0, a4, 4):  # four rows per pass: a quarter of the acc loads and stores
                for s in range(G):
                    w0, w1, w2, w3 = Wq[s, a], Wq[s, a + 1], Wq[s, a + 2], Wq[s, a + 3]
                    for c in range(dv):
                        acc[s, c] += w0 * S[j, a, c] + w1 * S[j, a + 1, c] + w2 * S[j, a + 2, c] + w3 * S[j, a + 3, c]
            for a in range(a4, dk):
                for s in range(G):
                    wq = Wq[s, a]
                    for c in range(dv):
                        acc[s, c] += wq * S[j, a, c]
            D[j] += cum[G - 1]
        u >>= 1
        j += 1
    # pairs inside the block: P = (weights * Q K^T) restricted to s <= t, then acc += P V
    for a in range(dk):
        for s in range(G):
            kT[a, s] = k[i0 + s, a]
    P[:, :] = 0.0
    for t in range(G):
        for a in range(dk):
            qa = np.float64(q[i0 + t, a])
            for s in range(t + 1):
                P[t, s] += qa * kT[a, s]
        seg = 0.0  # a_{s+1} + ... + a_t, summed over that stretch (never cum[t] - cum[s])
        for s in range(t, -1, -1):
            P[t, s] *= lam[i0 + t, lev[t, s]] * math.exp(seg)
            seg += np.float64(log_decay[i0 + s])
        for s in range(t + 1):
            w = P[t, s]
            for c in range(dv):
                acc[t, c] += w * v[i0 + s, c]
        for c in range(dv):
            out[i0 + t, c] = acc[t, c]
    u, zt = t0 + G, 0  # merge: the block's keys (decayed to its end) and slots g .. zt-1 -> slot zt
    while (u & 1) == 0:
        u >>= 1
        zt += 1
    for a in range(dk):
        for c in range(dv):
            S[zt, a, c] = 0.0
    for j in range(g, zt):
        f = math.exp(D[j])
        for a in range(dk):
            for c in range(dv):
                S[zt, a, c] += f * S[j, a, c]
    seg = 0.0
    for s in range(G - 1, -1, -1):  # decay of key s to the block's end, a_{s+1} + ... (cum not needed after)
        cum[s] = math.exp(seg)
        seg += np.float64(log_decay[i0 + s])
    for a in range(dk):
        for s in range(0, G, 4):  # G is a multiple of 4
            k0, k1, k2, k3 = cum[s] * kT[a, s], cum[s + 1] * kT[a, s + 1], cum[s + 2] * kT[a, s + 2], cum[s + 3] * kT[a, s + 3]
            for c in range(dv):
                S[zt, a, c] += k0 * v[i0 + s, c] + k1 * v[i0 + s + 1, c] + k2 * v[i0 + s + 2, c] + k3 * v[i0 + s + 3, c]
    D[zt] = 0.0


# ---- hierarchical exp-kernel attention (loglinear_log_attention) ------------------------------------
#
# Slot j holds the bucket B_t^{j+1} as an exp-kernel summary (m, n, S, z) of its keys decayed to its
# newest token (the reference), plus D_j = a_{r+1} + ... + a_t (lazy decay: decaying a summary by
# D is m -> m + D, so only the scalar moves every token). Token t reads slot j with the log-weight
# offset log_level_weights[t, j+1] + D_j added to its row shift r_j = max_i (q_i + m_ji); the reads
# of all slots and of the token itself combine in log space: the denominator with a running shift
# R (den exp(R)), every numerator column with its own running shift U_c, each term entering as
# exp(r_j + offset + n_jc + log num_jc - U_c), so nothing underflows that the array-API path keeps.
# Merge: token t and slots 0 .. z-1 (keys shifted by D_j) become slot z, shifted to the larger
# per-feature / per-column maxima (every factor <= 1).

@numba.njit(**_JIT)
def hier_scan(q, k, lv, lw, a, rows, seg, offs, nlev, m0, n0, S0, z0, lo, out, m1, n1, S1, z1):
    """q, k (B, T, d_k); lv (B, T, d_v) log values; lw (B, T, L) log level weights; a (B, T) log decay;
    seg, offs, nlev: the streams, as in :func:`loglinear_scan`; state slots m0 (B N, >= bit_length(p),
    d_k), n0 (.., d_v), S0 (.., d_k, d_v), z0 (.., d_k) in the array-API layout (keys decayed to
    p - 1; row ``b N + i``); lo: the finite "minus infinity" (each stream clamps its decays at
    lo / (4 (p + n_i)), as the array-API path). Writes out (B, T, d_v) (log y) and, when m1 has a slot
    axis, the final slots (empty ones at lo / 0)."""
    dk = q.shape[2]
    B = rows.shape[1]  # row b of input i: its row rows[i, b] (broadcast inputs: shared rows)
    N = seg.shape[0] - 1
    dv = lv.shape[2]
    for row in prange(B * N):
        b, sg = row // N, row % N
        s0, T, p = seg[sg], seg[sg + 1] - seg[sg], offs[sg]
        alo = lo / (4 * max(p + T, 1))
        m = np.full((nlev, dk), lo, np.float64)  # float64 working state for every input dtype
        n = np.full((nlev, dv), lo, np.float64)
        S = np.zeros((nlev, dk, dv), np.float64)
        z = np.zeros((nlev, dk), np.float64)
        D = np.zeros(nlev, np.float64)
        hier_load(m0[row], n0[row], S0[row], z0[row], p, m, n, S, z)
        w = np.empty((4, max(dk, dv)), np.float64)
        for i in range(T):
            hier_token(q[rows[0, b], s0:], k[rows[1, b], s0:], lv[rows[2, b], s0:], lw[rows[3, b], s0:],
                       a[rows[4, b], s0:], i, p + i, lo, alo, m, n, S, z, D, w, out[b, s0:])
        hier_store(m, n, S, z, D, p + T, lo, m1[row], n1[row], S1[row], z1[row])


@numba.njit(cache=True)
def hier_load(m0, n0, S0, z0, p, m, n, S, z):
    """The slots of an incoming state (m0 (bit_length(p), d_k), ...; array-API layout) into the
    float64 working slots m, n, S, z (empty slots stay at lo / 0)."""
    for j in range(m0.shape[0]):
        if (p >> j) & 1:
            m[j] = m0[j]
            n[j] = n0[j]
            S[j] = S0[j]
            z[j] = z0[j]


@numba.njit(cache=True)
def hier_store(m, n, S, z, D, end, lo, m1, n1, S1, z1):
    """The working slots after absolute position end - 1 in the array-API layout (keys decayed to
    end - 1, empty slots at lo / 0), as many slots as m1 has (none: nothing)."""
    dk, dv = m.shape[1], n.shape[1]
    for j in range(m1.shape[0]):
        occ = (end >> j) & 1
        for i2 in range(dk):
            m1[j, i2] = max(m[j, i2] + D[j], lo) if occ else lo
            z1[j, i2] = z[j, i2] if occ else 0.0
            for c in range(dv):
                S1[j, i2, c] = S[j, i2, c] if occ else 0.0
        for c in range(dv):
            n1[j, c] = n[j, c] if occ else lo


@numba.njit(cache=True)
def hier_token(q, k, lv, lw, a, i, t, lo, alo, m, n, S, z, D, w, out):
    """Token i (absolute position t) of one batch element (q, k (T, d_k), lv (T, d_v), lw (T, L),
    a (T,)): reads the occupied slots (m, n, S, z float64, lazy decays D) and itself, writes out[i],
    then merges itself and the slots below ctz(t + 1) into that slot. w: (4, max(d_k, d_v)) scratch."""
    dk, dv = q.shape[1], lv.shape[1]
    num, U, Num = w[0, :dv], w[1, :dv], w[2, :dv]
    ek, ev = w[3, :dk], w[0, :dv]  # ev reuses num's row: the merge follows the reads
    at = max(np.float64(a[i]), alo)
    # the token itself: w(t, t) = exp(lw[t, 0]) sum_i exp(q_i + k_i)
    r0 = np.float64(q[i, 0]) + k[i, 0]
    for i2 in range(1, dk):
        r0 = max(r0, np.float64(q[i, i2]) + k[i, i2])
    den0 = 0.0
    for i2 in range(dk):
        den0 += math.exp(np.float64(q[i, i2]) + k[i, i2] - r0)
    R = r0 + max(np.float64(lw[i, 0]), lo)
    Den = den0
    ld0 = R + math.log(den0)
    for c in range(dv):
        U[c] = ld0 + max(np.float64(lv[i, c]), lo)
        Num[c] = 1.0
    u, j = t, 0
    while u > 0:  # occupied slots: the set bits of t
        if u & 1:
            D[j] += at
            off = max(np.float64(lw[i, j + 1]), lo) + D[j]
            r = np.float64(q[i, 0]) + m[j, 0]
            for i2 in range(1, dk):
                r = max(r, q[i, i2] + m[j, i2])
            den = 0.0
            num[:] = 0.0
            for i2 in range(dk):
                A_ = math.exp(q[i, i2] + m[j, i2] - r)
                den += A_ * z[j, i2]
                for c in range(dv):
                    num[c] += A_ * S[j, i2, c]
            x = r + off
            if x > R:
                Den = Den * math.exp(R - x) + den
                R = x
            else:
                Den += den * math.exp(x - R)
            for c in range(dv):
                if num[c] > 0:
                    xc = x + n[j, c] + math.log(num[c])
                    if xc > U[c]:
                        Num[c] = Num[c] * math.exp(U[c] - xc) + 1.0
                        U[c] = xc
                    else:
                        Num[c] += math.exp(xc - U[c])
        u >>= 1
        j += 1
    ld = R + math.log(Den)
    for c in range(dv):
        y = U[c] + math.log(Num[c]) - ld
        out[i, c] = y if y > lo / 2 else -np.inf
    # Fenwick merge: token t and slots 0 .. zt-1 (keys shifted by D_j) -> slot zt
    u, zt = t + 1, 0
    while (u & 1) == 0:
        u >>= 1
        zt += 1
    for i2 in range(dk):
        mx = np.float64(k[i, i2])
        for j in range(zt):
            mx = max(mx, m[j, i2] + D[j])
        m[zt, i2] = mx
        ek[i2] = math.exp(k[i, i2] - mx)
    for c in range(dv):
        lvc = max(np.float64(lv[i, c]), lo)
        mx = lvc
        for j in range(zt):
            mx = max(mx, n[j, c])
        n[zt, c] = mx
        ev[c] = math.exp(lvc - mx)
    for i2 in range(dk):
        z[zt, i2] = ek[i2]
        for c in range(dv):
            S[zt, i2, c] = ek[i2] * ev[c]
    for j in range(zt):
        for i2 in range(dk):
            ek[i2] = math.exp(m[j, i2] + D[j] - m[zt, i2])
            z[zt, i2] += ek[i2] * z[j, i2]
        for c in range(dv):
            ev[c] = math.exp(n[j, c] - n[zt, c])
        for i2 in range(dk):
            f = ek[i2]
            for c in range(dv):
                S[zt, i2, c] += f * ev[c] * S[j, i2, c]
    D[zt] = 0.0
