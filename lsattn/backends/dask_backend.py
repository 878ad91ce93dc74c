"""Sequence-parallel execution of the causal operators on Dask arrays chunked along the sequence.

``lsattn.loglinear_attention(dask_q, ...)`` (and every other causal operator) returns a Dask array
with ``q``'s chunks; nothing runs until the user computes, on whatever Dask scheduler they use
(threads, processes, ``dask.distributed``, ``dask_cuda.LocalCUDACluster``). Each task calls the
in-memory implementation the registry picks for its blocks (the automatic choice without this
backend): NumPy blocks get Numba or the array-API code, CuPy blocks (``meta`` a CuPy array) the
``cupy`` backend on the worker's current GPU. The task code is namespace-neutral
(``array_namespace`` of the block): summaries, combines and states stay in the blocks' array type
and on their device; only what the scheduler moves between workers leaves it.

For every batch block and every sequence block ``j`` (absolute tokens ``[p_j, p_j + T_j)``):

1. *Element* (parallel): the block's compact summary, the same kind of object as the streaming
   state, computed by the operator itself from an empty state at offset ``p_j``
   (``return_state=True``), plus what carries an earlier state across the block: nothing for
   exp-kernel attention (the summary is ``(m, n, S, z)``), the total log decay
   ``g_j = sum a`` for log-linear Mamba-2, the transition product ``P_j = A_last ... A_first``
   (``d_k x d_k``) for Gated DeltaNet.
2. *Scan* (cheap tasks): incoming states are prefix combinations of the elements, a chain of
   ``n - 1`` combines (see :func:`_scan` for why not a log-depth tree). Exp-kernel:
   ``exp_kernel.merge``. Log-linear: the earlier element's levels at ``p_b`` are transported over
   the later block (``exp(g)`` or ``P``) and remapped onto the levels of ``p_b + T_b``
   (``_chunktree.state_merge_plan``: levels below ``h`` fold into ``h``, levels above stay), then
   the later element's levels are added. This combine is associative because Fenwick levels are
   a function of absolute positions only.
3. *Outputs* (parallel): ``out_j = op(block j, state=incoming_j)``.

Cost: each block runs the operator twice (summary and output) plus ``O(T d_k^2)`` for Gated
DeltaNet's transition products; the scan moves ``O(n log T d_k d_v)`` numbers. Memory per task:
one block, the in-memory implementation's working memory for it, and O(log T) state matrices;
per worker, a few blocks in flight whatever ``T`` (the chain lets Dask release each block's inputs
once its outputs are computed).
"""
from __future__ import annotations

import functools
import importlib
import itertools
import math
import os

import array_api_compat

__all__ = ["OPS", "probe", "serves"]

#: operator -> "module:function": same signatures as the array-API implementations
OPS = {
    "log_attention": "lsattn.backends.dask_backend:log_forward",
    "exp_kernel_attention": "lsattn.backends.dask_backend:exp_forward",
    "loglinear_attention": "lsattn.backends.dask_backend:loglinear_forward",
    "loglinear_gated_delta": "lsattn.backends.dask_backend:gated_delta_forward",
    "loglinear_log_attention": "lsattn.backends.dask_backend:hierarchical_forward",
}

#: broadcast batch views are lazy Dask arrays like any other; ``cu_seqlens`` is not served (its
#: token re-layout gathers across the sequence blocks the graph is cut along): refused when forced
BROADCAST_OPS = tuple(OPS)


def probe():
    """None when dask.array is importable, else the reason."""
    try:
        importlib.import_module("dask.array")
    except ImportError as exc:
        return f"dask is not installed ({exc}); pip install 'lsattn[dask]'"
    return None


def serves(xp, a):
    """None for Dask arrays, else the reason."""
    if array_api_compat.is_dask_array(a):
        return None
    return f"the dask backend computes on dask.array arrays, got {type(a).__name__}"


# ---- the in-memory implementation every task calls -------------------------------------------

