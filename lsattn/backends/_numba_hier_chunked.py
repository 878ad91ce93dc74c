"""Numba CPU kernel for hierarchical exp-kernel attention (``loglinear_log_attention``) in chunked
(blocked) form: the work of an aligned chunk of ``C`` tokens as small matrix products (``np.dot``
inside ``@njit``, which Numba hands to BLAS), parallel over batch elements and, for a batch smaller
than the thread count, over parts of each sequence.

Imported only when the ``numba`` backend runs a call of at least ``numba_cpu.HIER_CHUNKED_MIN_T``
tokens (shorter ones, decoding, run the token-by-token ``_numba_kernels.hier_scan``). Needs SciPy
(Numba's ``np.dot`` calls SciPy's BLAS).

The Fenwick slots are those of ``hier_scan`` and of the array-API state: slot ``j`` is an
exp-kernel summary ``(m, n, S, z)`` of the bucket ``B^{j+1}``, keys decayed to the token before the
current one (float64). At the start of an aligned chunk (absolute start ``t0``, a multiple of
``C = 2^g``) the slots below ``g`` are empty and those from ``g`` up stay fixed through the chunk
but for the decay, which every one of them gets alike. Per chunk (:func:`_summary`,
:func:`_read`, :func:`_merge`):

1. *summary* (keys decayed to the chunk's end by suffix sums of the decays inside the chunk):
   ``mH = max_s (k_s + suf_s)``, ``EH = exp(k + suf - mH)``, ``nH`` the per-column value maxima,
   ``VH = [exp(log_v - nH) | 1]``, ``[S_H | z_H] = EH^T VH`` (one ``(d_k x C)(C x (d_v + 1))`` product);
2. *reads*: one per-feature key shift ``M`` (over the chunk's keys and the occupied slots), one
   per-column value shift ``N``, and per query row the largest log weight ``l_t`` it has: over the
   pairs inside the chunk ``lambda[t, level(t, s)] + (a_{s+1} + ... + a_t)`` (a sum over that
   stretch, never a difference of cumulative sums: ``-inf`` decays give exact zeros) and over the
   slots ``lambda[t, j + 1] + (a_{t0} + ... + a_t)``. With ``A = exp(q + M - r)`` (``r_t = max_i
   (q_ti + M_i)``), ``G = exp(LG - l)`` (``<= 1``, 0 above the diagonal):
   ``[num | den] = (G * (A E^T)) [V | 1] + sum_j (w_j A) [S_j | z_j]'`` (``'``: slot rows and
   columns rescaled to ``M, N``, factors ``<= 1``; ``w_j`` the slot's row weights ``<= 1``);
   ``log y = N + log num - log den`` (``r + l`` cancels);
3. *merge*: every occupied slot decays by the chunk's total (``m += g_c``), then the summary and the
   slots ``g .. z - 1`` become slot ``z = ctz(t0 + C)`` (shifted to the larger maxima, as
   ``hier_scan``'s merge).

``M``, ``N`` and ``l`` include keys, values and weights a query may not see, so a visible term can
underflow where the token-by-token scan keeps it. Every lost term is below the working dtype's
``tiny`` times a known count, so a row whose ``den`` or a numerator is not at least ``1 / eps``
times that bound is recomputed exactly in log space (:func:`_row_exact`); ordinary inputs never
take it, large magnitudes and ``log_v = -inf`` columns do. Products run in the input dtype
(float32 inputs: float32 BLAS, entries in ``[0, 1]`` or bounded counts, rounding relative); the
slots are float64.

Tokens before the first and after the last aligned chunk run token by token
(``_numba_kernels.hier_token``). One parallel loop over streams (batch elements, and packed
segments (``cu_seqlens``) each from its own offset: the stream table ``seg``, ``offs`` of the token
kernels), and for one stream per batch element and a batch smaller than the thread count over
parts of each sequence. A chunk's summary depends on the chunk alone, so it is computed once
(:data:`HIER_KEEP`, :func:`_keep_task`, two parallel loops): first part 0 runs the head and its first
chunks in full while each later part computes and keeps the summaries of a piece of chunks (in
:func:`keep_scratch`'s buffer); then each part merges the kept summaries before its own chunks into
part 0's slots and runs its chunks in full, from the kept summaries where there are (one sequence
on 2 threads: 13% / 51% / 36% of the chunks; the only work done twice is part 1's merges of 51%).
Outputs and state bit-equal to one part. HIER_KEEP off: part ``j`` runs the head, then only the
summaries and merges of the chunks before it (which gives it its incoming slots), then its own
chunks in full (the last part also the tail); the parts shrink geometrically (``_part_starts``
with :data:`SUMMARY_COST`) so that all finish together.
"""
from __future__ import annotations

