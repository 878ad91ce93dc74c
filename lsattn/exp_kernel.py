"""Exp-kernel softmax attention (Heinsen 2024, "Softmax Attention with Constant Cost per Token"),
causal or not, streaming, exact for inputs of any magnitude and values of any sign.

    w(t, s) = <exp q_t, exp k_s> = sum_i exp(q_ti + k_si)
    y_t     = sum_{s in C(t)} w(t, s) v_s / sum_{s in C(t)} w(t, s)        (C(t) = {s <= t} when causal)

``exp_kernel_attention(q, k, v)`` returns ``y`` for ``v`` of any sign; ``log_attention(q, k, log_v)``
returns ``log y`` from ``log v`` (the interface of the paper's code). Both run the one core below.

Stabilisation. No raw ``exp(q)`` or ``exp(k)`` is ever formed. Every group of keys that is read
as a whole (a *summary*: a streaming state, a chunk, a block of a chunk) is shifted by its
per-feature key maximum ``m_i``, so ``exp(k_si - m_i) <= 1``; a query reads it with the row shift
``r_t = max_i (q_ti + m_i)``, so ``exp(q_ti + m_i - r_t) <= 1`` with equality at the arg-max. A
read therefore returns ``(r_t, num_t, den_t)`` with ``den_t >= 1`` whenever the group holds a
key, and partial reads of disjoint key groups add up after rescaling to a common shift (the
larger one gets factor exactly 1). Numerator and denominator share the row shift, so the ratio is
exact up to rounding. Values of ``log_attention`` are shifted per column by their maximum
``n_j`` over the group (``exp(log_v - n) <= 1``), and numerators then carry their own shift
``u_tj`` (``r_t + n_j`` for one group). Every shift is taken over keys the query may see, never
over later keys of its chunk: a later key of large magnitude would make the visible ones
underflow (an all-zero row, 0/0). That is why a chunk is not one masked ``C x C`` product here:

Algorithm of a causal call over ``T`` tokens, chunk size ``C`` (a power of two):

1. *Diagonal*: ``w(t, t)`` exactly, ``r_t = max_i (q_ti + k_ti)``.
2. *Inside chunks*, a binary tree: for ``h = 1, 2, ..., C/2`` the queries of the upper half of
   every aligned block of ``2h`` tokens read the ``h`` keys of its lower half, which all precede
   them, as one batched ``(h, d_k) @ (d_k, h)`` product with that half's shifts
   (:func:`block_read`). Every pair ``s < t`` of a chunk is read exactly once, at
   ``h = 2^(bit_length((t XOR s) mod C) - 1)``; no mask, no padded key is ever seen by a real query.
3. *Across chunks*: every chunk's summary ``(m, n, S, z)`` is built at once (:func:`summarise`);
   a Python loop over chunks reads the running state with the chunk's queries (:func:`read`) and
   then merges the chunk's summary into it (:func:`merge`), a dozen small array calls per chunk.
   The incoming streaming state is the running state's start; its end is the outgoing state.
4. ``y = num / den`` (``log y = log num + u - log den - r``).

Non-causal calls (``Tq`` queries, ``Tk`` keys) summarise all keys once and read them (step 3 with
one chunk and no loop). The padding of the last chunk uses a finite "minus infinity" key
(``-finfo.max / 8``), so padded keys get weight exactly 0 without ``-inf`` arithmetic.

Cost model, per batch element, ``n = ceil(T / C)`` chunks:

- time ``O(T C (d_k + d_v))`` inside chunks (the tree does the work of one masked ``C x C``
  product per chunk without the masked half), plus ``O(T d_k d_v)`` for summaries and reads, plus
  ``O(T d_k log C)`` exponentials; ``n`` loop iterations of a dozen array calls;
- memory ``O(T (d_k + d_v + C) + n d_k d_v)``: never ``T x T``, never ``T d_k d_v``. The default
  ``C = max(64, pow2 >= d_k d_v / (d_k + d_v))`` keeps ``n d_k d_v <= T (d_k + d_v)``, so the
  extra memory is ``O(T (d_k + d_v))`` for usual head sizes (``C <= d_k + d_v``);
- decoding (``T = 1``): ``O(d_k d_v)`` time, and the state is ``d_k d_v + 2 d_k (+ d_v)`` numbers.

Underflow regime of ``log_attention`` (``exp_kernel_attention`` has none beyond that of its
output). A value column is held as ``exp(log_v_sj - n_j)`` with ``n_j`` the maximum of that column
over a group of keys the query sees, so ``log y_tj`` is exact up to rounding while
``log y_tj >= max_{s <= t} log_v_sj - B`` with ``B ~ 87 - log(T d_k) - 16`` in float32
(``~708 - log(T d_k) - 36`` in float64): an output more than ``~87`` (float32) / ``~708``
(float64) below the running maximum of its column degrades and then becomes ``-inf``, never NaN.
It needs a value ``e^87`` times larger than the output sitting on a key whose weight is about
``e^-87`` times smaller than the keys that make the output; a per-(feature, column) shift would
remove it at the cost of ``(max, +)`` products (``T d_k d_v`` exponentials), which we do not pay.
``log_v = -inf`` (``v = 0``) is allowed; an output whose visible values are all 0 is ``-inf``.
"""
from __future__ import annotations