def _inner(op, block):
    """The implementation of ``op`` for arrays like ``block`` (a task's ``q`` block): the automatic
    choice, never this backend (NumPy: Numba or array-API; CuPy: the ``cupy`` backend).

    ``$LSATTN_BACKEND`` naming another backend forces it inside the tasks too."""
    from lsattn import backends

    xp = array_api_compat.array_namespace(block)
    env = os.environ.get(backends.ENV_VAR) or None
    if env is not None and env != "dask":
        return backends.select(op, xp, block, env)
    for b in sorted(backends._REGISTRY.values(), key=lambda b: b.priority):
        if (b.name != "dask" and op in b.ops and b.status()[0]
                and (b.auto_serves or b.serves)(xp, block) is None):
            return b.implementation(op)
    raise ValueError(f"no in-memory backend computes {op} on {type(block).__name__} arrays")


def _xp(*arrays):
    """The array-API namespace of the (non-None) arrays."""
    return array_api_compat.array_namespace(*(a for a in arrays if a is not None))


# ---- operator families: element of a block, combine, state <-> element ------------------------
#
# An element is what the scan combines; ``None`` is the identity (no tokens).
# Exp-kernel elements: the summary (m, n, S, z). Log-linear elements: (p, T, carry, levels) with
# levels at offset p + T (tokens [p, p + T) only) and carry the transport over [p, p + T):
# total log decay (..., ) or transition product (..., d_k, d_v); carry None means "nothing later
# ever transports across it" (the incoming stream state, which starts the scan).


class _ExpKernel:
    """log_attention / exp_kernel_attention: constant-size summaries merged by max-shifting."""

    kinds = ("d", "d", "d")

    def __init__(self, op, log_values):
        self.op, self.log_values = op, log_values

    def call(self, blocks, extra, state, return_state):
        causal, kwargs = extra
        return _inner(self.op, blocks[0])(*blocks, causal, state, return_state, **kwargs)

    def element(self, blocks, extra, p):
        if blocks[0].shape[-2] == 0:
            return None
        _, st = self.call(blocks, extra, None, True)
        return self.from_state(st)

    def from_state(self, st):
        from lsattn.exp_kernel import _summary_of

        return tuple(_summary_of(st, self.log_values))

    def combine(self, a, b):
        from lsattn.exp_kernel import merge

        return b if a is None else merge(_xp(*b), a, b)

    def batch_of(self, tensors):
        return tuple(tensors["S"].shape[:-2])

    def to_state(self, e, offset, dtype):
        from lsattn.exp_kernel import _make_state

        return _make_state(self.op, offset, e, dtype)

    def tensors(self, e):
        names = ("m", "n", "S", "z")
        return {n: x for n, x in zip(names, e) if x is not None}


class _LogLinear:
    """Log-linear operators: one summary per Fenwick level, carried by a decay or a transition."""

    def __init__(self, op, kinds, log_decay_index, transition):
        self.op, self.kinds = op, kinds
        self.log_decay_index, self.transition = log_decay_index, transition

    def call(self, blocks, extra, state, return_state):
        (chunk_size,) = extra
        return _inner(self.op, blocks[0])(*blocks, chunk_size, state, return_state)

    def empty_state(self, like_q, like_v, p):
        from lsattn.state import State

        batch, d_k, d_v = tuple(like_q.shape[:-2]), like_q.shape[-1], like_v.shape[-1]
        levels = _xp(like_q).zeros(batch + (p.bit_length(), d_k, d_v), dtype=like_q.dtype)
        return State(self.op, p, batch, d_k, d_v, like_q.dtype, {"levels": levels})

    def element(self, blocks, extra, p):
        T = blocks[0].shape[-2]
        if T == 0:
            return None
        start = self.empty_state(blocks[0], blocks[2], p) if p > 0 else None
        _, st = self.call(blocks, extra, start, True)
        log_decay = blocks[self.log_decay_index]
        if self.transition:
            carry = _transition_product(blocks[1], log_decay, blocks[4], extra[0])
        else:
            carry = _xp(log_decay).sum(log_decay, axis=-1)
        return (p, T, carry, st.tensors["levels"])

    def from_state(self, st):
        return (0, st.offset, None, st.tensors["levels"])

    def combine(self, a, b):
        if a is None or b is None:
            return b if a is None else a
        (pa, Ta, Da, Sa), (pb, Tb, Db, Sb) = a, b
        carry = None if Da is None else (Db @ Da if self.transition else Da + Db)
        return (pa, Ta + Tb, carry, self.fold(Sa, Db, pb, Tb, Sb))

    def fold(self, Sa, Db, pb, Tb, Sb):
        """The earlier stretch's levels ``Sa`` carried over the later one (``Db``, tokens
        ``[pb, pb + Tb)``) and merged with its levels ``Sb``."""
        if self.transition:
            moved = Db[..., None, :, :] @ Sa  # A_{end-1} ... A_{pb} applied to every level
        else:
            moved = Sa * _xp(Db).exp(Db)[..., None, None, None]
        return _remap_levels(moved, pb, Tb) + Sb

    def batch_of(self, tensors):
        return tuple(tensors["levels"].shape[:-3])

    def to_state(self, e, offset, dtype):
        from lsattn.state import State

        levels = e[3]
        batch, d_k, d_v = tuple(levels.shape[:-3]), levels.shape[-2], levels.shape[-1]
        return State(self.op, offset, batch, d_k, d_v, dtype, {"levels": levels})

    def tensors(self, e):
        return {"levels": e[3]}


