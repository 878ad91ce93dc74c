"""Backend registry and the one dispatch every operator goes through.

A backend declares which operators it implements (``op -> "module:function"``, imported lazily),
which arrays it serves, and whether it is available here (with the reason when not).
``backend=None`` picks the first available backend, in priority order, that serves the arrays
and implements the operator; the ``LSATTN_BACKEND`` environment variable, when set, names the
default instead. A named backend that cannot serve the call is an error, never a silent fallback.

Every implementation of one operator has the same signature (that of its array-API twin), takes
validated inputs already in the compute dtype, and returns what the array-API twin returns.

Decoding (``lsattn.stepper``) goes through the same registry: a backend lists its per-token step
factories in ``steps`` (``op -> "module:function"``), each ``factory(state, max_tokens)`` returning
an object with ``step(offset, *arrays) -> out`` (validated one-token inputs in the compute dtype,
updating its preallocated buffers in place) and ``tensors(offset) -> dict`` (the current State's
tensors, views of the buffers). ``resolve(..., step=True)`` picks among the backends that list one.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["Backend", "register", "available", "resolve", "select", "get", "generation", "ENV_VAR"]

ENV_VAR = "LSATTN_BACKEND"


@dataclass
class Backend:
    """One way of computing the operators.

    Attributes
    ----------
    name : str
        What users pass as ``backend=``.
    description : str
        One line for ``lsattn info``.
    ops : dict
        Operator name -> ``"module:function"`` implementing it.
    probe : callable
        ``() -> None`` when usable here, else the reason it is not (package missing, no device).
    serves : callable
        ``(xp, array) -> None`` when it can compute on such arrays, else the reason.
    priority : int
        Lower is tried first by ``backend=None``.
    auto_serves : callable, optional
        Like ``serves``, for the automatic choice only, when that is narrower than what
        the backend can be forced onto (None: same as ``serves``).
    half_ops: operators that take float16 / bfloat16 inputs as they are (the others receive float32).
    grad_ops: operators whose results carry gradients (torch autograd) when an input requires grad.
    steps: operator -> ``"module:function"`` of its per-token step factory (``lsattn.stepper``).
    varlen_ops: operators it computes with ``cu_seqlens`` (packed segments, ``lsattn._varlen``:
        the log-linear operators through its rewrite; the exp-kernel operators have none, so a
        backend lists them in ``reset_ops`` too).
    broadcast_ops: operators whose implementation takes inputs whose batch axes are broadcast
        views (stride 0 along stretched axes); the others receive contiguous materialised copies.
    reset_ops: those of ``varlen_ops`` whose implementation computes packed segments itself: it
        takes ``segments=`` (``lsattn._varlen.Streams``: host ``starts`` (N + 1,) and each stream's
        incoming ``offsets`` (N,)) and computes the packed call on the packed tokens as they are
        (instead of ``lsattn._varlen``'s rewrite), from a packed ``state`` (batch axes then N; None:
        fresh streams) to a packed state, with no loop over the segments.
    layout_ops: those of ``varlen_ops`` whose implementation reads the packed tokens through the
        layout of ``lsattn._varlen`` itself: for calls without state and without gradients it takes
        ``token_map=`` (``lsattn._varlen.token_map``) with the inputs as they are (no gathered,
        re-laid-out copies) and returns the outputs of the packed tokens.
    """

    name: str
    description: str
    ops: dict
    probe: Callable[[], Optional[str]]
    serves: Callable[[object, object], Optional[str]]
    priority: int = 100
    auto_serves: Optional[Callable[[object, object], Optional[str]]] = None
    half_ops: frozenset = frozenset()
    grad_ops: frozenset = frozenset()
    steps: dict = field(default_factory=dict)
    varlen_ops: frozenset = frozenset()
    broadcast_ops: frozenset = frozenset()
    reset_ops: frozenset = frozenset()
    layout_ops: frozenset = frozenset()
    _status: Optional[tuple] = field(default=None, repr=False)
    _impls: dict = field(default_factory=dict, repr=False)

    def __setattr__(self, name, value):
        # any change of a backend (its availability probed or set, what it serves) may change the
        # automatic choice: ``generation`` tells the prologue's cached choices (``_impls`` is read per call)
        _GENERATION[0] += 1
        object.__setattr__(self, name, value)

    def status(self):
        """``(available, reason)``; probed once."""
        if self._status is None:
            try:
                reason = self.probe()
            except Exception as exc:  # a broken install is "unavailable", with its reason
                reason = f"{type(exc).__name__}: {exc}"
            self._status = (reason is None, reason or "ok")
        return self._status

    def implementation(self, op, *, step=False):
        """The function computing ``op`` (``step=True``: its step factory), imported once."""
        key = (op, step)
        impl = self._impls.get(key)
        if impl is None:  # imported once: the lookup is on every call's path
            module, func = (self.steps if step else self.ops)[op].split(":")
            impl = self._impls[key] = getattr(importlib.import_module(module), func)
        return impl


_REGISTRY: dict = {}
_GENERATION = [0]  # bumped by every register() and every attribute set on a Backend


def register(backend):
    """Add (or replace) a backend in the registry."""
    _REGISTRY[backend.name] = backend
    _GENERATION[0] += 1
    return backend


def generation():
    """What ``resolve(..., backend=None)`` depends on besides its arguments: changes whenever the
    registry (or a backend in it) or ``$LSATTN_BACKEND`` changes, so a caller may keep a choice
    made for the same arrays' metadata while it is equal (``lsattn._prologue``)."""
    return _GENERATION[0], id(_REGISTRY), os.environ.get(ENV_VAR), resolve