import math

import array_api_compat

from ._prologue import Op, check_flag, run
from ._typing import Array
from ._validate import device_of
from .state import State

__all__ = ["log_attention", "exp_kernel_attention"]

LOG_OP = "log_attention"
EXP_OP = "exp_kernel_attention"


# ---- public functions ---------------------------------------------------------------------------

def log_attention(
    q: Array, k: Array, log_v: Array, *, causal: bool = True, state: State | None = None,
    return_state: bool = False, cu_seqlens=None, backend: str | None = None,
) -> Array | tuple[Array, State]:
    """Exp-kernel softmax attention in log space: ``log y`` from ``log v``.

    ``w(t, s) = sum_i exp(q_ti + k_si)``, ``y_t = sum_{s in C(t)} w(t,s) v_s / sum_{s in C(t)} w(t,s)``
    with ``v = exp(log_v)``; ``C(t) = {s <= t}`` when causal, every key otherwise.

    Parameters
    ----------
    q : array (..., Tq, d_k)
    k : array (..., Tk, d_k)
        ``Tk == Tq`` when causal.
    log_v : array (..., Tk, d_v)
        Log of non-negative values; ``-inf`` (a zero value) is allowed.
    causal : bool, default True
        Causal attention over one stream; ``False``: every query sees every key (no state).
    state : State, optional
        From a previous causal call with ``return_state=True``: continue that stream.
    return_state : bool, default False
        Also return the state after these tokens (causal only).
    cu_seqlens : 1-D int array or sequence of ints, optional
        ``[0, n_1, n_1 + n_2, ..., T]``: packed segments along ``T``, each an independent stream
        (see ``docs/api.md``, "Packed sequences"); causal only. With ``return_state=True`` the
        state holds one stream per segment (batch shape ``(..., N)``, ``offset`` an int array
        ``(N,)``); ``state=`` such a state continues each segment's stream.
    backend : str, optional
        Force a backend (see ``lsattn.backends``).

    Returns
    -------
    log_y : array (..., Tq, d_v)
        In the inputs' namespace, device and floating dtype (half precision: see ``docs/api.md``).
        Exact up to rounding for inputs of any magnitude, except outputs more than ~87 (float32) /
        ~708 (float64) below the running maximum of their column of ``log_v``, which degrade to
        ``-inf`` (never NaN); see the module docstring.
    state : State, only with ``return_state=True``
        Constant size, ``op="log_attention"``, ``offset`` = tokens seen; ``tensors``:
        ``m (..., d_k)`` running per-feature key maximum, ``n (..., d_v)`` running per-column
        maximum of ``log_v``, ``S (..., d_k, d_v) = sum_s exp(k_si - m_i + log_v_sj - n_j)``,
        ``z (..., d_k) = sum_s exp(k_si - m_i)``. Before any token ``m = n = -finfo.max / 8``.

    Cost: ``O(T C (d_k + d_v) + T d_k d_v)`` time, ``O(T (d_k + d_v + C) + (T / C) d_k d_v)`` memory,
    ``C = max(64, d_k d_v / (d_k + d_v))`` rounded up to a power of two; ``O(d_k d_v)`` per decoded token.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> q, k = 50 * rng.standard_normal((2, 2, 64, 8))       # magnitudes where exp(q) overflows
    >>> log_v = rng.standard_normal((2, 64, 4))
    >>> log_y = lsattn.log_attention(q, k, log_v)
    >>> log_y.shape
    (2, 64, 4)
    >>> bool(np.allclose(log_y, lsattn.reference.log_attention(q, k, log_v)))
    True
    """
    return _call(LOG_OP, "log_v", q, k, log_v, causal, state, return_state, cu_seqlens, backend)