def _remap_levels(levels, p, T):
    """Levels of a state at ``p`` seen from ``p + T`` (no new tokens): old levels below
    ``h = bit_length(p XOR (p + T))`` fold into level ``h``, levels above stay.

    (..., bit_length(p), d_k, d_v) -> (..., bit_length(p + T), d_k, d_v)"""
    from lsattn._chunktree import state_merge_plan

    xp = _xp(levels)
    plan = state_merge_plan(p, T)
    n_old = levels.shape[-3]
    zero = xp.zeros(levels.shape[:-3] + levels.shape[-2:], dtype=levels.dtype)
    slots = []
    for l in range(1, plan.n_new + 1):
        if l < plan.h or (l == plan.h and n_old == 0):
            slots.append(zero)
        elif l == plan.h:  # level h of p is empty: the old levels 1 .. h - 1 become level h
            slots.append(xp.sum(levels[..., : min(plan.h, n_old), :, :], axis=-3))
        else:
            slots.append(levels[..., l - 1, :, :])
    if not slots:
        return xp.zeros(levels.shape[:-3] + (0,) + levels.shape[-2:], dtype=levels.dtype)
    return xp.stack(slots, axis=-3)


def _transition_product(k, log_decay, beta, chunk_size):
    """``A_{T-1} ... A_0`` with ``A_r = exp(a_r) (I - beta_r k_r k_r^T)``, from Gated DeltaNet's
    per-chunk WY forms (``gated_delta._chunk_forms``) and a pairwise product over chunks.

    k: (..., T, d_k), log_decay, beta: (..., T) -> (..., d_k, d_k)"""
    from lsattn._chunktree import chunk_layout, to_chunks
    from lsattn.gated_delta import _chunk_forms

    xp = _xp(k)
    T = k.shape[-2]
    C = min(chunk_size, 1 << (T - 1).bit_length())
    lay = chunk_layout(0, T, C)  # padding is the identity transition (k = 0, beta = 0, a = 0)
    Kc = to_chunks(xp, k, lay, -2)
    a_c = to_chunks(xp, log_decay, lay, -1)
    P = _chunk_forms(xp, Kc, Kc, Kc[..., :0], a_c, to_chunks(xp, beta, lay, -1))["P"]  # (..., n, d_k, d_k)
    while P.shape[-3] > 1:  # later chunks on the left
        n = P.shape[-3]
        prod = P[..., 1::2, :, :] @ P[..., 0 : n - n % 2 : 2, :, :]
        P = xp.concat([prod, P[..., n - 1 :, :, :]], axis=-3) if n % 2 else prod
    return P[..., 0, :, :]


