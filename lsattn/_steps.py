"""Array-API decoding steps (``lsattn.stepper(..., backend="array_api")``): one token at a time on
preallocated state buffers, for every operator and every array-API namespace; the same step
functions run the log-linear operators under a traced (JAX) offset.

Each factory ``<operator>(state, max_tokens)`` copies the state's tensors into buffers (the incoming
State is never modified) and returns an object with ``step(p, *arrays) -> out`` (the token at
absolute position ``p``; arrays validated by ``lsattn.stepper``, in the compute dtype, T axis of
length 1) and ``tensors(p) -> dict`` (the State's tensors at offset ``p``, views of the buffers).
Buffers are updated in place (``buf[...] = new``); JAX arrays are immutable, so under JAX a step
rebinds its buffers to the new arrays (``.at[...].set``), the same values without the in-place write.

**Branch-free in the offset** (CUDA-graph capturable on CUDA torch tensors). A step never reads
the host ``p``: the offset lives in a 0-d integer array on the state's device (``off``), advanced
in place, and the Fenwick bookkeeping is masked arithmetic on its bits (:func:`offset_masks`):
the level buffers have a fixed number ``K`` of slots (slot ``j`` = level ``j + 1``, zero / empty
where bit ``j`` of the offset is clear), every step reads all ``K`` slots and rewrites all of
them. No host branch, no host-device sync, no new State per token; the temporaries are ordinary
device allocations (a CUDA graph's private pool captures them). The same functions
(:func:`levels_step`, :func:`hierarchical_step`) run a whole call token by token when the
offset is a JAX tracer (:func:`traced_levels`, :func:`traced_hierarchical`: ``jax.lax.scan``
over chunks with the State in the carry).

Step formulas, from the operators' state definitions (token at ``p``, ``h = bit_length(p XOR (p + 1))``;
the low ``h - 1`` bits of ``p`` are set, so levels ``1 .. h - 1`` are occupied and fold into ``h``):

- exp-kernel: the token's key joins the summary ``(m, n, S, z)`` (:func:`lsattn.exp_kernel.merge`
  with a one-key summary, written out), then the query reads the updated summary
  (:func:`lsattn.exp_kernel.read`): its own key included.
- log-linear Mamba-2: ``o = lam_0 (q . k) v + sum_l lam_l e^{a_p} q^T S_l``; then level ``h`` becomes
  ``e^{a_p} sum_{l < h} S_l + k v^T``, levels above ``h`` are scaled by ``e^{a_p}``, levels below are 0.
- log-linear Gated DeltaNet: every level ``S <- e^{a_p} (S - beta k (k^T S))``, then
  ``o = lam_0 beta (q . k) v + sum_l lam_l S_l^T q``; level ``h`` becomes ``beta k v^T + sum_{l < h} S_l``.
- hierarchical: the diagonal and every level's read (decay ``a_p``, weight ``lam_l``) combine in
  log space; level ``h`` becomes the merge of the token's key with the lower levels decayed by
  ``a_p``; levels above ``h`` are decayed (``m += a_p``), levels below are empty.
"""
from __future__ import annotations

import math

import array_api_compat
import numpy as np

from ._validate import device_of
from .exp_kernel import _clamp_log_values, _finish, _minus_inf, diagonal, merge, read
from .state import State, level_slots_of, with_level_slots

__all__ = ["log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta",
           "loglinear_log_attention", "offset_masks", "levels_step", "apply_merge", "hierarchical_step", "traced_levels",
           "traced_hierarchical"]


def _copy(xp, t):
    """A fresh buffer holding ``t`` (no autograd history)."""
    if hasattr(t, "detach"):
        t = t.detach()
    return xp.asarray(t, copy=True)


def level_slots(state, max_tokens):
    """Level slots the buffers hold: enough for offsets up to ``max_tokens``."""
    return max(int(max_tokens).bit_length(), int(state.offset).bit_length())


