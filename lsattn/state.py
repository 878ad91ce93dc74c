"""The streaming state every causal operator returns with ``return_state=True``.

One class for all operators: it records which operator made it, how many tokens it has seen
(``offset``, the absolute position of the next token), the batch shape, head dims and compute
dtype, and the arrays the operator's formula needs (``tensors``). Passing it back through
``state=`` continues the stream; ``check`` turns every mismatch into a ValueError that says what
differs. States are immutable: operators return a new one.

Under JAX a State is a pytree (registered as soon as JAX is imported and a State is made or an
operator sees JAX arrays), so it crosses ``jax.jit`` boundaries, sits in a ``jax.lax.scan`` carry
and is differentiated through. Its leaves are the offset and the tensors.

**Fixed-capacity log-linear states.** A log-linear state's level axis may hold more slots than
``bit_length(offset)``; the extra slots are empty (zeros; ``m = n =`` the finite "minus infinity"
for ``loglinear_log_attention``). JAX states always have such a fixed capacity,
``max(incoming slots, L)`` with ``L`` the level weights' number of levels, so that their shapes do
not depend on the offset: a ``lax.scan`` carry keeps its shapes, and under ``jit`` the offset is a
traced integer (the operators then run the branch-free per-token steps of :mod:`lsattn._steps`).
Every backend sees the exact layout: :func:`canonical` makes the offset a Python int and drops the
empty slots before a call (a view; nothing is copied).
"""
from __future__ import annotations

import math
import operator
import sys
from dataclasses import dataclass, field

import array_api_compat

__all__ = ["State"]


@dataclass(frozen=True, eq=False)
class State:
    """Constant-size (exp-kernel) or O(log T)-size (log-linear) summary of a stream's prefix.

    Attributes
    ----------
    op : str
        Name of the operator that made it (``"log_attention"``, ``"loglinear_attention"``, ...).
    offset : int or NumPy int64 array (N,)
        Tokens seen so far; the absolute position of the next token (under JAX: possibly a 0-d
        integer array, traced inside ``jit`` / ``lax.scan``). A packed state (a call with
        ``cu_seqlens`` and ``return_state=True``) holds ``N`` streams, one per segment: its offset
        is an array of their ``N`` offsets (see :func:`packed_streams`).
    batch_shape : tuple of int
        Leading batch axes of the inputs (a packed state: those followed by ``N``).
    d_k, d_v : int
        Key and value head dimensions.
    dtype : dtype
        Compute dtype of the tensors (float32 or float64).
    tensors : dict of str -> array
        Operator-specific arrays, each documented by its operator, in the inputs' namespace.
    """

    op: str
    offset: int
    batch_shape: tuple
    d_k: int
    d_v: int
    dtype: object
    tensors: dict = field(default_factory=dict)

    def __post_init__(self):
        register_jax_pytree()

    @property
    def nbytes(self):
        """Bytes held by the tensors."""
        return sum(math.prod(t.shape) * _itemsize(t) for t in self.tensors.values())

    def __repr__(self):
        shapes = ", ".join(f"{n}{tuple(t.shape)}" for n, t in self.tensors.items())
        return f"State(op={self.op!r}, offset={self.offset}, batch_shape={self.batch_shape}, d_k={self.d_k}, d_v={self.d_v}, dtype={self.dtype}, {shapes})"

    def check(self, op, xp, batch_shape, d_k, d_v, dtype):
        """ValueError unless this state can continue a stream of ``op`` with these inputs."""
        if self.op != op:
            raise ValueError(f"state was made by {self.op}, not {op}: pass a state returned by {op}(..., return_state=True)")
        for what, mine, theirs in (
            ("batch shape", self.batch_shape, tuple(batch_shape)),
            ("d_k", self.d_k, d_k),
            ("d_v", self.d_v, d_v),
        ):
            if mine != theirs:
                raise ValueError(f"state has {what} {mine} but the inputs have {what} {theirs}")
        # namespace before dtype: dtypes of different namespaces never compare equal, which would
        # misreport a namespace mismatch as a dtype one
        for name, t in self.tensors.items():
            # a Dask call may continue an in-memory stream: its tensors (NumPy, CuPy, torch, ...) become
            # its first block, in the type of the Dask blocks (the dask backend converts them)
            dask_from_memory = array_api_compat.is_dask_namespace(xp) and not array_api_compat.is_dask_array(t)
            if array_api_compat.array_namespace(t) is not xp and not dask_from_memory:
                raise ValueError(f"state tensor {name!r} is a {type(t).__name__}, from another array namespace than the "
                                 f"inputs ({array_api_compat.array_namespace(t).__name__}, not {xp.__name__}): the "
                                 f"namespaces differ; convert the state with state.to(xp, device)")
        if _dtype_name(self.dtype) != _dtype_name(dtype):
            raise ValueError(f"state computes in {self.dtype} but these inputs compute in {dtype}; pass inputs of the state's dtype")
        return self

    def to(self, xp, device=None):
        """This state with its tensors in the namespace ``xp`` (``numpy``, ``array_api_compat.torch``,
        ``jax.numpy``, ``cupy``, ...), on ``device`` when given: continue a NumPy stream on torch, a
        CPU stream on a GPU. The tensors are copied (through host memory when the namespaces
        differ); the dtype keeps its name (float32 / float64)."""
        import dataclasses

        ns = array_api_compat.array_namespace(xp.asarray(0.0))  # ``torch`` -> its array-API wrapper
        dtype = ns.asarray(0.0, dtype=getattr(ns, _dtype_name(self.dtype))).dtype  # as the operators record it

        def move(t):
            if array_api_compat.array_namespace(t) is ns:
                t = ns.astype(t, dtype) if t.dtype != dtype else t
                return t if device is None else array_api_compat.to_device(t, device)
            kw = {} if device is None else {"device": device}
            return ns.asarray(_host(t), dtype=dtype, **kw)

        return dataclasses.replace(self, dtype=dtype, tensors={n: move(t) for n, t in self.tensors.items()})