class _Hierarchical(_LogLinear):
    """loglinear_log_attention: one exp-kernel summary ``(m, n, S, z)`` per Fenwick level (level
    axis before the feature axes), carried by the total log decay (``m -> m + g``)."""

    NAMES = ("m", "n", "S", "z")
    TAILS = (1, 1, 2, 1)  # feature axes after the level axis

    def __init__(self):
        super().__init__("loglinear_log_attention", ("d", "d", "d", "l", "s"), 4, False)

    def call(self, blocks, extra, state, return_state):
        (kwargs,) = extra
        return _inner(self.op, blocks[0])(*blocks, state, return_state, **kwargs)

    def empty_levels(self, xp, batch, n_l, d_k, d_v, dtype):
        from lsattn.exp_kernel import _minus_inf

        lo = _minus_inf(xp, dtype)
        return (
            xp.full(batch + (n_l, d_k), lo, dtype=dtype),
            xp.full(batch + (n_l, d_v), lo, dtype=dtype),
            xp.zeros(batch + (n_l, d_k, d_v), dtype=dtype),
            xp.zeros(batch + (n_l, d_k), dtype=dtype),
        )

    def element(self, blocks, extra, p):
        from lsattn.state import State

        q, log_v, a = blocks[0], blocks[2], blocks[4]
        T = q.shape[-2]
        if T == 0:
            return None
        batch, d_k, d_v = tuple(q.shape[:-2]), q.shape[-1], log_v.shape[-1]
        start = None
        if p > 0:
            empty = self.empty_levels(_xp(q), batch, p.bit_length(), d_k, d_v, q.dtype)
            start = State(self.op, p, batch, d_k, d_v, q.dtype, dict(zip(self.NAMES, empty)))
        _, st = self.call(blocks, extra, start, True)
        g = _xp(q).zeros(batch, dtype=q.dtype) if a is None else _xp(a).sum(a, axis=-1)
        return (p, T, g, tuple(st.tensors[n] for n in self.NAMES))

    def from_state(self, st):
        return (0, st.offset, None, tuple(st.tensors[n] for n in self.NAMES))

    def batch_of(self, tensors):
        return tuple(tensors["S"].shape[:-3])

    def fold(self, Sa, Db, pb, Tb, Sb):
        from lsattn.exp_kernel import _minus_inf, merge

        m, n, S, z = Sa
        xp = _xp(S)
        lo = xp.asarray(_minus_inf(xp, m.dtype), dtype=m.dtype)
        # keys decayed over the later stretch; a shift never passes the stand-in (a -inf decay, a
        # hard reset, would make it -inf, and merging two such levels exp(-inf - -inf) = NaN)
        moved = (xp.maximum(m + Db[..., None, None], lo), n, S, z)
        m, n, S, z = merge(xp, self.remap(moved, pb, Tb), Sb)
        return (xp.maximum(m, lo), n, S, z)

    def remap(self, levels, p, T):
        """As :func:`_remap_levels`, summaries folding by ``merge``."""
        from lsattn._chunktree import state_merge_plan
        from lsattn.exp_kernel import merge

        plan = state_merge_plan(p, T)
        S = levels[2]
        xp = _xp(S)
        n_old, batch, (d_k, d_v) = S.shape[-3], S.shape[:-3], S.shape[-2:]
        pick = lambda j: tuple(x[(..., j) + (slice(None),) * t] for x, t in zip(levels, self.TAILS))
        empty = tuple(x[(..., 0) + (slice(None),) * t] for x, t in zip(self.empty_levels(xp, batch, 1, d_k, d_v, S.dtype), self.TAILS))
        slots = []
        for l in range(1, plan.n_new + 1):
            if l < plan.h or (l == plan.h and n_old == 0):
                slots.append(empty)
            elif l == plan.h:  # old levels 1 .. h - 1 (level h of p is empty) merge into level h
                acc = pick(0)
                for j in range(1, min(plan.h, n_old)):
                    acc = merge(xp, acc, pick(j))
                slots.append(acc)
            else:
                slots.append(pick(l - 1))
        if not slots:
            return self.empty_levels(xp, batch, 0, d_k, d_v, S.dtype)
        return tuple(xp.stack(list(xs), axis=-1 - t) for xs, t in zip(zip(*slots), self.TAILS))

    def to_state(self, e, offset, dtype):
        from lsattn.state import State

        S = e[3][2]
        batch, d_k, d_v = tuple(S.shape[:-3]), S.shape[-2], S.shape[-1]
        return State(self.op, offset, batch, d_k, d_v, dtype, dict(zip(self.NAMES, e[3])))

    def tensors(self, e):
        return dict(zip(self.NAMES, e[3]))