import math
import threading

import numba
import numpy as np
from numba import prange

from ._numba_chunked import _BLAS_SINGLE, _shifted, _vexp, query_exps
from ._numba_ll_chunked import aligned_chunks
from ._numba_kernels import _ek_finish, hier_load, hier_store, hier_token, level_table

_JIT = dict(parallel=True, cache=True, nogil=True)

#: cost of a chunk's summary and merge relative to its whole work (measured single-threaded at
#: d = 64, float32, B = 1, T = 65536: 0.32 at C = 64, 0.1-0.23 at C = 32; see benchmarks/NOTES.md);
#: sizes the parts of one sequence
SUMMARY_COST = 0.3


@numba.njit
def _part_starts(nch, P, cost):
    """First chunk of each of P parts of nch chunks, and nch (P + 1 entries). Part j runs the
    summaries of every earlier chunk (``cost`` of a full chunk each, e.g. SUMMARY_COST) and then
    its own chunks in full, so equal finishing times need part lengths in the ratio 1 : r : r^2 ...
    with r = 1 - cost."""
    r = 1.0 - cost
    total = (1.0 - r ** P) / (1.0 - r)
    start = np.empty(P + 1, np.int64)
    start[0] = 0
    acc = 0.0
    for j in range(P):
        acc += r ** j / total
        start[j + 1] = min(nch, max(start[j], int(round(acc * nch))))
    start[P] = nch
    return start


#: s22c20: parts of one sequence in two passes that compute every chunk's summary once
#: (:func:`_keep_first`, :func:`_keep_part`, bounds :func:`_keep_bounds`): part 0 runs its first chunks
#: beside the other parts' summaries of the chunks after them, kept; then each part merges the kept
#: summaries before its own chunks into part 0's slots and runs its chunks in full, from the kept
#: summaries where there are. Outputs and state bit-equal to one part. False: every part computes the
#: summaries and merges of all the chunks before it (``_part_starts``).
HIER_KEEP = True
#: HIER_KEEP's costs relative to a chunk's whole work (measured single-threaded at d = 64, float32,
#: B = 1, T = 65536: benchmarks/NOTES.md, s22c20): a chunk's summary alone (its exponentials and
#: ``EH^T VH``) and its merge alone (what the later parts repeat)
KEEP_SUMMARY_COST = 0.25
KEEP_MERGE_COST = 0.05


@numba.njit
def _keep_bounds(nch, P, cost, mcost):
    """Chunk bounds b (P + 2 entries) of HIER_KEEP's two passes over nch chunks in P parts: first
    part 0 runs chunks b[0] .. b[1] - 1 in full while part j >= 1 summarises chunks b[j] .. b[j + 1]
    - 1 (``cost`` of a full chunk each; kept); then part j merges the kept summaries b[1] .. b[j + 1]
    - 1 (``mcost`` each) and runs chunks b[j + 1] .. b[j + 2] - 1 (``1 - cost`` each where kept).
    Equal times at P = 2: pieces of x = nch / (P - mcost), b[1] = cost x."""
    x = nch / (P - mcost)
    b = np.empty(P + 2, np.int64)
    b[0] = 0
    for j in range(1, P + 1):
        b[j] = min(nch, int(round(cost * x + (j - 1) * x)))
    b[P + 1] = nch
    return b


_SCRATCH = threading.local()
#: the largest buffer :func:`keep_scratch` keeps between calls (bytes)
KEEP_SCRATCH_MAX = 64 << 20