# ---- the offset's bits: masks over the level slots, no host read --------------------------------

def slot_bits(xp, K, p):
    """Integer constants of :func:`offset_masks` for ``K`` slots, in ``p``'s dtype and on its device:
    ``(2^j, 2^j - 1, 2^(j+1) - 1)`` for ``j = 0 .. K - 1`` (clipped to the dtype's maximum), each (K,)."""
    top = int(xp.iinfo(p.dtype).max)
    cols = [[min(f(j), top) for j in range(K)] for f in (lambda j: 1 << j, lambda j: (1 << j) - 1,
                                                           lambda j: (2 << j) - 1)]
    return tuple(xp.asarray(np.asarray(c, dtype=np.int64), dtype=p.dtype, device=device_of(p)) for c in cols)


def offset_masks(xp, p, bits):
    """Boolean masks (K,) over the level slots for the token at ``p`` (0-d integer array), with
    ``h = bit_length(p XOR (p + 1))`` (one plus the trailing ones of ``p``):

    ``occupied`` (bit ``j`` of ``p`` set: slot ``j`` holds the bucket ``B_p^{j+1}``), ``low``
    (``j < h - 1``: folds into the merged level), ``top`` (``j == h - 1``: the merged level),
    ``high`` (``j > h - 1``: kept). Integer arithmetic on the device, no host read."""
    pow2, below, upto = bits
    nxt = p + 1
    occupied = xp.bitwise_and(p, pow2) != 0
    low = xp.bitwise_and(nxt, upto) == 0  # bits 0 .. j of p + 1 clear
    at_most = xp.bitwise_and(nxt, below) == 0  # bits 0 .. j - 1 clear: j <= h - 1
    return occupied, low, xp.logical_and(at_most, xp.logical_not(low)), xp.logical_not(at_most)


def _slot_weights(xp, lam, K):
    """``lam[..., l]`` for the slot levels ``l = 1 .. K``: (..., L) -> (..., K). Slots beyond level
    ``L - 1`` are empty whenever ``L >= num_levels(p + 1)``; they take level ``L - 1``'s weight."""
    L = lam.shape[-1]
    if L - 1 >= K:
        return lam[..., 1 : K + 1]
    pad = xp.broadcast_to(lam[..., L - 1 : L], tuple(lam.shape[:-1]) + (K - L + 1,))
    return xp.concat([lam[..., 1:], pad], axis=-1)


def levels_step(xp, S, masks, q, k, v, log_decay, beta, lam):
    """One token of log-linear Mamba-2 (``beta`` None) or Gated DeltaNet on fixed-capacity levels.

    S : (..., K, d_k, d_v), slot ``j`` = level ``j + 1`` at the token's offset (zeros where empty);
    masks : :func:`offset_masks` of that offset; q, k (..., 1, d_k), v (..., 1, d_v),
    log_decay (..., 1), beta (..., 1) or None, lam (..., 1, L).
    Returns ``(out (..., 1, d_v), scale (..., K, 1, 1), merged (..., 1, d_k, d_v))``: the levels
    after the token are ``S' * scale + top * merged`` (:func:`apply_merge`; ``S' = S`` for Mamba-2,
    ``S`` after the transition for Gated DeltaNet, also returned as the 4th item): the kept levels
    scaled (by the decay, or 1), the folded ones zeroed, the merged level written. Per-slot scalars
    and matrix products over the slot axis: two passes over the levels beside the reads."""
    _, low, top, high = (xp.astype(m, S.dtype) for m in masks)  # (K,)
    K, d_k, d_v = S.shape[-3], S.shape[-2], S.shape[-1]
    decay = xp.exp(log_decay)  # (..., 1)
    qk = xp.sum(q * k, axis=-1)[..., None]  # (..., 1, 1)
    w = _slot_weights(xp, lam, K)  # (..., 1, K)
    if beta is not None:  # A_p on every level: S <- e^{a_p} (S - beta k (k^T S))
        bk = beta[..., None] * k  # (..., 1, d_k)
        out = (lam[..., :1] * beta[..., None] * qk) * v
        write = xp.matrix_transpose(bk) @ v  # (..., d_k, d_v)
        S = decay[..., None, None] * (S - xp.matrix_transpose(bk)[..., None, :, :] * (k[..., None, :, :] @ S))
        fold, scale = low * xp.ones_like(decay), high * xp.ones_like(decay)  # (..., K)
    else:
        out = (lam[..., :1] * qk) * v
        write = xp.matrix_transpose(k) @ v
        w = w * decay[..., None]
        fold, scale = low * decay, high * decay  # (..., K)
    flat = xp.reshape(S, tuple(S.shape[:-2]) + (d_k * d_v,))  # (..., K, d_k d_v)
    folded = xp.reshape(fold[..., None, :] @ flat, tuple(S.shape[:-3]) + (d_k, d_v))  # sum_j fold_j S_j
    out = out + w @ (q[..., None, :, :] @ S)[..., 0, :]  # (..., 1, K) @ (..., K, d_v)
    return out, scale[..., None, None], (write + folded)[..., None, :, :], S


