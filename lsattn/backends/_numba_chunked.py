"""Numba CPU kernels in chunked (blocked) form: the work of a chunk of ``C`` tokens as small matrix
products, parallel over batch elements *and* chunks.

Causal exp-kernel / log attention (:func:`ek_chunked`); log-linear Mamba-2 / Gated DeltaNet are
in ``_numba_ll_chunked``.

Imported only when the ``numba`` backend runs a long causal call (``numba_cpu`` chooses between
these and the token-by-token kernels of ``_numba_kernels`` by size). Needs SciPy (the log-linear kernels'
products, :func:`_gemm`, call SciPy's BLAS).

Causal exp-kernel attention (:func:`ek_chunked`), per batch element, chunks of ``C`` tokens (64 at
d = 64), each with ONE shift per feature for the state and the chunk, ``M = max(m, key maxima of
the chunk)`` (``N`` likewise for log values; ``f = exp(m - M)``, ``g = exp(n - N)``):

1. ``E = exp(k - M)`` (``C x d_k``), ``V = exp(log_v - N)`` or ``v`` (``C x d_v``);
2. *reads*: queries ``A = exp(q + M - r)`` with ``r_t = max_i (q_ti + M_i)``; ``num = A S' +
   mask(A E^T) V`` (``S' = f S g`` the state at the chunk's shifts), per block b of h rows
   (:func:`_tri_block`) one product ``[A_b | W_bb] [S'_b ; V_b]`` with ``S'_b = S' + U_<b`` (the
   chunk's prefix, ``U_<b`` the earlier blocks' ``E_b^T V_b``) and ``W_bb = mask(A_b E_b^T)`` the
   diagonal block only; ``den = A_b z'_b + row sums of W_bb`` (float64, ``z'_b`` likewise);
3. *merge*: ``S <- f S g + U`` (``U = E^T V``, summed block by block in step 2), ``z <- f z + column
   sums of E``, ``m <- M``.

Products through ``_numba_simd``'s register-blocked :func:`mm` / :func:`mmt` on strided sub-blocks, by
address (no packing: 2-3x OpenBLAS's Haswell kernels on these shapes, NOTES s28b); the exponentials and the logarithms of log-value
outputs are polynomials in the input dtype (:func:`_expw`, :func:`_logw`; ``log den`` and the shift factors in
float64, :func:`_log64`, :func:`_exp64s`), one loop per tile or row so that they vectorise.

Parallel over batch elements, and for a batch smaller than the thread count over ``P`` *parts* of
each sequence in two parallel loops (:func:`_part_bounds`): first part 0 runs its first chunks in
full while part ``j >= 1`` summarises the ``j``-th piece of chunks from the empty state, then part
``j`` merges part 0's state with the summaries of pieces 1 .. ``j`` (:func:`_ek_merge`: its
incoming state) and runs its own chunks in full (one sequence on 2 threads: 14-15% + 44% / 40-42%
of the chunks; no summary computed twice). A summarising part keeps each chunk's column maxima of k
and log v (:data:`KEEP_SAVED`): the part that runs those chunks in full reads them instead of its own pass
over the tiles. No scratch beyond one chunk and one state per task and the maxima, T / C (d_k + d_v).

``M`` includes keys of the chunk a query may not see yet, so a visible term can underflow where the
token-by-token scan keeps it (the same reason the array-API path reads chunks as a tree). Every lost
term is below the working dtype's ``tiny`` times a known count, so a row whose ``den`` (or, for log
values, a numerator) is not at least ``1 / eps`` times that bound is recomputed exactly from the
state before the chunk with the shifts of the keys it sees (:func:`_ek_row`); ordinary inputs never
take it, large magnitudes and ``log_v = -inf`` columns do. Products run in the input dtype (float32
inputs: float32 products, entries in ``[0, 1]``, rounding relative); the state is accumulated in float64.
"""
from __future__ import annotations

import math

import numba
import numba.extending
import numpy as np
from numba import prange, types

from ._numba_kernels import _ek_finish
from ._numba_simd import isz_lanes, mm, mmt, vld, vmaxo, vnanacc, vsplat, vst, vzero

_JIT = dict(parallel=True, cache=True, nogil=True)
#: fused multiply-add allowed (no other fast-math flag): LLVM then vectorises the exponentials
_FM = {"contract"}


#: the column maxima of float32 tiles as 64-byte vectors (:func:`_col_max_v`; float64 keeps the scalar loop: its
#: vector form was 1-3% slower in float64 log on an AVX2 host, NOTES s28b try 3), s29c
COLMAX_VEC32 = True

#: OpenBLAS runs a product of m n k >= 262144 flops / 2 on its own threads; called from every Numba
#: thread at once on a busy machine that was 5-10x slower (measured at C = 64, d = 64), so chunks
#: are sized to keep every product of a chunk below it
_BLAS_SINGLE = 262144


def chunk_for(d_k, d_v):
    """The chunk size of :func:`ek_chunked`: 128 where blocks of 16 rows (:func:`_tri_block`) keep
    every product (16 x d_k x 16, 16 x (d_k + 16) x d_v, d_k x 16 x d_v) at most ``_BLAS_SINGLE``
    (d_k = d_v = 64: products do not grow with C, and the state's per-chunk work halves against C =
    64); else the largest power of two from 8 up to 64 whose four products (d_k x C x d_v, C x d_k x
    d_v, C x d_k x C, C x C x d_v) are, 8 where none is."""
    if max(16 * (d_k + 16) * d_v, d_k * 16 * d_v) <= _BLAS_SINGLE:
        return 128
    C = 64
    while C > 8 and max(d_k * C * d_v, C * d_k * C, C * C * d_v) > _BLAS_SINGLE:
        C //= 2
    return C