def keep_scratch(B, T, p, C, d_k, d_v, dtype, parts):
    """The uint8 buffer of :func:`hier_chunked`'s kept summaries (HIER_KEEP) for B sequences of T tokens
    from offset p in ``parts`` parts, kept between calls (one per calling thread, grown when short; ~17 MB
    at T = 65536, d = 64, float32) up to :data:`KEEP_SCRATCH_MAX` bytes (a larger one is the call's own);
    an empty one where the call keeps none (one part, or HIER_KEEP off: one signature for every call)."""
    if not HIER_KEEP or parts < 2:
        return np.empty(0, np.uint8)
    nch = aligned_chunks(p, T, C)[2]
    bd = _keep_bounds(nch, parts, KEEP_SUMMARY_COST, KEEP_MERGE_COST)
    nk = int(bd[parts] - bd[1])
    nb = B * nk * ((d_k + d_v + 1) * 8 + (d_k + C) * (d_v + 1) * np.dtype(dtype).itemsize)
    if nb > KEEP_SCRATCH_MAX:
        return np.empty(nb, np.uint8)
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.shape[0] < nb:
        buf = _SCRATCH.buf = np.empty(nb, np.uint8)
    return buf


def chunk_for(d_k, d_v):
    """The chunk size of :func:`hier_chunked`: the largest power of two from 8 up to 64 whose
    products (C x d_k x C, C x C x d_v, C x d_k x d_v, not counting the denominator column) are at
    most ``_BLAS_SINGLE`` (64 at d_k = d_v = 64: measured at B = 8, T = 4096, float32, 54 ms against
    60-62 ms at C = 32; B = 1, T = 65536 223 / 253 ms), 8 where none is."""
    C = 64
    while C > 8 and max(C * d_k * C, C * C * d_v, C * d_k * d_v) > _BLAS_SINGLE:
        C //= 2
    return C


@numba.njit(**_JIT)
def hier_chunked(q, k, lv, lw, a, rows, seg, offs, nlev, m0, n0, S0, z0, lo, C, parts, out, m1, n1, S1, z1, scratch=None):
    """Arguments as ``_numba_kernels.hier_scan`` (streams ``seg``, ``offs``: the tokens ``seg[i] ..
    seg[i + 1] - 1`` are stream ``i``, continued at offset ``offs[i]``; state rows ``b N + i``) plus
    C, the chunk size (a power of two), and parts: parallel parts of each sequence
    (``_numba_chunked.parts``; one stream only), and scratch: None or :func:`keep_scratch`'s buffer
    for HIER_KEEP's kept summaries. q, k (B, T, d_k); lv (B, T, d_v); lw (B, T, L);
    a (B, T); state slots m0 (B N, >= bit_length(offs[i]), d_k), ... in the array-API layout. Writes
    out (B, T, d_v) (log y) and, when m1 has a slot axis, the final slots. One ``prange`` iteration
    per (batch element, stream, part)."""
    B = rows.shape[1]  # row b of input i: its row rows[i, b] (broadcast inputs: shared rows)
    N = seg.shape[0] - 1
    P = max(parts, 1) if N == 1 else 1
    lev = level_table(C)  # Fenwick levels of chunk-local pairs
    if HIER_KEEP and P > 1:  # one stream per batch element (N = 1): HIER_KEEP's two passes
        s0, s1 = seg[0], seg[1]
        dk, dv = q.shape[2], lv.shape[2]
        nch = aligned_chunks(offs[0], s1 - s0, C)[2]
        bd = _keep_bounds(nch, P, KEEP_SUMMARY_COST, KEEP_MERGE_COST)
        nk = bd[P] - bd[1]  # kept summaries per batch element: chunks bd[1] .. bd[P] - 1
        wt = q.dtype
        # in ``scratch`` (keep_scratch: kept between calls; allocated per call they cost ~5 K page faults a call)
        n64, ns, nv = B * nk * (dk + dv + 1), B * nk * dk * (dv + 1), B * nk * C * (dv + 1)
        nb = n64 * 8 + (ns + nv) * q.itemsize
        if scratch is None:
            raw = np.empty(nb, np.uint8)
        else:
            raw = scratch[:nb]
        buf = raw[n64 * 8 :].view(wt)
        KS, KV = buf[:ns].reshape((B, nk, dk, dv + 1)), buf[ns:].reshape((B, nk, C, dv + 1))
        b64 = raw[: n64 * 8].view(np.float64)
        Km = b64[: B * nk * dk].reshape((B, nk, dk))
        Kn = b64[B * nk * dk : B * nk * (dk + dv)].reshape((B, nk, dv))
        Kg = b64[B * nk * (dk + dv) :].reshape((B, nk))
        Hm, Hn = np.empty((B, nlev, dk)), np.empty((B, nlev, dv))  # part 0's slots after the first pass
        HS, Hz = np.empty((B, nlev, dk, dv)), np.empty((B, nlev, dk))
        for pas in range(2):
            for task in prange(B * P):
                b, j = task // P, task % P
                _keep_task(q[rows[0, b], s0:s1], k[rows[1, b], s0:s1], lv[rows[2, b], s0:s1], lw[rows[3, b], s0:s1],
                           a[rows[4, b], s0:s1], offs[0], nlev, m0[b], n0[b], S0[b], z0[b], lo, C, lev, P,
                           j, pas, bd, out[b, s0:s1], m1[b], n1[b], S1[b], z1[b], Hm[b], Hn[b], HS[b], Hz[b], KS[b],
                           KV[b], Km[b], Kn[b], Kg[b])
        return
    for task in prange(B * N * P):  # one parallel region per call (robust when another job holds a core)
        row, j = task // P, task % P
        b, sg = row // N, row % N
        s0, s1 = seg[sg], seg[sg + 1]
        _stream(q[rows[0, b], s0:s1], k[rows[1, b], s0:s1], lv[rows[2, b], s0:s1], lw[rows[3, b], s0:s1],
                a[rows[4, b], s0:s1], offs[sg], nlev, m0[row], n0[row], S0[row], z0[row], lo, C, lev, P, j,
                out[b, s0:s1], m1[row], n1[row], S1[row], z1[row])


