"""The Numba CPU backend: the same properties as the operator tests, forced with backend="numba"
on NumPy inputs, against lsattn.reference; states handed between numba and array_api.

Tolerances are those of the operator tests:
- exp-kernel: max |out - ref| <= tol * max |ref| (+ tol absolute for log_attention),
  tol = TOL[dtype] + 2 eps(dtype) (max |q| + max |k|);
- log-linear Mamba-2 / Gated DeltaNet: TOL[dtype] relative to max |ref| (float64 1e-12, float32 1e-5
  times a small chain factor stated below).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lsattn
from lsattn import backends
from lsattn import reference as ref
from helpers import TOL, assert_close
from strategies import batch_shapes, magnitudes, seeds, split_points

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


def ll_inputs(seed, batch, T, dk, dv, L=None, gated=False):
    rng = np.random.default_rng(seed)
    L = lsattn.num_levels(max(T, 1)) if L is None else L
    q, k = rng.standard_normal(batch + (T, dk)), rng.standard_normal(batch + (T, dk))
    if gated:  # unit keys and beta in (0, 1): the transitions are contractions, as in practice
        k = k / np.linalg.norm(k, axis=-1, keepdims=True)
    args = [q, k, rng.standard_normal(batch + (T, dv)), -rng.uniform(0.0, 0.5, batch + (T,))]
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


# ---- log-linear Mamba-2 and Gated DeltaNet -------------------------------------------------------

@pytest.mark.parametrize("op", ["mamba2", "gated"])
@given(batch=batch_shapes, T=small_T, dk=dims, dv=dims, extra=st.integers(0, 2), seed=seeds)
def test_loglinear_matches_reference(op, batch, T, dk, dv, extra, seed):
    f, r, gated = LL[op]
    args = ll_inputs(seed, batch, T, dk, dv, L=lsattn.num_levels(T) + extra, gated=gated)
    assert_close(f(*args, backend="numba"), r(*args), TOL["float64"])


@pytest.mark.parametrize("op", ["mamba2", "gated"])
@given(T=small_T, seed=seeds)
def test_loglinear_float32(op, T, seed):
    f, r, gated = LL[op]
    args = ll_inputs(seed, (2,), T, 4, 3, gated=gated)
    out = f(*(x.astype(np.float32) for x in args), backend="numba")
    assert out.dtype == np.float32
    assert_close(out, r(*(x.astype(np.float32).astype(np.float64) for x in args)), 4 * TOL["float32"])


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


# ---- dispatch --------------------------------------------------------------------------------------

def test_auto_picks_numba_for_numpy(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    q = np.zeros((2, 3))
    for op in ("log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta"):
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
