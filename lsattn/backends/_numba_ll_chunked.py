"""Numba CPU kernels in chunked (blocked) form for log-linear Mamba-2 and Gated DeltaNet
(:func:`ll_chunked`): the work of a chunk of ``C`` tokens as small matrix products (``np.dot``
inside ``@njit``, which Numba hands to BLAS), parallel over batch elements *and* chunks. The
exp-kernel kernels of the same form are in ``_numba_chunked``; both are imported only when the
``numba`` backend runs a long causal call (``numba_cpu`` chooses by size). Needs SciPy.

Chunks of C tokens aligned to absolute multiples of C (C a power of two, g = log2 C). At the start
of an aligned chunk the Fenwick slots below g are empty and those from g up do not change inside
it except by the chunk's transitions, which act on every slot alike; so with the WY / UT form of
lsattn/gated_delta.py (chunk-local, zero incoming state: Attn, Qeff, Phi, the chunk transition
P = A_{C-1} ... A_0 and write H = Phi V), per chunk:
  out_t = ((Lambda * Attn) V)_t + sum_{occupied j >= g} lambda[t, j + 1] (Qeff S_j)_t,
  S_j <- P S_j (every occupied slot), then the Fenwick merge at the chunk's end: H and the slots
  g .. z - 1 become slot z = ctz(t0 + C).
Groups of 2^LL_GROUP_LOG2 chunks (an aligned block of 2^h tokens): the chunk forms; the group's
prefix transitions E_c = P_{c-1} ... P_0; the reads of the slots from h up, which change inside the
group only by its transitions, as (Qeff_c E_c) S_j; the slots g .. h - 1 chunk by chunk with the
merges, and the slots from h up carried by the group's total transition once. Several sequences run
one per thread (:func:`_ll_row`). One sequence on several threads (parts > 1):

- Mamba-2: P pieces of it in time (:func:`_splits`: split points s multiple of C with few set bits),
  each one :func:`_ll_row` from the empty state (the first from the incoming one), all in one parallel
  loop; then the slots of the stream at each split (:func:`_piece_states`: the previous ones carried
  by the piece's decay total and placed at their levels, the piece's own added) and, in a second
  parallel loop over blocks of C tokens, each later piece's reads of the tokens before its split
  (:func:`_piece_reads`: popcount(s) slot reads per token, the only work added). Two barriers per call.
- Gated DeltaNet (its transitions are d_k x d_k: a piece's reads of earlier slots would need its
  transition chain): on two threads a pipeline (:func:`_gd_pipeline`, ``GD_PIPE``): one parallel
  region per group, lane 0 the previous group's in-order part beside both lanes' forms of this
  group; else per group the forms in parallel over chunks, then the passes that walk the
  chunks in order in parts of the value columns (each column of a slot, of E and of the outputs
  evolves on its own: no work repeated); four barriers per group.
Mamba-2 (A_t = e^{a_t} I) is the same with beta = 1, no
solve and scalar transitions (P and E are 1 x 1). Tokens before the first / after the
last aligned chunk run token by token (``_numba_kernels._token``). The state is float64;
Gated DeltaNet's forms are float64 (the inputs are widened per chunk), Mamba-2's products and
every slot read run in the input dtype (rounding relative, never accumulated). Every
exponential is of a log-decay sum over the stretch it stands for (never a difference of
cumulative sums), so -inf hard resets give exact zeros and strong decays cost no accuracy.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from ._numba_chunked import _BLAS_SINGLE, _JIT, _exp_row, _gemm
from ._numba_kernels import _token


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

#: Gated DeltaNet on one stream and two threads (parts = 2) as a pipeline (:func:`_gd_pipeline`: one
#: parallel region per group, outputs and levels bit-equal to one thread's :func:`_ll_row`) instead of
#: four regions per group over chunks and value columns (False: those). B = 1, T = 65536, d = 64,
#: float32 (benchmarks/NOTES.md, s21b20): the column split's work ran 12-65% slower per phase on two
#: threads than on one, two threads 1.3-1.7x one; the pipeline 1.5-1.8x
GD_PIPE = True
#: the in-order part of a group (transition chain, slot reads, merges, outputs) per chunk, in units of
#: one chunk's forms (measured single-threaded at d = 64, C = 64: 83 us against 136 us); sizes lane 0's
#: share of the forms
GD_TAIL_COST = 0.6


@numba.njit(**_JIT)
def ll_chunked(q, k, v, log_decay, beta, lam, rows, seg, offs, nlev, levels0, gated, C, parts, out, levels1):
    """Log-linear Gated DeltaNet (gated) or Mamba-2, arguments as ``_numba_kernels.loglinear_scan``
    (streams ``seg``, ``offs``: one prange iteration per (batch element, stream), each a
    :func:`_ll_row`) plus C, the chunk size (a power of two), and parts (``_numba_chunked.parts``;
    used for one stream only): when > 1, Mamba-2 runs the stream in pieces of time (:func:`_splits`;
    one parallel loop over batch x pieces, then one over blocks of the later pieces for their reads of
    the slots before them: :func:`_piece_reads`), Gated DeltaNet per group of chunks parallel loops
    over batch x chunks (the forms, the high slots' reads) and over batch x parts of the value columns
    (its transition chain, the low slots, carries, merges and outputs), so nothing is computed twice."""
    B = rows.shape[1]  # row b of input i: its row rows[i, b] (broadcast inputs: shared rows)
    N = seg.shape[0] - 1
    dv = v.shape[2]
    n0 = levels0.shape[1]
    sp = _splits(offs[0], seg[1] - seg[0], C, parts if N == 1 and not gated else 1)
    if parts <= 1 or N > 1 or (not gated and sp.shape[0] == 2):
        for row in prange(B * N):
            b, sg = row // N, row % N
            s0, s1 = seg[sg], seg[sg + 1]
            _ll_row(q[rows[0, b], s0:s1], k[rows[1, b], s0:s1], v[rows[2, b], s0:s1], log_decay[rows[3, b], s0:s1],
                    beta[rows[4, b], s0:s1], lam[rows[5, b], s0:s1], offs[sg], nlev, levels0[row, :n0], gated, C,
                    out[b, s0:s1], levels1[row])
        return
    if not gated:  # Mamba-2, one stream: P pieces of it in time, one pass each, then the corrections
        P = sp.shape[0] - 1
        p, dk = offs[0], q.shape[2]
        Lv = np.empty((B, P, nlev, dk, dv), out.dtype)  # each piece's own slots at its end
        OS = np.empty((B, P, nlev, dk, dv), out.dtype)  # the whole stream's slots at the start of piece i
        cum = np.empty((B, sp[P] - p))  # a_{s_i} + ... + a_t over piece i (i >= 1), from its start
        for task in prange(B * P):
            b, i = task // P, task % P
            lo, hi = sp[i] - p, sp[i + 1] - p
            _ll_row(q[rows[0, b], lo:hi], k[rows[1, b], lo:hi], v[rows[2, b], lo:hi], log_decay[rows[3, b], lo:hi],
                    beta[rows[4, b], lo:hi], lam[rows[5, b], lo:hi], sp[i], nlev, levels0[b, : n0 if i == 0 else 0],
                    False, C, out[b, lo:hi], Lv[b, i])
            run = 0.0
            for t in range(lo, hi):
                run += np.float64(log_decay[rows[3, b], t])
                cum[b, t] = run
        for b in prange(B):
            _piece_states(sp, cum[b], Lv[b], OS[b], levels1[b])
        nb = (np.max(sp[2:] - sp[1:-1]) + C - 1) // C  # blocks of C tokens of the longest piece after the first
        for task in prange(B * (P - 1) * nb):
            b, i, c = task // ((P - 1) * nb), 1 + (task // nb) % (P - 1), task % nb
            lo, hi = sp[i] - p + c * C, min(sp[i + 1] - p, sp[i] - p + (c + 1) * C)
            if lo < hi:
                _piece_reads(q[rows[0, b]], lam[rows[5, b]], cum[b], p, sp[i], lo, hi, OS[b, i], out[b])
        return
    T, dk = q.shape[1:]
    p = offs[0]
    g, head, nch, tail = aligned_chunks(p, T, C)
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
            _token(q[rows[0, b]], k[rows[1, b]], v[rows[2, b]], log_decay[rows[3, b]], beta[rows[4, b]], lam[rows[5, b]], p, i, gated, S[b], D[b], o, kS, out[b])
        for j in range(nlev):  # lazy decays folded in: the chunks keep every slot decayed to date
            f = math.exp(D[b, j])
            for a in range(dk):
                for c in range(dv):
                    S[b, j, a, c] *= f
            D[b, j] = 0.0
    # Gated DeltaNet on one stream
    P = min(parts, dv)  # parts of the value columns
    if GD_PIPE and P == 2:
        _gd_pipeline(q, k, v, log_decay, beta, lam, rows, p, levels0.shape[1], head, nch, g, C, S, out)
        nch = 0  # the groups are done
    h = g + LL_GROUP_LOG2
    G = min(nch, 1 << (h - g))  # scratch of one group, allocated once
    Qe = np.empty((B, G, C, dk))
    Pt = np.empty((B, G, dk, dk))
    H = np.empty((B, G, dk, dv))
    Ob = np.empty((B, G, C, dv))
    E = np.empty((B, G + 1, dk, dk))
    # per group: the forms over chunks, then the chain by columns of E and the high slots' reads over
    # chunks, then every in-order pass by value columns: one sequence uses every thread and nothing is
    # computed twice (each column of a slot evolves on its own)
    c0 = 0
    while c0 < nch:
        n = _group_len(p + head, c0, nch, C, h)
        for task in prange(B * n):
            b, c = task // n, task % n
            _ll_forms(q[rows[0, b]], k[rows[1, b]], v[rows[2, b]], log_decay[rows[3, b]], beta[rows[4, b]], lam[rows[5, b]], head + (c0 + c) * C, gated, Qe[b, c],
                      Pt[b, c], H[b, c], Ob[b, c])
        for task in prange(B * P):
            b, j = task // P, task % P
            _chain_cols(Pt[b], E[b], n, j * dk // P, (j + 1) * dk // P)
        for task in prange(B * n):
            b, c = task // n, task % n
            _group_high(lam[rows[5, b]], p, head, c0, c, C, h, gated, Qe[b, c], E[b, c], S[b], Ob[b, c], 0)
        for task in prange(B * P):
            b, j = task // P, task % P
            _group_cols(lam[rows[5, b]], p, head, c0, n, g, h, Qe[b], Pt[b], H[b], Ob[b], E[b], S[b], out[b],
                        j * dv // P, (j + 1) * dv // P)
        c0 += n
    L1 = levels1.shape[1]
    end = p + T
    for b in prange(B):  # the tokens after the last aligned chunk, the levels layout
        o, kS = np.empty(dv), np.empty(dv)
        for i in range(tail, T):
            _token(q[rows[0, b]], k[rows[1, b]], v[rows[2, b]], log_decay[rows[3, b]], beta[rows[4, b]], lam[rows[5, b]], p, i, gated, S[b], D[b], o, kS, out[b])
        for j in range(L1):
            f = math.exp(D[b, j]) if (end >> j) & 1 else 0.0
            for a in range(dk):
                for c in range(dv):
                    levels1[b, j, a, c] = f * S[b, j, a, c]


@numba.njit(**_JIT)
def _gd_pipeline(q, k, v, log_decay, beta, lam, rows, p, n0, head, nch, g, C, S, out):
    """Gated DeltaNet's aligned chunks of one stream per batch element on two lanes (arguments as
    :func:`ll_chunked`; S (B, nlev, d_k, d_v) the slots after the head, n0 the incoming levels): the
    groups of :func:`_ll_row`, the forms of group r in parallel region r and its in-order part (chain,
    reads, merges, outputs: :func:`_ll_row`'s functions) in region r + 1 on lane 0, beside group r +
    1's forms (lane 0 the first of them, as many as balance :data:`GD_TAIL_COST`, lane 1 the rest; two
    buffers). One barrier per group, the slots on lane 0 only, every result as :func:`_ll_row`'s."""
    B = rows.shape[1]
    dk, dv = q.shape[2], v.shape[2]
    h = g + LL_GROUP_LOG2
    G = min(nch, 1 << (h - g))
    st = np.empty(nch + 1, np.int64)  # the groups' first chunks
    ng, c0 = 0, 0
    while c0 < nch:
        st[ng] = c0
        c0 += _group_len(p + head, c0, nch, C, h)
        ng += 1
    st[ng] = nch
    Qe = np.empty((2, B, G, C, dk))
    Pt = np.empty((2, B, G, dk, dk))
    H = np.empty((2, B, G, dk, dv))
    Ob = np.empty((2, B, G, C, dv))
    E = np.empty((B, G + 1, dk, dk))
    empty = np.full(B, p & ~((1 << n0) - 1))  # as _ll_row: slots of p's set bits beyond the incoming levels
    for r in range(ng + 1):
        n = st[r + 1] - st[r] if r < ng else 0
        m = st[r] - st[r - 1] if r > 0 else 0  # the previous group, run in order on lane 0
        x = min(n, max(0, int(round((n - GD_TAIL_COST * m) / 2))))  # lane 0's forms
        for task in prange(2 * B):
            b, lane = task // 2, task % 2
            lb = lam[rows[5, b]]
            if lane == 0 and m > 0:
                w, cp = (r - 1) % 2, st[r - 1]
                _group_chain(Pt[w, b], E[b], m, True)
                for c in range(m):
                    _group_high(lb, p, head, cp, c, C, h, True, Qe[w, b, c], E[b, c], S[b], Ob[w, b, c], empty[b])
                empty[b] = _group_low(lb, p, head, cp, m, g, h, True, Qe[w, b], Pt[w, b], H[w, b], Ob[w, b], E[b], S[b],
                                      out[b], empty[b])
            u = r % 2
            lo, hi = (0, x) if lane == 0 else (x, n)
            for c in range(lo, hi):
                _ll_forms(q[rows[0, b]], k[rows[1, b]], v[rows[2, b]], log_decay[rows[3, b]], beta[rows[4, b]], lb,
                          head + (st[r] + c) * C, True, Qe[u, b, c], Pt[u, b, c], H[u, b, c], Ob[u, b, c])