@numba.njit
def _slots(m0, n0, S0, z0, p, nlev, dk, dv, lo):
    """A part's float64 working slots (m (nlev, dk), n (nlev, dv), S (nlev, dk, dv), z (nlev, dk), D (nlev)) with the
    incoming state's slots loaded (``hier_load``)."""
    m, n = np.full((nlev, dk), lo), np.full((nlev, dv), lo)
    S, z, D = np.zeros((nlev, dk, dv)), np.zeros((nlev, dk)), np.zeros(nlev)
    hier_load(m0, n0, S0, z0, p, m, n, S, z)
    return m, n, S, z, D


@numba.njit
def _stream(q, k, lv, lw, a, p, nlev, m0, n0, S0, z0, lo, C, lev, P, j, out, m1, n1, S1, z1):
    """Part ``j`` of ``P`` of one stream continued at offset p (q, k (T, d_k), lv (T, d_v), lw (T, L),
    a (T,), its state m0 (bit_length(p), d_k), ...): the head, the summaries and merges of the
    chunks before the part, its own chunks in full; the last part also the tail and the state."""
    T, dk = q.shape
    dv = lv.shape[1]
    g, head, nch, tail = aligned_chunks(p, T, C)
    alo, bound = _limits(q, z0, p, T, nlev, C, lo)
    wt = q.dtype
    start = _part_starts(nch, P, SUMMARY_COST)
    m, n, S, z, D = _slots(m0, n0, S0, z0, p, nlev, dk, dv, lo)
    w = np.empty((4, max(dk, dv)))
    ob = out if j == 0 else np.empty((head, dv), out.dtype)  # every part runs the head, part 0 keeps it
    for i in range(head):  # the tokens before the first aligned chunk
        hier_token(q, k, lv, lw, a, i, p + i, lo, alo, m, n, S, z, D, w, ob)
    for jj in range(nlev):  # lazy decays folded in: the chunks keep every slot decayed to date
        for i2 in range(dk):
            m[jj, i2] += D[jj]
        D[jj] = 0.0
    ac = np.empty(C)
    EH = np.empty((C, dk), wt)
    VH = np.empty((C, dv + 1), wt)
    mc = np.empty(dk)
    nc = np.empty(dv)
    for c in range(start[j + 1]):
        i0 = head + c * C
        Sc, gc = _summary(k, lv, a, i0, alo, lo, ac, EH, VH, mc, nc)
        if c >= start[j]:  # this part's chunks; the earlier ones only move the slots
            _read(q, k, lv, lw, ac, i0, p + i0, g, lev, m, n, S, z, VH, nc, bound, lo, out)
        _merge(m, n, S, z, p + i0, g, gc, mc, nc, Sc)
    if j == P - 1:  # the tokens after the last aligned chunk, the array-API layout
        for i in range(tail, T):
            hier_token(q, k, lv, lw, a, i, p + i, lo, alo, m, n, S, z, D, w, out)
        hier_store(m, n, S, z, D, p + T, lo, m1, n1, S1, z1)