def parts(B):
    """Parallel parts of each sequence for :func:`ek_chunked`: 1 when the batch alone fills Numba's
    threads, else ceil(threads / B) (2 for one sequence on 2 cores)."""
    threads = numba.get_num_threads()
    return 1 if B >= threads else -(-threads // B)


#: cost of a chunk's summary (its keys' exponentials, ``E^T V`` and the merge) relative to its whole
#: work (summary and reads), (exp-kernel, log values): sizes the head start of :func:`_part_bounds`
#: (measured single-threaded, B = 1, T = 65536, d = 64, float32, summary products of 64 rows: 0.353 both
#: on session 17's AVX-512 host, 0.317-0.320 / 0.327-0.336 on session 23's AVX2 one with OpenBLAS's products;
#: 0.409 / 0.411 on session 28's AVX2 host with ``_numba_simd``'s, which cut the reads' products more than the
#: summary's; benchmarks/NOTES.md, s16e20, s17f20, s23c20, s28b)
SUMMARY_COST = (0.41, 0.41)

#: what a full chunk saves by reading the column maxima kept by the part that summarised it (the
#: passes of :func:`_col_max` over its k and log v tiles), relative to its whole work, (exp-kernel,
#: log values) for float32 and float64 inputs (:func:`_keep_saved`): 0.040-0.044 / 0.075-0.088 in both on session 23's
#: host (s23c20); since float32's maxima run as vectors (COLMAX_VEC32) -0.008 / -0.001 float32, 0.059 / 0.108 float64
#: (one core of session 30's Zen 5 host, ``cpu_ab_ek.py keep 15 1 65536``: nothing saved in float32)
KEEP_SAVED = ((0.0, 0.0), (0.06, 0.11))


@numba.njit
def _keep_saved(itemsize, log_values):
    """KEEP_SAVED of inputs of ``itemsize`` bytes (4: float32, 8: float64), exp-kernel or log values."""
    return KEEP_SAVED[1 if itemsize == 8 else 0][1 if log_values else 0]


@numba.njit
def _part_bounds(nch, P, cost, saved):
    """Chunk bounds b (P + 2 entries) of :func:`ek_chunked`'s two passes over one sequence in P
    parts: first part 0 runs chunks b[0] .. b[1] - 1 in full while part j >= 1 summarises chunks
    b[j] .. b[j + 1] - 1 alone (``cost`` of a full chunk each); then part j runs b[j + 1] .. b[j + 2]
    - 1 in full, ``1 - saved`` a chunk where part j + 1 summarised them (kept maxima), 1 for the last
    part. Equal times: the head start b[1] = cost w, P - 1 pieces of w and the last of (1 - saved) w,
    w = nch / (P + cost - saved)."""
    w = nch / (P + cost - saved)
    b = np.empty(P + 2, np.int64)
    b[0] = 0
    for j in range(1, P + 1):
        b[j] = min(nch, int(round(cost * w + (j - 1) * w)))
    b[P + 1] = nch
    return b


@numba.njit(**_JIT)
def ek_chunked(q, k, vals, rows, seg, m0, n0, S0, z0, log_values, lo, C, parts, out, m1, n1, S1, z1):
    """Causal exp-kernel attention in chunks of C tokens. q, k (B, T, d_k); vals (B, T, d_v) (log
    values when log_values); seg (N + 1,) int64: the tokens ``seg[i] .. seg[i + 1] - 1`` are stream
    ``i`` (``[0, T]``: one stream); incoming states of the ``B N`` streams (row ``b N + i``) m0
    (B N, d_k), n0 (B N, d_v) (unused unless log_values), S0 (B N, d_k, d_v), z0 (B N, d_k); lo: the
    finite "minus infinity"; parts: parallel parts of each sequence (see :func:`parts`; one stream
    only). Writes out (B, T, d_v) and the final states into m1, n1, S1, z1 (the array-API layout).
    One ``prange`` iteration per (batch element, stream) when P = 1; otherwise two parallel loops
    over (batch element, part) (:func:`_part_bounds`): the first runs part 0's first chunks and the
    other parts' summaries of the chunks before them (keeping those chunks' column maxima), the second
    every part's own chunks from the state these summaries give it.

    Returns a count of non-finite inputs (columns of a chunk's q, k, vals; ``-inf`` log values
    pass; the prologue's ``KernelCheck``, counted in each chunk's own first pass over its tiles): 0, or at least 1 when
    some entry is NaN or infinite, and then out and the state are undefined (a part stops at its
    first such chunk: the caller computes again from sanitised inputs)."""
    B = rows.shape[1]  # row b of input i: its row rows[i, b] (broadcast inputs: shared rows)
    N = seg.shape[0] - 1
    P = max(parts, 1) if N == 1 else 1
    dk, dv = q.shape[2], vals.shape[2]
    nch = (seg[N] - seg[0] + C - 1) // C  # one stream when P > 1
    lv = 1 if log_values else 0
    bd = _part_bounds(nch, P, SUMMARY_COST[lv], _keep_saved(q.itemsize, log_values))
    # after the first pass: part 0's state after its first chunks, part j's summary of its piece
    Hm = np.empty((B * P if P > 1 else 0, dk))
    Hn = np.empty((Hm.shape[0], dv + 1))
    HS = np.empty((Hm.shape[0], dk, dv + 1))
    # the summarised chunks' column maxima of k and vals (row c: chunk c; written by part j >= 1's summary)
    KX = np.empty((B if P > 1 else 1, nch if P > 1 else 0, dk + dv), q.dtype)
    bad = np.zeros(B * N * P, np.int64)  # non-finite entries per task (B P first-pass tasks when P > 1, N = 1)
    if P > 1:
        for task in prange(B * P):
            b, j = task // P, task % P
            s0, s1 = seg[0], seg[1]
            bad[task] += _ek_first(q[rows[0, b], s0:s1], k[rows[1, b], s0:s1], vals[rows[2, b], s0:s1], m0[b], n0[b],
                                   S0[b], z0[b], log_values, lo, C, j, bd, Hm[task], Hn[task], HS[task], out[b, s0:s1],
                                   KX[b])
    first = bad.copy()  # a sequence with a non-finite entry stops here (the kept maxima after it are unset)
    for task in prange(B * N * P):
        row, j = task // P, task % P
        b, sg = row // N, row % N
        s0, s1 = seg[sg], seg[sg + 1]
        if P > 1 and first[b * P : b * P + P].sum():
            continue
        bad[task] += _ek_part(q[rows[0, b], s0:s1], k[rows[1, b], s0:s1], vals[rows[2, b], s0:s1], m0[row], n0[row],
                              S0[row], z0[row], log_values, lo, C, P, j, bd, Hm[b * P : b * P + P],
                              Hn[b * P : b * P + P], HS[b * P : b * P + P], out[b, s0:s1], m1[row], n1[row], S1[row],
                              z1[row], KX[b if P > 1 else 0])
    return bad.sum()


@numba.njit
def _ek_first(q, k, vals, m0, n0, S0, z0, log_values, lo, C, j, bd, m, n, Ss, out, KX):
    """The first pass of part ``j`` of one stream (arguments as :func:`_ek_part`): part 0 runs chunks
    bd[0] .. bd[1] - 1 in full from the incoming state, part j >= 1 summarises chunks bd[j] .. bd[j +
    1] - 1 from the empty state and keeps their column maxima in KX; the state after them into m, n, Ss.
    Returns :func:`_ek_chunks`' count."""
    if j == 0:
        _ek_load(m0, n0, S0, z0, log_values, m, n, Ss)
    else:
        _ek_fresh(log_values, lo, m, n, Ss)
    return _ek_chunks(q, k, vals, bd[j], bd[j + 1], j == 0, m, n, Ss, z0, log_values, lo, C, out, KX, j > 0)


@numba.njit
def _ek_part(q, k, vals, m0, n0, S0, z0, log_values, lo, C, P, j, bd, Hm, Hn, HS, out, m1, n1, S1, z1, KX):
    """The second pass of part ``j`` of ``P`` of one stream (q, k (T, d_k), vals (T, d_v), its state
    m0 (d_k), ...; P = 1: the whole stream): its own chunks from part 0's state after the first pass
    (Hm[0], Hn[0], HS[0]) merged with the summaries of parts 1 .. j, with the column maxima that part
    j + 1 kept in KX (nch, d_k + d_v) when j < P - 1; the last part writes the state.
    Returns :func:`_ek_chunks`' count of non-finite entries (not 0: no state written)."""
    dk, dv = S0.shape
    m, n, Ss = np.empty(dk), np.empty(dv + 1), np.empty((dk, dv + 1))
    if P == 1:
        _ek_load(m0, n0, S0, z0, log_values, m, n, Ss)
        c0, c1 = 0, (q.shape[0] + C - 1) // C
    else:
        m[:] = Hm[0]
        n[:] = Hn[0]
        Ss[:, :] = HS[0]
        for i in range(1, j + 1):
            _ek_merge(m, n, Ss, Hm[i], Hn[i], HS[i])
        c0, c1 = bd[j + 1], bd[j + 2]
    bad = _ek_chunks(q, k, vals, c0, c1, True, m, n, Ss, z0, log_values, lo, C, out, KX, j < P - 1)
    if bad:
        return bad
    if j == P - 1:  # the state after the last chunk, in the array-API layout
        for i in range(dk):
            m1[i] = m[i]
            z1[i] = Ss[i, dv]
            for c in range(dv):
                S1[i, c] = Ss[i, c]
        for c in range(dv):
            n1[c] = n[c] if log_values else lo
    return 0


@numba.njit
def _ek_load(m0, n0, S0, z0, log_values, m, n, Ss):
    """The incoming state m0 (d_k), n0 (d_v), S0 (d_k, d_v), z0 (d_k) as the float64 working state:
    m, n (d_v + 1; entry d_v the z column's zero shift) and Ss = [S | z] (d_k, d_v + 1)."""
    dk, dv = S0.shape
    for i in range(dk):
        m[i] = m0[i]
        Ss[i, dv] = z0[i]
        for c in range(dv):
            Ss[i, c] = S0[i, c]
    for c in range(dv):
        n[c] = n0[c] if log_values else 0.0
    n[dv] = 0.0


@numba.njit
def _ek_fresh(log_values, lo, m, n, Ss):
    """The empty working state (shifts lo, sums 0) that a piece's summary starts from."""
    m[:] = lo
    n[:] = lo if log_values else 0.0
    n[n.shape[0] - 1] = 0.0
    Ss[:, :] = 0.0


@numba.njit
def _ek_merge(m, n, Ss, m2, n2, Ss2):
    """The working state (m, n, Ss) followed by the summary (m2, n2, Ss2) of the chunks after it:
    both shifted to the larger maxima (factors <= 1) and added, in place."""
    dk, dw = Ss.shape
    g, g2 = np.empty(dw), np.empty(dw)
    for c in range(dw):
        N = max(n[c], n2[c])
        g[c], g2[c] = math.exp(n[c] - N), math.exp(n2[c] - N)
        n[c] = N
    for i in range(dk):
        M = max(m[i], m2[i])
        f, f2 = math.exp(m[i] - M), math.exp(m2[i] - M)
        m[i] = M
        for c in range(dw):
            Ss[i, c] = Ss[i, c] * f * g[c] + Ss2[i, c] * f2 * g2[c]


@numba.njit(fastmath=_FM, error_model="numpy")
def _ek_chunks(q, k, vals, c_lo, c_hi, full, m, n, Ss, z0, log_values, lo, C, out, KX, kept):
    """Chunks c_lo .. c_hi - 1 of one stream (q, k (T, d_k), vals (T, d_v)) from the float64 working
    state m (d_k), n (d_v + 1), Ss = [S | z] (d_k, d_v + 1), updated in place: their outputs into out
    (T, d_v) when ``full``, else only their summaries merged into the state. z0: the stream's incoming
    z (the bound of the exact-row test). ``kept``: chunk c's column maxima of k and (log values) vals,
    in the input dtype, are KX[c, :d_k], KX[c, d_k:] (written by a summary, read by a full pass instead
    of its own :func:`_col_max`: the same values). Returns a count of the non-finite inputs (columns) of
    the chunks' k, vals (``-inf`` log values pass; not where read from KX: the summary counted them) and,
    when ``full``, q, counted in the loops that first read each tile; a chunk with one ends the loop (the
    caller drops the results).

    Per chunk, in the input dtype: ``E = exp(k - M)``, ``[A | W]`` (C x (d_k + h): the queries'
    exponentials, then block b's ``W_bb = A_b E_b^T`` of its ``h`` rows, upper triangle zeroed) and
    ``V`` in rows d_k .. of ``SV`` ((d_k + C) x d_v); block b writes its state ``S'_b = S' + U_<b``
    into rows ``h b .. h b + d_k`` (over the rows of ``V_<b``, already summed into ``U``), so that its
    output rows are ONE product ``[A_b | W_bb] [S'_b ; V_b]`` (:func:`mm` on sub-blocks: no copies),
    then ``U += E_b^T V_b``: 1.31 M flops per chunk of 64 at d = 64 against 1.70 M for ``[A_b | W_b]
    [S' ; V_<=b]`` with every block of ``W`` below the diagonal. ``den`` and the state in float64."""
    T, dk = q.shape
    dv = vals.shape[1]
    wt = q.dtype
    h = _tri_block(C)
    # rows per product of a summary-only chunk: the largest hs = h 2^i <= C with d_k d_v hs <= _BLAS_SINGLE (64 at
    # d = 64: two calls per chunk of 128 instead of eight of h = 16 rows; the summary 6-8% cheaper, NOTES s16e20)
    hs = h
    while 2 * hs <= C and dk * dv * 2 * hs <= _BLAS_SINGLE:
        hs *= 2
    zmax = 0.0
    for i in range(dk):
        zmax = max(zmax, np.float64(z0[i]))
    # lost mass of one output entry, in units of its shift: each product that underflowed (or met
    # an exponential flushed to 0 below the dtype's tiny) is below 4 tiny, and there are at most d_k
    # of them from the state (weight <= z <= zmax + T each) and C (d_k + 1) from the chunk (d_k + 1 per key
    # of the diagonal block, d_k per earlier key through S'_b; the d_k products A_b S'_b are the state's)
    bound = 4 * np.finfo(wt).tiny * (dk * (zmax + T + 1.0) + C * (dk + 1)) / np.finfo(wt).eps
    E = np.zeros((C, dk), wt)  # exp(k - M), padded rows 0
    AW = np.zeros((C, dk + h), wt)  # [A | W]: A = exp(q + M - r), W = mask(A_b E_b^T) per block of h rows
    # rows dk ..: V = exp(log_v - N) or v (padded rows 0); rows r0 .. r0 + dk: S'_b, block b's state (over V_<b)
    SV = np.zeros((dk + C, dv), wt)
    S1 = np.empty((dk, dv), wt)  # S': the state at the chunk's shifts
    Y = np.empty((C, dv), wt)
    U = np.empty((dk, dv), wt)
    M, N = np.empty(dk), np.zeros(dv + 1)
    Mw, Nw = np.empty(dk, wt), np.empty(dv, wt)
    ckk, ckv = np.empty(dk, wt), np.zeros(dv, wt)  # the finiteness sums of _col_max
    f, g, zs = np.empty(dk), np.ones(dv), np.empty(dk)
    Xw, ckq = np.empty((C, dk), wt), np.zeros(dk, wt)  # the queries' exponents; their finiteness sums
    D, LD = np.empty(C), np.empty(C)  # den per row (float64) and its logarithm
    low = np.full(1, lo, wt)[0]
    inf = np.full(1, np.inf, wt)[0]
    isz = E.itemsize
    nf = 0  # non-finite inputs read (a count, not a branch: q's compares, k's and vals' sums vectorise with the loops)
    for c in range(c_lo, c_hi):
        t0 = c * C
        L = min(T, t0 + C) - t0
        # the blocks' addresses for mm / mmt (taken in the loop: every array stays alive through it)
        pE, pAW, pSV, pY, pU = E.ctypes.data, AW.ctypes.data, SV.ctypes.data, Y.ctypes.data, U.ctypes.data
        # M = max(m, key maxima), f = exp(m - M); keys with a NaN or infinite entry counted
        if kept and full:
            for i in range(dk):
                Mw[i] = KX[c, i]
        else:
            nf += _col_max(k, t0, L, -inf, False, Mw, ckk)
            if kept:
                for i in range(dk):
                    KX[c, i] = Mw[i]
        _shift_to(m, Mw, M, f)
        if log_values:  # N likewise for the log values (-inf: a zero value)
            if kept and full:
                for j in range(dv):
                    Nw[j] = KX[c, dk + j]
            else:
                nf += _col_max(vals, t0, L, low, True, Nw, ckv)
                if kept:
                    for j in range(dv):
                        KX[c, dk + j] = Nw[j]
            _shift_to(n, Nw, N, g)
        else:
            for s in range(L):
                for j in range(dv):
                    x = vals[t0 + s, j]
                    ckv[j] += x - x  # NaN for NaN or +-inf (see _col_max)
                    SV[dk + s, j] = x
            for j in range(dv):
                nf += not ckv[j] == 0.0
                ckv[j] = 0.0
        if nf:
            return nf
        for s in range(L):  # in the input dtype: k - M rounded once, as the argument of exp
            for i in range(dk):
                E[s, i] = _expw(k[t0 + s, i] - Mw[i])
        if log_values:
            for s in range(L):
                for j in range(dv):
                    SV[dk + s, j] = _expw(max(vals[t0 + s, j], low) - Nw[j])
        if L < C:
            E[L:] = 0.0
            SV[dk + L:] = 0.0
            AW[L:] = 0.0
        if full:
            for i in range(dk):
                zs[i] = Ss[i, dv] * f[i]
                for j in range(dv):
                    S1[i, j] = SV[i, j] = Ss[i, j] * f[i] * g[j]
            for t in range(L):
                # r = max_i (q_ti + M_i) in float64, as the largest order key (:func:`_okey`: an integer maximum
                # vectorises, a float one is a serial chain); the arguments q + M - r in float64 (exact),
                # rounded once to the input dtype; q's NaN or infinite entries counted by columns (_col_max)
                rk = _OKEY_LOW
                for i in range(dk):
                    b = _okey(np.float64(q[t0 + t, i]) + M[i])
                    rk = b if b > rk else rk
                r = _okey_value(rk)
                for i in range(dk):
                    x = q[t0 + t, i]
                    ckq[i] += x - x
                    Xw[t, i] = (np.float64(x) + M[i]) - r
            for i in range(dk):
                nf += not ckq[i] == 0.0
            if nf:
                return nf
            for t in range(L):
                for i in range(dk):
                    AW[t, i] = _expw(Xw[t, i])
            for r0 in range(0, L, h):
                r1 = r0 + h
                if r0 > 0:  # S'_b = S' + U_<b over the rows of V_<b (summarised: no longer read)
                    for i in range(dk):
                        for j in range(dv):
                            SV[r0 + i, j] = S1[i, j] + U[i, j]
                pa = pAW + r0 * (dk + h) * isz  # [A_b | W_bb]
                mmt(h, h, dk, pa, dk + h, pE + r0 * dk * isz, dk, pa + dk * isz, dk + h, True, low)  # W_bb = A_b E_b^T
                _block_den(AW, r0, h, dk, zs, D)  # W_bb's upper triangle zeroed, den
                mm(h, dv, dk + h, pa, dk + h, 1, pSV + r0 * dv * isz, dv, pY + r0 * dv * isz, dv, False,
                   low)  # Y_b = [A_b | W_bb][S'_b ; V_b]
                mm(dk, dv, h, pE + r0 * dk * isz, 1, dk, pSV + (dk + r0) * dv * isz, dv, pU, dv, r0 > 0,
                   low)  # U += E_b^T V_b
                for s in range(r0, r1):
                    for i in range(dk):
                        zs[i] += np.float64(E[s, i])
            if log_values:
                for t in range(L):  # the polynomial: vectorised (math.log is a scalar libm call); D > 0 where used
                    LD[t] = _log64(max(D[t], bound))
            for t in range(L):
                # each row in one vectorised pass; rows that fail the test (a count, not a short-circuit
                # loop) are overwritten by the exact one
                bad = 0
                if log_values:
                    for j in range(dv):
                        yw = Y[t, j]
                        bad += not (yw >= bound)
                        y = np.float64(_logw(yw)) + (N[j] - LD[t])
                        out[t0 + t, j] = y if y > lo / 2 else -np.inf
                else:
                    rd = 1.0 / D[t]
                    for j in range(dv):
                        out[t0 + t, j] = np.float64(Y[t, j]) * rd
                if bad or not D[t] >= bound:
                    _ek_row(q, k, vals, t0, t0 + t, m, n, Ss, log_values, lo, out[t0 + t])
        else:  # the chunk's summary at the shifts M, N alone (full: summed block by block above)
            for r0 in range(0, L, hs):
                mm(dk, dv, min(hs, L - r0), pE + r0 * dk * isz, 1, dk, pSV + (dk + r0) * dv * isz, dv, pU, dv, r0 > 0,
                   low)  # U += E_s^T V_s
            for i in range(dk):
                zs[i] = Ss[i, dv] * f[i]
            for s in range(L):
                for i in range(dk):
                    zs[i] += np.float64(E[s, i])
        for i in range(dk):  # merged into the state
            Ss[i, dv] = zs[i]
            for j in range(dv):
                Ss[i, j] = Ss[i, j] * f[i] * g[j] + np.float64(U[i, j])
            m[i] = M[i]
        for j in range(dv):
            n[j] = N[j]
    return nf


@numba.njit
def _tri_block(C):
    """Rows h per block of :func:`_ek_chunks`: 16 for C = 64, 80, 96, ..., C / 4 for C = 16, 32, 48 (or
    any other multiple of 4 from 16), else the whole chunk (each block reads the chunk's prefix ``S'_b``
    and its own diagonal block only)."""
    if C >= 64 and C % 16 == 0:
        return 16
    return C // 4 if C >= 16 and C % 4 == 0 else C


def _gemm(ta, tb, a, b, c, acc, one):
    """c (m x n) = op(a) op(b) (+ c when ``acc``), op = transpose when ``ta`` / ``tb``: BLAS gemm on
    row-major 2-D views with unit stride along the last axis (any row stride: sub-blocks, no copies);
    ``one`` = [1, 0] in c's dtype. Inside @njit only."""
    raise NotImplementedError


def _blas_symbols():
    """Register SciPy's BLAS ``sgemm`` / ``dgemm`` (``scipy.linalg.cython_blas``, the routines Numba's
    own ``np.dot`` calls) as the LLVM symbols ``lsattn_sgemm`` / ``lsattn_dgemm``: a call by symbol name
    is resolved when a kernel is loaded, so the kernels stay cacheable (a function pointer would be
    baked into the cache and differ per process)."""
    import llvmlite.binding as ll

    for name in ("sgemm", "dgemm"):
        ll.add_symbol(f"lsattn_{name}", numba.extending.get_cython_function_address("scipy.linalg.cython_blas", name))


_blas_symbols()
#: Fortran gemm: transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, all by pointer
_GEMM_SIG = types.void(*([types.voidptr] * 13))


@numba.extending.overload(_gemm)
def _gemm_ol(ta, tb, a, b, c, acc, one):
    fn = types.ExternalFunction("lsattn_sgemm" if c.dtype == types.float32 else "lsattn_dgemm", _GEMM_SIG)

    def impl(ta, tb, a, b, c, acc, one):
        # row-major c = op(a) op(b) is column-major c^T = op(b)^T op(a)^T, each array's column-major
        # view being its transpose (leading dimension = its row stride)
        m, n = c.shape
        kk = a.shape[0] if ta else a.shape[1]
        if m == 0 or n == 0:
            return
        if kk == 0:
            if not acc:
                c[:, :] = 0.0
            return
        d = np.empty(6, np.int32)  # m, n, k and the leading dimensions of b, a, c (column-major names)
        d[0], d[1], d[2] = n, m, kk
        d[3], d[4], d[5] = b.strides[0] // b.itemsize, a.strides[0] // a.itemsize, c.strides[0] // c.itemsize
        tr = np.empty(2, np.uint8)
        tr[0] = ord("T") if tb else ord("N")
        tr[1] = ord("T") if ta else ord("N")
        fn(tr[0:].ctypes, tr[1:].ctypes, d[0:].ctypes, d[1:].ctypes, d[2:].ctypes, one.ctypes, b.ctypes,
           d[3:].ctypes, a.ctypes, d[4:].ctypes, one[0 if acc else 1 :].ctypes, c.ctypes, d[5:].ctypes)

    return impl


_F32 = np.float32
_MAGIC32 = _F32(12582912.0)  # 1.5 * 2^23: x + _MAGIC32 - _MAGIC32 rounds a float32 x to an integer
_IL2_32, _L2H_32, _L2L_32 = _F32(1.4426950408889634), _F32(0.693359375), _F32(-2.12194440e-4)
_LO32 = _F32(-87.0)
_E32 = tuple(_F32(1 / math.factorial(i)) for i in range(8))


def _by_dtype(f32, f64, doc):
    """A function of one float32 or float64 scalar for @njit code: ``f32`` on float32, ``f64`` on
    float64 (each compiled separately and inlined by LLVM, so loops over it still vectorise)."""

    def stub(x):
        raise NotImplementedError

    stub.__doc__ = doc

    @numba.extending.overload(stub)
    def _ol(x):
        return (lambda x: f32(x)) if x == types.float32 else (lambda x: f64(x))

    return stub


@numba.njit(fastmath=_FM)
def _exp32(x):
    """exp(x) for a float32 x, all in float32 (16 lanes of AVX-512): x = k ln 2 + r (Cody-Waite,
    ln 2 in two parts), Taylor to r^7, times 2^k built in the exponent bits; within 2 ulp of float32
    for -87 < x <= 0, 0 below."""
    xc = max(x, _LO32)
    kf = (xc * _IL2_32 + _MAGIC32) - _MAGIC32
    r = (xc - kf * _L2H_32) - kf * _L2L_32
    p = _E32[0] + r * (_E32[1] + r * (_E32[2] + r * (_E32[3] + r * (_E32[4] + r * (_E32[5] + r * (
        _E32[6] + r * _E32[7]))))))
    s = np.int32((np.int32(kf) + 127) << 23).view(np.float32)
    return p * s if x > _LO32 else _F32(0.0)


@numba.njit(fastmath=_FM)
def _exp64s(x):
    """exp(x) for a float64 x <= 0 (:func:`_exp64`, times 2^k built in the exponent bits), 0 for
    x <= -708."""
    p, t = _exp64(x)
    s = np.int64((np.float64(t).view(np.int64) - _ROUND_BITS + 1023) << 52).view(np.float64)
    return p * s if x > -708.0 else 0.0


_expw = _by_dtype(_exp32, _exp64s, """exp(x) of one float32 or float64 x <= 0, in x's dtype, 0 below the
    dtype's smallest normal exponent (:func:`_exp32`, :func:`_exp64s`)""")


_SQRT_HALF_BITS32 = np.int32(0x3F3504F3)  # the bit pattern of float32 sqrt(1/2)
_A32 = tuple(_F32(1 / (2 * i + 3)) for i in range(4))


@numba.njit(fastmath=_FM, error_model="numpy")
def _log32(x):
    """log(x) for one positive normal float32 x, in float32: x = 2^e m, m in [sqrt(1/2), sqrt(2))
    from the bits, log m = 2 atanh(s), s = (m - 1) / (m + 1), series to s^9 (|s| <= 0.172);
    within 2 ulp of float32 away from x = 1, 4e-8 absolute near it."""
    xb = np.float32(x).view(np.int32)
    e = (xb - _SQRT_HALF_BITS32) >> 23
    m = np.int32(xb - (e << 23)).view(np.float32)
    s = (m - _E32[0]) / (m + _E32[0])
    s2 = s * s
    p = s2 * (_A32[0] + s2 * (_A32[1] + s2 * (_A32[2] + s2 * _A32[3])))
    ef = _F32(e)
    return ef * _L2H_32 + (_F32(2.0) * s + (_F32(2.0) * s * p + ef * _L2L_32))


@numba.njit(fastmath=_FM, error_model="numpy")
def _log64(x):
    """log(x) for one positive normal float64 x: x = 2^e m with m in [sqrt(1/2), sqrt(2)) from the bits,
    log m = 2 atanh(s), s = (m - 1) / (m + 1) (|s| <= 0.172, series to s^21: within ~2 ulp)."""
    xb = np.float64(x).view(np.int64)
    e = (xb - _SQRT_HALF_BITS) >> 52
    m = np.int64(xb - (e << 52)).view(np.float64)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = s2 * (1 / 3 + s2 * (1 / 5 + s2 * (1 / 7 + s2 * (1 / 9 + s2 * (1 / 11 + s2 * (1 / 13 + s2 * (
        1 / 15 + s2 * (1 / 17 + s2 * (1 / 19 + s2 / 21)))))))))
    ef = np.float64(e)
    return ef * _LN2_HI + (2 * s + (2 * s * p + ef * _LN2_LO))


_logw = _by_dtype(_log32, _log64, """log(x) of one positive normal float32 or float64 x, in x's dtype
    (:func:`_log32`, :func:`_log64`)""")


@numba.njit(fastmath={"contract", "reassoc"})
def _block_den(a, r0, h, dk, z, D):
    """Rows t = r0 .. r0 + h - 1 of a = [A | W] (W: h columns from dk, a block's W_bb): W[t, s] = 0 for
    s > t - r0 (the upper triangle), D[t] = sum_i a[t, i] z_i (i < dk) + sum_s W[t, s] in float64, each
    summed in any order; one pass of a fixed trip count over W's row (masked, vectorised) zeroes and sums
    it. a 2-D, z, D 1-D float64 (no views: no reference counts)."""
    for t in range(h):
        acc = 0.0
        for i in range(dk):
            acc += np.float64(a[r0 + t, i]) * z[i]
        acc2 = 0.0
        for s in range(h):
            x = np.float64(a[r0 + t, dk + s]) if s <= t else 0.0
            a[r0 + t, dk + s] = x
            acc2 += x
        D[r0 + t] = acc + acc2


@numba.njit(fastmath=_FM, error_model="numpy")
def _map_exp_log(x, y, z):
    """y = exp(x), z = log(x) elementwise in x's dtype (:func:`_expw` where x <= 0, :func:`_logw`
    where x > 0; tests)."""
    zero = np.zeros(1, x.dtype)[0]
    for c in range(x.shape[0]):
        y[c] = _expw(min(x[c], zero))
        z[c] = _logw(x[c]) if x[c] > 0 else zero


_OKEY_MASK = np.int64(0x7FFFFFFFFFFFFFFF)
_OKEY_LOW = np.int64(-0x7FFFFFFFFFFFFFFF)  # below the key of every float64 but NaNs


@numba.njit(inline="always")
def _okey(x):
    """An int64 whose signed order is that of the float64 x (its bits, the magnitude's flipped where
    negative; a NaN above +inf or below -inf by its sign bit): the row maxima of the queries as a
    vectorised integer maximum."""
    b = np.float64(x).view(np.int64)
    return b ^ ((b >> 63) & _OKEY_MASK)


@numba.njit(inline="always")
def _okey_value(b):
    """The float64 of the order key b (:func:`_okey`'s inverse)."""
    return np.int64(b ^ ((b >> 63) & _OKEY_MASK)).view(np.float64)


@numba.njit(inline="always")
def _col_max(x, t0, L, low, neg_ok, mw, ck):
    """Per column j of x[t0 : t0 + L] (x (T, d)): mw[j] = max(low, entries) in x's dtype (exact; 16
    lanes of float32, no conversion). Returns the number of columns with an entry that is NaN or +inf,
    or -inf unless ``neg_ok`` (then -inf reads as ``low``): each column accumulates ``xv - xv`` (NaN for
    those, 0 for every finite xv) into ck (x's dtype, scratch of d), a vertical sum that vectorises like
    the maxima (a scalar count would widen the loop to int64 lanes). Float32 tiles with unit column stride: the
    columns up to the last full vector by :func:`_col_max_v` when ``COLMAX_VEC32`` (the same maxima and sums; LLVM
    leaves this loop scalar), the rest here."""
    d = x.shape[1]
    vec = COLMAX_VEC32 and isz_lanes(low)[0] == 4 and x.strides[1] == 4  # a constant False on float64 (folded)
    j0 = _col_max_v(x, t0, L, low, neg_ok, mw, ck) if vec else 0
    for j in range(j0, d):
        mw[j] = low
        ck[j] = 0.0
    for s in range(L):
        for j in range(j0, d):
            xv = x[t0 + s, j]
            if neg_ok:
                xv = low if xv < low else xv  # -inf -> low; NaN compares False: kept
            ck[j] += xv - xv
            mw[j] = xv if xv > mw[j] else mw[j]
    bad = 0
    for j in range(d):
        bad += not ck[j] == 0.0
    return bad


@numba.njit
def _col_max_v(x, t0, L, low, neg_ok, mw, ck):
    """:func:`_col_max`'s maxima and finiteness sums of x's columns up to the last full 64-byte vector (x's
    columns unit-strided), one strip of a vector's columns at a time through the rows, in registers (``vmaxo``:
    NaN never taken, as the scalar select). Returns the number of columns done."""
    isz, VL = isz_lanes(low)
    dvec = x.shape[1] - x.shape[1] % VL
    rs = x.strides[0]
    p0 = x.ctypes.data + t0 * rs
    lv = vsplat(low)
    for j0 in range(0, dvec, VL):
        mx, cs = lv, vzero(low)
        p = p0 + j0 * isz
        for _ in range(L):
            xv = vld(p, low)
            if neg_ok:
                xv = vmaxo(lv, xv)  # -inf -> low; NaN kept
            cs = vnanacc(cs, xv)
            mx = vmaxo(xv, mx)
            p += rs
        vst(mw.ctypes.data + j0 * isz, mx)
        vst(ck.ctypes.data + j0 * isz, cs)
    return dvec


@numba.njit(inline="always")
def _shift_to(old, mw, new, fac):
    """The shifts after a chunk of column maxima mw (d,) in the input dtype: new[:d] = max(old, mw)
    (float64), then mw = new (the shift in the input dtype: a maximum of inputs or the state's, exact)
    and fac = exp(old - new) (0 where old - new <= -708)."""
    d = mw.shape[0]
    for j in range(d):
        new[j] = max(old[j], np.float64(mw[j]))
        mw[j] = new[j]
    for j in range(d):
        fac[j] = _exp64s(old[j] - new[j])  # vectorised (math.exp: a scalar libm call per column)


@numba.njit(fastmath=_FM)
def _exp_row(x, tb, y):
    """y = exp(x[:n]) for n = y.shape[0] (x float64 <= 0, tb float64 scratch of n, overwritten),
    0 below the output dtype's smallest normal exponent. float64 y: as :func:`_vexp` (within 1 ulp);
    float32 y: the reduction x = k ln 2 + r in float64 (exact arguments), r^7 Taylor in float32
    (within 2 ulp of float32), 8 lanes per instruction instead of 4."""
    n = y.shape[0]
    if np.finfo(y.dtype).eps < 1e-10:
        for c in range(n):
            xi = x[c]
            p, t = _exp64(xi)
            x[c] = p if xi > -708.0 else 0.0
            tb[c] = t
    else:
        for c in range(n):
            xi = x[c]
            xc = max(xi, -87.0)
            t = xc * _INV_LN2 + _ROUND
            kf = t - _ROUND
            r = np.float32((xc - kf * _LN2_HI) - kf * _LN2_LO)
            p = np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(0.5) + r * (np.float32(1 / 6) + r * (
                np.float32(1 / 24) + r * (np.float32(1 / 120) + r * (np.float32(1 / 720) + r * np.float32(1 / 5040)))))))
            x[c] = p if xi > -87.0 else 0.0
            tb[c] = t
    sb = tb.view(np.int64)
    for c in range(n):
        sb[c] = (sb[c] - _ROUND_BITS + 1023) << 52
    for c in range(n):
        y[c] = x[c] * tb[c]