_HIER = _Hierarchical()
_LOG = _ExpKernel("log_attention", True)
_EXP = _ExpKernel("exp_kernel_attention", False)
_LOGLINEAR = _LogLinear("loglinear_attention", ("d", "d", "d", "s", "l"), 3, False)
_GATED = _LogLinear("loglinear_gated_delta", ("d", "d", "d", "s", "s", "l"), 3, True)


# ---- tasks (module-level functions: picklable for dask.distributed) ---------------------------

def _element_task(fam, extra, p, *blocks):
    return fam.element(blocks, extra, p)


def _state_element_task(fam, offset, d_k, d_v, dtype, meta, tensors):
    """The incoming stream state as an element, its tensors moved into the blocks' array type
    (``meta``: ``q``'s Dask meta), e.g. a NumPy state continuing on CuPy blocks."""
    from lsattn.state import State

    xp = _xp(meta)
    tensors = {n: xp.asarray(t) for n, t in tensors.items()}
    batch = fam.batch_of(tensors)
    return fam.from_state(State(fam.op, offset, batch, d_k, d_v, dtype, tensors))


def _combine_task(fam, a, b):
    return fam.combine(a, b)


def _output_task(fam, extra, p, incoming, d_v, *blocks):
    q = blocks[0]
    if q.shape[-2] == 0:
        return _xp(q).zeros(q.shape[:-1] + (d_v,), dtype=q.dtype)
    state = None if incoming is None else fam.to_state(incoming, p, q.dtype)
    out, _ = fam.call(blocks, extra, state, False)
    return out


def _tensor_task(fam, e, name, shape, meta):
    if e is None:  # no tokens and no incoming state: an empty stream, in the blocks' array type
        xp = _xp(meta)
        if name == "m" or name == "n":
            from lsattn.exp_kernel import _minus_inf

            return xp.full(shape, _minus_inf(xp, meta.dtype), dtype=meta.dtype)
        return xp.zeros(shape, dtype=meta.dtype)
    return fam.tensors(e)[name]


# ---- graph construction -------------------------------------------------------------------------

def _scan(xs, combine):
    """Inclusive prefix combination of ``xs``: a chain ``((x0 x1) x2) ...`` of ``n - 1`` combines.

    Not a log-depth (e.g. Brent-Kung) tree on purpose: given a tree, Dask's ordering (threaded
    scheduler and distributed alike) ran every block's summary before any block's outputs, so
    every input block stayed in memory until the end (per-worker memory grew with ``T``: measured
    2x from T = 2^19 to 2^20 at the same block size). With a chain, block ``j``'s incoming state
    is ready right after its summary, its outputs run and its inputs are released. The combines
    are tiny next to a block's work (``O(d_k d_v)`` per level), so the chain's depth costs
    milliseconds per block."""
    out = list(xs[:1])
    for x in xs[1:]:
        out.append(combine(out[-1], x))
    return out


def _nest(fn, shape, index=()):
    """Nested lists of ``fn(index)`` over the grid ``shape`` (for ``da.block``)."""
    if not shape:
        return fn(index)
    return [_nest(fn, shape[1:], index + (i,)) for i in range(shape[0])]


def _wrap(x, depth):
    for _ in range(depth):
        x = [x]
    return x