def exp_kernel_attention(
    q: Array, k: Array, v: Array, *, causal: bool = True, state: State | None = None,
    return_state: bool = False, cu_seqlens=None, backend: str | None = None,
) -> Array | tuple[Array, State]:
    """Exp-kernel softmax attention for values of any sign.

    ``w(t, s) = sum_i exp(q_ti + k_si)``, ``y_t = sum_{s in C(t)} w(t,s) v_s / sum_{s in C(t)} w(t,s)``;
    ``C(t) = {s <= t}`` when causal, every key otherwise.

    Parameters
    ----------
    q, k, causal, state, return_state, cu_seqlens, backend
        As in :func:`log_attention`.
    v : array (..., Tk, d_v)
        Any sign.

    Returns
    -------
    y : array (..., Tq, d_v)
        In the inputs' namespace, device and floating dtype (half precision: see ``docs/api.md``).
    state : State, only with ``return_state=True``
        Constant size, ``op="exp_kernel_attention"``; ``tensors``: ``m (..., d_k)`` running
        per-feature key maximum, ``S (..., d_k, d_v) = sum_s exp(k_si - m_i) v_sj``,
        ``z (..., d_k) = sum_s exp(k_si - m_i)``. Before any token ``m = -finfo.max / 8``.

    Cost: as :func:`log_attention`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = rng.standard_normal((3, 2, 64, 8))
    >>> y1, state = lsattn.exp_kernel_attention(q[:, :40], k[:, :40], v[:, :40], return_state=True)
    >>> y2 = lsattn.exp_kernel_attention(q[:, 40:], k[:, 40:], v[:, 40:], state=state)
    >>> state.offset, y2.shape
    (40, (2, 24, 8))
    >>> bool(np.allclose(np.concatenate([y1, y2], axis=-2), lsattn.reference.exp_kernel_attention(q, k, v)))
    True
    """
    return _call(EXP_OP, "v", q, k, v, causal, state, return_state, cu_seqlens, backend)


def _call(op, vname, q, k, vals, causal, state, return_state, cu_seqlens, backend):
    """Validate, cast to the compute dtype, dispatch, cast back (``_prologue.run``)."""
    causal = check_flag("causal", causal)
    return run(_SPECS[op], (q, k, vals), extra=(causal,), state=state, return_state=return_state, backend=backend,
               causal=causal, cu_seqlens=cu_seqlens)


def _state_shapes(log_values, batch, d_k, d_v):
    shapes = {"m": batch + (d_k,), "S": batch + (d_k, d_v), "z": batch + (d_k,)}
    if log_values:
        shapes["n"] = batch + (d_v,)
    return shapes


_SPECS = {
    op: Op(op, (("q", "q"), ("k", "k"), (vname, "v")), lambda batch, offset, d_k, d_v, lv=lv: _state_shapes(lv, batch, d_k, d_v),
           neg_inf=("q", "k", "log_v") if lv else ("q", "k"), clamp=("q", "k"), value_state=("S", "n"))
    for op, vname, lv in ((LOG_OP, "log_v", True), (EXP_OP, "v", False))
}

# ---- array-API implementation (the signature every backend implements) ---------------------------