@numba.njit
def _limits(q, z0, p, T, nlev, C, lo):
    """(alo, bound) of one stream: the decays' clamp and the lost-mass bound of :func:`_stream`."""
    dk = q.shape[1]
    alo = lo / (4 * max(p + T, 1))  # the clamp of the array-API path: any sum of up to p + T decays stays above lo / 4
    zmax = 0.0
    for jj in range(z0.shape[0]):
        for i2 in range(dk):
            zmax = max(zmax, np.float64(z0[jj, i2]))
    wt = q.dtype
    # lost mass of one output entry, in units of its shifts: each product term that underflowed (or
    # met an exponential flushed to 0) is below 4 tiny, and there are at most d_k per slot (weight
    # <= z <= zmax + p + T each) and C (d_k + 1) from the chunk
    bound = 4 * np.finfo(wt).tiny * (nlev * dk * (zmax + p + T + 1.0) + C * (dk + 1)) / np.finfo(wt).eps
    return alo, bound


@numba.njit
def _keep_task(q, k, lv, lw, a, p, nlev, m0, n0, S0, z0, lo, C, lev, P, j, pas, bd, out, m1, n1, S1, z1, Hm, Hn, HS,
               Hz, KS, KV, Km, Kn, Kg):
    """Part ``j`` of ``P`` of one stream (arguments as :func:`_stream`) in pass ``pas`` of HIER_KEEP
    (:func:`_keep_bounds`' bd). Pass 0: part 0 runs the head and chunks bd[0] .. bd[1] - 1 in full
    and leaves its slots in Hm, Hn, HS, Hz; part j >= 1 keeps the summaries of chunks bd[j] .. bd[j +
    1] - 1 (row c - bd[1] of KS = EH^T VH in the input dtype, KV = VH, Km, Kn the shifts, Kg the
    chunk's total decay). Pass 1: part j merges the kept summaries bd[1] .. bd[j + 1] - 1 into those
    slots and runs chunks bd[j + 1] .. bd[j + 2] - 1 in full (kept summaries where there are);
    the last part also the tail and the state. Every summary, merge and read is the one-part path's
    (:func:`_stream`) on the same operands: bit-equal."""
    T, dk = q.shape
    dv = lv.shape[1]
    g, head, nch, tail = aligned_chunks(p, T, C)
    alo, bound = _limits(q, z0, p, T, nlev, C, lo)
    wt = q.dtype
    ac = np.empty(C)
    EH = np.empty((C, dk), wt)
    if pas == 0 and j > 0:
        for c in range(bd[j], bd[j + 1]):
            r = c - bd[1]
            Sc, gc = _summary(k, lv, a, head + c * C, alo, lo, ac, EH, KV[r], Km[r], Kn[r])
            Kg[r] = gc
            for i in range(dk):
                for x in range(dv + 1):
                    KS[r, i, x] = Sc[i, x]  # a float32 product when wt is: exact
        return
    if pas == 0:  # part 0: the head and its first chunks, as _stream
        m, n, S, z, D = _slots(m0, n0, S0, z0, p, nlev, dk, dv, lo)
        w = np.empty((4, max(dk, dv)))
        for i in range(head):  # the tokens before the first aligned chunk
            hier_token(q, k, lv, lw, a, i, p + i, lo, alo, m, n, S, z, D, w, out)
        for jj in range(nlev):  # lazy decays folded in
            for i2 in range(dk):
                m[jj, i2] += D[jj]
        c_lo, c_hi = 0, bd[1]
    else:
        m, n, S, z = Hm.copy(), Hn.copy(), HS.copy(), Hz.copy()
        for c in range(bd[1], bd[j + 1]):  # the kept summaries before the part's chunks
            r = c - bd[1]
            _merge(m, n, S, z, p + head + c * C, g, Kg[r], Km[r], Kn[r], KS[r])
        c_lo, c_hi = bd[j + 1], bd[j + 2]
    VH = np.empty((C, dv + 1), wt)
    mc = np.empty(dk)
    nc = np.empty(dv)
    for c in range(c_lo, c_hi):
        i0 = head + c * C
        r = c - bd[1]
        if pas == 1 and r < KS.shape[0]:  # kept (pass 1 of a part before the last)
            for s in range(C):
                ac[s] = max(np.float64(a[i0 + s]), alo)
            _read(q, k, lv, lw, ac, i0, p + i0, g, lev, m, n, S, z, KV[r], Kn[r], bound, lo, out)
            _merge(m, n, S, z, p + i0, g, Kg[r], Km[r], Kn[r], KS[r])
        else:
            Sc, gc = _summary(k, lv, a, i0, alo, lo, ac, EH, VH, mc, nc)
            _read(q, k, lv, lw, ac, i0, p + i0, g, lev, m, n, S, z, VH, nc, bound, lo, out)
            _merge(m, n, S, z, p + i0, g, gc, mc, nc, Sc)
    if pas == 0:
        Hm[:, :] = m
        Hn[:, :] = n
        HS[:, :, :] = S
        Hz[:, :] = z
    elif j == P - 1:  # the tokens after the last aligned chunk, the array-API layout
        D = np.zeros(nlev)
        w = np.empty((4, max(dk, dv)))
        for i in range(tail, T):
            hier_token(q, k, lv, lw, a, i, p + i, lo, alo, m, n, S, z, D, w, out)
        hier_store(m, n, S, z, D, p + T, lo, m1, n1, S1, z1)