def apply_merge(xp, S, scale, top, merged):
    """The levels after a step: ``S * scale + top * merged`` (top: the ``top`` mask of
    :func:`offset_masks`), a new array; (..., K, d_k, d_v)."""
    return S * scale + xp.astype(top, S.dtype)[:, None, None] * merged


def hierarchical_step(xp, summ, masks, lo, q, k, log_v, lam, a):
    """One token of hierarchical exp-kernel attention on fixed-capacity level summaries.

    summ : (m (..., K, d_k), n (..., K, d_v), S (..., K, d_k, d_v), z (..., K, d_k)), empty slots
    ``m = n = lo``, ``S = z = 0``; masks : :func:`offset_masks`; lo : 0-d array, the finite "minus
    infinity"; q, k (..., 1, d_k), log_v (..., 1, d_v), lam (..., 1, L) log level weights,
    a (..., 1) log decay already clamped, or None.
    Returns (log y (..., 1, d_v), the summaries after the token); NaN where every level the token
    reads (its own, the occupied slots) is switched off (no weight at all: 0/0, as a plain call)."""
    occupied, low, top, high = masks
    K = summ[0].shape[-2]
    log_v = xp.maximum(log_v, lo)
    off = lam[..., 0, :] == -math.inf
    undefined = xp.logical_and(off[..., 0], xp.all(xp.logical_or(_slot_weights(xp, off, K), xp.logical_not(occupied)), axis=-1))
    lam = xp.maximum(lam[..., 0, :], lo)  # (..., L); -inf (level off) -> finite stand-in
    r, den, y = diagonal(xp, q, k, log_v, True)  # over (..., 1)
    r = r + lam[..., :1]
    rl, dl, yl = read(xp, q[..., None, :, :], summ, True)  # over (..., K, 1)
    shift = _slot_weights(xp, lam, K) if a is None else _slot_weights(xp, lam, K) + a
    rl = xp.where(occupied[:, None], rl + shift[..., None], lo)
    # combine the diagonal and the K level reads at the common shift R (log space)
    R = xp.maximum(r, xp.max(rl, axis=-2))  # (..., 1)
    den = xp.exp(r - R) * den + xp.sum(xp.exp(rl - R[..., None, :]) * dl, axis=-2)
    Y = xp.concat([(y + (r - R)[..., None])[..., None, :, :], yl + (rl - R[..., None, :])[..., None]], axis=-3)
    M = xp.max(Y, axis=-3)
    out = _finish(xp, (R, den, M + xp.log(xp.sum(xp.exp(Y - M[..., None, :, :]), axis=-3))), True)
    # full_like fills on the device (a host scalar copied in would break CUDA-graph capture)
    out = xp.where(undefined[..., None, None], xp.full_like(out, math.nan), out)

    # Fenwick merge: the key and levels below h (decayed by a) become level h, levels above decay
    m, n, S, z = summ
    if a is not None:
        m = m + a[..., None]
    lowc, topc, highc = low[:, None], top[:, None], high[:, None]
    lowf = xp.astype(lowc, S.dtype)
    ml, nl = xp.where(lowc, m, lo), xp.where(lowc, n, lo)
    mk, nk = xp.max(ml, axis=-2), xp.max(nl, axis=-2)
    fa, ga = xp.exp(ml - mk[..., None, :]), xp.exp(nl - nk[..., None, :])
    fa = fa * lowf
    folded = (mk, nk, xp.sum((fa[..., :, None] * ga[..., None, :]) * S, axis=-3), xp.sum(fa * z, axis=-2))
    key, val = k[..., 0, :], log_v[..., 0, :]
    ones = xp.ones(tuple(key.shape) + (val.shape[-1],), dtype=key.dtype, device=device_of(key))
    nm, nn, nS, nz = merge(xp, folded, (key, val, ones, xp.ones_like(key)))
    highf, topf = xp.astype(highc, S.dtype), xp.astype(topc, S.dtype)
    new = (xp.where(topc, xp.maximum(nm, lo)[..., None, :], xp.where(highc, xp.maximum(m, lo), lo)),
           xp.where(topc, nn[..., None, :], xp.where(highc, n, lo)),
           highf[..., None] * S + topf[..., None] * nS[..., None, :, :],
           highf * z + topf * nz[..., None, :])
    return out, new


