"""Decoding fast path: ``lsattn.stepper(op, state)`` validates a stream once and returns a callable
that advances it one token at a time on preallocated state buffers.

A plain call with ``state=`` re-validates every input, picks a backend, builds a new State and (for
the log-linear operators) grows the state by a level now and then: fine for chunks, a large
overhead for one token. The stepper does that work once; each step then checks only what is free
(argument count, shapes, array type and dtype) and runs the backend's step, which updates the state
buffers in place. The backend's step comes from the registry (``Backend.steps``: the array-API
twin in :mod:`lsattn._steps`, Numba kernels in :mod:`lsattn.backends._numba_step`, the CuPy
backend's fused kernels in :mod:`lsattn.backends.cupy.step`), chosen like the operators'
implementations (``backend=None``: Numba for NumPy arrays, CuPy for GPU arrays where it has a
step, else the array-API path).
"""
from __future__ import annotations

import operator

from . import backends
from ._prologue import _check_state_fields, _check_state_tensors
from ._validate import check_float, compute_dtype, namespace
from .state import State, canonical

__all__ = ["stepper", "Stepper"]

#: operators whose state has one slot per Fenwick level (``max_tokens`` required)
LEVEL_OPS = ("loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention")


def _operators():
    """``{name: (operator function, its Op)}`` of the five operators."""
    from . import exp_kernel, gated_delta, hierarchical, loglinear

    return {fn.__name__: (fn, spec) for fn, spec in (
        (exp_kernel.log_attention, exp_kernel._SPECS[exp_kernel.LOG_OP]),
        (exp_kernel.exp_kernel_attention, exp_kernel._SPECS[exp_kernel.EXP_OP]),
        (loglinear.loglinear_attention, loglinear.SPEC),
        (gated_delta.loglinear_gated_delta, gated_delta.SPEC),
        (hierarchical.loglinear_log_attention, hierarchical.SPEC),
    )}