def _run(fam, arrays, extra, state, return_state):
    """Build the block-parallel graph of one causal call; see the module docstring."""
    import dask
    import dask.array as da

    q, v = arrays[0], arrays[2]
    for name, x in zip(("q", "k", "v", "4th", "5th", "6th"), arrays):
        if x is not None and any(math.isnan(c) for cs in x.chunks for c in cs):
            raise ValueError(f"{name} has unknown chunk sizes; call .compute_chunk_sizes() first")
    batch, T, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], v.shape[-1]
    dtype = q.dtype
    meta = q._meta  # an empty array of the blocks' type (NumPy, CuPy): tasks that make arrays from nothing use it
    bchunks, tchunks = q.chunks[:-2], q.chunks[-2]
    grids = []
    for x, kind in zip(arrays, fam.kinds):
        if x is None:  # an optional argument (hierarchical log_decay)
            g = None
        elif kind == "s":
            g = x.rechunk(bchunks + (tchunks,)).to_delayed()
        else:
            g = x.rechunk(bchunks + (tchunks, x.shape[-1])).to_delayed()[..., 0]
        grids.append(g)
    pick = lambda b, j: [None if g is None else g[b + (j,)] for g in grids]
    delayed = functools.partial(dask.delayed, pure=True)
    p0 = 0 if state is None else state.offset
    starts = [p0 + s for s in itertools.accumulate((0,) + tchunks[:-1])]

    state_parts = None
    if state is not None:  # per batch block: the incoming tensors (in memory or Dask, sliced lazily)
        state_parts = {}
        for name, t in state.tensors.items():
            t = da.asarray(t)
            tail = t.shape[len(batch):]
            state_parts[name] = t.rechunk(bchunks + tail).to_delayed()[(...,) + (0,) * len(tail)]

    out_blocks, final = {}, {}
    for b in itertools.product(*(range(len(c)) for c in bchunks)):
        b_shape = tuple(c[i] for c, i in zip(bchunks, b))
        elems = [None]
        if state is not None:
            parts = {n: g[b] for n, g in state_parts.items()}
            elems = [delayed(_state_element_task)(fam, p0, d_k, d_v, dtype, meta, parts)]
        for j, p in enumerate(starts):
            elems.append(delayed(_element_task)(fam, extra, p, *pick(b, j)))
        prefix = _scan(elems, lambda a, c: delayed(_combine_task)(fam, a, c))
        for j, p in enumerate(starts):
            task = delayed(_output_task)(fam, extra, p, prefix[j], d_v, *pick(b, j))
            out_blocks[b + (j,)] = da.from_delayed(task, shape=b_shape + (tchunks[j], d_v), dtype=dtype, meta=meta)
        final[b] = prefix[-1]

    out = da.block(_nest(lambda i: [out_blocks[i]], tuple(len(c) for c in bchunks) + (len(tchunks),)))
    if not return_state:
        return out, None
    return out, _final_state(fam, final, bchunks, batch, p0 + T, d_k, d_v, dtype, meta)


def _final_state(fam, final, bchunks, batch, offset, d_k, d_v, dtype, meta):
    """The State after the call, its tensors lazy Dask arrays assembled over the batch blocks."""
    import dask
    import dask.array as da
    from lsattn.state import State

    if isinstance(fam, _ExpKernel):
        tails = {"m": (d_k,), "S": (d_k, d_v), "z": (d_k,)}
        if fam.log_values:
            tails["n"] = (d_v,)
    elif isinstance(fam, _Hierarchical):
        n_l = offset.bit_length()
        tails = {"m": (n_l, d_k), "n": (n_l, d_v), "S": (n_l, d_k, d_v), "z": (n_l, d_k)}
    else:
        tails = {"levels": (offset.bit_length(), d_k, d_v)}
    tensors = {}
    for name, tail in tails.items():
        def block(b, name=name, tail=tail):
            shape = tuple(c[i] for c, i in zip(bchunks, b)) + tail
            task = dask.delayed(_tensor_task, pure=True)(fam, final[b], name, shape, meta)
            return _wrap(da.from_delayed(task, shape=shape, dtype=dtype, meta=meta), len(tail))

        tensors[name] = da.block(_nest(block, tuple(len(c) for c in bchunks))) if bchunks else block(())
        while isinstance(tensors[name], list):
            tensors[name] = tensors[name][0]
    return State(fam.op, offset, batch, d_k, d_v, dtype, tensors)