@numba.njit
def _summary(k, lv, a, i0, alo, lo, ac, EH, VH, mc, nc):
    """The summary of tokens i0 .. i0 + C - 1 of one batch element (k (T, d_k), lv (T, d_v), a (T,)),
    keys decayed to the chunk's last token: writes ac (C) the clamped decays, mc (d_k) = max_s (k_s +
    suf_s), EH (C, d_k) = exp(k + suf - mc), nc (d_v) the value maxima, VH (C, d_v + 1) = [exp(lv -
    nc) | 1]; returns Sc = EH^T VH (d_k, d_v + 1; float64) and the chunk's total log decay."""
    C, dk = EH.shape
    dv = nc.shape[0]
    X = np.empty((C, dk))
    for s in range(C):
        ac[s] = max(np.float64(a[i0 + s]), alo)
    suf = 0.0  # a_{s+1} + ... + a_{C-1}, summed over that stretch
    for s in range(C - 1, -1, -1):
        for i in range(dk):
            X[s, i] = np.float64(k[i0 + s, i]) + suf
        suf += ac[s]
    _shifted(X, 0, C, -np.inf, mc, X)  # in place: X - mc
    _vexp(X, np.empty((C, dk)), EH)
    Xv = np.empty((C, dv + 1))
    _shifted(lv, i0, C, lo, nc, Xv)
    Xv[:, dv] = 0.0
    _vexp(Xv, np.empty((C, dv + 1)), VH)
    Sc = np.empty((dk, dv + 1))
    Sc[:, :] = np.dot(EH.T, VH)
    return Sc, suf