def stepper(op, state, *, max_tokens=None, backend=None):
    """A per-token decoding step bound to preallocated copies of ``state``'s buffers.

    Validates once (operator, state tensors' names, shapes, namespace, device and dtype, the backend);
    then ``step(*token_inputs)`` computes one token and updates the buffers in place: no new State,
    no repeated validation, no growing arrays. ``N`` steps give what ``N`` calls of ``op`` with
    ``state=`` (one token each) give, to rounding.

    Parameters
    ----------
    op : callable or str
        One of the five operators (``lsattn.exp_kernel_attention``, ...) or its name.
    state : State
        From a call of ``op`` with ``return_state=True`` (possibly with ``T = 0`` to start a stream
        at offset 0). Not modified: the stepper works on copies of its tensors.
    max_tokens : int, optional
        Largest offset the stream may reach (total tokens, counted from the stream's start,
        ``>= state.offset``); a step beyond it is a ValueError. Required for the log-linear
        operators (``loglinear_attention``, ``loglinear_gated_delta``, ``loglinear_log_attention``),
        whose buffers hold ``bit_length(max_tokens)`` level slots up front; optional for the
        exp-kernel operators (constant-size state).
    backend : str, optional
        Force a backend's step (``"array_api"``, ``"numba"``, ``"cupy"``); None: the automatic choice
        (Numba for NumPy arrays when installed; the CuPy backend's fused one-launch step for CuPy
        arrays and CUDA torch tensors of every operator but ``log_attention``; otherwise the
        array-API path).

    Returns
    -------
    step : Stepper
        ``step(q, k, v, ...)``: the operator's positional inputs for one token, each with a T axis
        of length 1 (``q, k (..., 1, d_k)``, ``v (..., 1, d_v)``, per-token scalars ``(..., 1)``,
        level weights ``(..., 1, L)`` with ``L >= num_levels(offset + 1)``), the state's batch axes
        and a floating dtype that computes in the state's dtype; for ``loglinear_log_attention``
        also ``log_decay=`` as in the operator. Returns the token's output ``(..., 1, d_v)`` in the
        inputs' namespace and dtype. ``step.state`` is the current State (``offset``: tokens seen),
        the same tensors (names, shapes, layout) as the plain calls return; its tensors are views of
        the live buffers, which later steps overwrite (copy them to keep a snapshot). It continues a
        stream in the plain operators (``state=``) or in another stepper. ``step.offset``: tokens
        seen; ``step.backend``: the backend stepping.

    Notes
    -----
    NumPy, torch and array-api-strict buffers are updated in place; JAX arrays are immutable, so a
    JAX step rebinds its buffers to new arrays (same values; a ``jax.jit``-ed decode loop should
    carry the plain operators' State instead). The buffers carry no autograd history (decoding).
    A step computes the operator's formulas on the values as given: the non-finite rule of the
    plain calls (``docs/api.md``, "Non-finite inputs and strong decays") is not applied, so the
    stepper equals the plain calls on finite inputs (and ``-inf`` decays, a hard reset);
    ``loglinear_log_attention``'s token whose every readable level is switched off is NaN, as there.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = rng.standard_normal((3, 2, 40, 8))
    >>> a = -0.1 * rng.random((2, 40))
    >>> lam = rng.random((2, 40, lsattn.num_levels(40)))
    >>> tok = lambda x, t: x[:, t : t + 1]
    >>> _, state = lsattn.loglinear_attention(q[:, :30], k[:, :30], v[:, :30], a[:, :30], lam[:, :30], return_state=True)
    >>> step = lsattn.stepper(lsattn.loglinear_attention, state, max_tokens=40)
    >>> outs = [step(tok(q, t), tok(k, t), tok(v, t), tok(a, t), tok(lam, t)) for t in range(30, 40)]
    >>> outs[0].shape, step.state.offset, step.state.tensors["levels"].shape
    ((2, 1, 8), 40, (2, 6, 8, 8))
    >>> ref = lsattn.reference.loglinear_attention(q, k, v, a, lam)
    >>> bool(np.allclose(np.concatenate(outs, axis=-2), ref[:, 30:]))
    True
    """
    ops = _operators()
    name = op if isinstance(op, str) else getattr(op, "__name__", None)
    if name not in ops or not (isinstance(op, str) or op is ops[name][0]):
        raise ValueError(f"op must be one of the operators {sorted(ops)} (the function or its name), got {op!r}")
    spec = ops[name][1]
    state = canonical(state)  # a fixed-capacity (JAX) state: int offset, exact level slots
    if not isinstance(state, State):
        raise ValueError(f"state must be a lsattn State returned by {name}(..., return_state=True), got {type(state).__name__}")
    if state.op != name:
        raise ValueError(f"state was made by {state.op}, not {name}: pass a state returned by {name}(..., return_state=True)")
    xp = namespace(**{f"state.tensors[{n!r}]": t for n, t in state.tensors.items()})
    dtype = state.dtype
    if compute_dtype(xp, dtype) != dtype:
        raise ValueError(f"state.dtype must be float32 or float64, got {dtype}")
    _check_state_fields(spec, state)
    like = next(iter(state.tensors.values()), None)
    _check_state_tensors(spec, state, xp, like, state.batch_shape, state.d_k, state.d_v, dtype)
    if max_tokens is not None:
        if isinstance(max_tokens, bool):
            raise TypeError(f"max_tokens must be an int, got {max_tokens!r}")
        try:
            max_tokens = operator.index(max_tokens)
        except TypeError:
            raise TypeError(f"max_tokens must be an int, got {type(max_tokens).__name__}") from None
        if max_tokens < state.offset:
            raise ValueError(f"max_tokens = {max_tokens} is below the state's offset {state.offset}: it counts the "
                             "stream's tokens from its start, those already seen included")
    elif name in LEVEL_OPS:
        raise ValueError(f"{name} needs max_tokens (the largest offset the stream will reach): its level buffers "
                         "are allocated up front")
    chosen = backends.resolve(name, xp, next(iter(state.tensors.values())), backend, step=True)
    impl = chosen.implementation(name, step=True)(state, max_tokens)
    return Stepper(spec, state, impl, max_tokens, xp, chosen.name)