# ---- the implementations registered for the "dask" backend (array-API signatures) -------------

def log_forward(q, k, log_v, causal, state, return_state, *, chunk_size=None):
    """``log_attention`` on Dask arrays; arguments and result as ``lsattn.exp_kernel._log_forward``."""
    return _exp_family(_LOG, q, k, log_v, causal, state, return_state, chunk_size)


def exp_forward(q, k, v, causal, state, return_state, *, chunk_size=None):
    """``exp_kernel_attention`` on Dask arrays; as ``lsattn.exp_kernel._exp_forward``."""
    return _exp_family(_EXP, q, k, v, causal, state, return_state, chunk_size)


def _exp_family(fam, q, k, vals, causal, state, return_state, chunk_size):
    kwargs = {} if chunk_size is None else {"chunk_size": chunk_size}
    if not causal:
        raise NotImplementedError("the dask backend computes causal calls only; pass causal=True or compute the arrays")
    return _run(fam, (q, k, vals), (True, kwargs), state, return_state)


def loglinear_forward(q, k, v, log_decay, level_weights, chunk_size, state, return_state):
    """``loglinear_attention`` on Dask arrays; as ``lsattn.loglinear._forward``."""
    return _run(_LOGLINEAR, (q, k, v, log_decay, level_weights), (chunk_size,), state, return_state)


def gated_delta_forward(q, k, v, log_decay, beta, level_weights, chunk_size, state, return_state):
    """``loglinear_gated_delta`` on Dask arrays; as ``lsattn.gated_delta._forward``."""
    return _run(_GATED, (q, k, v, log_decay, beta, level_weights), (chunk_size,), state, return_state)


def hierarchical_forward(q, k, log_v, log_level_weights, log_decay, state, return_state, *, chunk_size=None):
    """``loglinear_log_attention`` on Dask arrays; as ``lsattn.hierarchical._forward``."""
    kwargs = {} if chunk_size is None else {"chunk_size": chunk_size}
    return _run(_HIER, (q, k, log_v, log_level_weights, log_decay), (kwargs,), state, return_state)


# ---- one worker per GPU --------------------------------------------------------------------------

def local_gpu_cluster(n_gpus=None, **kwargs):
    """A Dask cluster on this host with one single-threaded worker per GPU, for Dask arrays of CuPy
    blocks: ``dask_cuda.LocalCUDACluster`` when dask-cuda imports, else a ``distributed.SpecCluster``
    whose worker ``i`` is pinned to GPU ``i`` through ``CUDA_VISIBLE_DEVICES`` (set before the
    worker process starts CUDA). Use it with ``distributed.Client(cluster)``.

    n_gpus: number of workers (default: every GPU CuPy sees). kwargs: passed to the cluster.
    -> (cluster, which): ``which`` names the kind of cluster made."""
    if n_gpus is None:
        import cupy

        n_gpus = cupy.cuda.runtime.getDeviceCount()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",")[:n_gpus] if visible else [str(i) for i in range(n_gpus)]
    kwargs.setdefault("silence_logs", 40)
    try:
        from dask_cuda import LocalCUDACluster
    except Exception as exc:  # not installed, or an import-time failure (missing pynvml, CUDA bindings, ...)
        why = f"{type(exc).__name__}: {exc}"
    else:
        return LocalCUDACluster(CUDA_VISIBLE_DEVICES=",".join(ids), threads_per_worker=1,
                                dashboard_address=None, **kwargs), "dask_cuda.LocalCUDACluster"
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {f"gpu{i}": {"cls": Nanny, "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": i},
                                                    "silence_logs": kwargs["silence_logs"]}} for i in ids}
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None}}
    which = f"distributed.SpecCluster, one worker per CUDA_VISIBLE_DEVICES entry (dask_cuda: {why})"
    return SpecCluster(workers=workers, scheduler=scheduler, **kwargs), which