def _log_forward(q, k, log_v, causal, state, return_state, *, chunk_size=None, segments=None):
    """Array-API implementation of ``log_attention``.

    Parameters
    ----------
    q : (..., Tq, d_k); k : (..., Tk, d_k); log_v : (..., Tk, d_v)
        Validated, one namespace, in the compute dtype (float32/float64); ``Tq == Tk`` when causal.
    causal : bool
    state : State or None
        Validated state of this operator (causal only).
    return_state : bool
    chunk_size : int, optional
        Power of two; this backend's speed knob (results do not depend on it). None: the default.
    segments : lsattn._varlen.Streams, optional
        Packed segments (causal), each its own stream continuing the packed ``state`` (batch axes
        then N; None: fresh streams); the returned state is packed too (:mod:`lsattn._exp_packed`).

    Returns
    -------
    (log_y (..., Tq, d_v), State or None)
    """
    return _forward(q, k, log_v, causal, state, return_state, True, chunk_size, segments)


def _exp_forward(q, k, v, causal, state, return_state, *, chunk_size=None, segments=None):
    """Array-API implementation of ``exp_kernel_attention``; arguments as :func:`_log_forward`."""
    return _forward(q, k, v, causal, state, return_state, False, chunk_size, segments)


def default_chunk_size(d_k, d_v):
    """``max(64, d_k d_v / (d_k + d_v))`` rounded up to a power of two: per-chunk summaries
    (``(T / C) d_k d_v``) then take no more memory than the ``T (d_k + d_v)`` of the inputs."""
    need = -(-d_k * d_v // max(d_k + d_v, 1))
    return max(64, 1 << max(need - 1, 0).bit_length())


#: chunks per segment: a causal call runs as a stream of segments of ``SEGMENT_CHUNKS * C`` tokens,
#: which bounds the working memory independently of ``T`` (see :func:`_segment`)
SEGMENT_CHUNKS = 64


def _forward(q, k, vals, causal, state, return_state, log_values, chunk_size, segments=None):
    xp = array_namespace(q)
    op = LOG_OP if log_values else EXP_OP
    batch, T, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], vals.shape[-1]
    if not causal:
        vals = _clamp_log_values(xp, vals, log_values)
        return _finish(xp, read(xp, q, summarise(xp, k, vals, log_values), log_values), log_values), None

    C = _check_chunk_size(chunk_size if chunk_size is not None else default_chunk_size(d_k, d_v))
    if segments is not None:
        from . import _exp_packed

        return _exp_packed.forward(xp, q, k, vals, state, return_state, log_values, C, segments)
    carry = None if state is None else _summary_of(state, log_values)
    offset = 0 if state is None else state.offset
    outs = []
    L = SEGMENT_CHUNKS * C
    for s0 in range(0, T, L):
        s1 = min(s0 + L, T)
        piece = [x[..., s0:s1, :] for x in (q, k, vals)]
        out, carry = _segment(xp, *piece, carry, log_values, C, s1 < T or return_state)
        outs.append(out)
    out = _join_tokens(xp, outs, q, d_v)
    if not return_state:
        return out, None
    if carry is None:
        carry = empty_summary(xp, batch, d_k, d_v, q.dtype, log_values, q)
    return out, _make_state(op, offset + T, carry, q.dtype)


def _join_tokens(xp, outs, q, d_v):
    """The outputs ``outs`` of consecutive stretches, concatenated along T (none: ``(..., 0, d_v)``)."""
    if not outs:
        return xp.zeros(tuple(q.shape[:-2]) + (0, d_v), dtype=q.dtype, device=device_of(q))
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=-2)