# ---- stepper buffers ------------------------------------------------------------------------------

class _Buffers:
    """Named state buffers updated in place (rebound under JAX, whose arrays are immutable), and the
    offset ``off``: a 0-d integer array on the buffers' device, advanced in place by each step."""

    def __init__(self, state, bufs):
        self.xp = array_api_compat.array_namespace(*bufs.values())
        self.mutable = not array_api_compat.is_jax_namespace(self.xp)
        self.buf = bufs
        like = next(iter(bufs.values()))
        self.off = self.xp.asarray(int(state.offset), device=device_of(like))

    def put(self, name, index, value):
        if self.mutable:
            self.buf[name][index] = value
        else:
            self.buf[name] = self.buf[name].at[index].set(value)

    def offset_now(self):
        """The device offset as a Python int (a host read: after CUDA-graph replays, the truth)."""
        return int(self.off)


# ---- exp-kernel attention -----------------------------------------------------------------------

class _ExpKernel(_Buffers):
    def __init__(self, state, log_values):
        xp = array_api_compat.array_namespace(state.tensors["S"])
        super().__init__(state, {n: _copy(xp, t) for n, t in state.tensors.items()})
        self.log_values = log_values

    def step(self, p, q, k, vals):
        """q, k (..., 1, d_k), vals (..., 1, d_v) -> (..., 1, d_v).

        :func:`lsattn.exp_kernel.merge` of the summary with the one-key summary ``(k, vals, 1, 1)``,
        written out (no ones arrays): the larger shift gets factor exactly 1."""
        xp, b, lv = self.xp, self.buf, self.log_values
        vals = _clamp_log_values(xp, vals, lv)
        m, key = b["m"], k[..., 0, :]
        mm = xp.maximum(m, key)
        fa, fb = xp.exp(m - mm)[..., None], xp.exp(key - mm)[..., None]  # (..., d_k, 1)
        if lv:
            n = xp.maximum(b["n"], vals[..., 0, :])
            g = xp.exp(b["n"] - n)[..., None, :]
            S = (fa * g) * b["S"] + fb * xp.exp(vals - n[..., None, :])
        else:
            n, S = None, fa * b["S"] + fb * vals
        z = fa[..., 0] * b["z"] + fb[..., 0]
        out = _finish(xp, read(xp, q, (mm, n, S, z), lv), lv)
        # no feature live in both the query and the keys so far (m at the stand-in: none above -inf,
        # as lsattn._nonfinite.undefined_rows): no weight at all, 0/0, NaN as a plain call
        live = (q[..., 0, :] > -math.inf) & (mm > _minus_inf(xp, mm.dtype))
        out = xp.where(xp.any(live, axis=-1)[..., None, None], out, xp.full_like(out, math.nan))
        for name, x in (("m", mm), ("n", n), ("S", S), ("z", z)):
            if x is not None:
                self.put(name, ..., x)
        self.off += 1
        return out

    def tensors(self, p):
        return dict(self.buf)