@numba.njit(inline="always")
def query_exps(q, t0, L, M, X, A):
    """A = exp(X) with X[t] = q[t0 + t] + M - r_t, r_t = max_i (q_ti + M_i) for t < L (each row's
    largest entry 1; q (T, d_k), M (d_k) float64 key shifts); rows of X from L are kept as they are
    (X: float64 (C, d_k) scratch, overwritten)."""
    for t in range(L):
        r = -np.inf
        for i in range(X.shape[1]):
            x = np.float64(q[t0 + t, i]) + M[i]
            X[t, i] = x
            r = max(r, x)
        for i in range(X.shape[1]):
            X[t, i] -= r
    _vexp(X, np.empty(X.shape), A)


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
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # the bit pattern of sqrt(1/2)


@numba.njit(inline="always")
def _exp64(xi):
    """(p, t) for exp(xi) = p 2^k, xi >= -708 (clamped below): xi = k ln 2 + r, |r| <= ln 2 / 2,
    p = Taylor to r^12 (within 1 ulp of float64), t = xi / ln 2 + _ROUND (k in its low bits)."""
    xc = max(xi, -708.0)
    t = xc * _INV_LN2 + _ROUND
    kf = t - _ROUND
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    return 1.0 + r * (1.0 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (
        1 / 5040 + r * (1 / 40320 + r * (1 / 362880 + r * (1 / 3628800 + r * (1 / 39916800 + r / 479001600))))))))))), t


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
            p, t = _exp64(xi)
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
def _ek_row(q, k, vals, t0, t, Pm, Pn, PS, log_values, lo, dst):
    """Query t exactly (float64), from the state before its chunk (Pm, Pn, PS = [S | z]) and the
    chunk's keys t0 .. t, shifted by the maxima of the keys and values it sees."""
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
        den += a * PS[i, dv]
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
