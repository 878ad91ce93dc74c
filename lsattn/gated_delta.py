"""Log-linear Gated DeltaNet (Guo et al. 2025): recurrent O(log T) decode form and chunkwise
O(T log T) training form, on any array-API namespace.

    o_t = sum_{s <= t} lambda[t, level(t, s)] * beta_s * (q_t^T A_t A_{t-1} ... A_{s+1} k_s) * v_s,
    A_r = exp(a_r) (I - beta_r k_r k_r^T),

with Fenwick levels ``level(t, s)`` over absolute positions. Each level keeps its own
``d_k x d_v`` state, carried through the same transitions. With all level weights 1 this is
Gated DeltaNet (``S_t = A_t S_{t-1} + beta_t k_t v_t^T``, ``o_t = S_t^T q_t``), computed by the
same code.

**Recurrent form** (``_recurrent``; decoding). The state at offset ``p`` holds, for every level
``l``, ``S^l = sum_{s in B_p^l} beta_s (A_{p-1} ... A_{s+1} k_s) v_s^T``. Token ``t`` applies
``A_t`` to every level at once (``S <- e^{a_t} (S - beta_t k_t (k_t^T S))``), reads
``o_t = lambda[t, 0] beta_t (q_t . k_t) v_t + sum_l lambda[t, l] S^l^T q_t`` and does the Fenwick
merge: token ``t`` and levels ``1 .. z`` (``z`` the trailing zeros of ``t + 1``) become level
``z + 1``. ``O(log t d_k d_v)`` per token; the Python loop runs over tokens (this is the decode form).

**Chunkwise form** (``_chunkwise``; training and prefill). Chunks of ``C`` tokens are aligned to
absolute multiples of ``C`` and zero-padded (padding is the identity transition: ``k = 0``,
``beta = 0``, ``a = 0``). Inside a chunk, with chunk-local cumulative log decay ``G``, the
delta-rule recurrence started from zero has the WY / UT form ``S_i = sum_{r <= i} e^{G_i - G_r}
k_r u_r^T`` with ``U = T^{-1} diag(beta) V`` and ``T = I + N``,
``N[i, r] = beta_i e^{G_i - G_r} (k_i . k_r)`` for ``r < i``. ``T^{-1}`` is built by recursive
doubling of its diagonal blocks (``[[A, 0], [B, D]]^{-1} = [[A^-1, 0], [-D^-1 B A^-1, D^-1]]``):
``log2 C`` rounds of batched matmuls, ``O(C^3)`` in all, no loop over tokens. From it, per chunk:

- ``Attn[t, s] = beta_s q_t^T A_t ... A_{s+1} k_s = ((D * Q K^T) T^{-1})[t, s] beta_s`` with
  ``D[t, s] = e^{G_t - G_s}`` (``s <= t``): the intra-chunk output is ``(Lambda * Attn) V`` with the
  level mask ``Lambda[t, s] = lambda[t, level(t mod C, s mod C)]``;
- ``Qeff_t = (A_t ... A_0)^T q_t = e^{G_t} q_t - (Attn (e^G K))_t``: how a query reads any state
  carried to its chunk's start;
- the chunk summary ``(P, H)``: ``P = A_{C-1} ... A_0 = e^{g} I - Phi (e^G K)``,
  ``H = sum_s beta_s (A_{C-1} ... A_{s+1} k_s) v_s^T = Phi V`` with
  ``Phi = (e^{g - G} K)^T T^{-1} diag(beta)`` (column ``s``: ``beta_s A_{C-1} ... A_{s+1} k_s``).

Exponentials are only ever taken of log-decay sums over the stretch they stand for (within a
chunk: ``_chunktree.segsum`` and ``suffix_after``, never ``G_t - G_s``, whose rounding would grow
with unrelated strong decays and which is NaN for a ``-inf`` hard reset) and of ``G`` itself
(never ``exp(G) * exp(-G)``). Across chunks the generic chunk tree
(``_chunktree.tree_levels``) combines summaries as ``(P_l P_e, P_l H_e + H_l)`` and yields, per
chunk level ``l``, each chunk's bucket ``(P_B, H_B)`` and the prefix ``P_pre`` (the chunks between
the bucket and the chunk); the chunk's queries read ``Qeff_t^T (P_pre H_B)`` with weight
``lambda[t, log2 C + l]``. The same walk gives every chunk's exclusive prefix transition
``E_c = P_{c-1} ... P_{c0}`` (``P_pre P_B`` at the chunk's highest level), through which the
incoming state's levels are read: every key of an old bucket ``B_p^l`` sits at level
``max(l, bit_length(p XOR t))`` from a query ``t >= p`` (``_chunktree.state_read_levels``).

The new state at ``p' = p + T`` is what a virtual query at ``p'`` (a zero token appended to the
call) would read, level by level, without ``q`` and ``lambda``: its within-chunk buckets from
``Phi`` of the last chunk under a level mask, its chunk-level buckets ``P_last P_pre H_B`` from
the tree, and the old levels carried by the call's total transition into level
``max(l, bit_length(p XOR p'))``.

Cost (``n = ceil(T / C)`` chunks): time ``O(T C (C + d_k + d_v) + T d_k (d_k + d_v))`` inside
chunks, ``O(T d_k d_v)`` reads and ``O(n d_k^2 (d_k + d_v))`` tree work per chunk level for
``log2 n`` levels, ``O(T d_k (d_k + d_v popcount(p)))`` for an incoming state: ``O(T log T)``.
Memory ``O(T (C + d_k + d_v + L) + n d_k (d_k + d_v))``: never ``T x T``, never ``T d_k d_v``.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import loglinear
from ._chunktree import chunk_layout, from_chunks, segsum, state_read_levels, suffix_after, to_chunks, tree_levels
from ._prologue import Op, levels_state_shapes, run
from ._typing import Array
from ._validate import device_of
from .loglinear import _check_chunk_size, _chunk_levels, _gather_last, _ns
from .state import State, static_offset

__all__ = ["loglinear_gated_delta"]

OP = "loglinear_gated_delta"
SPEC = Op(OP, (("q", "q"), ("k", "k"), ("v", "v"), ("log_decay", "tok"), ("beta", "tok"), ("level_weights", "lev")),
          levels_state_shapes, neg_inf=("log_decay",), value_state=("levels",))

#: Calls of at most this many tokens run the recurrent form (decoding); longer ones the chunkwise
#: form. Both compute the same function; this is a speed choice (benchmarks/bench_gated_delta.py).
RECURRENT_MAX_T = 4


def loglinear_gated_delta(
    q: Array, k: Array, v: Array, log_decay: Array, beta: Array, level_weights: Array, *,
    chunk_size: int = 64, state: State | None = None, return_state: bool = False, cu_seqlens=None,
    backend: str | None = None,
) -> Array | tuple[Array, State]:
    """Log-linear Gated DeltaNet: one delta-rule state per Fenwick level, level-weighted read-out.

    ``o_t = sum_{s<=t} lambda[t, level(t,s)] beta_s (q_t^T A_t ... A_{s+1} k_s) v_s`` with
    ``A_r = exp(a_r) (I - beta_r k_r k_r^T)``, over absolute positions. ``level_weights`` all 1 gives
    Gated DeltaNet.

    Parameters
    ----------
    q, k : arrays (..., T, d_k)
        Queries and keys (keys are usually L2-normalised; any keys are accepted).
    v : array (..., T, d_v)
    log_decay : array (..., T)
        ``a_t``, usually ``<= 0``.
    beta : array (..., T)
        Delta-rule write strengths, usually in ``[0, 1]``.
    level_weights, chunk_size, state, return_state, cu_seqlens, backend
        As in :func:`lsattn.loglinear_attention`.

    Returns
    -------
    out : array (..., T, d_v)
        As in :func:`lsattn.loglinear_attention`.
    state : State, only with ``return_state=True``
        ``tensors["levels"]``: ``(..., bit_length(offset), d_k, d_v)``; slot ``l - 1`` holds the
        bucket ``B_offset^l`` as ``sum_s beta_s (A_{offset-1} ... A_{s+1} k_s) v_s^T`` (zeros where
        bit ``l - 1`` of ``offset`` is clear). Same layout as ``loglinear_attention``'s state.

    Cost: ``O(T C (C + d_k + d_v) + T d_k (d_k + d_v) + T d_k d_v log(T / C))`` time, never a
    ``T x T`` or ``T d_k d_v`` array; ``O(log T d_k d_v)`` per decoded token. See the module docstring.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = rng.standard_normal((3, 2, 100, 8))
    >>> k /= np.linalg.norm(k, axis=-1, keepdims=True)
    >>> a, beta = -0.1 * rng.random((2, 100)), rng.random((2, 100))
    >>> lam = rng.random((2, 100, lsattn.num_levels(100)))
    >>> o = lsattn.loglinear_gated_delta(q, k, v, a, beta, lam, chunk_size=16)
    >>> o.shape
    (2, 100, 8)
    >>> bool(np.allclose(o, lsattn.reference.loglinear_gated_delta(q, k, v, a, beta, lam)))
    True
    """
    return run(SPEC, (q, k, v, log_decay, beta, level_weights), extra=(_check_chunk_size(chunk_size),), state=state,
               return_state=return_state, backend=backend, cu_seqlens=cu_seqlens)


def _forward(q, k, v, log_decay, beta, level_weights, chunk_size, state, return_state):
    """Array-API implementation of ``loglinear_gated_delta`` (the signature every backend implements):
    arguments and result as ``lsattn.loglinear._forward``, with ``beta (..., T)`` after
    ``log_decay``. Calls of at most ``RECURRENT_MAX_T`` tokens use the recurrent form, others the chunkwise one.
    """
    if state is not None and static_offset(state.offset) is None:  # JAX tracer: branch-free per-token steps
        from ._steps import traced_levels

        return traced_levels(OP, q, k, v, log_decay, beta, level_weights, state, return_state)
    form = _recurrent if q.shape[-2] <= RECURRENT_MAX_T else _chunkwise
    return form(q, k, v, log_decay, beta, level_weights, chunk_size, state, return_state)


# ---- shared bits ----------------------------------------------------------------------------------

def _state(xp, offset, batch, d_k, d_v, dtype, levels, like):
    return loglinear._state(xp, offset, batch, d_k, d_v, dtype, levels, like, OP)


def _run(body, q, k, v, log_decay, beta, level_weights, state, return_state, **kw):
    """Call a form's ``body`` on one flattened batch axis and wrap its result.

    ``body(xp, q, k, v, log_decay, beta, level_weights, p, old, return_state, **kw)`` sees
    ``(B, T, ...)`` arrays, the offset ``p`` and the old levels ``(B, n_old, d_k, d_v)`` (None when
    empty), and returns ``(out (B, T, d_v), levels (B, n_new, d_k, d_v) or None)``. One batch axis:
    XLA (jax 0.10) miscompiles a take followed by a batched matmul under jit with two or more batch
    axes; the reshapes are free views elsewhere."""
    xp = _ns(q)
    p = 0 if state is None else state.offset
    batch, T, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], v.shape[-1]
    if T == 0:
        out = xp.zeros(batch + (0, d_v), dtype=q.dtype, device=device_of(q))
        new = state if state is not None else _state(xp, 0, batch, d_k, d_v, q.dtype, None, q)
        return out, (new if return_state else None)
    B = math.prod(batch)
    flat = [xp.reshape(x, (B,) + tuple(x.shape[len(batch):])) for x in (q, k, v, log_decay, beta, level_weights)]
    old = None
    if p > 0:
        old = xp.reshape(state.tensors["levels"], (B,) + tuple(state.tensors["levels"].shape[-3:]))
    out, levels = body(xp, *flat, p, old, return_state, **kw)
    out = xp.reshape(out, batch + (T, d_v))
    if not return_state:
        return out, None
    levels = xp.reshape(levels, batch + tuple(levels.shape[-3:]))
    return out, _state(xp, p + T, batch, d_k, d_v, q.dtype, levels, q)


# ---- recurrent form (decoding) ----------------------------------------------------------------------

def _recurrent(q, k, v, log_decay, beta, level_weights, chunk_size, state, return_state):
    """Token-by-token recurrence over O(log T) level states; same signature and result as ``_forward``.

    Per token: ``A_t`` applied to all level states (one batched product), the level-weighted read,
    the Fenwick merge. ``chunk_size`` is unused.
    """
    return _run(_recurrent_body, q, k, v, log_decay, beta, level_weights, state, return_state)


def _recurrent_body(xp, q, k, v, log_decay, beta, level_weights, p, levels, return_state):
    """(B, T, ...) arrays, old levels (B, n, d_k, d_v) or None -> (out (B, T, d_v), levels)."""
    own = beta * xp.sum(q * k, axis=-1) * level_weights[..., 0]  # (B, T): lambda_t0 beta_t (q_t . k_t)
    bk = beta[..., None] * k  # (B, T, d_k)
    # per-token views, taken once (JAX compiles every distinct static index separately)
    per_token = zip(
        *(xp.unstack(x, axis=1) for x in (q, k, v, bk, own, xp.exp(log_decay), level_weights))
    )
    outs = []
    for i, (q_t, k_t, v_t, bk_t, own_t, decay_t, lam_t) in enumerate(per_token):
        o_t = own_t[:, None] * v_t
        if levels is not None:
            n = levels.shape[1]
            # S <- e^{a_t} (S - beta_t k_t (k_t^T S)), every level at once: (B, n, d_k, d_v)
            kS = k_t[:, None, None, :] @ levels  # (B, n, 1, d_v)
            levels = decay_t[:, None, None, None] * (levels - bk_t[:, None, :, None] * kS)
            reads = q_t[:, None, None, :] @ levels  # (B, n, 1, d_v)
            o_t = o_t + xp.sum(lam_t[:, 1 : n + 1, None] * reads[:, :, 0, :], axis=1)
        outs.append(o_t)
        levels = _merge(xp, levels, bk_t[:, :, None] * v_t[:, None, :], p + i)
    return xp.stack(outs, axis=1), levels


def _merge(xp, levels, write, t):
    """Fenwick merge after token ``t``: its write and levels ``1 .. z`` form level ``z + 1``.

    levels: (B, bit_length(t), d_k, d_v) or None; write: (B, d_k, d_v)
    -> (B, bit_length(t + 1), d_k, d_v)"""
    z = ((t + 1) & -(t + 1)).bit_length() - 1  # trailing zeros of t + 1
    merged = write if z == 0 else write + xp.sum(levels[:, :z, :, :], axis=1)
    parts = []
    if z > 0:
        parts.append(xp.zeros((write.shape[0], z) + tuple(write.shape[1:]), dtype=write.dtype, device=device_of(write)))
    parts.append(merged[:, None, :, :])
    if levels is not None and levels.shape[1] > z + 1:
        parts.append(levels[:, z + 1 :, :, :])
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)


# ---- chunkwise form -----------------------------------------------------------------------------------

def _chunkwise(q, k, v, log_decay, beta, level_weights, chunk_size, state, return_state):
    """WY/UT chunks plus the chunk Fenwick tree; same signature and result as ``_forward``."""
    return _run(_chunkwise_body, q, k, v, log_decay, beta, level_weights, state, return_state, chunk_size=chunk_size)


def _chunkwise_body(xp, q, k, v, log_decay, beta, level_weights, p, old, return_state, *, chunk_size):
    """(B, T, ...) arrays, old levels (B, n, d_k, d_v) or None -> (out (B, T, d_v), levels)."""
    T = q.shape[1]
    C = min(chunk_size, 1 << (T - 1).bit_length())
    # with return_state, room for the virtual query at p + T: a zero token after the call (one
    # more padded chunk when p + T is a multiple of C)
    lay = chunk_layout(p, T + 1 if return_state else T, C)
    if return_state:
        lay = dataclasses.replace(lay, T=T, pad_right=lay.pad_right + 1)
    Qc, Kc, Vc = (to_chunks(xp, x, lay, -2) for x in (q, k, v))  # (B, n, C, d)
    lam_c = to_chunks(xp, level_weights, lay, -2)  # (B, n, C, L)
    bc = to_chunks(xp, beta, lay, -1)  # (B, n, C)
    a_c = to_chunks(xp, log_decay, lay, -1)  # (B, n, C)

    ch = _chunk_forms(xp, Qc, Kc, Vc, a_c, bc)
    out = _masked_intra(xp, ch["attn"], Vc, lam_c)
    walk = _across_chunks(xp, ch, lam_c, lay, 1, need_prefix=old is not None, need_last=return_state)
    if walk["out"] is not None:
        out = out + walk["out"]
    out = from_chunks(xp, out, lay, -2)  # (B, T, d_v)
    if old is not None:
        q_start = from_chunks(xp, ch["qeff"] @ walk["prefix"], lay, -2)  # (A_t ... A_p)^T q_t: (B, T, d_k)
        out = out + _read_state(xp, q_start, old, level_weights, p)
    levels = _new_levels(xp, ch, Vc, walk, old, lay, p, T) if return_state else None
    return out, levels


def _unit_lower_inverse(xp, K, a, beta):
    """``(I + N)^{-1}``, ``N[i, r] = beta_i e^{a_{r+1} + ... + a_i} (k_i . k_r)`` for ``r < i`` (0 otherwise).

    Recursive doubling of diagonal blocks: the inverse of ``[[A, 0], [B, D]]`` is
    ``[[A^-1, 0], [-D^-1 B A^-1, D^-1]]``; round ``j`` joins pairs of ``2^j``-blocks, ``log2 C``
    rounds of batched matmuls, ``O(C^3)`` in all. The decay of ``B`` is the earlier half's sum after
    ``r`` plus the later half's sum up to ``i``: summed over that stretch only.

    K: (..., C, d_k), a (log decays), beta: (..., C) -> (..., C, C)"""
    batch, C, d_k = tuple(K.shape[:-2]), K.shape[-2], K.shape[-1]
    inv = xp.ones(batch + (C, 1, 1), dtype=K.dtype, device=device_of(K))  # (..., C / b, b, b)
    b = 1
    while b < C:
        pairs = C // (2 * b)
        Kp = xp.reshape(K, batch + (pairs, 2, b, d_k))
        ap = xp.reshape(a, batch + (pairs, 2, b))
        bp = xp.reshape(beta, batch + (pairs, 2, b))
        # B[i, r] = N[i, r], i in the later half, r in the earlier half of each pair: (..., pairs, b, b)
        ratio = xp.exp(xp.cumulative_sum(ap[..., 1, :], axis=-1)[..., :, None] + suffix_after(xp, ap[..., 0, :])[..., None, :])
        B = (bp[..., 1, :, None] * ratio) * (Kp[..., 1, :, :] @ xp.matrix_transpose(Kp[..., 0, :, :]))
        first, second = inv[..., 0::2, :, :], inv[..., 1::2, :, :]
        low = -(second @ (B @ first))
        top = xp.concat([first, xp.zeros_like(first)], axis=-1)
        inv = xp.concat([top, xp.concat([low, second], axis=-1)], axis=-2)  # (..., pairs, 2b, 2b)
        b *= 2
    return xp.reshape(inv, batch + (C, C))


def _chunk_forms(xp, Qc, Kc, Vc, a_c, bc, *, transition=True):
    """Per-chunk WY quantities (zero incoming state), every chunk at once.

    Qc, Kc: (..., n, C, d_k), Vc: (..., n, C, d_v), a_c (log decays), bc: (..., n, C) ->
    dict with ``attn`` (..., n, C, C), ``qeff`` (..., n, C, d_k), ``phi`` (..., n, d_k, C),
    ``eGK`` (..., n, C, d_k), ``g`` (..., n) the chunk's total log decay, ``H`` (..., n, d_k, d_v)
    and, with ``transition``, ``P = e^g I - phi eGK`` (..., n, d_k, d_k) (see the module docstring;
    the cupy backend's scan applies ``P`` as ``e^g S - phi (eGK S)`` without forming it)."""
    d_k = Kc.shape[-1]
    G = xp.cumulative_sum(a_c, axis=-1)  # (..., n, C) chunk-local, inclusive
    D = xp.exp(segsum(xp, a_c))  # e^{a_{s+1} + ... + a_t}, s <= t; 0 above the diagonal
    Tinv = _unit_lower_inverse(xp, Kc, a_c, bc)
    attn = ((D * (Qc @ xp.matrix_transpose(Kc))) @ Tinv) * bc[..., None, :]  # beta_s q_t^T A_t..A_{s+1} k_s
    eG = xp.exp(G)[..., None]
    eGK = eG * Kc
    qeff = eG * Qc - attn @ eGK  # (A_t ... A_0)^T q_t
    g = G[..., -1:]  # (..., n, 1) chunk total log decay
    Z = xp.exp(suffix_after(xp, a_c))[..., None] * Kc  # e^{a_{s+1} + ... + a_{C-1}} k_s
    phi = xp.matrix_transpose(Z) @ (Tinv * bc[..., None, :])  # column s: beta_s A_{C-1} .. A_{s+1} k_s
    res = {"attn": attn, "qeff": qeff, "phi": phi, "eGK": eGK, "g": g[..., 0], "H": phi @ Vc}
    if transition:
        eye = xp.eye(d_k, dtype=Kc.dtype, device=device_of(Kc))
        res["P"] = xp.exp(g)[..., None] * eye - phi @ eGK  # A_{C-1} ... A_0
    return res


def _masked_intra(xp, attn, Vc, lam_c):
    """``(Lambda * Attn) V``, ``Lambda[t, s] = lambda[t, level(t mod C, s mod C)]``: (..., n, C, d_v)."""
    C, L = attn.shape[-1], lam_c.shape[-1]
    lev = _chunk_levels(C)  # (C, C), -1 above the diagonal (Attn is zero there)
    lam_ts = _gather_last(xp, lam_c, np.clip(lev, 0, L - 1))  # (..., n, C, C); L too small only for padding
    return (lam_ts * attn) @ Vc


def _combine(earlier, later):
    """Summary of two adjacent stretches: transitions compose, the earlier write is carried."""
    (P_e, H_e), (P_l, H_l) = earlier, later
    return (P_l @ P_e, P_l @ H_e + H_l)


def _across_chunks(xp, ch, lam_c, lay, bn, *, need_prefix, need_last):
    """Reads of earlier chunks of this call through the chunk Fenwick tree.

    Returns a dict: ``out`` (..., n, C, d_v) or None; ``prefix`` (..., n, d_k, d_k), the exclusive
    prefix transitions ``P_{c-1} ... P_{c0}`` (if ``need_prefix``); ``last`` {token level: (..., d_k, d_v)},
    the last chunk's bucket writes carried to its start (if ``need_last``)."""
    P, H, qeff = ch["P"], ch["H"], ch["qeff"]
    n, L, d_k = lay.n_chunks, lam_c.shape[-1], P.shape[-1]
    dev = device_of(P)
    eye = xp.eye(d_k, dtype=P.dtype, device=dev)
    zero = xp.zeros((), dtype=P.dtype, device=dev)
    res = {"out": None, "prefix": None, "last": {}}
    prefix = xp.broadcast_to(eye, P.shape) if need_prefix else None
    for lev in tree_levels(xp, (P, H), _combine, (eye, zero), first_chunk=lay.first_chunk, batch_ndim=bn):
        level = lay.log2_C + lev.level
        (P_B, H_B), P_pre = lev.bucket, lev.prefix[0]
        first = lev.level == 1  # no lower buckets: the prefix is the identity
        X = H_B if first else P_pre @ H_B  # bucket write carried to the chunk's start: (..., m, d_k, d_v)
        if level < L:  # else only the virtual query's extra chunk reads here
            w = lev.gather(lam_c[..., level])[..., None]  # (..., m, C, 1)
            part = lev.expand((lev.gather(qeff) @ X) * w)
            res["out"] = part if res["out"] is None else res["out"] + part
        if need_prefix:
            reads = xp.asarray(np.isin(np.arange(n), lev.chunks)[:, None, None], device=dev)
            prefix = xp.where(reads, lev.expand(P_B if first else P_pre @ P_B), prefix)
        if need_last and lev.chunks[-1] == n - 1:
            res["last"][level] = X[..., -1, :, :]
    res["prefix"] = prefix
    return res


def _read_state(xp, q_start, old, level_weights, p):
    """Contribution of the incoming state's levels to the queries ``p ... p + T - 1``.

    q_start: (..., T, d_k) queries carried back to ``p``, old: (..., n_old, d_k, d_v) -> (..., T, d_v)"""
    T = q_start.shape[-2]
    w = _gather_last(xp, level_weights, state_read_levels(p, T))  # (..., T, n_old)
    out = None
    for j in (j for j in range(p.bit_length()) if (p >> j) & 1):
        part = (q_start @ old[..., j, :, :]) * w[..., j : j + 1]
        out = part if out is None else out + part
    return out


def _new_levels(xp, ch, Vc, walk, old, lay, p, T):
    """The state's levels at ``p' = p + T``: what a query at ``p'`` reads per level (no q, no lambda).

    -> (..., bit_length(p'), d_k, d_v)"""
    P_last = ch["P"][..., -1, :, :]
    chunk_levels = {level: P_last @ X for level, X in walk["last"].items()}
    carried = None
    if old is not None:
        carried = (P_last @ walk["prefix"][..., -1, :, :])[..., None, :, :] @ old  # A_{p'-1} ... A_p Old
    return assemble_levels(xp, ch["phi"][..., -1, :, :], Vc[..., -1, :, :], chunk_levels, carried, lay.C, p, T)


def assemble_levels(xp, phi_last, V_last, chunk_levels, carried, C, p, T):
    """The state's level slots at ``p' = p + T`` from their three sources.

    phi_last (..., d_k, C), V_last (..., C, d_v): the chunk holding ``p'`` (read only when ``p'`` is
    not a multiple of ``C``); its buckets inside the chunk are Phi's columns under a level mask.
    chunk_levels: {token level > log2 C: (..., d_k, d_v)}, the chunk-level buckets of ``p'``
    carried to ``p'``; carried: (..., n_old, d_k, d_v) the incoming slots carried to ``p'``, or None.
    -> (..., bit_length(p'), d_k, d_v)"""
    end = p + T
    log2_C = C.bit_length() - 1
    i_end = end % C  # p' within its chunk
    batch, d_k, d_v = tuple(phi_last.shape[:-2]), phi_last.shape[-2], V_last.shape[-1]
    dev = device_of(phi_last)
    local = None
    if i_end > 0:  # buckets of p' inside its chunk: Phi's columns under a level mask
        lev_row = _chunk_levels(C)[i_end, :]
        masks = np.stack([(lev_row == l) & (np.arange(C) < i_end) for l in range(1, log2_C + 1)])
        m = xp.asarray(masks.astype(np.float64), dtype=phi_last.dtype, device=dev)  # (log2 C, C)
        local = (phi_last[..., None, :, :] * m[:, None, :]) @ V_last[..., None, :, :]  # (..., log2 C, d_k, d_v)
    h = (p ^ end).bit_length()
    slots = []
    for l in range(1, end.bit_length() + 1):
        slot = None
        if (end >> (l - 1)) & 1:
            if l <= log2_C:
                slot = local[..., l - 1, :, :]
            elif l in chunk_levels:
                slot = chunk_levels[l]
        if carried is not None:
            if l == h:
                folded = xp.sum(carried[..., : min(h, carried.shape[-3]), :, :], axis=-3)
                slot = folded if slot is None else slot + folded
            elif l > h:
                slot = carried[..., l - 1, :, :] if slot is None else slot + carried[..., l - 1, :, :]
        if slot is None:
            slot = xp.zeros(batch + (d_k, d_v), dtype=phi_last.dtype, device=dev)
        slots.append(slot)
    return xp.stack(slots, axis=-3)