def log_attention(state, max_tokens):
    return _ExpKernel(state, True)


def exp_kernel_attention(state, max_tokens):
    return _ExpKernel(state, False)


# ---- log-linear operators -------------------------------------------------------------------------

class _Slots(_Buffers):
    """Level buffers with ``level_slots(state, max_tokens)`` slots (empty beyond ``bit_length(p)``)."""

    def __init__(self, state, max_tokens):
        xp = array_api_compat.array_namespace(*state.tensors.values())
        K = level_slots(state, max_tokens)
        super().__init__(state, {n: _copy(xp, t) for n, t in with_level_slots(state, K).tensors.items()})
        self.bits = slot_bits(xp, K, self.off)

    def tensors(self, p):
        n = p.bit_length()
        out = {}
        for name, b in self.buf.items():
            tail = {"levels": 2, "S": 2}.get(name, 1)
            out[name] = b[(..., slice(0, n)) + (slice(None),) * tail]
        return out


class _Levels(_Slots):
    """``levels`` (..., K, d_k, d_v), zeros beyond the occupied ``bit_length(p)``."""

    def __init__(self, state, max_tokens, gated):
        super().__init__(state, max_tokens)
        self.gated = gated

    def step(self, p, q, k, v, log_decay, *rest):
        """q, k (..., 1, d_k), v (..., 1, d_v), log_decay (..., 1), [beta (..., 1)], lam (..., 1, L)
        -> (..., 1, d_v). ``p`` (host) is not read: the device offset ``off`` is."""
        xp = self.xp
        masks = offset_masks(xp, self.off, self.bits)
        out, scale, merged, S = levels_step(xp, self.buf["levels"], masks, q, k, v, log_decay,
                                            rest[0] if self.gated else None, rest[-1])
        if self.mutable and S is self.buf["levels"]:  # in place: two passes over the levels
            S *= scale
            S += xp.astype(masks[2], S.dtype)[:, None, None] * merged
        else:
            self.put("levels", ..., apply_merge(xp, S, scale, masks[2], merged))
        self.off += 1
        return out


def loglinear_attention(state, max_tokens):
    return _Levels(state, max_tokens, False)


def loglinear_gated_delta(state, max_tokens):
    return _Levels(state, max_tokens, True)


class _Hierarchical(_Slots):
    """One exp-kernel summary per level slot: ``m (..., K, d_k)``, ``n (..., K, d_v)``,
    ``S (..., K, d_k, d_v)``, ``z (..., K, d_k)``; empty slots ``m = n = lo``, ``S = z = 0``."""

    def __init__(self, state, max_tokens):
        super().__init__(state, max_tokens)
        S = self.buf["S"]
        self.lo = self.xp.full((), _minus_inf(self.xp, S.dtype), dtype=S.dtype, device=device_of(S))

    def step(self, p, q, k, log_v, lam, log_decay):
        """q, k (..., 1, d_k), log_v (..., 1, d_v), lam (..., 1, L), log_decay (..., 1) or None
        -> log y (..., 1, d_v). ``p`` (host) is not read: the device offset ``off`` is."""
        xp, b = self.xp, self.buf
        # as a plain call of one token: decays clamped so that sums of them stay finite
        a = None if log_decay is None else xp.maximum(log_decay, self.lo / (4 * (xp.astype(self.off, q.dtype) + 1)))
        masks = offset_masks(xp, self.off, self.bits)
        out, new = hierarchical_step(xp, (b["m"], b["n"], b["S"], b["z"]), masks, self.lo, q, k, log_v, lam, a)
        for name, x in zip("mnSz", new):
            self.put(name, ..., x)
        self.off += 1
        return out