class Stepper:
    """The callable :func:`stepper` returns (see there); ``step(*token_inputs)``, ``step.state``."""

    def __init__(self, spec, state, impl, max_tokens, xp, backend):
        self.op, self.backend, self.offset = spec.name, backend, state.offset
        self.batch_shape, self.d_k, self.d_v, self.dtype = state.batch_shape, state.d_k, state.d_v, state.dtype
        self._impl, self._limit, self._xp = impl, max_tokens, xp
        self._native_dtypes = set()  # input dtypes the step reads as they are (see _native)
        self._type = type(next(iter(state.tensors.values())))
        b = tuple(state.batch_shape)
        role_shape = {"q": b + (1, self.d_k), "k": b + (1, self.d_k), "v": b + (1, self.d_v), "tok": b + (1,),
                      "lev": b + (1,)}
        self._names = tuple(n for n, _ in spec.inputs)
        self._shapes = tuple(role_shape[r] for _, r in spec.inputs)
        self._levels = tuple(r == "lev" for _, r in spec.inputs)
        self._keyword = spec.name == "loglinear_log_attention"  # log_decay=, optional
        self._npos = len(spec.inputs) - self._keyword

    @property
    def state(self):
        """The current State (tensors: views of the live buffers). Reads the step's device offset
        where it keeps one (array-API steps): after replays of a captured CUDA graph, which advance
        the device offset but not ``self.offset``, this is the truth (one host read, outside the step)."""
        if hasattr(self._impl, "offset_now"):
            self.offset = self._impl.offset_now()
        return State(self.op, self.offset, self.batch_shape, self.d_k, self.d_v, self.dtype, self._impl.tensors(self.offset))

    def __repr__(self):
        return f"Stepper(op={self.op!r}, backend={self.backend!r}, offset={self.offset}, max_tokens={self._limit})"

    def __call__(self, *inputs, log_decay=None):
        p = self.offset
        if len(inputs) != self._npos:
            raise TypeError(f"a {self.op} step takes {self._npos} positional inputs ({', '.join(self._names[:self._npos])}), "
                            f"got {len(inputs)}")
        if self._keyword:
            inputs = inputs + (log_decay,)
        elif log_decay is not None:
            raise TypeError(f"a {self.op} step takes log_decay positionally")
        if self._limit is not None and p >= self._limit:
            raise ValueError(f"max_tokens = {self._limit} reached: this stepper holds no state beyond it; make a new "
                             f"one from step.state with a larger max_tokens")
        out_dtype = None
        for x in inputs:
            if x is not None and (type(x) is not self._type or x.dtype != self.dtype):
                if not self._native(inputs, x):
                    inputs, out_dtype = self._convert(inputs)
                break
        for x, shape, lev, name in zip(inputs, self._shapes, self._levels, self._names):
            if x is None:
                continue
            sh = x.shape
            if lev:
                if tuple(sh[:-1]) != shape:
                    raise ValueError(f"{name} must have shape (..., 1, L) = {shape + ('L',)} for one token, got {tuple(sh)}")
                if sh[-1] <= p.bit_length():
                    raise ValueError(f"{name} has {sh[-1]} levels on its last axis but the token at offset {p} needs "
                                     f"num_levels({p + 1}) = {p.bit_length() + 1}")
            elif sh != shape:
                raise ValueError(f"{name} must have shape {shape} for one token (T axis of length 1), got {tuple(sh)}")
        out = self._impl.step(p, *inputs)
        self.offset = p + 1
        return out if out_dtype is None else self._xp.astype(out, out_dtype, copy=False)

    def _native(self, inputs, x):
        """True when the step reads inputs of ``x``'s dtype as they are (a backend step that takes 16-bit
        inputs into a float32 state, ``impl.native(dtype)``; its output then has that dtype): all
        inputs of the state's array type and of that one dtype. Checked fully once per dtype."""
        if type(x) is not self._type:
            return False
        dtype = x.dtype
        if not all(x is None or (type(x) is self._type and x.dtype == dtype) for x in inputs):
            return False
        if dtype not in self._native_dtypes:
            if not getattr(self._impl, "native", lambda d: False)(dtype):
                return False
            self._convert(inputs)  # the full checks (floating, computes in the state's dtype)
            self._native_dtypes.add(dtype)
        return True

    def _convert(self, inputs):
        """Inputs of another type or dtype than the state's: full checks, cast to the state's dtype.
        Returns (inputs, dtype of the output)."""
        xp = self._xp
        named = dict(zip(self._names, inputs))
        if namespace(**named) is not xp:
            raise TypeError(f"the inputs are not arrays of the state's namespace {getattr(xp, '__name__', xp)}")
        for name, x in named.items():
            if x is not None:
                check_float(xp, name, x)
        out_dtype = xp.result_type(*(x.dtype for x in inputs if x is not None))
        if compute_dtype(xp, out_dtype) != self.dtype:
            raise ValueError(f"the state computes in {self.dtype} but these inputs compute in "
                             f"{compute_dtype(xp, out_dtype)}; pass inputs of the state's dtype")
        return tuple(None if x is None else xp.astype(x, self.dtype, copy=False) for x in inputs), out_dtype