@numba.njit
def _merge(m, n, S, z, t0, g, gc, mc, nc, Sc):
    """After the aligned chunk at t0 (C = 2^g tokens): every occupied slot (the set bits of t0 from g
    up) decays by gc, then the chunk's summary (mc, nc, Sc = [S | z]) and the slots g .. zt - 1
    become slot zt = ctz(t0 + C), shifted to the larger maxima (factors <= 1)."""
    dk, dv = m.shape[1], n.shape[1]
    u, j = t0 >> g, g
    while u > 0:
        if u & 1:
            for i in range(dk):
                m[j, i] += gc
        u >>= 1
        j += 1
    u, zt = (t0 >> g) + 1, g
    while (u & 1) == 0:
        u >>= 1
        zt += 1
    M = mc.copy()
    N = nc.copy()
    for j in range(g, zt):
        for i in range(dk):
            M[i] = max(M[i], m[j, i])
        for c in range(dv):
            N[c] = max(N[c], n[j, c])
    f = np.empty(dk)
    h = np.empty(dv)
    for i in range(dk):
        f[i] = math.exp(mc[i] - M[i])
    for c in range(dv):
        h[c] = math.exp(nc[c] - N[c])
    for i in range(dk):
        z[zt, i] = f[i] * Sc[i, dv]
        for c in range(dv):
            S[zt, i, c] = f[i] * h[c] * Sc[i, c]
    for j in range(g, zt):
        for i in range(dk):
            f[i] = math.exp(m[j, i] - M[i])
            z[zt, i] += f[i] * z[j, i]
        for c in range(dv):
            h[c] = math.exp(n[j, c] - N[c])
        for i in range(dk):
            for c in range(dv):
                S[zt, i, c] += f[i] * h[c] * S[j, i, c]
    m[zt] = M
    n[zt] = N


@numba.njit
def _read(q, k, lv, lw, ac, i0, t0, g, lev, m, n, S, z, VH, nc, bound, lo, out):
    """Outputs i0 .. i0 + C - 1 (absolute t0 ..) of one batch element (q, k (T, d_k), lv (T, d_v),
    lw (T, L), out (T, d_v)) from the slots before the chunk (m, n, S, z; read only), the chunk's
    clamped decays ac and its values VH = [exp(lv - nc) | 1] (from :func:`_summary`); rows whose
    lost mass may exceed eps of den or of a numerator are recomputed by :func:`_row_exact`."""
    C, dk = VH.shape[0], q.shape[1]
    dv = nc.shape[0]
    wt = VH.dtype
    js = np.empty(m.shape[0], np.int64)  # occupied slots: the set bits of t0 from g up
    ns_ = 0
    u, j = t0 >> g, g
    while u > 0:
        if u & 1:
            js[ns_] = j
            ns_ += 1
        u >>= 1
        j += 1
    M = np.empty(dk)
    N = np.empty(dv)
    for i in range(dk):
        M[i] = np.float64(k[i0, i])
    for s in range(1, C):
        for i in range(dk):
            M[i] = max(M[i], np.float64(k[i0 + s, i]))
    for c in range(dv):
        N[c] = nc[c]
    for jj in range(ns_):
        for i in range(dk):
            M[i] = max(M[i], m[js[jj], i])
        for c in range(dv):
            N[c] = max(N[c], n[js[jj], c])
    # row log weights: LG[t, s] = lambda[t, level] + (a_{s+1} + ... + a_t), the slots' lambda[t, j + 1] +
    # (a_{t0} + ... + a_t); shifted by their row maximum l_t
    pre = np.empty(C)
    run = 0.0
    for t in range(C):
        run += ac[t]
        pre[t] = run
    LG = np.empty((C, C))
    WS = np.empty((C, ns_))
    for t in range(C):
        seg = 0.0
        mx = -np.inf
        for s in range(t, -1, -1):
            x = max(np.float64(lw[i0 + t, lev[t, s]]), lo) + seg
            LG[t, s] = x
            mx = max(mx, x)
            seg += ac[s]
        for jj in range(ns_):
            x = max(np.float64(lw[i0 + t, js[jj] + 1]), lo) + pre[t]
            WS[t, jj] = x
            mx = max(mx, x)
        for s in range(t + 1):
            LG[t, s] -= mx
        for s in range(t + 1, C):
            LG[t, s] = -1e300
        for jj in range(ns_):
            WS[t, jj] = math.exp(WS[t, jj] - mx)
    G = np.empty((C, C))
    _vexp(LG, np.empty((C, C)), G)
    X = np.empty((C, dk))
    for s in range(C):
        for i in range(dk):
            X[s, i] = np.float64(k[i0 + s, i]) - M[i]
    E = np.empty((C, dk), wt)
    _vexp(X, np.empty((C, dk)), E)
    A = np.empty((C, dk), wt)
    query_exps(q, i0, C, M, X, A)
    W = np.dot(A, E.T)
    for t in range(C):
        for s in range(C):
            W[t, s] = W[t, s] * G[t, s]
    V = np.empty((C, dv + 1), wt)
    h = np.empty(dv)
    for c in range(dv):
        h[c] = math.exp(nc[c] - N[c])
    for s in range(C):
        for c in range(dv):
            V[s, c] = VH[s, c] * h[c]
        V[s, dv] = 1.0
    Z = np.dot(W, V)  # (C, d_v + 1): [num | den] of the chunk's pairs
    Sz = np.empty((dk, dv + 1), wt)
    Aw = np.empty((C, dk), wt)
    f = np.empty(dk)
    for jj in range(ns_):
        j = js[jj]
        for i in range(dk):
            f[i] = math.exp(m[j, i] - M[i])
        for c in range(dv):
            h[c] = math.exp(n[j, c] - N[c])
        for i in range(dk):
            for c in range(dv):
                Sz[i, c] = S[j, i, c] * f[i] * h[c]
            Sz[i, dv] = z[j, i] * f[i]
        for t in range(C):
            for i in range(dk):
                Aw[t, i] = A[t, i] * WS[t, jj]
        Z += np.dot(Aw, Sz)
    num = np.empty(dv)
    for t in range(C):
        ok = Z[t, dv] >= bound
        for c in range(dv):
            ok = ok and Z[t, c] >= bound
        if ok:
            for c in range(dv):
                num[c] = Z[t, c]
            _ek_finish(num, np.float64(Z[t, dv]), N, True, lo, out[i0 + t])
        else:
            _row_exact(q, k, lv, lw, ac, i0, t, lev, js[:ns_], m, n, S, z, pre[t], lo, out[i0 + t])