def loglinear_log_attention(state, max_tokens):
    return _Hierarchical(state, max_tokens)


# ---- a whole call under a traced (JAX) offset ---------------------------------------------------------

def _traced_setup(state, L):
    """(fixed-capacity state with ``max(slots, L)`` slots, the offset as a 0-d array, its slot bits)."""
    xp = array_api_compat.array_namespace(*state.tensors.values())
    K = max(level_slots_of(state), L)
    state = with_level_slots(state, K)
    p = xp.asarray(state.offset)
    return xp, state, p, slot_bits(xp, K, p)


def _token(x, t, tail):
    return x[(..., slice(t, t + 1)) + (slice(None),) * tail]


def traced_levels(op, q, k, v, log_decay, beta, level_weights, state, return_state):
    """``loglinear_attention`` (``beta`` None) / ``loglinear_gated_delta`` when ``state.offset`` is a
    JAX tracer: the call's tokens one by one through :func:`levels_step` (a Python loop that
    ``jax.jit`` unrolls: meant for the short chunks of a ``jax.lax.scan``). The state keeps a fixed
    number of level slots, ``max(its slots, L)``; the new offset is ``offset + T`` (traced).

    Same arguments and result as the operators' ``_forward``."""
    xp, state, p, bits = _traced_setup(state, level_weights.shape[-1])
    S, T = state.tensors["levels"], q.shape[-2]
    outs = []
    for t in range(T):
        masks = offset_masks(xp, p + t, bits)
        o, scale, merged, S = levels_step(xp, S, masks, _token(q, t, 1), _token(k, t, 1), _token(v, t, 1),
                                          _token(log_decay, t, 0), None if beta is None else _token(beta, t, 0),
                                          _token(level_weights, t, 1))
        S = apply_merge(xp, S, scale, masks[2], merged)
        outs.append(o)
    return _traced_result(xp, outs, state, {"levels": S}, T, q, v, return_state)


def traced_hierarchical(q, k, log_v, log_level_weights, log_decay, state, return_state):
    """``loglinear_log_attention`` under a traced offset, as :func:`traced_levels`; decays clamped at
    ``lo / (4 (offset + T))`` like a plain call."""
    xp, state, p, bits = _traced_setup(state, log_level_weights.shape[-1])
    t = state.tensors
    summ, T = (t["m"], t["n"], t["S"], t["z"]), q.shape[-2]
    lo = xp.full((), _minus_inf(xp, q.dtype), dtype=q.dtype, device=device_of(t["S"]))
    a = None if log_decay is None else xp.maximum(log_decay, lo / (4 * (xp.astype(p, q.dtype) + T)))
    log_v = _clamp_log_values(xp, log_v, True)
    outs = []
    for i in range(T):
        o, summ = hierarchical_step(xp, summ, offset_masks(xp, p + i, bits), lo, _token(q, i, 1), _token(k, i, 1),
                                    _token(log_v, i, 1), _token(log_level_weights, i, 1),
                                    None if a is None else _token(a, i, 0))
        outs.append(o)
    return _traced_result(xp, outs, state, dict(zip("mnSz", summ)), T, q, log_v, return_state)


def _traced_result(xp, outs, state, tensors, T, q, v, return_state):
    if outs:
        out = xp.concat(outs, axis=-2)
    else:
        out = xp.zeros(tuple(q.shape[:-2]) + (0, v.shape[-1]), dtype=q.dtype, device=device_of(q))
    if not return_state:
        return out, None
    return out, State(state.op, state.offset + T, state.batch_shape, state.d_k, state.d_v, state.dtype, tensors)