def get(name):
    """The registered backend called ``name``; ValueError listing the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known backends: {sorted(_REGISTRY)}") from None


def available():
    """One row per registered backend: ``(name, available, reason, operators)``, in priority order."""
    rows = []
    for b in sorted(_REGISTRY.values(), key=lambda b: b.priority):
        ok, reason = b.status()
        rows.append((b.name, ok, reason, sorted(b.ops)))
    return rows


def resolve(op, xp, array, backend=None, *, grad=False, step=False, varlen=False):
    """The ``Backend`` that computes ``op`` for arrays like ``array`` (namespace ``xp``).

    backend: None (automatic, or ``$LSATTN_BACKEND``) or a backend name, which is then forced.
    grad: some input requires grad: only backends listing ``op`` in ``grad_ops`` qualify.
    step: for ``lsattn.stepper``: only backends with a step factory for ``op`` qualify.
    varlen: the call has ``cu_seqlens``: only backends listing ``op`` in ``varlen_ops`` qualify.
    """
    if backend is None:
        backend = os.environ.get(ENV_VAR) or None
        if backend is not None and backend not in _REGISTRY:
            raise ValueError(f"the environment variable {ENV_VAR}={backend!r} names no backend; known backends: "
                             f"{sorted(_REGISTRY)}")
    if backend is not None:
        b = get(backend)
        ok, reason = b.status()
        if not ok:
            raise RuntimeError(f"backend {backend!r} is not available here: {reason}")
        table = b.steps if step else b.ops
        if op not in table:
            what = "a decoding step for " if step else ""
            raise ValueError(f"backend {backend!r} does not implement {what}{op}; it implements {what}{sorted(table)}")
        why = b.serves(xp, array)
        if why is None and grad and op not in b.grad_ops:
            why = "an input requires grad and this backend has no backward for it"
        if why is None and varlen and op not in b.varlen_ops:
            able = sorted(n for n, o in _REGISTRY.items() if op in o.varlen_ops)
            why = (f"it does not compute packed segments (cu_seqlens) of {op} (docs/api.md says why); "
                   f"backends that do: {able}")
        if why is not None:
            raise ValueError(f"backend {backend!r} cannot compute {op} on these arrays: {why}")
        return b
    for b in sorted(_REGISTRY.values(), key=lambda b: b.priority):
        if (op in (b.steps if step else b.ops) and (not grad or op in b.grad_ops)
                and (not varlen or op in b.varlen_ops) and (b.auto_serves or b.serves)(xp, array) is None and b.status()[0]):
            return b
    raise ValueError(f"no available backend computes {op} on {type(array).__name__} arrays")


def select(op, xp, array, backend=None, *, grad=False):
    """The function computing ``op`` for arrays like ``array``: ``resolve(...).implementation(op)``."""
    return resolve(op, xp, array, backend, grad=grad).implementation(op)


importlib.import_module(f"{__name__}._builtin")  # registers the built-in backends (an import for its effect)
