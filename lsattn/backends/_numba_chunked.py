"""Numba CPU kernels in chunked (blocked) form: the work of a chunk of ``C`` tokens as small matrix
products (``np.dot`` inside ``@njit``, which Numba hands to BLAS), parallel over batch elements
*and* chunks.

Causal exp-kernel / log attention (:func:`ek_chunked`) and log-linear Mamba-2 / Gated DeltaNet
(:func:`ll_chunked`, see the comment above it).

Imported only when the ``numba`` backend runs a long causal call (``numba_cpu`` chooses between
these and the token-by-token kernels of ``_numba_kernels`` by size). Needs SciPy (Numba's
``np.dot`` calls SciPy's BLAS).

Causal exp-kernel attention (:func:`ek_chunked`), per batch element, chunks of ``C`` tokens, in
three phases per segment of chunks:

1. *summaries* (every chunk independently): the chunk's per-feature key maximum ``m^c``,
   ``E = exp(k - m^c)`` (``C x d_k``), for log values the per-column maximum ``n^c`` and
   ``V = exp(log_v - n^c)`` (else ``V = v``); ``S^c = E^T V`` (one ``(d_k x C)(C x d_v)`` product)
   and ``z^c`` = column sums of ``E``;
2. *scan* (chunks in order, float64, cheap: ``O(d_k d_v)`` per chunk): the state before each chunk
   and the chunk's summary are shifted to ``M = max(m^s, m^c)`` (``N`` for values; factors <= 1),
   the shifted state is stored for the chunk's reads (``S'`` in the input dtype, ``z'``) and the two
   are added (the array-API ``merge``);
3. *reads* (every chunk independently): queries ``A = exp(q + M - r)`` with ``r_t = max_i (q_ti +
   M_i)``, ``W = mask(A E'^T)`` (``E' = E exp(m^c - M)``), ``num = A S' + (W V) exp(n^c - N)``,
   ``den = A z' + row sums of W`` (three ``C x 64 x 64``-sized products at d = 64).

Schedules (:func:`split_for`): a batch that fills Numba's threads runs one parallel loop over the
batch (each element its segments of ``EK_SEGMENT`` chunks in order: one barrier per call, scratch
of one segment); a smaller batch (one long sequence) runs phases 1 and 3 as parallel loops over
batch x chunks and phase 2 over the batch, on segments of ``EK_SEGMENT_SPLIT`` chunks (three
barriers per segment), so one sequence uses every thread with no work done twice.

``M`` includes keys of the chunk a query may not see yet, so a visible term can underflow where the
token-by-token scan keeps it (the same reason the array-API path reads chunks as a tree). Every lost
term is below the working dtype's ``tiny`` times a known count, so a row whose ``den`` (or, for log
values, a numerator) is not at least ``1 / eps`` times that bound is recomputed exactly from the
state before its chunk with the shifts of the keys it sees (:func:`_ek_row`, after the segment's
reads); ordinary inputs never take it, large magnitudes and ``log_v = -inf`` columns do. Products
run in the input dtype (float32 inputs: float32 BLAS, entries in ``[0, 1]``, rounding relative);
the state is accumulated in float64.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from ._numba_kernels import _ek_finish, _token

_JIT = dict(parallel=True, cache=True, nogil=True)


#: OpenBLAS runs a product of m n k > 262144 flops / 2 on its own threads; called from every Numba
#: thread at once on a busy machine that was 5-10x slower (measured at C = 64, d = 64), so chunks
#: are sized to keep every product of a chunk at or below it
_BLAS_SINGLE = 262144


def chunk_for(d_k, d_v):
    """The chunk size of :func:`ek_chunked`: the largest power of two from 8 up to 64 whose products
    (d_k x C x d_v, C x d_k x d_v, C x d_k x C, C x C x d_v) are at most ``_BLAS_SINGLE`` (64 at
    d_k = d_v = 64), 8 where none is."""
    C = 64
    while C > 8 and max(d_k * C * d_v, C * d_k * C, C * C * d_v) > _BLAS_SINGLE:
        C //= 2
    return C


def split_for(B):
    """Whether a chunked kernel runs its phases as parallel loops over batch x chunks (a batch
    smaller than Numba's thread count: one sequence uses every thread) rather than one parallel
    loop over the batch (one barrier per call: robust when another job holds a core)."""
    return B < numba.get_num_threads()


#: chunks per segment of :func:`ek_chunked` (per batch element) with one parallel loop over the
#: batch (the scratch of a call is one segment's: it stays in cache and is allocated once), and
#: with parallel loops over batch x chunks (fewer, longer parallel regions: each ends in a barrier)
EK_SEGMENT = 8
EK_SEGMENT_SPLIT = 1024


@numba.njit(**_JIT)
def ek_chunked(q, k, vals, m0, n0, S0, z0, log_values, lo, C, split, out, m1, n1, S1, z1):
    """Causal exp-kernel attention in chunks of C tokens (see the module docstring). q, k (B, T, d_k);
    vals (B, T, d_v) (log values when log_values); incoming state m0 (B, d_k), n0 (B, d_v) (unused
    unless log_values), S0 (B, d_k, d_v), z0 (B, d_k); lo: the finite "minus infinity"; split: see
    :func:`split_for`. Writes out (B, T, d_v) and the final state into m1, n1, S1, z1 (the array-API
    layout)."""
    B, T, dk = q.shape
    dv = vals.shape[2]
    nch = (T + C - 1) // C
    G = max(1, min(nch, EK_SEGMENT_SPLIT if split else EK_SEGMENT))
    wt = q.dtype
    # the running state (float64) and its copy at the segment's start (for the exact fallback)
    m, n, S, z = np.empty((B, dk)), np.zeros((B, dv)), np.empty((B, dk, dv)), np.empty((B, dk))
    for b in range(B):
        for i in range(dk):
            m[b, i] = m0[b, i]
            z[b, i] = z0[b, i]
            for j in range(dv):
                S[b, i, j] = S0[b, i, j]
        if log_values:
            for j in range(dv):
                n[b, j] = n0[b, j]
    m_, n_, S_, z_ = m.copy(), n.copy(), S.copy(), z.copy()
    # one segment's scratch: per chunk E = exp(k - m^c) (then times exp(m^c - M)), V = exp(log_v -
    # n^c) or v, Sc = E^T V, the state before it shifted to (M, N): SR (input dtype), zR
    E, V = np.empty((B, G, C, dk), wt), np.empty((B, G, C, dv), wt)
    Sc, SR = np.empty((B, G, dk, dv), wt), np.empty((B, G, dk, dv), wt)
    mc, zc, zR = np.empty((B, G, dk)), np.empty((B, G, dk)), np.empty((B, G, dk))
    M, fc = np.empty((B, G, dk)), np.empty((B, G, dk))
    nc, N, gc = np.zeros((B, G, dv)), np.zeros((B, G, dv)), np.ones((B, G, dv))
    bad = np.zeros((B, G * C), np.uint8)  # rows for the exact fallback
    zmax = 0.0
    for b in range(B):
        for i in range(dk):
            zmax = max(zmax, np.float64(z0[b, i]))
    # lost mass of one output entry, in units of its shift: each product that underflowed (or met
    # an exponential flushed to 0 below exp(-708)) is below 4 tiny, and there are at most d_k of
    # them from the state (weight <= z <= zmax + T each) and C (d_k + 1) from the chunk
    bound = 4 * np.finfo(wt).tiny * (dk * (zmax + T + 1.0) + C * (dk + 1)) / np.finfo(wt).eps
    if split:
        for c0 in range(0, nch, G):
            g = min(G, nch - c0)
            for task in prange(B * g):
                b, c = task // g, task % g
                _ek_summary(k[b], vals[b], (c0 + c) * C, log_values, lo, E[b, c], V[b, c], mc[b, c], nc[b, c],
                            zc[b, c], Sc[b, c])
            for b in prange(B):
                _ek_scan(c0 * C, g, m[b], n[b], S[b], z[b], m_[b], n_[b], S_[b], z_[b], mc[b], nc[b], zc[b], Sc[b],
                         log_values, lo, M[b], fc[b], N[b], gc[b], SR[b], zR[b], False, q[b], k[b], vals[b], bad[b],
                         out[b])
            for task in prange(B * g):
                b, c = task // g, task % g
                _ek_out(q[b], (c0 + c) * C, E[b, c], V[b, c], SR[b, c], zR[b, c], M[b, c], fc[b, c], N[b, c],
                        gc[b, c], bound, log_values, lo, out[b], bad[b, c * C : c * C + C])
            if bad.any():
                for b in prange(B):
                    _ek_scan(c0 * C, g, m[b], n[b], S[b], z[b], m_[b], n_[b], S_[b], z_[b], mc[b], nc[b], zc[b],
                             Sc[b], log_values, lo, M[b], fc[b], N[b], gc[b], SR[b], zR[b], True, q[b], k[b], vals[b],
                             bad[b], out[b])
    else:  # one parallel loop over the batch: each element runs its segments in order
        for b in prange(B):
            for c0 in range(0, nch, G):
                g = min(G, nch - c0)
                for c in range(g):
                    _ek_summary(k[b], vals[b], (c0 + c) * C, log_values, lo, E[b, c], V[b, c], mc[b, c], nc[b, c],
                                zc[b, c], Sc[b, c])
                _ek_scan(c0 * C, g, m[b], n[b], S[b], z[b], m_[b], n_[b], S_[b], z_[b], mc[b], nc[b], zc[b], Sc[b],
                         log_values, lo, M[b], fc[b], N[b], gc[b], SR[b], zR[b], False, q[b], k[b], vals[b], bad[b],
                         out[b])
                for c in range(g):
                    _ek_out(q[b], (c0 + c) * C, E[b, c], V[b, c], SR[b, c], zR[b, c], M[b, c], fc[b, c], N[b, c],
                            gc[b, c], bound, log_values, lo, out[b], bad[b, c * C : c * C + C])
                _ek_scan(c0 * C, g, m[b], n[b], S[b], z[b], m_[b], n_[b], S_[b], z_[b], mc[b], nc[b], zc[b], Sc[b],
                         log_values, lo, M[b], fc[b], N[b], gc[b], SR[b], zR[b], True, q[b], k[b], vals[b], bad[b],
                         out[b])
    for b in range(B):  # the state after the last chunk, in the array-API layout
        for i in range(dk):
            m1[b, i] = m[b, i]
            z1[b, i] = z[b, i]
            for j in range(dv):
                S1[b, i, j] = S[b, i, j]
        for j in range(dv):
            n1[b, j] = n[b, j] if log_values else lo


@numba.njit
def _ek_summary(k, vals, t0, log_values, lo, E, V, mc, nc, zc, Sc):
    """The summary of the chunk of C = E.shape[0] tokens from token t0 of one batch element (k (T, d_k),
    vals (T, d_v)): mc (d_k) key maxima, nc (d_v) value maxima (log values), E (C, d_k) = exp(k - mc),
    V (C, d_v) = exp(log_v - nc) or v (rows past T: 0), zc (d_k) = column sums of E (float64),
    Sc (d_k, d_v) = E^T V."""
    T, dk = k.shape
    C, dv = V.shape
    L = min(T, t0 + C) - t0
    X = np.empty((C, dk))
    _shifted(k, t0, L, -np.inf, mc, X)
    _vexp(X, np.empty((C, dk)), E)
    for i in range(dk):
        zc[i] = 0.0
    for s in range(L):
        for i in range(dk):
            zc[i] += E[s, i]
    if log_values:
        X2 = np.empty((C, dv))
        _shifted(vals, t0, L, lo, nc, X2)
        _vexp(X2, np.empty((C, dv)), V)
    else:
        V[:L] = vals[t0 : t0 + L]
        V[L:] = 0.0
    Sc[:, :] = np.dot(E[:L].T, V[:L])


@numba.njit
def _ek_scan(t0, g, m, n, S, z, m_, n_, S_, z_, mc, nc, zc, Sc, log_values, lo, M, fc, N, gc, SR, zR, fixing,
             q, k, vals, bad, out):
    """The state of one batch element before each of the g chunks of a segment from token t0, in
    order (float64: m, n, S, z merged with each chunk's summary mc, nc, zc, Sc at the shifts
    M = max(m, mc), N = max(n, nc)). Not fixing: m_ .. z_ = the state at the segment's start, then
    stores per chunk M, N, the summary's factors fc = exp(mc - M), gc = exp(nc - N) and the state
    shifted to (M, N) (SR in the input dtype, zR), and advances m .. z. Fixing: from m_ .. z_, rows
    flagged in bad (the segment's) are recomputed exactly (:func:`_ek_row`) from the state before
    their chunk (q, k (T, d_k), vals (T, d_v), out (T, d_v) of this batch element)."""
    dk, dv = S.shape
    T = q.shape[0]
    C = bad.shape[0] // mc.shape[0]
    if fixing:
        if not bad[: g * C].any():
            return
        m, n, S, z = m_.copy(), n_.copy(), S_.copy(), z_.copy()
    else:
        m_[:] = m
        n_[:] = n
        S_[:, :] = S
        z_[:] = z
    f, gg = np.empty(dk), np.ones(dv)
    fcc, gcc = np.empty(dk), np.ones(dv)
    for c in range(g):
        if fixing:
            for t in range(t0 + c * C, min(T, t0 + c * C + C)):
                if bad[t - t0]:
                    bad[t - t0] = 0
                    _ek_row(q, k, vals, t0 + c * C, t, m, n, S, z, log_values, lo, out[t])
        for i in range(dk):
            x = max(m[i], mc[c, i])
            f[i] = math.exp(m[i] - x)
            fcc[i] = math.exp(mc[c, i] - x)
            m[i] = x
        if log_values:
            for j in range(dv):
                x = max(n[j], nc[c, j])
                gg[j] = math.exp(n[j] - x)
                gcc[j] = math.exp(nc[c, j] - x)
                n[j] = x
        if not fixing:
            for i in range(dk):
                M[c, i] = m[i]
                fc[c, i] = fcc[i]
                zR[c, i] = z[i] * f[i]
            for j in range(dv):
                N[c, j] = n[j]
                gc[c, j] = gcc[j]
        for i in range(dk):
            z[i] = z[i] * f[i] + zc[c, i] * fcc[i]
            for j in range(dv):
                x = S[i, j] * f[i] * gg[j]
                if not fixing:
                    SR[c, i, j] = x
                S[i, j] = x + np.float64(Sc[c, i, j]) * fcc[i] * gcc[j]


@numba.njit
def _ek_out(q, t0, E, V, SR, zR, M, fc, N, gc, bound, log_values, lo, out, bad):
    """Outputs of the chunk of C = E.shape[0] tokens from token t0 of one batch element (q (T, d_k),
    out (T, d_v)) from the state before it shifted to (M, N) (SR, zR) and the chunk's E, V (E is
    rescaled in place by fc): A = exp(q + M - r) with r_t = max_i (q_ti + M_i), W = mask(A E'^T),
    num = A SR + (W V) gc, den = A zR + row sums of W. Rows whose lost mass may exceed eps of den (or
    of a log-value numerator) are flagged in bad (C,) instead (:func:`_ek_scan` recomputes them)."""
    T, dk = q.shape
    C, dv = V.shape
    wt = E.dtype
    L = min(T, t0 + C) - t0
    X = np.empty((L, dk))
    for t in range(L):
        r = -np.inf
        for i in range(dk):
            x = np.float64(q[t0 + t, i]) + M[i]
            X[t, i] = x
            r = max(r, x)
        for i in range(dk):
            X[t, i] -= r
    A = np.empty((L, dk), wt)
    _vexp(X, np.empty((L, dk)), A)
    Ec = E[:L]
    for s in range(L):
        for i in range(dk):
            Ec[s, i] *= fc[i]
    W = np.dot(A, Ec.T)
    den = np.empty(L)
    for t in range(L):
        x = 0.0
        for i in range(dk):
            x += np.float64(A[t, i]) * zR[i]
        for s in range(t + 1):
            x += W[t, s]
        for s in range(t + 1, L):
            W[t, s] = 0.0
        den[t] = x
    Y = np.dot(A, SR)
    Y2 = np.dot(W, V[:L])
    num = np.empty(dv)
    for t in range(L):
        ok = den[t] >= bound
        for j in range(dv):
            num[j] = np.float64(Y[t, j]) + np.float64(Y2[t, j]) * gc[j]
            if log_values:
                ok = ok and num[j] >= bound
        if ok:
            _ek_finish(num, den[t], N, log_values, lo, out[t0 + t])
        else:
            bad[t] = 1


@numba.njit(inline="always")
def _shifted(x, t0, L, floor, mx, X):
    """mx[:d] = max(floor, column maxima of x[t0 : t0 + L]) (x (T, d)); X[:L, :d] = max(x, floor) - mx
    (float64), X[L:, :d] = -1e300 (rows past the end: exponentials 0)."""
    d = x.shape[1]
    for j in range(d):
        mx[j] = max(np.float64(x[t0, j]), floor)
    for s in range(1, L):
        for j in range(d):
            mx[j] = max(mx[j], np.float64(x[t0 + s, j]))
    for s in range(L):
        for j in range(d):
            X[s, j] = max(np.float64(x[t0 + s, j]), floor) - mx[j]
    for s in range(L, X.shape[0]):
        for j in range(d):
            X[s, j] = -1e300


_LN2_HI, _LN2_LO, _INV_LN2 = 0.6931471803691238, 1.9082149292705877e-10, 1.4426950408889634
_ROUND = 6755399441055744.0  # 1.5 * 2^52: x + _ROUND - _ROUND rounds x to an integer
_ROUND_BITS = 0x4338000000000000  # its bit pattern


@numba.njit(inline="always")
def _vexp(x, s, y):
    """y = exp(x) elementwise (2-D arrays of one shape; x, s float64 scratch, both overwritten),
    0 for x <= -708; within 1 ulp of float64. Loops of plain arithmetic, so LLVM vectorises them
    (Numba's math.exp is a scalar libm call): x = k ln 2 + r, |r| <= ln 2 / 2, Taylor to r^12,
    times 2^k built in the exponent bits."""
    R, Q = x.shape
    for a in range(R):
        for c in range(Q):
            xi = x[a, c]
            xc = max(xi, -708.0)
            t = xc * _INV_LN2 + _ROUND
            kf = t - _ROUND
            r = (xc - kf * _LN2_HI) - kf * _LN2_LO
            p = 1.0 + r * (1.0 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (
                1 / 5040 + r * (1 / 40320 + r * (1 / 362880 + r * (1 / 3628800 + r * (1 / 39916800 + r / 479001600)))))))))))
            x[a, c] = p if xi > -708.0 else 0.0
            s[a, c] = t
    sb = s.view(np.int64)
    for a in range(R):
        for c in range(Q):
            sb[a, c] = (sb[a, c] - _ROUND_BITS + 1023) << 52
    for a in range(R):
        for c in range(Q):
            y[a, c] = x[a, c] * s[a, c]


@numba.njit
def _ek_row(q, k, vals, t0, t, Pm, Pn, PS, Pz, log_values, lo, dst):
    """Query t exactly (float64), from the state before its chunk (Pm, Pn, PS, Pz) and the chunk's
    keys t0 .. t, shifted by the maxima of the keys and values it sees."""
    dk, dv = q.shape[1], vals.shape[1]
    mv = np.empty(dk)
    nv = np.empty(dv)
    for i in range(dk):
        x = Pm[i]
        for s in range(t0, t + 1):
            x = max(x, np.float64(k[s, i]))
        mv[i] = x
    for j in range(dv):
        x = Pn[j]
        if log_values:
            for s in range(t0, t + 1):
                x = max(x, np.float64(vals[s, j]))
        nv[j] = x
    r = np.float64(q[t, 0]) + mv[0]
    for i in range(1, dk):
        r = max(r, np.float64(q[t, i]) + mv[i])
    num = np.zeros(dv)
    g = np.empty(dv)
    for j in range(dv):
        g[j] = math.exp(Pn[j] - nv[j]) if log_values else 1.0
    den = 0.0
    for i in range(dk):
        a = math.exp(np.float64(q[t, i]) + Pm[i] - r)
        den += a * Pz[i]
        for j in range(dv):
            num[j] += a * PS[i, j] * g[j]
    for s in range(t0, t + 1):
        w = 0.0
        for i in range(dk):
            w += math.exp(np.float64(q[t, i]) + np.float64(k[s, i]) - r)
        den += w
        for j in range(dv):
            x = math.exp(max(np.float64(vals[s, j]), lo) - nv[j]) if log_values else np.float64(vals[s, j])
            num[j] += w * x
    _ek_finish(num, den, nv, log_values, lo, dst)


# ---- log-linear Mamba-2 and Gated DeltaNet ------------------------------------------------------
#
# Chunks of C tokens aligned to absolute multiples of C (C a power of two, g = log2 C). At the start
# of an aligned chunk the Fenwick slots below g are empty and those from g up do not change inside
# it except by the chunk's transitions, which act on every slot alike; so with the WY / UT form of
# lsattn/gated_delta.py (chunk-local, zero incoming state: Attn, Qeff, Phi, the chunk transition
# P = A_{C-1} ... A_0 and write H = Phi V), per chunk:
#   out_t = ((Lambda * Attn) V)_t + sum_{occupied j >= g} lambda[t, j + 1] (Qeff S_j)_t,
#   S_j <- P S_j (every occupied slot), then the Fenwick merge at the chunk's end: H and the slots
#   g .. z - 1 become slot z = ctz(t0 + C).
# Groups of 2^LL_GROUP_LOG2 chunks (an aligned block of 2^h tokens), four parallel loops each: the
# chunk forms (independent: batch x chunks, so one sequence uses every thread); the group's prefix
# transitions E_c = P_{c-1} ... P_0 (per batch element); the reads of the slots from h up, which
# change inside the group only by its transitions, as (Qeff_c E_c) S_j (batch x chunks); the slots
# g .. h - 1 chunk by chunk with the merges, and the slots from h up carried by the group's total
# transition once (per batch element). Mamba-2 (A_t = e^{a_t} I) is the same with beta = 1, no
# solve and scalar transitions (P and E are 1 x 1). Tokens before the first / after the
# last aligned chunk run token by token (``_numba_kernels._token``). The state is float64;
# Gated DeltaNet's forms are float64 (the inputs are widened per chunk), Mamba-2's products and
# every slot read run in the input dtype (rounding relative, never accumulated). Every
# exponential is of a log-decay sum over the stretch it stands for (never a difference of
# cumulative sums), so -inf hard resets give exact zeros and strong decays cost no accuracy.


def ll_chunk_for(d_k, d_v):
    """The chunk size of :func:`ll_chunked`: the largest power of two from 8 up to 64 whose chunk
    products (C x d_k x C, C x C x C, d_k x C x d_k, C x C x d_v, C x d_k x d_v) are at most
    ``_BLAS_SINGLE`` (64 at d_k = d_v = 64: measured at B = 8, T = 4096, float32, 104 ms against
    128 ms at C = 32, 472 ms at C = 128 where OpenBLAS threads), 8 where none is."""
    C = 64
    while C > 8 and max(C * d_k * C, C * C * C, d_k * C * d_k, C * C * d_v, C * d_k * d_v) > _BLAS_SINGLE:
        C //= 2
    return C


#: log2 of the chunks of a group of :func:`ll_chunked` (an aligned block of 2^(g + LL_GROUP_LOG2)
#: tokens): slots from that level up are read through the group's transition products in
#: parallel over its chunks, the lower ones chunk by chunk
LL_GROUP_LOG2 = 2


@numba.njit(**_JIT)
def ll_chunked(q, k, v, log_decay, beta, lam, p, nlev, levels0, gated, C, split, out, levels1):
    """Log-linear Gated DeltaNet (gated) or Mamba-2, arguments as ``_numba_kernels.loglinear_scan``
    plus C, the chunk size (a power of two), and split: parallel loops over batch x chunks (for a
    batch smaller than the thread count, see :func:`split_for`) or one over the batch. q, k (B, T, d_k);
    v (B, T, d_v); log_decay, beta (B, T); lam (B, T, L); nlev = max(1, bit_length(p + T)); levels0
    (B, bit_length(p), d_k, d_v). Writes out (B, T, d_v) and, when levels1 has a slot axis, the
    final levels (B, bit_length(p + T), d_k, d_v)."""
    B, T, dk = q.shape
    dv = v.shape[2]
    g = 0
    while (1 << g) < C:
        g += 1
    head = min(T, (-p) % C)
    nch = (T - head) // C
    tail = head + nch * C
    S = np.zeros((B, nlev, dk, dv))
    D = np.zeros((B, nlev))
    for b in prange(B):  # the incoming levels, the tokens before the first aligned chunk
        for j in range(levels0.shape[1]):
            if (p >> j) & 1:
                for a in range(dk):
                    for c in range(dv):
                        S[b, j, a, c] = levels0[b, j, a, c]
        o, kS = np.empty(dv), np.empty(dv)
        for i in range(head):
            _token(q[b], k[b], v[b], log_decay[b], beta[b], lam[b], p, i, gated, S[b], D[b], o, kS, out[b])
        for j in range(nlev):  # lazy decays folded in: the chunks keep every slot decayed to date
            f = math.exp(D[b, j])
            for a in range(dk):
                for c in range(dv):
                    S[b, j, a, c] *= f
            D[b, j] = 0.0
    h = g + LL_GROUP_LOG2
    G = min(nch, 1 << LL_GROUP_LOG2)  # scratch of one group, allocated once
    dP = dk if gated else 1  # Mamba-2's transitions are scalars
    Qe = np.empty((B, G, C, dk))
    Pt = np.empty((B, G, dP, dP))
    H = np.empty((B, G, dk, dv))
    Ob = np.empty((B, G, C, dv))
    E = np.empty((B, G + 1, dP, dP))
    if split:  # four parallel loops per group: one sequence uses every thread
        c0 = 0
        while c0 < nch:
            n = _group_len(p + head, c0, nch, C, h)
            for task in prange(B * n):
                b, c = task // n, task % n
                _ll_forms(q[b], k[b], v[b], log_decay[b], beta[b], lam[b], head + (c0 + c) * C, gated, Qe[b, c],
                          Pt[b, c], H[b, c], Ob[b, c])
            for b in prange(B):
                _group_chain(Pt[b], E[b], n, gated)
            for task in prange(B * n):
                b, c = task // n, task % n
                _group_high(lam[b], p, head, c0, c, C, h, gated, Qe[b, c], E[b, c], S[b], Ob[b, c])
            for b in prange(B):
                _group_low(lam[b], p, head, c0, n, g, h, gated, Qe[b], Pt[b], H[b], Ob[b], E[b], S[b], out[b])
            c0 += n
    else:  # one parallel loop over the batch (one barrier per call: robust when a core is busy)
        for b in prange(B):
            c0 = 0
            while c0 < nch:
                n = _group_len(p + head, c0, nch, C, h)
                for c in range(n):
                    _ll_forms(q[b], k[b], v[b], log_decay[b], beta[b], lam[b], head + (c0 + c) * C, gated, Qe[b, c],
                              Pt[b, c], H[b, c], Ob[b, c])
                _group_chain(Pt[b], E[b], n, gated)
                for c in range(n):
                    _group_high(lam[b], p, head, c0, c, C, h, gated, Qe[b, c], E[b, c], S[b], Ob[b, c])
                _group_low(lam[b], p, head, c0, n, g, h, gated, Qe[b], Pt[b], H[b], Ob[b], E[b], S[b], out[b])
                c0 += n
    L1 = levels1.shape[1]
    end = p + T
    for b in prange(B):  # the tokens after the last aligned chunk, the levels layout
        o, kS = np.empty(dv), np.empty(dv)
        for i in range(tail, T):
            _token(q[b], k[b], v[b], log_decay[b], beta[b], lam[b], p, i, gated, S[b], D[b], o, kS, out[b])
        for j in range(L1):
            f = math.exp(D[b, j]) if (end >> j) & 1 else 0.0
            for a in range(dk):
                for c in range(dv):
                    levels1[b, j, a, c] = f * S[b, j, a, c]


@numba.njit(inline="always")
def _group_len(t_first, c0, nch, C, h):
    """Chunks of the group starting at chunk c0 (absolute start t_first + c0 C): up to the end of
    its aligned block of 2^h tokens or of the nch chunks."""
    t0 = t_first + c0 * C
    return min(nch - c0, ((((t0 >> h) + 1) << h) - t0) // C)


@numba.njit
def _group_chain(Pt, E, n, gated):
    """E[c] = P_{c-1} ... P_0 for c = 0 .. n (the group's transitions before chunk c; E[n] its total)."""
    E[0] = np.eye(E.shape[1])
    for c in range(n):
        _carry(Pt[c], E[c], E[c + 1], gated)


@numba.njit
def _group_high(lam, p, head, c0, c, C, h, gated, Qe, E, S, Ob):
    """Ob += the reads of the slots from h up by chunk c of the group (fixed in the group but for its
    transitions): lambda[t, j + 1] ((Qe E_c) S_j)_t, the product in the input dtype."""
    wt = lam.dtype
    R = np.dot(Qe, E) if gated else Qe * E[0, 0]
    i0 = head + (c0 + c) * C
    u, j = (p + head + c0 * C) >> h, h
    while u > 0:
        if u & 1:
            _add_read(np.dot(R.astype(wt), S[j].astype(wt)), lam, i0, j, Ob)
        u >>= 1
        j += 1


@numba.njit
def _group_low(lam, p, head, c0, n, g, h, gated, Qe, Pt, H, Ob, E, S, out):
    """The group's slots g .. h - 1 chunk by chunk (reads, transitions, merges), the slots from h up
    carried by the group's total transition E[n] before the last merge; writes the outputs."""
    C, dv = Ob.shape[1], Ob.shape[2]
    tmp = np.empty(S.shape[1:])
    for c in range(n):
        i0 = head + (c0 + c) * C
        _ll_pass(lam, p + i0, i0, g, h, gated, Qe[c], Pt[c], Ob[c], S, tmp)
        if c == n - 1:
            u, j = (p + head + c0 * C) >> h, h
            while u > 0:
                if u & 1:
                    _carry(E[n], S[j], tmp, gated)
                    S[j, :, :] = tmp
                u >>= 1
                j += 1
        _ll_merge(p + i0 + C, g, H[c], S)
        for t in range(C):
            for j in range(dv):
                out[i0 + t, j] = Ob[c, t, j]


@numba.njit
def _ll_forms(q, k, v, log_decay, beta, lam, i0, gated, Qe, Pt, H, Ob):
    """The forms of tokens i0 .. i0 + C - 1 of one batch element (q, k (T, d_k), v (T, d_v),
    log_decay, beta (T,), lam (T, L)), C = Qe.shape[0], zero incoming state: Qe (C, d_k) =
    (A_t ... A_0)^T q_t, Pt (d_k, d_k) = A_{C-1} ... A_0, H (d_k, d_v) = the chunk's write carried
    to its end, Ob (C, d_v) = (Lambda * Attn) V (the outputs of pairs inside the chunk), Lambda[t, s]
    = lambda[t, bit_length(t xor s)]. Gated: the WY forms of lsattn/gated_delta.py ``_chunk_forms``,
    in float64. Mamba-2 (A_t = e^{a_t} I): Attn = D * Q K^T, Qe = e^G Q, H = (e^{suffix} K)^T V,
    products in the input dtype, and Pt is 1 x 1: e^g (see :func:`_carry`)."""
    C = Qe.shape[0]
    Dm = np.zeros((C, C))  # e^{a_{s+1} + ... + a_t}, s <= t, summed over that stretch
    for t in range(C):
        seg = 0.0
        for s in range(t, -1, -1):
            Dm[t, s] = math.exp(seg)
            seg += np.float64(log_decay[i0 + s])
    eG = np.empty(C)  # e^{a_0 + ... + a_t}
    suf = np.empty(C)  # e^{a_{s+1} + ... + a_{C-1}}
    run = 0.0
    for t in range(C):
        run += np.float64(log_decay[i0 + t])
        eG[t] = math.exp(run)
    run = 0.0
    for s in range(C - 1, -1, -1):
        suf[s] = math.exp(run)
        run += np.float64(log_decay[i0 + s])
    if gated:
        attn = _gd_forms(q, k, v, beta, i0, Dm, eG, suf, Qe, Pt, H)
        _level_mask(attn, lam, i0)
        V = np.empty((C, v.shape[1]))
        V[:, :] = v[i0 : i0 + C]
        Ob[:, :] = np.dot(attn, V)
    else:
        wt = q.dtype
        vc = v[i0 : i0 + C]
        A = np.dot(q[i0 : i0 + C], k[i0 : i0 + C].T)
        for t in range(C):
            for s in range(C):
                A[t, s] *= Dm[t, s]
        _level_mask(A, lam, i0)
        SK = np.empty(k[i0 : i0 + C].shape, wt)
        for s in range(C):
            for i in range(SK.shape[1]):
                SK[s, i] = suf[s] * k[i0 + s, i]
                Qe[s, i] = eG[s] * q[i0 + s, i]
        Pt[0, 0] = eG[C - 1]
        H[:, :] = np.dot(SK.T, vc)
        Ob[:, :] = np.dot(A, vc)


@numba.njit(inline="always")
def _level_mask(A, lam, i0):
    """A[t, s] *= lambda[i0 + t, bit_length(t xor s)] for s <= t, 0 above the diagonal."""
    C = A.shape[0]
    for t in range(C):
        for s in range(t + 1):
            x, lv = t ^ s, 0
            while x > 0:
                x >>= 1
                lv += 1
            A[t, s] *= lam[i0 + t, lv]
        for s in range(t + 1, C):
            A[t, s] = 0.0


@numba.njit
def _gd_forms(q, k, v, beta, i0, Dm, eG, suf, Qe, Pt, H):
    """Gated DeltaNet's WY forms (float64) of tokens i0 .. i0 + C - 1 from the decays Dm, eG, suf of
    :func:`_ll_forms`: writes Qe, Pt, H; returns Attn (C, C), beta_s q_t^T A_t ... A_{s+1} k_s."""
    C, dk = Qe.shape
    dv = v.shape[1]
    Q = np.empty((C, dk))
    K = np.empty((C, dk))
    V = np.empty((C, dv))
    Q[:, :] = q[i0 : i0 + C]
    K[:, :] = k[i0 : i0 + C]
    V[:, :] = v[i0 : i0 + C]
    QK = np.dot(Q, K.T)
    KK = np.dot(K, K.T)
    X = np.zeros((C, C))  # (I + N)^{-1} diag(beta), N[i, r] = beta_i Dm[i, r] (k_i . k_r), r < i
    for i in range(C):
        bi = np.float64(beta[i0 + i])
        X[i, i] = bi
        for r in range(i):
            nir = bi * Dm[i, r] * KK[i, r]
            if nir != 0.0:
                for c in range(r + 1):
                    X[i, c] -= nir * X[r, c]
    SK = np.empty((C, dk))
    for t in range(C):
        for s in range(C):
            QK[t, s] *= Dm[t, s]
        for i in range(dk):
            SK[t, i] = suf[t] * K[t, i]
            K[t, i] *= eG[t]  # e^G K
            Q[t, i] *= eG[t]  # e^G Q
    attn = np.dot(QK, X)  # beta_s q_t^T A_t ... A_{s+1} k_s (lower triangular)
    Qe[:, :] = Q - np.dot(attn, K)
    phi = np.dot(SK.T, X)  # column s: beta_s A_{C-1} ... A_{s+1} k_s
    Pt[:, :] = -np.dot(phi, K)
    for i in range(dk):
        Pt[i, i] += eG[C - 1]
    H[:, :] = np.dot(phi, V)
    return attn


@numba.njit
def _ll_pass(lam, t0, i0, g, h, gated, Qe, Pt, Ob, S, tmp):
    """One aligned chunk (absolute start t0 = p + i0, a multiple of C = 2^g) through the slots g ..
    h - 1 of S (nlev, d_k, d_v; float64, decayed to date): Ob += the reads of each occupied one
    (lambda[t, j + 1] (Qe S_j)_t), each carried by Pt."""
    u, j = (t0 >> g) & ((1 << (h - g)) - 1), g
    while u > 0:  # occupied slots g .. h - 1: the set bits of t0
        if u & 1:
            _add_read(np.dot(Qe.astype(lam.dtype), S[j].astype(lam.dtype)), lam, i0, j, Ob)
            _carry(Pt, S[j], tmp, gated)
            S[j, :, :] = tmp
        u >>= 1
        j += 1


@numba.njit(inline="always")
def _add_read(Y, lam, i0, j, Ob):
    """Ob[t] += lambda[i0 + t, j + 1] Y[t]: the read of slot j (level j + 1)."""
    for t in range(Ob.shape[0]):
        w = lam[i0 + t, j + 1]
        for c in range(Ob.shape[1]):
            Ob[t, c] += w * Y[t, c]


@numba.njit(inline="always")
def _ll_merge(end, g, H, S):
    """The Fenwick merge at the end of a chunk (absolute end a multiple of 2^g): its write H and
    the slots g .. z - 1 become slot z = ctz(end)."""
    u, z = end, 0
    while (u & 1) == 0:
        u >>= 1
        z += 1
    S[z, :, :] = H
    for j in range(g, z):
        S[z] += S[j]


@numba.njit(inline="always")
def _carry(Pt, X, Y, gated):
    """Y = Pt X (gated; in blocks of rows, each product at most ``_BLAS_SINGLE``), else Y = Pt[0, 0] X
    (a Mamba-2 transition is a scalar)."""
    if not gated:
        f = Pt[0, 0]
        for i in range(X.shape[0]):
            for c in range(X.shape[1]):
                Y[i, c] = f * X[i, c]
        return
    m, kk = Pt.shape
    n = X.shape[1]
    r = m
    while r > 1 and r * kk * n > _BLAS_SINGLE:
        r = (r + 1) // 2
    for i in range(0, m, r):
        e = min(m, i + r)
        Y[i:e] = np.dot(Pt[i:e], X)