def _segment(xp, q, k, vals, carry, log_values, C, need_carry):
    """One causal stretch of ``T >= 1`` tokens after the keys summarised by ``carry`` (or none).

    q (..., T, d_k), k (..., T, d_k), vals (..., T, d_v), carry: summary or None
    -> (out (..., T, d_v), summary of carry and these keys, or None unless ``need_carry``)."""
    T = q.shape[-2]
    lo = _minus_inf(xp, q.dtype)
    vals = _clamp_log_values(xp, vals, log_values)
    C = min(C, 1 << (T - 1).bit_length())  # short calls (decoding) use short chunks
    n = -(-T // C)
    pad = n * C - T
    qp = _pad_tokens(xp, q, pad, 0.0)
    kp = _pad_tokens(xp, k, pad, lo)  # padded keys: weight exactly 0 (and never read by a real query)
    vp = _pad_tokens(xp, vals, pad, lo if log_values else 0.0)

    part = diagonal(xp, qp, kp, vp, log_values)  # over (..., n C)
    h = 1
    while h < C:
        part = _tree_level(xp, part, qp, kp, vp, h, log_values)
        h *= 2

    new = None
    if n > 1 or carry is not None or need_carry:
        chunks = summarise(xp, _split(xp, kp, n, C), _split(xp, vp, n, C), log_values)  # (..., n, ...)
        if carry is None:
            batch, d_k, d_v = tuple(q.shape[:-2]), q.shape[-1], vals.shape[-1]
            carry = empty_summary(xp, batch, d_k, d_v, q.dtype, log_values, q)
        prefix = scan(xp, _concat_summaries(xp, [_expand_summary(carry), chunks]))  # (..., n + 1, ...)
        seen = read(xp, _split(xp, qp, n, C), _summary_slice(prefix, 0, n), log_values)  # (..., n, C)
        part = combine(xp, part, _flatten_partial(xp, seen), log_values)
        if need_carry:
            new = _summary_slice(prefix, n, n + 1, keep=False)
    out = _finish(xp, part, log_values)
    return (out[..., :T, :] if pad else out), new


def _clamp_log_values(xp, vals, log_values):
    """``log_v = -inf`` (``v = 0``) becomes the finite "minus infinity": no ``-inf`` arithmetic."""
    if not log_values:
        return vals
    return xp.maximum(vals, xp.full((), _minus_inf(xp, vals.dtype), dtype=vals.dtype, device=device_of(vals)))


def _flatten_partial(xp, part):
    """A partial over (..., n, C) -> over (..., n C)."""
    r, den, y = part
    flat = lambda x: xp.reshape(x, x.shape[:-2] + (x.shape[-2] * x.shape[-1],))
    return flat(r), flat(den), xp.reshape(y, y.shape[:-3] + (y.shape[-3] * y.shape[-2], y.shape[-1]))


def array_namespace(x):
    return array_api_compat.array_namespace(x)


def _minus_inf(xp, dtype):
    """The finite stand-in for ``-inf``: sums of a few of them stay finite, ``exp`` of it is 0."""
    return -float(xp.finfo(dtype).max) / 8


def _check_chunk_size(C):
    if not isinstance(C, int) or C < 1 or C & (C - 1):
        raise ValueError(f"chunk_size must be a power of two (1, 2, 4, ...), got {C!r}")
    return C


def _pad_tokens(xp, x, count, value):
    """``(..., T, d) -> (..., T + count, d)`` with ``value`` in the new rows."""
    if count == 0:
        return x
    fill = xp.full(x.shape[:-2] + (count, x.shape[-1]), value, dtype=x.dtype, device=device_of(x))
    return xp.concat([x, fill], axis=-2)


def _split(xp, x, n, C):
    """``(..., n C, d) -> (..., n, C, d)``."""
    return xp.reshape(x, x.shape[:-2] + (n, C, x.shape[-1]))


# ---- summaries: a group of keys with per-feature shift (the streaming state is one) -------------
#
# A summary is ``(m, n, S, z)``: m (..., d_k), n (..., d_v) or None (signed values),
# S (..., d_k, d_v), z (..., d_k), standing for
#     sum_s exp(k_s) v_s^T = exp(m)[:, None] * exp(n)[None, :] * S     (n = 0 for signed values)
#     sum_s exp(k_s)       = exp(m) * z

def summarise(xp, k, vals, log_values, mask=None):
    """Summary of the keys along axis -2: k (..., N, d_k), vals (..., N, d_v) -> (m, n, S, z).

    Rows whose key is the finite "minus infinity" contribute exactly 0 as long as one row is real.
    mask: None or bool (..., N) (broadcast): only the rows where it holds are summarised (shifts
    over them only; none: the empty summary)."""
    k, vals, keep = _masked_keys(xp, k, vals, log_values, mask)
    m = xp.max(k, axis=-2)  # (..., d_k)
    E = keep(xp.exp(k - m[..., None, :]))  # (..., N, d_k), <= 1
    z = xp.sum(E, axis=-2)
    n = None
    if log_values:
        n = xp.max(vals, axis=-2)  # (..., d_v)
        vals = xp.exp(vals - n[..., None, :])
    return m, n, xp.matrix_transpose(E) @ vals, z


def _masked_keys(xp, k, vals, log_values, mask):
    """``(k, vals, keep)``: keys (and log values) outside ``mask`` (bool (..., N), None: none) at the
    finite "minus infinity", so that no shift is taken over them, and ``keep(E)``, which zeroes their
    rows of the key exponentials ``E`` (..., N, d_k)."""
    if mask is None:
        return k, vals, lambda E: E
    lo = xp.full((), _minus_inf(xp, k.dtype), dtype=k.dtype, device=device_of(k))
    m = mask[..., None]
    zero = xp.zeros((), dtype=k.dtype, device=device_of(k))
    return xp.where(m, k, lo), xp.where(m, vals, lo) if log_values else vals, lambda E: xp.where(m, E, zero)


def empty_summary(xp, batch, d_k, d_v, dtype, log_values, like):
    """The summary of no keys: shifts at the finite "minus infinity", ``S = z = 0``."""
    dev, lo = device_of(like), _minus_inf(xp, dtype)
    m = xp.full(batch + (d_k,), lo, dtype=dtype, device=dev)
    n = xp.full(batch + (d_v,), lo, dtype=dtype, device=dev) if log_values else None
    S = xp.zeros(batch + (d_k, d_v), dtype=dtype, device=dev)
    return m, n, S, xp.zeros(batch + (d_k,), dtype=dtype, device=dev)


def merge(xp, a, b):
    """Summary of the keys of ``a`` and ``b``: shifts to the larger maximum (factor 1 on its side)."""
    (ma, na, Sa, za), (mb, nb, Sb, zb) = a, b
    m = xp.maximum(ma, mb)
    fa, fb = xp.exp(ma - m), xp.exp(mb - m)  # (..., d_k)
    z = fa * za + fb * zb
    if na is None:
        return m, None, fa[..., :, None] * Sa + fb[..., :, None] * Sb, z
    n = xp.maximum(na, nb)
    ga, gb = xp.exp(na - n), xp.exp(nb - n)  # (..., d_v)
    S = (fa[..., :, None] * ga[..., None, :]) * Sa + (fb[..., :, None] * gb[..., None, :]) * Sb
    return m, n, S, z


#: trailing axes of each summary array after the (optional) chunk axis: m, n, S, z
_SUMMARY_TAILS = (1, 1, 2, 1)


def _summary_slice(summ, start, stop, keep=True):
    """Chunks ``start:stop`` of summaries stacked on a chunk axis (or chunk ``start``, ``keep=False``)."""
    pick = slice(start, stop) if keep else start
    return tuple(None if x is None else x[(..., pick) + (slice(None),) * t] for x, t in zip(summ, _SUMMARY_TAILS))


def _expand_summary(summ):
    """A summary with a chunk axis of length 1."""
    return tuple(None if x is None else x[(..., None) + (slice(None),) * t] for x, t in zip(summ, _SUMMARY_TAILS))


def _concat_summaries(xp, parts):
    """Summaries stacked on chunk axes, concatenated along them."""
    return tuple(
        None if xs[0] is None else xp.concat(list(xs), axis=-1 - t) for xs, t in zip(zip(*parts), _SUMMARY_TAILS)
    )


def scan(xp, summ):
    """Inclusive prefix merge along the chunk axis: item ``i`` becomes the summary of items ``0..i``.

    Log-depth (Hillis-Steele): ``ceil(log2 N)`` rounds of one batched :func:`merge`, ``O(N log N)``
    merges of ``d_k x d_v`` in all, ``O(N d_k d_v)`` memory. (..., N, ...) -> (..., N, ...)."""
    N = summ[2].shape[-3]
    step = 1
    while step < N:
        merged = merge(xp, _summary_slice(summ, 0, N - step), _summary_slice(summ, step, N))
        summ = _concat_summaries(xp, [_summary_slice(summ, 0, step), merged])
        step *= 2
    return summ


# ---- partial reads: what a query gathered from some of its keys ---------------------------------
#
# A partial is ``(r, den, y)``: r (..., T), den (..., T), y (..., T, d_v), standing for
#     sum_s w(t, s)      = exp(r_t) den_t
#     sum_s w(t, s) v_sj = exp(r_t) y_tj        (signed values)
#                        = exp(r_t + y_tj)      (log values: y is the log of the shifted numerator)
# Log numerators combine with logaddexp, so a log partial needs no per-(t, j) shift array, and
# both kinds stay relative to r, which cancels exactly in the ratio (r can be ~1e5).

def read(xp, q, summ, log_values):
    """Queries q (..., T, d_k) read a summary of keys they all follow -> partial over (..., T)."""
    m, n, S, z = summ
    qm = q + m[..., None, :]
    r = xp.max(qm, axis=-1)  # (..., T): r_t = max_i (q_ti + m_i)
    A = xp.exp(qm - r[..., None])  # (..., T, d_k), <= 1, = 1 at the arg-max
    den = (A @ z[..., :, None])[..., 0]
    if not log_values:
        return r, den, A @ S
    return r, den, _log(xp, A @ S) + n[..., None, :]


def block_read(xp, q, k, vals, log_values, kmask=None):
    """Queries q (..., G, h, d_k) read the keys k (..., G, h, d_k) of their group, all earlier than
    them, as one ``h x h`` product per group (cheaper than a summary while ``h < d_k d_v / (d_k + d_v)``).

    vals (..., G, h, d_v) -> partial over (..., G, h). ``P[t, s] = w(t, s) exp(-r_t)``.
    kmask: None or bool (G, h): only those keys are read (as :func:`summarise`'s ``mask``)."""
    k, vals, keep = _masked_keys(xp, k, vals, log_values, kmask)
    mk = xp.max(k, axis=-2, keepdims=True)  # (..., G, 1, d_k): the group's per-feature key shift
    qm = q + mk
    r = xp.max(qm, axis=-1)  # (..., G, h)
    A = xp.exp(qm - r[..., None])
    P = A @ xp.matrix_transpose(keep(xp.exp(k - mk)))  # (..., G, h, h), max entry of a row >= 1
    den = xp.sum(P, axis=-1)
    if not log_values:
        return r, den, P @ vals
    nv = xp.max(vals, axis=-2, keepdims=True)  # (..., G, 1, d_v): the group's per-column value shift
    return r, den, _log(xp, P @ xp.exp(vals - nv)) + nv


def diagonal(xp, q, k, vals, log_values):
    """Every query reads its own key: ``w(t, t) = exp(r_t) sum_i exp(q_ti + k_ti - r_t)``; (..., T)."""
    qk = q + k
    r = xp.max(qk, axis=-1)
    den = xp.sum(xp.exp(qk - r[..., None]), axis=-1)  # >= 1
    if not log_values:
        return r, den, den[..., None] * vals
    return r, den, xp.log(den)[..., None] + vals


def combine(xp, a, b, log_values):
    """Partial of two disjoint key sets, shifted to the larger shift (factor exactly 1 on its side)."""
    (ra, da, ya), (rb, db, yb) = a, b
    r = xp.maximum(ra, rb)
    fa, fb = xp.exp(ra - r), xp.exp(rb - r)
    if log_values:  # the larger side's shift difference is exactly 0
        y = xp.logaddexp(ya + (ra - r)[..., None], yb + (rb - r)[..., None])
    else:
        y = fa[..., None] * ya + fb[..., None] * yb
    return r, fa * da + fb * db, y


def _log(xp, x):
    """``log x`` for ``x >= 0`` with 0 (an empty or underflowed read) at the finite "minus
    infinity"; the inner ``where`` keeps gradients finite (no ``1 / 0``)."""
    pos = x > 0
    one = xp.ones((), dtype=x.dtype, device=device_of(x))
    lo = xp.full((), _minus_inf(xp, x.dtype), dtype=x.dtype, device=device_of(x))
    return xp.where(pos, xp.log(xp.where(pos, x, one)), lo)


def _none_read(xp, mask, r):
    """The row shifts ``r`` of a read, ``-inf`` outside ``mask``: :func:`combine` then takes nothing
    from those rows (factor ``exp(-inf) = 0``, their finite ``den`` and ``y`` dropped)."""
    return xp.where(mask, r, xp.full((), -math.inf, dtype=r.dtype, device=device_of(r)))


def _finish(xp, part, log_values):
    r, den, y = part
    if not log_values:
        return y / den[..., None]
    out = y - xp.log(den)[..., None]
    # outputs whose visible values are all 0 sit near the stand-in ``lo``: they are -inf
    return xp.where(out > _minus_inf(xp, out.dtype) / 2, out, xp.full((), -math.inf, dtype=out.dtype, device=device_of(out)))


# ---- the tree inside chunks ------------------------------------------------------------------

def _tree_level(xp, part, q, k, vals, h, log_values, key_shift=None, row_shift=None, masks=None):
    """Queries of the upper half of every aligned block of ``2h`` tokens read its lower half.

    part: partial over (..., T'), q/k/vals (..., T', d) with ``T'`` a multiple of ``2h``.
    key_shift, row_shift: optional (..., T') log-weight offsets (used by ``lsattn.hierarchical``):
    a key ``s`` of a lower half reads as ``k_s + key_shift_s`` (all features) and a query's read
    gets ``row_shift_t`` added to its shift ``r_t``, i.e. ``w(t, s) -> w(t, s) exp(key + row)``.
    masks: None or bool ``(kmask, qmask)`` (T',) (packed segments, ``lsattn._exp_packed``): only the
    keys of ``kmask`` are read, and only by the queries of ``qmask`` (the others read nothing)."""
    Tp = q.shape[-2]
    G = Tp // (2 * h)

    def halves(x, tail):  # (..., T', *tail) -> lower, upper (..., G, h, *tail)
        y = xp.reshape(x, x.shape[: x.ndim - 1 - tail] + (G, 2, h) + x.shape[x.ndim - tail :])
        idx = lambda i: (..., i) + (slice(None),) * (1 + tail)
        return y[idx(0)], y[idx(1)]

    keys = halves(k, 1)[0]
    if key_shift is not None:
        keys = keys + halves(key_shift, 0)[0][..., None]
    kmask = None if masks is None else halves(masks[0], 0)[0]
    reading = block_read(xp, halves(q, 1)[1], keys, halves(vals, 1)[0], log_values, kmask)
    if masks is not None:
        reading = (_none_read(xp, halves(masks[1], 0)[1], reading[0]),) + tuple(reading[1:])
    if row_shift is not None:
        reading = (reading[0] + halves(row_shift, 0)[1],) + tuple(reading[1:])
    tails = (0, 0, 1)  # r, den, y
    lower, upper = zip(*[halves(x, t) for x, t in zip(part, tails)])
    upper = combine(xp, tuple(upper), reading, log_values)
    out = []
    for lo_, up, t in zip(lower, upper, tails):
        both = xp.stack([lo_, up], axis=-2 - t)  # (..., G, 2, h, *tail)
        out.append(xp.reshape(both, both.shape[: both.ndim - 3 - t] + (Tp,) + both.shape[both.ndim - t :]))
    return tuple(out)


# ---- state ----------------------------------------------------------------------------------

def _summary_of(state, log_values):
    t = state.tensors
    return t["m"], (t["n"] if log_values else None), t["S"], t["z"]


def _make_state(op, offset, summ, dtype):
    m, n, S, z = summ
    batch, d_k, d_v = tuple(S.shape[:-2]), S.shape[-2], S.shape[-1]
    tensors = {"m": m, "S": S, "z": z}
    if n is not None:
        tensors["n"] = n
    return State(op, offset, batch, d_k, d_v, dtype, tensors)
