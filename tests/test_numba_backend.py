"""The Numba CPU backend: the same properties as the operator tests, forced with backend="numba"
on NumPy inputs, against lsattn.reference; states handed between numba and array_api.

Tolerances are those the operator test files promise (tests/test_exp_kernel.py,
test_loglinear.py, test_gated_delta.py), never looser:
- exp-kernel: max |out - ref| <= tol * max |ref| (+ tol absolute for log_attention),
  tol = TOL[dtype] + 2 eps(dtype) (max |q| + max |k|), TOL = 1e-12 (float64), 1e-5 (float32);
- log-linear Mamba-2 / Gated DeltaNet: max |out - ref| <= tol * max |ref| with tol = 1e-12 (float64;
  Gated DeltaNet with unnormalised keys 1e-10, as test_gated_delta.py) and 1e-5 (float32).
The kernels accumulate in float64 for every input dtype; the long float32 cases below drifted past
these bounds with float32 accumulators.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lsattn
from lsattn import backends
from lsattn import reference as ref
from helpers import TOL, assert_close
from strategies import batch_shapes, decays, decays_or_none, log_decay, magnitudes, seeds, split_points

pytest.importorskip("numba")

EPS = {"float64": np.finfo(np.float64).eps, "float32": np.finfo(np.float32).eps}
EK = {"exp": (lsattn.exp_kernel_attention, ref.exp_kernel_attention),
      "log": (lsattn.log_attention, ref.log_attention)}
small_T = st.one_of(st.sampled_from([1, 2, 3, 7, 8, 9, 16, 17]), st.integers(1, 40))
dims = st.integers(1, 5)


def ek_tol(op, q, k, dtype):
    t = TOL[dtype] + 2 * EPS[dtype] * float(np.abs(q).max(initial=0) + np.abs(k).max(initial=0))
    return t, (t if op == "log" else 0.0)


def ek_inputs(seed, batch, T, dk, dv, scale, Tk=None):
    rng = np.random.default_rng(seed)
    Tk = T if Tk is None else Tk
    return (rng.standard_normal(batch + (T, dk)) * scale, rng.standard_normal(batch + (Tk, dk)) * scale,
            rng.standard_normal(batch + (Tk, dv)))


def ll_inputs(seed, batch, T, dk, dv, L=None, gated=False, decay="moderate", key_scale=None):
    """q, k, v, log_decay, (beta,) level_weights. Gated: unit keys (key_scale None) or keys of std
    key_scale, beta in (0, 1)."""
    rng = np.random.default_rng(seed)
    L = lsattn.num_levels(max(T, 1)) if L is None else L
    q, k = rng.standard_normal(batch + (T, dk)), rng.standard_normal(batch + (T, dk))
    if gated:
        k = k / np.linalg.norm(k, axis=-1, keepdims=True) if key_scale is None else k * key_scale
    args = [q, k, rng.standard_normal(batch + (T, dv)), log_decay(rng, batch + (T,), decay)]
    if gated:
        args.append(rng.uniform(0.0, 1.0, batch + (T,)))
    args.append(rng.uniform(-1.0, 2.0, batch + (T, L)))
    return args


LL = {"mamba2": (lsattn.loglinear_attention, ref.loglinear_attention, False),
      "gated": (lsattn.loglinear_gated_delta, ref.loglinear_gated_delta, True)}


# ---- exp-kernel attention ------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["exp", "log"])
@pytest.mark.parametrize("causal", [True, False])
@given(batch=batch_shapes, T=small_T, dk=dims, dv=dims, scale=magnitudes, seed=seeds)
def test_exp_kernel_matches_reference(op, causal, batch, T, dk, dv, scale, seed):
    q, k, vals = ek_inputs(seed, batch, T, dk, dv, scale, Tk=None if causal else T + 3)
    f, r = EK[op]
    rtol, atol = ek_tol(op, q, k, "float64")
    assert_close(f(q, k, vals, causal=causal, backend="numba"), r(q, k, vals, causal=causal), rtol, atol=atol)


@pytest.mark.parametrize("op", ["exp", "log"])
@given(T=small_T, seed=seeds, scale=st.sampled_from([1.0, 1e3]))
def test_exp_kernel_float32_and_large_magnitudes(op, T, seed, scale):
    q, k, vals = ek_inputs(seed, (2,), T, 4, 3, scale)
    f, r = EK[op]
    rtol, atol = ek_tol(op, q, k, "float32")
    out = f(*(x.astype(np.float32) for x in (q, k, vals)), backend="numba")
    assert out.dtype == np.float32
    assert_close(out, r(*(x.astype(np.float32).astype(np.float64) for x in (q, k, vals))), rtol, atol=atol)


def test_log_v_minus_inf_is_zero_value():
    q, k, lv = ek_inputs(0, (), 5, 3, 2, 1.0)
    lv[:, 0] = -np.inf  # a column of zero values -> log y = -inf everywhere
    lv[2, 1] = -np.inf
    out = lsattn.log_attention(q, k, lv, backend="numba")
    assert_close(out, ref.log_attention(q, k, lv), TOL["float64"], atol=TOL["float64"])
    assert np.isneginf(out[:, 0]).all()


@pytest.mark.parametrize("op", ["exp", "log"])
@given(T=st.integers(2, 40), data=st.data(), seed=seeds)
def test_exp_kernel_stream_handed_between_backends(op, T, data, seed):
    q, k, vals = ek_inputs(seed, (2,), T, 3, 4, 2.0)
    f, r = EK[op]
    cuts = [0] + data.draw(split_points(T)) + [T]
    names = data.draw(st.lists(st.sampled_from(["numba", "array_api"]), min_size=len(cuts) - 1, max_size=len(cuts) - 1))
    outs, state = [], None
    for (a, b), name in zip(zip(cuts[:-1], cuts[1:]), names):
        o, state = f(*(x[..., a:b, :] for x in (q, k, vals)), state=state, return_state=True, backend=name)
        outs.append(o)
    rtol, atol = ek_tol(op, q, k, "float64")
    assert_close(np.concatenate(outs, axis=-2), r(q, k, vals), rtol, atol=atol)
    assert state.offset == T


@pytest.mark.parametrize("op", ["exp", "log"])
def test_exp_kernel_state_equals_array_api_state(op):
    q, k, vals = ek_inputs(3, (2, 1), 13, 3, 4, 1.0)
    f = EK[op][0]
    _, a = f(q, k, vals, return_state=True, backend="numba")
    _, b = f(q, k, vals, return_state=True, backend="array_api")
    assert a.tensors.keys() == b.tensors.keys()
    for name in a.tensors:
        np.testing.assert_allclose(a.tensors[name], b.tensors[name], rtol=1e-12, atol=1e-300, err_msg=name)


@pytest.mark.parametrize("op", ["exp", "log"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_kernel_empty_call(op, dtype):
    """As test_exp_kernel.py::test_empty_call: T = 0 gives (..., 0, d_v) and a fresh state (equal to
    array_api's) or the given state unchanged; a non-causal call with no queries gives (..., 0, d_v)."""
    f = EK[op][0]
    q, k, vals = (x.astype(dtype) for x in ek_inputs(2, (2,), 9, 3, 2, 1.0))
    out, fresh = f(q[:, :0], k[:, :0], vals[:, :0], return_state=True, backend="numba")
    assert out.shape == (2, 0, 2) and out.dtype == dtype and fresh.offset == 0
    _, want = f(q[:, :0], k[:, :0], vals[:, :0], return_state=True, backend="array_api")
    for name in want.tensors:
        np.testing.assert_array_equal(fresh.tensors[name], want.tensors[name], err_msg=name)
    _, state = f(q, k, vals, state=fresh, return_state=True, backend="numba")
    out, same = f(q[:, :0], k[:, :0], vals[:, :0], state=state, return_state=True, backend="numba")
    assert out.shape == (2, 0, 2) and same.offset == 9
    for name in state.tensors:
        np.testing.assert_array_equal(same.tensors[name], state.tensors[name], err_msg=name)
    assert f(q[:, :0], k, vals, causal=False, backend="numba").shape == (2, 0, 2)
    assert f(q[:0], k[:0], vals[:0], backend="numba").shape == (0, 9, 2)  # empty batch


# ---- log-linear Mamba-2 and Gated DeltaNet -------------------------------------------------------

@pytest.mark.parametrize("op", ["mamba2", "gated"])
@given(batch=batch_shapes, T=small_T, dk=dims, dv=dims, extra=st.integers(0, 2), decay=decays, seed=seeds)
def test_loglinear_matches_reference(op, batch, T, dk, dv, extra, decay, seed):
    f, r, gated = LL[op]
    args = ll_inputs(seed, batch, T, dk, dv, L=lsattn.num_levels(T) + extra, gated=gated, decay=decay)
    assert_close(f(*args, backend="numba"), r(*args), TOL["float64"])


@given(T=small_T, key_scale=st.sampled_from([0.3, 0.6, 1.0]), decay=decays, seed=seeds)
def test_gated_delta_unnormalised_keys(T, key_scale, decay, seed):
    """Keys of std up to 1 (transitions up to ~5x expansive): 1e-10, the bound of test_gated_delta.py."""
    args = ll_inputs(seed, (2,), T, 4, 3, gated=True, decay=decay, key_scale=key_scale)
    assert_close(lsattn.loglinear_gated_delta(*args, backend="numba"), ref.loglinear_gated_delta(*args), 1e-10)


@pytest.mark.parametrize("op", ["mamba2", "gated"])
@given(T=small_T, decay=decays, seed=seeds)
def test_loglinear_float32(op, T, decay, seed):
    f, r, gated = LL[op]
    args = ll_inputs(seed, (2,), T, 4, 3, gated=gated, decay=decay, key_scale=0.5 if seed % 2 else None)
    out = f(*(x.astype(np.float32) for x in args), backend="numba")
    assert out.dtype == np.float32
    assert_close(out, r(*(x.astype(np.float32).astype(np.float64) for x in args)), TOL["float32"])


# ---- long float32 calls: sequential accumulation must not drift ------------------------------------
#
# The oracle is the array-API path in float64 on the same (float32-rounded) inputs: it meets the
# reference to 1e-12 in the operator tests, and the quadratic reference is too slow at these T.
# Each case exceeded its bound with float32 accumulators (exp-kernel 4.8e-5, Mamba-2 2.1e-5).

def _long_case(name):
    rng = np.random.default_rng(7)
    if name in ("exp", "log"):  # uniform weights (q = k = 0): S, z grow like T, each column ~constant
        T, dk = 8192, 4
        cols = np.array([0.1, 0.3, 0.7, 1.1, 0.2, 0.9])
        v = cols + 1e-4 * rng.standard_normal((1, T, cols.size))
        args = [np.zeros((1, T, dk)), np.zeros((1, T, dk)), v if name == "exp" else np.log(v)]
        return EK[name][0], args, ek_tol(name, *args[:2], "float32")
    T, d = 2048, 16  # slow decay (exp(-1e-4) per step) and positive-mean inputs: long-lived levels
    q, k, v = (1.0 + 0.1 * rng.standard_normal((2, T, d)) for _ in range(3))
    args = [q, k, v, np.full((2, T), -1e-4)]
    if name == "gated":
        args[1] = k / np.linalg.norm(k, axis=-1, keepdims=True)
        args.append(rng.uniform(0.0, 1.0, (2, T)))
    args.append(np.ones((2, T, lsattn.num_levels(T))))
    return LL[name][0], args, (TOL["float32"], 0.0)


@pytest.mark.parametrize("name", ["exp", "log", "mamba2", "gated"])
def test_float32_long_calls(name):
    f, args, (rtol, atol) = _long_case(name)
    a32 = [x.astype(np.float32) for x in args]
    oracle = f(*(x.astype(np.float64) for x in a32), backend="array_api")
    assert_close(f(*a32, backend="numba"), oracle, rtol, atol=atol)


@pytest.mark.parametrize("op", ["mamba2", "gated"])
@given(T=st.integers(2, 40), data=st.data(), seed=seeds)
def test_loglinear_stream_handed_between_backends(op, T, data, seed):
    f, r, gated = LL[op]
    args = ll_inputs(seed, (2,), T, 3, 2, gated=gated)
    cuts = [0] + data.draw(split_points(T)) + [T]
    names = data.draw(st.lists(st.sampled_from(["numba", "array_api"]), min_size=len(cuts) - 1, max_size=len(cuts) - 1))
    outs, state = [], None
    for (a, b), name in zip(zip(cuts[:-1], cuts[1:]), names):
        piece = [x[..., a:b, :] if x.ndim == 3 else x[..., a:b] for x in args]
        o, state = f(*piece, state=state, return_state=True, backend=name)
        outs.append(o)
    assert_close(np.concatenate(outs, axis=-2), r(*args), TOL["float64"])
    assert state.offset == T and state.tensors["levels"].shape == (2, T.bit_length(), 3, 2)


@pytest.mark.parametrize("op", ["mamba2", "gated"])
@given(T=st.integers(17, 150), data=st.data(), decay=decays, seed=seeds)
def test_loglinear_streams_over_blocks(op, T, data, decay, seed):
    """Longer streams cut anywhere: Mamba-2 runs aligned blocks of BLOCK tokens at once and the
    tokens around them one by one, from any offset; every mix of the two matches the reference."""
    f, r, gated = LL[op]
    args = ll_inputs(seed, (2,), T, 3, 5, gated=gated, decay=decay)
    cuts = [0] + data.draw(split_points(T, max_splits=3)) + [T]
    outs, state = [], None
    for a, b in zip(cuts[:-1], cuts[1:]):
        piece = [x[..., a:b, :] if x.ndim == 3 else x[..., a:b] for x in args]
        o, state = f(*piece, state=state, return_state=True, backend="numba")
        outs.append(o)
    assert_close(np.concatenate(outs, axis=-2), r(*args), TOL["float64"])
    _, want = f(*args, return_state=True, backend="array_api")
    assert_close(state.tensors["levels"], want.tensors["levels"], TOL["float64"])


@pytest.mark.parametrize("op", ["mamba2", "gated"])
def test_loglinear_state_equals_array_api_state(op):
    f, _, gated = LL[op]
    args = ll_inputs(5, (3,), 22, 3, 4, gated=gated)
    _, a = f(*args, return_state=True, backend="numba")
    _, b = f(*args, return_state=True, backend="array_api")
    np.testing.assert_allclose(a.tensors["levels"], b.tensors["levels"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("op", ["mamba2", "gated"])
def test_loglinear_empty_call(op):
    f, _, gated = LL[op]
    args = ll_inputs(1, (2,), 0, 3, 2, L=1, gated=gated)
    out, state = f(*args, return_state=True, backend="numba")
    assert out.shape == (2, 0, 2) and state.offset == 0 and state.tensors["levels"].shape == (2, 0, 3, 2)


# ---- hierarchical exp-kernel attention ----------------------------------------------------------------
#
# Bound of tests/test_hierarchical.py (absolute on log y):
#     max |log y - ref| <= tol (1 + max |ref|),   tol = TOL[dtype] + 2 eps(dtype) (max |q| + max |k|)

def hier_inputs(seed, batch, T, dk, dv, scale=1.0, decay="moderate", weights="random", L=None):
    """q, k, log_v, log_level_weights, log_decay (None for decay "none"); weights "off": levels >= 1
    switched off (-inf) at random."""
    rng = np.random.default_rng(seed)
    q, k = (rng.standard_normal(batch + (T, dk)) * scale for _ in range(2))
    lv = rng.standard_normal(batch + (T, dv))
    a = log_decay(rng, batch + (T,), decay)
    L = lsattn.num_levels(max(T, 1)) if L is None else L
    lam = 2.0 * rng.standard_normal(batch + (T, L))
    if weights == "zero":
        lam = np.zeros_like(lam)
    elif weights == "off":
        lam = np.where((rng.random(lam.shape) < 0.4) & (np.arange(L) > 0), -np.inf, lam)
    return q, k, lv, lam, a


def hier(args, backend="numba", **kw):
    q, k, lv, lam, a = args
    return lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a, backend=backend, **kw)


def hier_check(out, args, dtype):
    q, k = args[0], args[1]
    tol = TOL[dtype] + 2 * EPS[dtype] * float(np.abs(q).max(initial=0) + np.abs(k).max(initial=0))
    assert_close(out, ref.loglinear_log_attention(*args[:4], log_decay=args[4]), tol, atol=tol)


hier_decays = decays_or_none
hier_weights = st.sampled_from(["zero", "random", "off"])


@given(batch=batch_shapes, T=small_T, dk=dims, dv=dims, scale=magnitudes, decay=hier_decays, weights=hier_weights,
       extra=st.integers(0, 2), seed=seeds)
def test_hierarchical_matches_reference(batch, T, dk, dv, scale, decay, weights, extra, seed):
    args = hier_inputs(seed, batch, T, dk, dv, scale, decay, weights, L=lsattn.num_levels(T) + extra)
    hier_check(hier(args), args, "float64")


@given(T=small_T, scale=st.sampled_from([1e-3, 1.0, 1e3]), decay=hier_decays, weights=hier_weights, seed=seeds)
def test_hierarchical_float32(T, scale, decay, weights, seed):
    args = [None if x is None else x.astype(np.float32) for x in hier_inputs(seed, (2,), T, 4, 3, scale, decay, weights)]
    out = hier(args)
    assert out.dtype == np.float32
    hier_check(out, [None if x is None else x.astype(np.float64) for x in args], "float32")


def test_hierarchical_zero_values_and_plain_log_attention():
    """log v = -inf columns give -inf; zero weights and no decay give causal log_attention (1e-13)."""
    q, k, lv, lam, _ = hier_inputs(4, (2,), 37, 3, 4, weights="zero")
    lv[..., 0] = -np.inf
    lv[:, 5, 1] = -np.inf
    out = hier((q, k, lv, lam, None))
    hier_check(out, (q, k, lv, lam, None), "float64")
    assert np.isneginf(out[..., 0]).all()
    assert_close(out, lsattn.log_attention(q, k, lv, backend="array_api"), 1e-13, atol=1e-13)


@given(T=st.integers(2, 60), data=st.data(), decay=hier_decays, seed=seeds)
def test_hierarchical_stream_handed_between_backends(T, data, decay, seed):
    args = hier_inputs(seed, (2,), T, 3, 2, decay=decay, weights=data.draw(hier_weights))
    cuts = [0] + data.draw(split_points(T)) + [T]
    names = data.draw(st.lists(st.sampled_from(["numba", "array_api"]), min_size=len(cuts) - 1, max_size=len(cuts) - 1))
    outs, state = [], None
    for (a, b), name in zip(zip(cuts[:-1], cuts[1:]), names):
        piece = [None if x is None else (x[..., a:b, :] if x.ndim == 3 else x[..., a:b]) for x in args]
        o, state = hier(piece, backend=name, state=state, return_state=True)
        outs.append(o)
    hier_check(np.concatenate(outs, axis=-2), args, "float64")
    assert state.offset == T and state.tensors["S"].shape == (2, T.bit_length(), 3, 2)


def test_hierarchical_state_equals_array_api_state():
    args = hier_inputs(6, (3,), 23, 3, 4, decay="moderate", weights="off")
    _, a = hier(args, return_state=True)
    _, b = hier(args, backend="array_api", return_state=True)
    assert a.tensors.keys() == b.tensors.keys()
    for name in a.tensors:
        np.testing.assert_allclose(a.tensors[name], b.tensors[name], rtol=1e-12, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hierarchical_empty_call(dtype):
    args = [None if x is None else x.astype(dtype) for x in hier_inputs(1, (2,), 9, 3, 2)]
    empty = [None if x is None else (x[:, :0, :] if x.ndim == 3 else x[:, :0]) for x in args]
    out, fresh = hier(empty, return_state=True)
    _, want = hier(empty, backend="array_api", return_state=True)
    assert out.shape == (2, 0, 2) and fresh.offset == 0
    assert {n: t.shape for n, t in fresh.tensors.items()} == {n: t.shape for n, t in want.tensors.items()}
    _, state = hier(args, return_state=True)
    out, same = hier(empty, state=state, return_state=True)
    assert out.shape == (2, 0, 2) and same is state


# ---- dispatch --------------------------------------------------------------------------------------

def test_auto_picks_numba_for_numpy(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    q = np.zeros((2, 3))
    for op in ("log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta",
               "loglinear_log_attention"):
        assert backends.select(op, np, q).__module__ == "lsattn.backends.numba_cpu"
    rows = {name: ok for name, ok, _, _ in backends.available()}
    assert rows["numba"] is True


def test_forced_numba_on_other_arrays_is_an_error():
    torch = pytest.importorskip("torch")
    q = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="'numba' cannot compute exp_kernel_attention.*not a NumPy array"):
        lsattn.exp_kernel_attention(q, q, q, backend="numba")
    assert backends.get("numba").serves(np, np.zeros(2, dtype=np.int64)) is not None


def test_unavailable_numba_is_a_clear_error(monkeypatch):
    b = backends.get("numba")
    monkeypatch.setattr(b, "_status", (False, "numba not installed"))
    q = np.zeros((3, 2))
    with pytest.raises(RuntimeError, match="'numba' is not available here: numba not installed"):
        lsattn.exp_kernel_attention(q, q, q, backend="numba")
    out = lsattn.exp_kernel_attention(q, q, q)  # automatic choice moves on to the next backend
    assert out.shape == (3, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_and_states_not_modified(dtype):
    """The kernels read contiguous inputs and states in place (no copies): none may be written."""
    def calls():
        q, k, v = (x.astype(dtype) for x in ek_inputs(0, (2,), 40, 3, 4, 2.0))
        yield lsattn.exp_kernel_attention, (q, k, v), {}
        yield lsattn.log_attention, (q, k, v), {}
        for name in ("mamba2", "gated"):
            yield LL[name][0], [x.astype(dtype) for x in ll_inputs(1, (2,), 40, 3, 4, gated=LL[name][2])], {}
        q, k, lv, lam, a = hier_inputs(2, (2,), 40, 3, 4)
        yield lsattn.loglinear_log_attention, [x.astype(dtype) for x in (q, k, lv, lam)], {"log_decay": a.astype(dtype)}

    for fn, args, kw in calls():
        cut = [x[..., :17, :] if x.ndim == 3 else x[..., :17] for x in args]
        rest = [np.ascontiguousarray(x[..., 17:, :] if x.ndim == 3 else x[..., 17:]) for x in args]
        kw_cut = {n: x[..., :17] for n, x in kw.items()}
        kw_rest = {n: np.ascontiguousarray(x[..., 17:]) for n, x in kw.items()}
        _, state = fn(*cut, return_state=True, backend="numba", **kw_cut)
        before = [x.copy() for x in list(rest) + list(kw_rest.values()) + list(state.tensors.values())]
        fn(*rest, state=state, return_state=True, backend="numba", **kw_rest)
        after = list(rest) + list(kw_rest.values()) + list(state.tensors.values())
        for b, a_ in zip(before, after):
            np.testing.assert_array_equal(a_, b, err_msg=fn.__name__)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(data=st.data(), seed=seeds)
@settings(max_examples=12)
def test_finite_check_of_large_numpy_inputs(dtype, data, seed):
    """The prologue's finiteness check of a large NumPy array through the Numba backend's one parallel
    pass (``_nonfinite.FAST_FINITE``) agrees with ``np.isfinite`` entry by entry: NaN, +inf and -inf
    at random positions (``-inf`` passing where allowed); views it cannot read (not C-contiguous, other
    dtypes) are left to NumPy. Then a public call of that size: a NaN key poisons its token on."""
    from lsattn import _nonfinite
    from lsattn.backends import _numba_kernels as K

    assert _nonfinite.FAST_FINITE.get(np.ndarray) is K.all_finite  # registered when the kernels load
    rng = np.random.default_rng(seed)
    n = _nonfinite.FAST_FINITE_MIN + data.draw(st.integers(0, 70000))
    x = rng.standard_normal(n).astype(dtype)
    bad = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from([np.nan, np.inf, -np.inf])),
                             max_size=3))
    for i, val in bad:
        x[i] = val
    for neg_ok in (False, True):
        want = bool(np.all(x < np.inf)) if neg_ok else bool(np.all(np.isfinite(x)))
        assert K.all_finite(x, neg_ok) is want
        assert _nonfinite._all_finite(np, [(x, neg_ok)]) is want
    assert K.all_finite(x[::2], False) is None and K.all_finite(x.astype(np.float16), False) is None
    T = _nonfinite.FAST_FINITE_MIN // 4 + 3
    q, k, v = (rng.standard_normal((1, T, 4)).astype(dtype) for _ in range(3))
    s = data.draw(st.integers(0, T - 1))
    k[0, s, data.draw(st.integers(0, 3))] = np.nan
    y = lsattn.exp_kernel_attention(q, k, v, backend="numba")
    assert np.isnan(y[0, s:]).all() and np.isfinite(y[0, :s]).all()
