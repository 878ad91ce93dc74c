"""Loose arguments and hand-built states are clear errors before any kernel runs (docs/api.md).

Every operator, every CPU backend: flags must be bools, integers ints (not bools), errors name
the right argument; a State whose tensors were edited (truncated, renamed, wrong dtype, another
namespace or device, a bad offset) is refused with a ValueError / TypeError naming what differs,
never read out of bounds. ``State.to`` moves a stream between namespaces.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import lsattn

from conftest import NAMESPACES
from helpers import assert_close, to_numpy

OPS = ["log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"]
BACKENDS = ["array_api", "numba"]


def inputs(op, T=6, batch=(2,), dk=3, dv=2, seed=0):
    rng = np.random.default_rng(seed)
    n = lambda *s: rng.standard_normal(batch + s)
    q, k, v = n(T, dk), n(T, dk), n(T, dv)
    L = lsattn.num_levels(max(T, 1) + 8)  # room to continue the stream
    if op in ("log_attention", "exp_kernel_attention"):
        return [q, k, v]
    a, lam = -rng.random(batch + (T,)), rng.random(batch + (T, L))
    if op == "loglinear_attention":
        return [q, k, v, a, lam]
    if op == "loglinear_gated_delta":
        return [q, k / np.linalg.norm(k, axis=-1, keepdims=True), v, a, rng.random(batch + (T,)), lam]
    return [q, k, v, lam, a]


#: argument names in ``inputs`` order
ARGS = {"log_attention": ["q", "k", "log_v"], "exp_kernel_attention": ["q", "k", "v"],
        "loglinear_attention": ["q", "k", "v", "log_decay", "level_weights"],
        "loglinear_gated_delta": ["q", "k", "v", "log_decay", "beta", "level_weights"],
        "loglinear_log_attention": ["q", "k", "log_v", "log_level_weights", "log_decay"]}


def call(op, arrays, **kw):
    f = getattr(lsattn, op)
    if op == "loglinear_log_attention":
        return f(*arrays[:4], log_decay=arrays[4], **kw)
    return f(*arrays, **kw)


def first_state(op, backend, T=6):
    arrays = inputs(op, T=T)
    return call(op, arrays, backend=backend, return_state=True)[1]


def more(op):
    """Two more tokens of the same stream."""
    return [x[..., :2] if x.ndim == 2 else x[..., :2, :] for x in inputs(op, seed=1)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_flags_must_be_bools(op, backend):
    arrays = inputs(op)
    for bad in ("yes", None, 1, 0.0):
        with pytest.raises(TypeError, match="return_state must be True or False"):
            call(op, arrays, backend=backend, return_state=bad)
    if op in ("log_attention", "exp_kernel_attention"):
        for bad in ("no", None, 1):
            with pytest.raises(TypeError, match="causal must be True or False"):
                call(op, arrays, backend=backend, causal=bad)
        assert_close(call(op, arrays, backend=backend, causal=np.bool_(False)),
                     call(op, arrays, backend=backend, causal=False), 0.0)
    if op in ("loglinear_attention", "loglinear_gated_delta"):
        for bad in (True, False, np.bool_(True), 8.0, "8"):
            with pytest.raises(TypeError, match="chunk_size must be an int"):
                call(op, arrays, backend=backend, chunk_size=bad)
        assert_close(call(op, arrays, backend=backend, chunk_size=np.int64(2)), call(op, arrays, backend=backend), 1e-12)


@pytest.mark.parametrize("op", OPS)
def test_batch_axes_broadcast_or_name_both_arguments(op):
    """Batch axes broadcast like matmul: an input without its batch axis is shared by every batch
    element (equal to passing it repeated); a batch axis of another size (not 1) is a ValueError
    naming the first argument it clashes with and this one, with both shapes."""
    arrays = inputs(op)
    names = ARGS[op]
    for i in range(len(arrays)):
        cut = list(arrays)
        cut[i] = cut[i][0]  # this one lost its batch axis: shared
        repeated = list(arrays)
        repeated[i] = np.stack([cut[i]] * 2)
        assert_close(call(op, cut), call(op, repeated), 0.0)
        bad = list(arrays)
        bad[i] = np.stack([cut[i]] * 3)  # batch 3 against 2
        with pytest.raises(ValueError, match="do not broadcast") as info:
            call(op, bad)
        msg = str(info.value)
        other = names[1] if i == 0 else "q"
        first, second = ("q", other) if i == 0 else (other, names[i])
        assert msg.startswith(f"the leading batch axes of {first} and {second} do not broadcast"), msg
        assert str(tuple(bad[i].shape)) in msg, msg


@pytest.mark.parametrize("op", ["exp_kernel_attention", "loglinear_attention"])
def test_repeated_packed_calls_skip_the_validation_not_its_errors(op, monkeypatch):
    """A packed call without state repeating an earlier call (arrays as in the test above, the same
    offsets' values: Python ints, or an array's, read on every call) skips the validation and returns
    what the first call did; other offsets (an array changed in place included), a state or
    ``return_state`` are validated again, bad offsets raise as before."""
    from unittest import mock

    from lsattn import _prologue

    monkeypatch.delenv("LSATTN_BACKEND", raising=False)
    monkeypatch.setattr(_prologue, "_PLANS", {})
    arrays = inputs(op)
    with mock.patch.object(_prologue, "namespace", wraps=_prologue.namespace) as ns:
        first = call(op, arrays, cu_seqlens=[0, 2, 2, 6])
        again = call(op, [x.copy() for x in arrays], cu_seqlens=(0, 2, 2, 6))
        assert ns.call_count == 1
        assert_close(again, first, 0.0)
        other = call(op, arrays, cu_seqlens=[0, 3, 6])
        assert ns.call_count == 2
        assert not np.allclose(other, first)
        call(op, arrays, cu_seqlens=[0, 3, 6], return_state=True)
        assert ns.call_count == 3
        cu = np.array([0, 3, 6])  # an array: keyed by the values read, its type and device
        assert_close(call(op, arrays, cu_seqlens=cu), other, 0.0)
        assert_close(call(op, arrays, cu_seqlens=cu), other, 0.0)
        assert ns.call_count == 4
        cu[1] = 2  # changed in place: other offsets
        assert_close(call(op, arrays, cu_seqlens=cu), call(op, arrays, cu_seqlens=[0, 2, 6]), 0.0)
        assert ns.call_count == 6
        call(op, arrays, cu_seqlens=np.array([0, 2, 6], dtype=np.int32))  # another dtype: checked again
        assert ns.call_count == 7
    for bad, msg in (([0, 2, 5], "must end at T = 6"), ([0, 4, 2, 6], "non-decreasing"), ([1, 6], "start at 0")):
        for _ in range(2):
            with pytest.raises(ValueError, match=msg):
                call(op, arrays, cu_seqlens=bad)
    cu = np.array([0, 2, 2, 6])
    call(op, arrays, cu_seqlens=cu)
    for bad, msg in (([0, 2, 2, 5], "must end at T = 6"), ([0, 4, 2, 6], "non-decreasing"), ([1, 2, 2, 6], "start at 0")):
        cu[:] = bad  # the plan of the array's earlier values does not answer for these
        for _ in range(2):
            with pytest.raises(ValueError, match=msg):
                call(op, arrays, cu_seqlens=cu)
    with pytest.raises(TypeError, match="must hold integers"):
        call(op, arrays, cu_seqlens=np.array([0.0, 2.0, 6.0]))


@pytest.mark.parametrize("op", OPS)
def test_repeated_calls_skip_the_validation_not_its_errors(op, monkeypatch):
    """A call without state repeating an earlier call's array types, shapes, dtypes, devices and flags
    skips the validation (``_prologue._PLANS``) and returns what the first call did; any other call is
    validated again (a shape, a dtype, too few levels, mixed namespaces: the errors as before), and
    the backend is still chosen per call (``LSATTN_BACKEND`` set later acts at once)."""
    import torch
    from unittest import mock

    from lsattn import _prologue

    monkeypatch.delenv("LSATTN_BACKEND", raising=False)
    monkeypatch.setattr(_prologue, "_PLANS", {})
    arrays = inputs(op)
    with mock.patch.object(_prologue, "namespace", wraps=_prologue.namespace) as ns:
        first = call(op, arrays)
        again = call(op, [x.copy() for x in arrays])
        assert ns.call_count == 1
        assert_close(again, first, 0.0)
        call(op, [arrays[0].astype(np.float32)] + arrays[1:])  # another dtype: validated
        assert ns.call_count == 2
        with_state = call(op, arrays, return_state=True)  # another flag: validated
        assert ns.call_count == 3
        call(op, more(op), state=with_state[1])  # a state: validated on every call
        call(op, more(op), state=with_state[1])
        assert ns.call_count == 5
    bad = list(arrays)
    bad[1] = bad[1][..., :-1, :]  # one key fewer
    for _ in range(2):
        with pytest.raises(ValueError, match=f"{ARGS[op][1]} must have shape"):
            call(op, bad)
    with pytest.raises(TypeError, match="different namespaces"):
        call(op, [torch.asarray(arrays[0])] + arrays[1:])
    lev = ARGS[op].index("log_level_weights" if op == "loglinear_log_attention" else "level_weights") \
        if op not in ("log_attention", "exp_kernel_attention") else None
    if lev is not None:
        few = list(arrays)
        few[lev] = few[lev][..., :2]
        for _ in range(2):
            with pytest.raises(ValueError, match="levels on its last axis"):
                call(op, few)
    t = [torch.asarray(x) for x in arrays]
    t[0].requires_grad_(True)
    grad_out = call(op, t)
    assert grad_out.requires_grad and call(op, [x.detach() for x in t]).grad_fn is None
    monkeypatch.setenv("LSATTN_BACKEND", "garbage")
    with pytest.raises(ValueError, match="LSATTN_BACKEND='garbage' names no backend"):
        call(op, arrays)


def test_plan_key_kinds_by_type(monkeypatch):
    """``_prologue._plan_key`` reads each array's entry by its type's kind, looked up once per type
    (``_KEY_KINDS``): torch tensors and nn.Parameters keyed by shape, dtype, device and requires_grad, NumPy
    arrays by shape and dtype, other types (a NumPy subclass, a list) never cached (None), on the first call
    of a type and on every later one alike (the table holds the type's kind, nothing of an array's)."""
    import torch

    from lsattn import _prologue
    from lsattn.gated_delta import SPEC

    monkeypatch.setattr(_prologue, "_KEY_KINDS", {})
    x = np.zeros((2, 3))
    t = torch.zeros(2, 3)
    p = torch.nn.Parameter(torch.zeros(2, 3))

    def key(*arrays):
        return _prologue._plan_key(SPEC, arrays + (None,) * (6 - len(arrays)), True, False)

    for _ in range(2):  # table empty, then filled
        assert key(x, t, p) == (id(SPEC), True, False, (np.ndarray, (2, 3), x.dtype),
                                (torch.Tensor, t.shape, t.dtype, t.device, False),
                                (torch.nn.Parameter, p.shape, p.dtype, p.device, True), None, None, None)
        assert key(x, np.ma.masked_array(x)) is None and key([[0.0]]) is None
        assert key(t) != key(t.double()) and key(t) != key(t[:1]) and key(t) != key(t.requires_grad_(True))
        t.requires_grad_(False)
        assert key(x) != key(x.astype(np.float32)) and key(x) != key(x.T)
    assert _prologue._KEY_KINDS == {np.ndarray: "numpy", torch.Tensor: "torch", torch.nn.Parameter: "torch",
                                    np.ma.MaskedArray: "", list: ""}


def test_environment_variable_is_named(monkeypatch):
    monkeypatch.setenv("LSATTN_BACKEND", "garbage")
    with pytest.raises(ValueError, match="LSATTN_BACKEND='garbage' names no backend"):
        lsattn.log_attention(*inputs("log_attention"))


def test_fenwick_integers():
    assert lsattn.num_levels(0) == 0
    assert lsattn.level_matrix(0).shape == (0, 0)
    for bad in (True, np.bool_(False)):
        with pytest.raises(TypeError, match="not a bool"):
            lsattn.num_levels(bad)
        with pytest.raises(TypeError, match="bool"):
            lsattn.fenwick_level(bad, 0)


#: position of the level weights among each log-linear operator's inputs (``inputs`` order)
LEVELS_ARG = {"loglinear_attention": 4, "loglinear_gated_delta": 5, "loglinear_log_attention": 3}


@pytest.mark.parametrize("op", OPS)
def test_zero_tokens_with_num_levels(op):
    """T = 0 with ``num_levels(0) = 0`` levels is a valid call (and a valid first state)."""
    arrays = inputs(op, T=0)
    if op in LEVELS_ARG:
        arrays[LEVELS_ARG[op]] = np.ones((2, 0, lsattn.num_levels(0)))
    out, st = call(op, arrays, return_state=True)
    assert out.shape == (2, 0, 2) and st.offset == 0


def _edits(op, st):
    """Hand-built variants of a valid state: (what, state, exception, message regex)."""
    name = next(iter(st.tensors))
    t = st.tensors[name]
    with np.errstate(over="ignore"):  # the finite stand-in -finfo(float64).max / 8 overflows float32
        t32 = t.astype(np.float32)
    out = [
        ("truncated", {name: t[..., :1, :] if t.ndim >= 3 else t[..., :1]}, ValueError, "do not match the expected"),
        ("renamed", {("x" + n if n == name else n): x for n, x in st.tensors.items()}, ValueError, "do not match the expected"),
        ("missing", {n: x for n, x in st.tensors.items() if n != name}, ValueError, "do not match the expected"),
        ("float32", {name: t32}, ValueError, "dtype float32, expected float64"),
        ("not an array", {name: t.tolist()}, TypeError, "must be an array"),
    ]
    variants = [(what, dataclasses.replace(st, tensors={**st.tensors, **tensors} if what not in ("renamed", "missing")
                                           else tensors), exc, msg) for what, tensors, exc, msg in out]
    variants += [
        ("negative offset", dataclasses.replace(st, offset=-1), ValueError, "offset must be >= 0"),
        ("float offset", dataclasses.replace(st, offset=6.0), TypeError, "offset must be a Python int"),
        ("bool offset", dataclasses.replace(st, offset=True), TypeError, "offset must be a Python int"),
        ("not a State", dict(st.tensors), ValueError, "state must be a lsattn State"),
    ]
    if op.startswith("loglinear"):  # an offset whose Fenwick levels need another number of slots
        variants.append(("offset of other levels", dataclasses.replace(st, offset=8), ValueError, "do not match the expected"))
    return variants


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_hand_built_states_are_checked(op, backend):
    st = first_state(op, backend)
    nxt = more(op)
    good = to_numpy(call(op, nxt, backend=backend, state=st))
    for what, bad, exc, msg in _edits(op, st):
        with pytest.raises(exc, match=msg):
            call(op, nxt, backend=backend, state=bad)
    # the state was never modified by the attempts
    assert_close(call(op, nxt, backend=backend, state=st), good, 0.0)


@pytest.mark.parametrize("op", OPS)
def test_state_from_another_namespace(op):
    """A NumPy state continued on torch: the error says the namespaces differ; ``state.to`` converts."""
    xt = NAMESPACES["torch"]()
    arrays = inputs(op, T=8)
    whole = to_numpy(call(op, arrays, backend="array_api"))
    first = [x[..., :5] if x.ndim == 2 else x[..., :5, :] for x in arrays]
    rest = [xt.asarray(x[..., 5:] if x.ndim == 2 else x[..., 5:, :]) for x in arrays]
    out, st = call(op, first, return_state=True)
    with pytest.raises(ValueError, match="the namespaces differ; convert the state with state.to"):
        call(op, rest, state=st)
    moved = st.to(xt)
    assert str(moved.dtype) == "torch.float64" and all(xt.isdtype(t.dtype, "real floating") for t in moved.tensors.values())
    out2 = call(op, rest, state=moved)
    assert_close(np.concatenate([to_numpy(out), to_numpy(out2)], axis=-2), whole, 1e-12)
    back = moved.to(np)  # and back again
    assert all(type(t) is np.ndarray for t in back.tensors.values())
    assert_close(call(op, [to_numpy(x) for x in rest], state=back), out2, 1e-12)


def test_state_device_is_checked():
    """A state on another device than the inputs is refused (checked with a 'meta' torch tensor,
    which is a device no CPU call can read)."""
    torch = pytest.importorskip("torch")
    xt = NAMESPACES["torch"]()
    op = "loglinear_attention"
    arrays = [xt.asarray(x) for x in inputs(op)]
    _, st = call(op, arrays, return_state=True)
    meta = dataclasses.replace(st, tensors={n: torch.empty(t.shape, dtype=t.dtype, device="meta") for n, t in st.tensors.items()})
    with pytest.raises(ValueError, match="is on device meta but the inputs are on cpu"):
        call(op, [xt.asarray(x) for x in more(op)], state=meta)