#: Mamba-2 on one stream in pieces (:func:`_splits`): a token after a split reads each slot of the stream
#: before it once more (:func:`_piece_reads`), costing about this fraction of a token's whole work (one
#: d_k x d_v read of ~8 per token at T = 65536, halved: both threads share the reads)
READ_SHARE = 0.0625


@numba.njit
def _splits(p, T, C, P):
    """Split points of one Mamba-2 stream (absolute tokens p .. p + T - 1) into at most P pieces: sp[0] = p,
    sp[-1] = p + T, each inner point a multiple of C near p + i T / P, chosen for balance and few set bits
    (a token after split s reads popcount(s) extra slots): minimises |s - target| + READ_SHARE T / P
    popcount(s) over the multiples of C within T / (2 P) of the target; no split where none lies after
    the previous one (short streams: fewer pieces, P = 1 being one piece)."""
    e = p + T
    sp = np.empty(max(P, 1) + 1, np.int64)
    sp[0] = p
    n = 1
    for i in range(1, P):
        target = p + (i * T) // P
        best, cost = -1, np.inf
        s = max(sp[n - 1] + 1, target - T // (2 * P))
        s = ((s + C - 1) // C) * C
        while s < e and s <= target + T // (2 * P):
            pc, u = 0, s
            while u > 0:
                pc += u & 1
                u >>= 1
            x = abs(s - target) + READ_SHARE * T / P * pc
            if x < cost:
                best, cost = s, x
            s += C
        if best > 0:
            sp[n] = best
            n += 1
    sp[n] = e
    return sp[: n + 1]


@numba.njit
def _piece_states(sp, cum, Lv, OS, levels1):
    """The slots of one stream at the start of each piece i >= 1 (OS[i]) and at its end (levels1, its
    first levels1.shape[0] slots) from the pieces' own slots Lv[i] at their ends and cum (each piece's
    log decays summed from its start, tokens numbered from sp[0]): a slot j of the stream at split s
    holds tokens u with level(t, u) = max(j + 1, bit_length(t xor s)) for every t >= s, so at the end
    e of the piece it is in slot max(j, bit_length(e xor s) - 1), decayed by the piece's total."""
    P, nlev, dk, dv = Lv.shape
    St, New = np.empty((nlev, dk, dv)), np.empty((nlev, dk, dv))
    _copy_slots(Lv[0], St)
    for i in range(1, P):
        s, e = sp[i], sp[i + 1]
        _copy_slots(St, OS[i])
        f = math.exp(cum[e - 1 - sp[0]])
        z = _bit_length(e ^ s) - 1
        _copy_slots(Lv[i], New)
        for j in range(nlev):
            if (s >> j) & 1:
                for a in range(dk):
                    Nr, Sr = New[max(j, z), a], St[j, a]
                    for c in range(dv):
                        Nr[c] += f * Sr[c]
        St, New = New, St
    _copy_slots(St[: levels1.shape[0]], levels1)


@numba.njit(inline="always")
def _copy_slots(src, dst):
    """dst[...] = src (nlev, d_k, d_v) in dst's dtype."""
    for j in range(dst.shape[0]):
        for a in range(dst.shape[1]):
            for c in range(dst.shape[2]):
                dst[j, a, c] = src[j, a, c]


@numba.njit
def _piece_reads(q, lam, cum, p, s, lo, hi, OS, out):
    """out[t] += sum over the slots j of the stream at split s (its set bits) of lambda[t, max(j + 1,
    bit_length(t xor s))] e^{a_s + ... + a_t} (q_t . S_j) for the tokens lo .. hi - 1 (numbered from p)
    of the piece that starts at s: their reads of the tokens before it. OS (nlev, d_k, d_v): those slots
    in the input dtype (the dtype of every slot read); the product in it, the sum in float64."""
    wt = out.dtype
    n, dk = hi - lo, q.shape[1]
    Qd = np.empty((n, dk), wt)
    for t in range(n):
        f = math.exp(cum[lo + t])
        for i in range(dk):
            Qd[t, i] = f * np.float64(q[lo + t, i])
    Z = np.zeros((n, out.shape[1]))
    for j in range(OS.shape[0]):
        if (s >> j) & 1:
            Y = np.dot(Qd, OS[j])
            for t in range(n):
                w = np.float64(lam[lo + t, max(j + 1, _bit_length((p + lo + t) ^ s))])
                for c in range(Z.shape[1]):
                    Z[t, c] += w * Y[t, c]
    for t in range(n):
        for c in range(Z.shape[1]):
            out[lo + t, c] = np.float64(out[lo + t, c]) + Z[t, c]


@numba.njit(inline="always")
def _bit_length(x):
    n = 0
    while x > 0:
        x >>= 1
        n += 1
    return n


@numba.njit(inline="always")
def aligned_chunks(p, T, C):
    """A call of T tokens from offset p in aligned chunks of C = 2^g: (g, head, nch, tail), the
    tokens 0 .. head - 1 before the first aligned chunk, nch chunks, the tokens tail .. T - 1 after."""
    g = 0
    while (1 << g) < C:
        g += 1
    head = min(T, (-p) % C)
    nch = (T - head) // C
    return g, head, nch, head + nch * C


@numba.njit
def _ll_row(q, k, v, log_decay, beta, lam, p, nlev, levels0, gated, C, out, levels1):
    """One stream (one batch element, continued at offset p): q, k (T, d_k), v (T, d_v), log_decay,
    beta (T,), lam (T, L); levels0 (>= bit_length(p), d_k, d_v); writes out (T, d_v) and levels1
    (slots: as many as it has, zeros where empty). The tokens before the first aligned chunk and
    after the last run token by token; the chunks in groups (one barrier-free pass: robust when a
    core is busy)."""
    T, dk = q.shape
    dv = v.shape[1]
    g, head, nch, tail = aligned_chunks(p, T, C)
    S = np.zeros((nlev, dk, dv))
    D = np.zeros(nlev)
    for j in range(levels0.shape[0]):
        if (p >> j) & 1:
            for a in range(dk):
                for c in range(dv):
                    S[j, a, c] = levels0[j, a, c]
    # slots of p's set bits beyond levels0 (a piece of a stream after a split: those before it) hold
    # nothing until a merge writes them: their reads are skipped
    empty = p & ~((1 << levels0.shape[0]) - 1)
    o, kS = np.empty(dv), np.empty(dv)
    for i in range(head):
        _token(q, k, v, log_decay, beta, lam, p, i, gated, S, D, o, kS, out)
    for j in range(nlev):  # lazy decays folded in: the chunks keep every slot decayed to date
        f = math.exp(D[j])
        for a in range(dk):
            for c in range(dv):
                S[j, a, c] *= f
        D[j] = 0.0
    h = g + LL_GROUP_LOG2
    G = min(nch, 1 << LL_GROUP_LOG2)
    dP = dk if gated else 1  # Mamba-2's transitions are scalars
    Qe = np.empty((G, C, dk))
    Pt = np.empty((G, dP, dP))
    H = np.empty((G, dk, dv))
    Ob = np.empty((G, C, dv))
    E = np.empty((G + 1, dP, dP))
    c0 = 0
    while c0 < nch:
        n = _group_len(p + head, c0, nch, C, h)
        for c in range(n):
            _ll_forms(q, k, v, log_decay, beta, lam, head + (c0 + c) * C, gated, Qe[c], Pt[c], H[c], Ob[c])
        _group_chain(Pt, E, n, gated)
        for c in range(n):
            _group_high(lam, p, head, c0, c, C, h, gated, Qe[c], E[c], S, Ob[c], empty)
        empty = _group_low(lam, p, head, c0, n, g, h, gated, Qe, Pt, H, Ob, E, S, out, empty)
        c0 += n
    for i in range(tail, T):
        _token(q, k, v, log_decay, beta, lam, p, i, gated, S, D, o, kS, out)
    end = p + T
    for j in range(levels1.shape[0]):
        f = math.exp(D[j]) if (end >> j) & 1 else 0.0
        for a in range(dk):
            for c in range(dv):
                levels1[j, a, c] = f * S[j, a, c]


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
def _group_high(lam, p, head, c0, c, C, h, gated, Qe, E, S, Ob, empty):
    """Ob += the reads of the slots from h up by chunk c of the group (fixed in the group but for its
    transitions): lambda[t, j + 1] ((Qe E_c) S_j)_t, the product in the input dtype; slots of the set
    bits of ``empty`` (known to hold nothing) skipped."""
    wt = lam.dtype
    R = (np.dot(Qe, E) if gated else Qe * E[0, 0]).astype(wt)
    i0 = head + (c0 + c) * C
    u, j = (p + head + c0 * C) >> h, h
    while u > 0:
        if u & 1 and not (empty >> j) & 1:
            _add_read(np.dot(R, S[j].astype(wt)), lam, i0, j, Ob)
        u >>= 1
        j += 1


@numba.njit
def _group_low(lam, p, head, c0, n, g, h, gated, Qe, Pt, H, Ob, E, S, out, empty):
    """The group's slots g .. h - 1 chunk by chunk (reads, transitions, merges), the slots from h up
    carried by the group's total transition E[n] before the last merge; writes the outputs. Returns
    ``empty`` (the slots known to hold nothing, reads skipped) without the slots the merges wrote."""
    C, dv = Ob.shape[1], Ob.shape[2]
    tmp = np.empty(S.shape[1:])
    for c in range(n):
        i0 = head + (c0 + c) * C
        _ll_pass(lam, p + i0, i0, g, h, gated, Qe[c], Pt[c], Ob[c], S, tmp, empty)
        if c == n - 1:
            u, j = (p + head + c0 * C) >> h, h
            while u > 0:
                if u & 1:
                    _carry(E[n], S[j], tmp, gated)
                    S[j, :, :] = tmp
                u >>= 1
                j += 1
        empty &= ~(1 << _ll_merge(p + i0 + C, g, H[c], S))
        for t in range(C):
            for j in range(dv):
                out[i0 + t, j] = Ob[c, t, j]
    return empty


@numba.njit
def _chain_cols(Pt, E, n, j0, j1):
    """Columns j0 .. j1 - 1 of :func:`_group_chain`'s E[c] = P_{c-1} ... P_0 (Gated DeltaNet; each
    column of E evolves on its own)."""
    if j1 <= j0:
        return
    one = np.array([1.0, 0.0])
    for i in range(E.shape[1]):
        for j in range(j0, j1):
            E[0, i, j] = 1.0 if i == j else 0.0
    for c in range(n):
        _gemm(False, False, Pt[c], E[c, :, j0:j1], E[c + 1, :, j0:j1], False, one)


@numba.njit
def _group_cols(lam, p, head, c0, n, g, h, Qe, Pt, H, Ob, E, S, out, j0, j1):
    """The value columns j0 .. j1 - 1 of :func:`_group_low` for Gated DeltaNet (the group's slots g ..
    h - 1 chunk by chunk, the carry of the slots from h up, the merges, the outputs): the columns of a
    slot, of Ob and of the outputs depend on those columns only, so P parts of them run in parallel and
    nothing is computed twice. Column blocks through explicit loops and :func:`_gemm` (strided
    views: Numba's slice operations on them are generic and several times slower)."""
    w = j1 - j0
    if w <= 0:
        return
    C, dk = Qe.shape[1], Qe.shape[2]
    wt = lam.dtype
    one, onew = np.array([1.0, 0.0]), np.array([1.0, 0.0], wt)
    Qw, Sw, Y, tmp = np.empty((C, dk), wt), np.empty((dk, w), wt), np.empty((C, w), wt), np.empty((dk, w))
    hi = (p + head + c0 * C) >> h  # the occupied slots from h up: its set bits
    for c in range(n):
        i0 = head + (c0 + c) * C
        for t in range(C):
            for i in range(dk):
                Qw[t, i] = Qe[c, t, i]
        u, j = ((p + i0) >> g) & ((1 << (h - g)) - 1), g
        while u > 0:  # occupied low slots: read, then carry by the chunk's transition
            if u & 1:
                _read_cols(Qw, S[j], lam, i0, j, j0, Sw, Y, Ob[c], onew)
                _carry_cols(Pt[c], S[j], tmp, j0, one)
            u >>= 1
            j += 1
        if c == n - 1:  # the slots from h up carried by the group's transition, before the last merge
            u, j = hi, h
            while u > 0:
                if u & 1:
                    _carry_cols(E[n], S[j], tmp, j0, one)
                u >>= 1
                j += 1
        u, z = p + i0 + C, 0  # the Fenwick merge (_ll_merge) on the columns
        while (u & 1) == 0:
            u >>= 1
            z += 1
        for a in range(dk):
            Sz, Hr = S[z, a, j0:j1], H[c, a, j0:j1]
            for x in range(w):
                Sz[x] = Hr[x]
            for jj in range(g, z):
                Sr = S[jj, a, j0:j1]
                for x in range(w):
                    Sz[x] += Sr[x]
        for t in range(C):
            Or, Obr = out[i0 + t, j0:j1], Ob[c, t, j0:j1]
            for x in range(w):
                Or[x] = Obr[x]


@numba.njit(inline="always")
def _read_cols(Qw, Sj, lam, i0, j, j0, Sw, Y, Ob, onew):
    """Ob[t, j0 + x] += lambda[i0 + t, j + 1] (Qw Sj[:, j0 + x])[t], x < Sw.shape[1]: the read of
    slot j (level j + 1) on those columns, the product in the input dtype."""
    dk, w = Sw.shape
    for a in range(dk):  # row views: an index j0 + x keeps Numba's negative-index fix-up in the loop (4x slower)
        Sr = Sj[a, j0 : j0 + w]
        for x in range(w):
            Sw[a, x] = Sr[x]
    _gemm(False, False, Qw, Sw, Y, False, onew)
    for t in range(Y.shape[0]):
        r = lam[i0 + t, j + 1]
        Obr = Ob[t, j0 : j0 + w]
        for x in range(w):
            Obr[x] += r * Y[t, x]


@numba.njit(inline="always")
def _carry_cols(Pt, Sj, tmp, j0, one):
    """Sj[:, j0 + x] <- Pt Sj[:, j0 + x] for x < tmp.shape[1] (tmp scratch)."""
    dk, w = tmp.shape
    _gemm(False, False, Pt, Sj[:, j0 : j0 + w], tmp, False, one)
    for a in range(dk):
        Sr = Sj[a, j0 : j0 + w]
        for x in range(w):
            Sr[x] = tmp[a, x]


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
    x, tb = np.empty(C), np.empty(C)
    for t in range(C):
        seg = 0.0
        for s in range(t, -1, -1):
            x[s] = seg
            seg += np.float64(log_decay[i0 + s])
        _exp_row(x, tb, Dm[t, : t + 1])  # vectorised (math.exp is a scalar libm call), within 1 ulp
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
def _ll_pass(lam, t0, i0, g, h, gated, Qe, Pt, Ob, S, tmp, empty):
    """One aligned chunk (absolute start t0 = p + i0, a multiple of C = 2^g) through the slots g ..
    h - 1 of S (nlev, d_k, d_v; float64, decayed to date): Ob += the reads of each occupied one
    (lambda[t, j + 1] (Qe S_j)_t; none of the set bits of ``empty``), each carried by Pt."""
    u, j = (t0 >> g) & ((1 << (h - g)) - 1), g
    Qw = Qe.astype(lam.dtype) if u > 0 else Qe[:0].astype(lam.dtype)
    while u > 0:  # occupied slots g .. h - 1: the set bits of t0
        if u & 1:
            if not (empty >> j) & 1:
                _add_read(np.dot(Qw, S[j].astype(lam.dtype)), lam, i0, j, Ob)
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
    the slots g .. z - 1 become slot z = ctz(end); returns z."""
    u, z = end, 0
    while (u & 1) == 0:
        u >>= 1
        z += 1
    S[z, :, :] = H
    for j in range(g, z):
        S[z] += S[j]
    return z


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