@numba.njit(inline="always")
def _lse_add(R, Sm, x, w):
    """(R, Sm) standing for Sm exp(R), plus w exp(x): the new pair, shifted to the larger exponent."""
    if x > R:
        return x, Sm * math.exp(R - x) + w
    return R, Sm + w * math.exp(x - R)


@numba.njit
def _row_exact(q, k, lv, lw, ac, i0, t, lev, js, m, n, S, z, pre_t, lo, dst):
    """Query i0 + t exactly (float64, log space): the chunk's keys i0 .. i0 + t, each with its own
    shift, and the occupied slots js (read as ``hier_token`` reads them) with decay pre_t = a_{t0} +
    ... + a_t."""
    dk, dv = q.shape[1], lv.shape[1]
    R, Den = -np.inf, 0.0
    U = np.full(dv, -np.inf)
    Num = np.zeros(dv)
    qt = i0 + t
    seg = 0.0
    for s in range(t, -1, -1):
        r = -np.inf
        for i in range(dk):
            r = max(r, np.float64(q[qt, i]) + k[i0 + s, i])
        d = 0.0
        for i in range(dk):
            d += math.exp(np.float64(q[qt, i]) + k[i0 + s, i] - r)
        x = r + math.log(d) + max(np.float64(lw[qt, lev[t, s]]), lo) + seg
        seg += ac[s]
        R, Den = _lse_add(R, Den, x, 1.0)
        for c in range(dv):
            U[c], Num[c] = _lse_add(U[c], Num[c], x + max(np.float64(lv[i0 + s, c]), lo), 1.0)
    num = np.empty(dv)
    for j in js:
        r = -np.inf
        for i in range(dk):
            r = max(r, np.float64(q[qt, i]) + m[j, i])
        den = 0.0
        num[:] = 0.0
        for i in range(dk):
            A_ = math.exp(np.float64(q[qt, i]) + m[j, i] - r)
            den += A_ * z[j, i]
            for c in range(dv):
                num[c] += A_ * S[j, i, c]
        x = r + max(np.float64(lw[qt, j + 1]), lo) + pre_t
        R, Den = _lse_add(R, Den, x, den)
        for c in range(dv):
            if num[c] > 0:
                U[c], Num[c] = _lse_add(U[c], Num[c], x + n[j, c] + math.log(num[c]), 1.0)
    ld = R + math.log(Den)
    for c in range(dv):
        y = U[c] + math.log(Num[c]) - ld if Num[c] > 0 else -np.inf
        dst[c] = y if y > lo / 2 else -np.inf