def _dtype_name(dtype):
    """``float64`` for ``numpy.float64``, ``torch.float64``, ``dtype('float64')``: namespace-neutral."""
    return (getattr(dtype, "__name__", None) or str(dtype)).split(".")[-1]


def _host(t):
    """A NumPy copy of any array (torch, CuPy, JAX, ...)."""
    import numpy as np

    if array_api_compat.is_torch_array(t):
        return t.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(t):
        return t.get()
    return np.asarray(t)


_jax_registered = False


def register_jax_pytree():
    """Register ``State`` as a JAX pytree once JAX has been imported (never imports JAX itself)."""
    global _jax_registered
    if _jax_registered or "jax" not in sys.modules:
        return
    import jax

    _jax_registered = True
    jax.tree_util.register_pytree_node(State, _flatten, _unflatten)


def _flatten(st):
    names = tuple(st.tensors)
    return (st.offset,) + tuple(st.tensors[n] for n in names), (st.op, st.batch_shape, st.d_k, st.d_v, st.dtype, names)


def _unflatten(aux, children):
    op, batch_shape, d_k, d_v, dtype, names = aux
    children = tuple(children)
    return State(op, children[0], batch_shape, d_k, d_v, dtype, dict(zip(names, children[1:])))


# ---- fixed-capacity log-linear states --------------------------------------------------------------

#: level-axis position (counted from the end) of each state tensor of the log-linear operators
LEVEL_AXES = {
    "loglinear_attention": {"levels": -3},
    "loglinear_gated_delta": {"levels": -3},
    "loglinear_log_attention": {"m": -2, "n": -2, "S": -3, "z": -2},
}


def static_offset(offset):
    """``offset`` as a Python int; None when it is a JAX tracer (known only when the program runs).
    A concrete integer array (NumPy, JAX) becomes its int; anything else is returned unchanged, for
    the state checks to reject."""
    if isinstance(offset, int) and not isinstance(offset, bool):
        return offset
    if "jax" in sys.modules and isinstance(offset, sys.modules["jax"].core.Tracer):
        return None
    if isinstance(offset, bool) or getattr(offset, "ndim", None) != 0:
        return offset
    try:
        return operator.index(offset)
    except TypeError:
        return offset


def packed_streams(state):
    """``N`` when ``state`` holds ``N`` packed streams (its offset is a 1-D NumPy integer array, one
    offset per segment of the packed call that made it), else None."""
    import numpy as np

    o = state.offset
    if isinstance(o, np.ndarray) and o.ndim == 1 and o.dtype.kind in "iu":
        return o.shape[0]
    return None


def level_slots_of(state):
    """Number of level slots of a log-linear state (its tensors' level axis)."""
    name, axis = next(iter(LEVEL_AXES[state.op].items()))
    return state.tensors[name].shape[axis]


def with_level_slots(state, slots):
    """``state`` with exactly ``slots`` level slots (``>= bit_length(offset)``): empty slots appended
    (zeros; ``m``, ``n``: the finite "minus infinity") or dropped from the end."""
    import dataclasses

    have = level_slots_of(state)
    if have == slots:
        return state
    tensors = {}
    for name, t in state.tensors.items():
        axis = LEVEL_AXES[state.op][name]
        if slots < have:
            tensors[name] = t[(..., slice(0, slots)) + (slice(None),) * (-axis - 1)]
            continue
        xp = array_api_compat.array_namespace(t)
        shape = list(t.shape)
        shape[axis] = slots - have
        fill = -float(xp.finfo(t.dtype).max) / 8 if name in ("m", "n") else 0.0
        tensors[name] = xp.concat([t, xp.full(tuple(shape), fill, dtype=t.dtype, device=array_api_compat.device(t))],
                                  axis=axis)
    return dataclasses.replace(state, tensors=tensors)


def canonical(state):
    """The exact layout every backend reads: offset a Python int, ``bit_length(offset)`` level
    slots (a fixed-capacity state's empty slots dropped: a view). Unchanged when the offset is
    traced, when ``state`` is not a well-formed State (the checks say what is wrong) or already exact."""
    if not isinstance(state, State):
        return state
    offset = static_offset(state.offset)
    if offset is None or not isinstance(offset, int) or offset < 0:
        return state
    import dataclasses

    if offset is not state.offset:
        state = dataclasses.replace(state, offset=offset)
    axes = LEVEL_AXES.get(state.op)
    if axes is None or not isinstance(state.tensors, dict) or set(state.tensors) != set(axes):
        return state
    t = state.tensors
    if not all(array_api_compat.is_array_api_obj(x) and x.ndim >= -a for x, a in ((t[n], a) for n, a in axes.items())):
        return state
    slots = {t[n].shape[a] for n, a in axes.items()}
    if len(slots) != 1 or slots.pop() <= offset.bit_length():
        return state
    return with_level_slots(state, offset.bit_length())


def _itemsize(t):
    size = getattr(t.dtype, "itemsize", None)
    if size is None:  # torch dtypes
        size = t.element_size() if hasattr(t, "element_size") else 8
    return size


def check_state(state, op, xp, batch_shape, d_k, d_v, dtype):
    """``state.check(...)`` that also rejects objects that are not States, naming what was passed."""
    if not isinstance(state, State):
        raise ValueError(f"state must be a lsattn State returned by {op}(..., return_state=True), got {type(state).__name__}")
    return state.check(op, xp, batch_shape, d_k, d_v, dtype)
