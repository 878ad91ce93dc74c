"""log_attention and exp_kernel_attention against lsattn.reference, on every namespace.

Promised accuracy (docs/exp_kernel.md), per call against the float64 reference on the same inputs:

    max |out - ref| <= tol * max |ref|        (log_attention: + tol, an absolute error in log y)
    tol = TOL[dtype] + 2 eps(dtype) (max |q| + max |k|)

with TOL = 1e-12 (float64), 1e-5 (float32). The second term is the conditioning of the formula:
a relative rounding of q_ti + k_si (of size ~|q| + |k|) changes a weight by that much, so float32
inputs of magnitude 1e3 are accurate to ~2e-4, float64 of magnitude 1e5 to ~4e-11. Streamed,
chunked and one-shot results agree with each other to the same bounds.

NumPy, array-api-strict and torch run every test below (the ``xp`` fixture of this module). JAX
compiles every operation for every new shape when run eagerly (about 20 s for a first
``log_attention`` call of a new shape on 2 cores), so JAX has its own section at the end: the
same checks through ``jax.jit`` (one compilation per shape), on a few fixed shapes, with fewer
hypothesis examples.
"""
import functools

import array_api_compat
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lsattn
from lsattn import exp_kernel as ek
from lsattn import reference as ref
from lsattn.state import State

from helpers import TOL, assert_close, jax_jit, on, to_numpy, traced_peak
from strategies import batch_shapes, head_dims, magnitudes, seeds, seq_lens, split_points

F64, F32 = TOL["float64"], TOL["float32"]
EPS = {"float64": float(np.finfo(np.float64).eps), "float32": float(np.finfo(np.float32).eps)}
chunk_sizes = st.sampled_from([1, 2, 4, 8, 16, 64])
ops = st.sampled_from(["exp", "log"])

#: the array-API path of this module (NumPy would otherwise dispatch to a specialised backend)
FN = {
    "exp": functools.partial(lsattn.exp_kernel_attention, backend="array_api"),
    "log": functools.partial(lsattn.log_attention, backend="array_api"),
}
REF = {"exp": ref.exp_kernel_attention, "log": ref.log_attention}
FORWARD = {"exp": ek._exp_forward, "log": ek._log_forward}
OP_NAME = {"exp": ek.EXP_OP, "log": ek.LOG_OP}


@pytest.fixture(scope="session")
def xp(xp_eager):
    """The eagerly executed namespaces (JAX: see the end of this file)."""
    return xp_eager


def make(seed, batch, T, dk, dv, *, scale=1.0, Tk=None):
    """NumPy float64 q (..., T, dk), k and values (..., Tk, dk / dv); values are N(0, 1) (signed
    for exp_kernel_attention, log v for log_attention)."""
    rng = np.random.default_rng(seed)
    Tk = T if Tk is None else Tk
    q = rng.standard_normal(batch + (T, dk)) * scale
    k = rng.standard_normal(batch + (Tk, dk)) * scale
    return q, k, rng.standard_normal(batch + (Tk, dv))


def tol(op, arrays, dtype="float64"):
    """(rtol, atol) of the promise above for these inputs."""
    q, k = arrays[0], arrays[1]
    mag = float(np.abs(q).max(initial=0) + np.abs(k).max(initial=0))
    t = TOL[dtype] + 2 * EPS[dtype] * mag
    return t, (t if op == "log" else 0.0)


def check(op, out, arrays, dtype="float64", causal=True, what=""):
    rtol, atol = tol(op, arrays, dtype)
    assert_close(out, REF[op](*arrays, causal=causal), rtol, atol=atol, what=what)


def tokens(arrays, i0, i1):
    return [x[..., i0:i1, :] for x in arrays]


# ---- against the reference -------------------------------------------------------------------

@given(op=ops, batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, scale=magnitudes, seed=seeds)
def test_matches_reference_float64(xp, op, batch, T, dk, dv, scale, seed):
    arrays = make(seed, batch, T, dk, dv, scale=scale)
    out = FN[op](*on(xp, arrays))
    assert out.dtype == xp.float64 and tuple(out.shape) == batch + (T, dv)
    check(op, out, arrays, what=f"{op} T={T}")


@given(op=ops, batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, scale=magnitudes, seed=seeds)
def test_float32_bound(xp, op, batch, T, dk, dv, scale, seed):
    arrays32 = [x.astype(np.float32) for x in make(seed, batch, T, dk, dv, scale=scale)]
    out = FN[op](*on(xp, arrays32, "float32"))
    assert out.dtype == xp.float32
    check(op, out, [x.astype(np.float64) for x in arrays32], "float32")


@given(op=ops, batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunk_sizes, seed=seeds)
def test_chunk_sizes_match_reference(xp, op, batch, T, dk, dv, C, seed):
    """The private chunk size (C = 1 runs several segments of 64 chunks for T > 64)."""
    arrays = make(seed, batch, T, dk, dv, scale=2.0)
    out, _ = FORWARD[op](*on(xp, arrays), True, None, False, chunk_size=C)
    check(op, out, arrays, what=f"{op} T={T} C={C}")


@given(op=ops, T=st.integers(1, 80), seed=seeds)
def test_chunk_size_invariance(xp, op, T, seed):
    arrays = on(xp, make(seed, (2,), T, 3, 2, scale=2.0))
    outs = [to_numpy(FORWARD[op](*arrays, True, None, False, chunk_size=C)[0]) for C in (1, 2, 8, 64, 128)]
    for o in outs[1:]:
        assert_close(o, outs[0], F64, atol=F64 if op == "log" else 0.0)


def test_several_segments(monkeypatch):
    """Segments of SEGMENT_CHUNKS chunks carry the summary like a stream does."""
    monkeypatch.setattr(ek, "SEGMENT_CHUNKS", 2)
    arrays = make(7, (2,), 150, 3, 4, scale=2.0)
    for op in ("exp", "log"):
        for C in (1, 4, 16):
            out, state = FORWARD[op](*arrays, True, None, True, chunk_size=C)
            check(op, out, arrays, what=f"{op} C={C}")
            assert state.offset == 150


@given(
    op=ops, batch=batch_shapes, Tq=st.integers(0, 40), Tk=st.integers(1, 40), dk=head_dims, dv=head_dims,
    scale=magnitudes, seed=seeds,
)
def test_non_causal_matches_reference(xp, op, batch, Tq, Tk, dk, dv, scale, seed):
    arrays = make(seed, batch, Tq, dk, dv, scale=scale, Tk=Tk)
    out = FN[op](*on(xp, arrays), causal=False)
    assert tuple(out.shape) == batch + (Tq, dv)
    check(op, out, arrays, causal=False)


def test_values_of_any_sign(xp):
    """Signed values with heavy cancellation: y is the weighted average, not its magnitude."""
    q, k, v = make(3, (2,), 50, 4, 3)
    v = np.where(np.arange(50)[:, None] % 2 == 0, 1.0, -1.0) * (1 + 1e-3 * v)
    for causal in (True, False):
        out = FN["exp"](*on(xp, (q, k, v)), causal=causal)
        assert_close(out, ref.exp_kernel_attention(q, k, v, causal=causal), 0.0, atol=F64 * np.abs(v).max())


# ---- magnitudes --------------------------------------------------------------------------------

#: q/k regimes at magnitude M: independent N(0, M^2); q ~ +M, k ~ -M (weights mix, exact sums);
#: q ~ k ~ +M (exponents ~2M, rounded in working precision); later keys +M (a masked C x C
#: product with chunk-wide key shifts would underflow every visible weight of earlier queries)
regimes = st.sampled_from(["random", "cancel", "same", "later_keys_huge"])


def extreme(seed, regime, M, T=40, dk=4, dv=3, batch=(2,)):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(batch + (T, dk)), rng.standard_normal(batch + (T, dk))
    q, k = {
        "random": (a * M, b * M),
        "cancel": (M + 3 * a, -M + 3 * b),
        "same": (M + 3 * a, M + 3 * b),
        "later_keys_huge": (a, b + M * (np.arange(T) >= T // 3)[:, None]),
    }[regime]
    return q, k, rng.standard_normal(batch + (T, dv))


@given(op=ops, regime=regimes, seed=seeds, causal=st.booleans(), data=st.data())
def test_magnitude_extremes(xp, op, regime, seed, causal, data):
    """|q|, |k| up to 1e3 in float32 and 1e5 in float64: finite and within the promised bound."""
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    M = data.draw(st.sampled_from([1e2, 1e3] if dtype == "float32" else [1e3, 1e4, 1e5]))
    arrays = [x.astype(dtype) for x in extreme(seed, regime, M)]
    out = FN[op](*on(xp, arrays, dtype), causal=causal)
    assert np.isfinite(to_numpy(out)).all()
    check(op, out, [x.astype(np.float64) for x in arrays], dtype, causal=causal, what=f"{regime} M={M}")


@pytest.mark.parametrize("op", ["exp", "log"])
def test_one_huge_later_key_in_the_chunk(op):
    """Token 1 has k = 1e3 (float32): query 0 must still see only key 0 (output = its value)."""
    q = np.zeros((8, 2), np.float32)
    k = np.zeros((8, 2), np.float32)
    k[1] = 1e3
    v = np.arange(16, dtype=np.float32).reshape(8, 2)
    out = FN[op](q, k, v)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0], v[0], rtol=1e-6)
    np.testing.assert_allclose(out[1:], np.broadcast_to(v[1], (7, 2)), rtol=1e-6)  # key 1 dominates


# ---- log values: zeros and the underflow regime ----------------------------------------------------

@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # the reference takes log 0
def test_log_v_minus_inf_is_zero_value(xp):
    q, k, lv = make(5, (2,), 40, 3, 4)
    rng = np.random.default_rng(0)
    lv = np.where(rng.random(lv.shape) < 0.3, -np.inf, lv)
    lv[..., :5, 0] = -np.inf  # the first outputs of column 0 see only zero values: log y = -inf
    lv[..., 2] = -np.inf  # a column of zeros
    for causal in (True, False):
        out = FN["log"](*on(xp, (q, k, lv)), causal=causal)
        expected = ref.log_attention(q, k, lv, causal=causal)
        assert np.isneginf(expected[..., 2]).all() and (not causal or np.isneginf(expected[..., :5, 0]).all())
        assert_close(out, expected, F64, atol=F64)  # infinities must match exactly
    y = FN["exp"](q, k, np.exp(lv))
    assert_close(np.exp(to_numpy(FN["log"](q, k, lv))), y, 1e-12)


def underflow_case(D, dtype):
    """Keys 0, 1 form one group (block or state) read by queries 2, 3. Key 0 is strong with value
    e^0, key 1 is e^-D weaker with value e^D: y_3 ~ 2 while the running column maximum is D, so
    log y_3 - max log_v ~ -D. Keys 2, 3 are negligible."""
    q = np.zeros((4, 1))
    k = np.array([[0.0], [-D], [-4 * D], [-4 * D]])
    lv = np.array([[0.0], [D], [0.0], [0.0]])
    return [x.astype(dtype) for x in (q, k, lv)]


@pytest.mark.parametrize("dtype,D", [("float32", 40.0), ("float32", 60.0), ("float64", 600.0), ("float64", 650.0)])
def test_log_values_inside_the_documented_regime_are_exact(xp, dtype, D):
    """log y more than 60 (float32) / 650 (float64) below the running maximum of its column is
    still exact, whichever way the tokens are grouped (tree block, chunk summary, stream state)."""
    arrays = underflow_case(D, dtype)
    expected = ref.log_attention(*arrays)
    assert expected[3, 0] - D < -D + 1  # the regime is really probed
    for C in (1, 2, 4):
        out, _ = ek._log_forward(*on(xp, arrays, dtype), True, None, False, chunk_size=C)
        assert_close(out, expected, TOL[dtype], atol=TOL[dtype] * D)
    _, state = FN["log"](*on(xp, tokens(arrays, 0, 2), dtype), return_state=True)
    out = FN["log"](*on(xp, tokens(arrays, 2, 4), dtype), state=state)
    assert_close(out, expected[2:], TOL[dtype], atol=TOL[dtype] * D)


@pytest.mark.parametrize("dtype,D", [("float32", 200.0), ("float32", 1000.0), ("float64", 2000.0)])
def test_log_values_beyond_the_regime_come_out_small_never_nan(xp, dtype, D):
    """Far beyond the regime the group's numerator underflows: the output is too small (down to
    -inf), never NaN and never larger than the truth."""
    arrays = underflow_case(D, dtype)
    expected = ref.log_attention(*arrays)
    for C in (1, 4):
        out = to_numpy(ek._log_forward(*on(xp, arrays, dtype), True, None, False, chunk_size=C)[0])
        assert not np.isnan(out).any()
        assert (out <= expected + 1e-3).all()
        assert_close(out[:2], expected[:2], TOL[dtype])  # queries 0, 1 are unaffected


# ---- streaming ---------------------------------------------------------------------------------

@given(op=ops, batch=batch_shapes, T=st.integers(2, 80), data=st.data(), seed=seeds, C=chunk_sizes)
def test_stream_split_invariance(xp, op, batch, T, data, seed, C):
    """Random cut points: concatenated outputs equal one call and the reference; so does the state."""
    arrays = make(seed, batch, T, 3, 2, scale=2.0)
    cuts = [0] + data.draw(split_points(T)) + [T]
    whole, whole_state = FORWARD[op](*on(xp, arrays), True, None, True, chunk_size=C)
    state, outs = None, []
    for i0, i1 in zip(cuts[:-1], cuts[1:]):
        o, state = FN[op](*on(xp, tokens(arrays, i0, i1)), state=state, return_state=True)
        outs.append(to_numpy(o))
    streamed = np.concatenate(outs, axis=-2)
    check(op, streamed, arrays, what=f"cuts {cuts}")
    assert_close(streamed, whole, F64, atol=F64 if op == "log" else 0.0)
    assert state.offset == T == whole_state.offset and state.op == whole_state.op
    # the states describe the same prefix: read them with one more query
    q1, k1, v1 = make(seed + 1, batch, 1, 3, 2, scale=2.0)
    a = FN[op](*on(xp, (q1, k1, v1)), state=state)
    b = FN[op](*on(xp, (q1, k1, v1)), state=whole_state)
    assert_close(a, b, F64, atol=F64 if op == "log" else 0.0)


@pytest.mark.parametrize("op", ["exp", "log"])
def test_token_by_token_decode_equals_one_call(xp, op):
    T, batch = 37, (2,)
    arrays = make(1, batch, T, 3, 4, scale=3.0)
    whole = FN[op](*on(xp, arrays))
    state, outs = None, []
    for t in range(T):
        o, state = FN[op](*on(xp, tokens(arrays, t, t + 1)), state=state, return_state=True)
        outs.append(to_numpy(o))
        assert state.offset == t + 1
    assert_close(np.concatenate(outs, axis=-2), whole, F64, atol=F64 if op == "log" else 0.0)
    shapes = {n: tuple(x.shape) for n, x in state.tensors.items()}
    want = {"m": (2, 3), "S": (2, 3, 4), "z": (2, 3)} | ({"n": (2, 4)} if op == "log" else {})
    assert shapes == want  # constant size: no token axis


@pytest.mark.parametrize("op", ["exp", "log"])
def test_state_holds_the_shifted_sums(op):
    """S = sum_s exp(k_si - m_i) v_sj (log: exp(k_si - m_i + log_v_sj - n_j)), z = sum_s exp(k_si - m_i)."""
    q, k, v = make(2, (2,), 30, 3, 2, scale=3.0)
    _, state = FN[op](q, k, v, return_state=True)
    t = {n: to_numpy(x) for n, x in state.tensors.items()}
    np.testing.assert_array_equal(t["m"], k.max(axis=-2))
    E = np.exp(k - t["m"][..., None, :])
    vals = np.exp(v - t["n"][..., None, :]) if op == "log" else v
    if op == "log":
        np.testing.assert_array_equal(t["n"], v.max(axis=-2))
    np.testing.assert_allclose(t["z"], E.sum(axis=-2), rtol=1e-13)
    np.testing.assert_allclose(t["S"], np.swapaxes(E, -1, -2) @ vals, rtol=1e-13)


def test_empty_call(xp):
    arrays = make(2, (2,), 9, 3, 2)
    for op in ("exp", "log"):
        out, fresh = FN[op](*on(xp, tokens(arrays, 0, 0)), return_state=True)
        assert tuple(out.shape) == (2, 0, 2) and fresh.offset == 0
        _, state = FN[op](*on(xp, arrays), state=fresh, return_state=True)
        out, same = FN[op](*on(xp, tokens(arrays, 0, 0)), state=state, return_state=True)
        assert tuple(out.shape) == (2, 0, 2) and same.offset == 9


# ---- dtypes, namespaces, inputs ---------------------------------------------------------------

def test_output_keeps_namespace_device_dtype(xp):
    for dtype in ("float32", "float64"):
        arrays = on(xp, make(0, (2,), 5, 3, 2), dtype)
        for op in ("exp", "log"):
            for causal in (True, False):
                out = FN[op](*arrays, causal=causal)
                assert type(out) is type(arrays[0]) and out.dtype == arrays[0].dtype
                assert array_api_compat.device(out) == array_api_compat.device(arrays[0])


@pytest.mark.parametrize("op", ["exp", "log"])
def test_half_precision_in_half_out(op):
    arrays = [x.astype(np.float16) for x in make(4, (2,), 20, 4, 4)]
    out = FN[op](*arrays)
    assert out.dtype == np.float16
    assert_close(out, REF[op](*[x.astype(np.float64) for x in arrays]), 2e-3, atol=2e-3 if op == "log" else 0.0)
    torch = pytest.importorskip("torch")
    tb = [torch.tensor(x.astype(np.float32)).to(torch.bfloat16) for x in arrays]
    out = FN[op](*tb)
    assert out.dtype == torch.bfloat16
    assert_close(out, REF[op](*[x.double() for x in tb]), 1e-2, atol=1e-2 if op == "log" else 0.0)


def test_inputs_not_modified():
    arrays = make(4, (2,), 20, 4, 4)
    copies = [x.copy() for x in arrays]
    for op in ("exp", "log"):
        _, state = FN[op](*arrays, return_state=True)
        FN[op](*arrays, state=state)
        FN[op](*arrays, causal=False)
    for x, c in zip(arrays, copies):
        np.testing.assert_array_equal(x, c)


def test_bad_inputs_name_the_argument():
    q, k, v = make(0, (2,), 6, 3, 2)
    for op, vname in (("exp", "v"), ("log", "log_v")):
        fn = FN[op]
        with pytest.raises(ValueError, match="^k "):
            fn(q, k[..., :2], v)
        with pytest.raises(ValueError, match="^k .*causal"):
            fn(q, k[:, :5], v[:, :5])  # causal needs Tk == Tq
        with pytest.raises(ValueError, match=f"^{vname} "):
            fn(q, k, v[:, :5])
        with pytest.raises(ValueError, match=f"^the leading batch axes of q and {vname} do not broadcast"):
            fn(q, k, np.concatenate([v, v[:1]]))  # batch 3 against 2 (v[0] would be shared: broadcast)
        with pytest.raises(ValueError, match="^q "):
            fn(q[0, 0], k, v)
        with pytest.raises(TypeError, match="q must have a real floating dtype"):
            fn(q.astype(np.int64), k, v)
        with pytest.raises(TypeError, match=f"{vname} must have a real floating dtype"):
            fn(q, k, v.astype(np.int32))
        with pytest.raises(ValueError, match="causal=True"):
            fn(q, k, v, causal=False, return_state=True)
        with pytest.raises(ValueError, match="at least one key"):
            fn(q, k[:, :0], v[:, :0], causal=False)
        torch = pytest.importorskip("torch")
        with pytest.raises(TypeError, match="different namespaces"):
            fn(q, torch.tensor(k), v)


@pytest.mark.parametrize("C", [0, 3, 12, -4, 2.0])
def test_private_chunk_size_must_be_power_of_two(C):
    with pytest.raises(ValueError, match="power of two"):
        ek._exp_forward(*make(0, (), 4, 2, 2), True, None, False, chunk_size=C)


def test_bad_states_are_rejected():
    q, k, v = make(0, (2,), 6, 3, 2)
    _, s_exp = FN["exp"](q, k, v, return_state=True)
    _, s_log = FN["log"](q, k, v, return_state=True)
    with pytest.raises(ValueError, match="made by exp_kernel_attention, not log_attention"):
        FN["log"](q, k, v, state=s_exp)
    with pytest.raises(ValueError, match="made by log_attention, not exp_kernel_attention"):
        FN["exp"](q, k, v, state=s_log)
    with pytest.raises(ValueError, match="d_v"):
        FN["exp"](q, k, np.zeros((2, 6, 5)), state=s_exp)
    with pytest.raises(ValueError, match="d_k"):
        FN["exp"](q[..., :2], k[..., :2], v, state=s_exp)
    with pytest.raises(ValueError, match="batch shape"):
        FN["exp"](q[:1], k[:1], v[:1], state=s_exp)
    with pytest.raises(ValueError, match="float32"):
        FN["exp"](*[x.astype(np.float32) for x in (q, k, v)], state=s_exp)
    with pytest.raises(ValueError, match="State"):
        FN["exp"](q, k, v, state={"S": 0})
    with pytest.raises(ValueError, match="state tensors"):
        bad = State("exp_kernel_attention", 6, (2,), 3, 2, s_exp.dtype, {"m": s_exp.tensors["m"]})
        FN["exp"](q, k, v, state=bad)
    with pytest.raises(ValueError, match="causal=True"):
        FN["exp"](q, k, v, causal=False, state=s_exp)
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="another array namespace"):
        FN["exp"](*[torch.tensor(x) for x in (q, k, v)], state=s_exp)


# ---- gradients (torch; JAX at the end) ---------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["exp", "log"])
def test_torch_gradcheck(op):
    torch = pytest.importorskip("torch")
    q, k, v = (torch.tensor(x, requires_grad=True) for x in make(0, (1,), 11, 3, 2, scale=2.0))
    fn = FN[op]

    def streamed(q, k, v):
        o1, s = fn(q[:, :6], k[:, :6], v[:, :6], return_state=True)
        return torch.cat([o1, fn(q[:, 6:], k[:, 6:], v[:, 6:], state=s)], dim=-2)

    assert torch.autograd.gradcheck(lambda *x: fn(*x), (q, k, v))
    assert torch.autograd.gradcheck(streamed, (q, k, v))
    assert torch.autograd.gradcheck(lambda *x: FORWARD[op](*x, True, None, False, chunk_size=2)[0], (q, k, v))
    assert torch.autograd.gradcheck(lambda q, k, v: fn(q, k[:, :7], v[:, :7], causal=False), (q, k, v))


# ---- memory ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["exp", "log"])
def test_memory_at_32768(op):
    """NumPy float32, T = 32768, d_k = d_v = 64: peak traced allocation beyond inputs and output
    under 64 MiB. One (T, d_k, d_v) float32 tensor would be 512 MiB, a T x T one 4 GiB."""
    T, d = 32768, 64
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((T, d), dtype=np.float32) for _ in range(3))
    out, peak = traced_peak(lambda: FN[op](q, k, v))
    assert out.shape == (T, d) and np.isfinite(out).all()
    extra = peak - out.nbytes
    assert extra < 64 * 2**20, f"{extra / 2**20:.1f} MiB beyond the output"
    check(op, out[:512], [x[:512].astype(np.float64) for x in (q, k, v)], "float32")


# ---- JAX: through jax.jit, few fixed shapes ------------------------------------------------------
#
# Eager JAX compiles each operation per new shape (~20 s for a first log_attention of a shape on 2
# cores, ~1 s jitted), so the JAX checks run the same code under jax.jit on fixed shapes: causal
# (2, 9, d) with default chunks (one chunk of 16, a 4-level tree) and with chunk_size=2 (five
# chunks, their summaries and the scan), non-causal 9 queries against 5 keys, a stream of pieces
# 4 + 1 + 4. One eager call per operator checks the eager path itself.

JAX_EXAMPLES = max(2, settings.default.max_examples // 6)  # 2 in the ci profile (CI time)
JAX_T, JAX_TK, JAX_DK, JAX_DV = 9, 5, 3, 2


@pytest.fixture(scope="session")
def jnp(xp_jax):
    return xp_jax


def _chunked(op):
    """The forward of ``op`` with an explicit chunk size, called like the public function."""

    def fn(q, k, v, *, causal=True, state=None, return_state=False, chunk_size):
        r = FORWARD[op](q, k, v, causal, state, return_state, chunk_size=chunk_size)
        return r if return_state else r[0]

    return fn


CHUNKED = {op: _chunked(op) for op in FORWARD}


def jax_call(op, arrays, *, chunk_size=None, **kw):
    """One call under jax.jit (compiled once per shape): the public one, or the forward with ``chunk_size``."""
    if chunk_size is None:
        return jax_jit(FN[op], OP_NAME[op], arrays, **kw)
    return jax_jit(CHUNKED[op], OP_NAME[op], arrays, chunk_size=chunk_size, **kw)


#: inputs of the JAX property test: N(0, scale^2) at the usual magnitudes, or an extreme regime
jax_regimes = st.one_of(magnitudes, st.sampled_from(["cancel", "same", "later_keys_huge"]))


@settings(max_examples=JAX_EXAMPLES)
@given(op=ops, regime=jax_regimes, causal=st.booleans(), dtype=st.sampled_from(["float64", "float32"]), seed=seeds)
def test_jax_matches_reference(jnp, op, regime, causal, dtype, seed):
    """Against the reference within the promised bound, float64 and float32, causal or not,
    moderate inputs and magnitudes up to 1e3 (float32) / 1e5 (float64)."""
    Tk = JAX_T if causal else JAX_TK
    if isinstance(regime, float):
        arrays = make(seed, (2,), JAX_T, JAX_DK, JAX_DV, scale=regime, Tk=Tk)
    else:
        M = 1e3 if dtype == "float32" else 1e5
        q, k, v = extreme(seed, regime, M, T=JAX_T, dk=JAX_DK, dv=JAX_DV)
        arrays = (q, k[..., :Tk, :], v[..., :Tk, :])
    arrays = [x.astype(dtype) for x in arrays]
    out = jax_call(op, on(jnp, arrays, dtype), causal=causal)
    assert array_api_compat.is_jax_array(out) and out.dtype == getattr(jnp, dtype)
    check(op, out, [x.astype(np.float64) for x in arrays], dtype, causal=causal, what=f"{op} {regime}")


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # the reference takes log 0
@pytest.mark.parametrize("op", ["exp", "log"])
def test_jax_chunks_streams_zeros_and_eager(jnp, op):
    arrays = make(11, (2,), JAX_T, JAX_DK, JAX_DV, scale=2.0)
    x = on(jnp, arrays)
    expected = REF[op](*arrays)
    # several chunks: summaries, their scan, reads
    check(op, jax_call(op, x, chunk_size=2), arrays, what="chunk_size=2")
    # a stream of 4 + 1 + 4 tokens equals one call; the state reads like one from a single call
    state, outs = None, []
    for i0, i1 in ((0, 4), (4, 5), (5, JAX_T)):
        o, state = jax_call(op, tokens(x, i0, i1), state=state, return_state=True)
        outs.append(to_numpy(o))
    assert state.offset == JAX_T
    assert_close(np.concatenate(outs, axis=-2), expected, F64, atol=F64 if op == "log" else 0.0)
    _, whole_state = jax_call(op, x, chunk_size=2, return_state=True)
    for name, t in state.tensors.items():
        assert_close(t, whole_state.tensors[name], F64, what=f"state {name}")
    # eager (no jit), as users call it
    out = FN[op](*tokens(x, 0, 3))
    assert array_api_compat.is_jax_array(out)
    check(op, out, tokens(arrays, 0, 3))
    if op == "log":  # log v = -inf: zero values, and outputs that see only zeros are -inf
        lv = arrays[2].copy()
        lv[..., :3, 0] = -np.inf
        lv[..., 1] = -np.inf
        zero = (arrays[0], arrays[1], lv)
        out = jax_call(op, on(jnp, zero))
        assert np.isneginf(to_numpy(out)[..., :3, 0]).all() and np.isneginf(to_numpy(out)[..., 1]).all()
        assert_close(out, REF[op](*zero), F64, atol=F64)


@pytest.mark.parametrize("op", ["exp", "log"])
def test_jax_grad_and_jit(jnp, op):
    """jax.grad of a sum (causal and not, under jax.jit: eager grad compiles each op, ~20 s) equals
    torch autograd through the reference (eager jax.grad of the reference compiles each of its
    operations, 20-40 s; the reference cannot be jitted: its level matrix checks values)."""
    import jax

    torch = pytest.importorskip("torch")
    np_arrays = make(3, (2,), JAX_T, JAX_DK, JAX_DV, scale=2.0)
    arrays = on(jnp, np_arrays)

    def loss(fn, xp):
        def f(q, k, v):
            causal = xp.sum(xp.sin(fn(q, k, v, causal=True)))
            return causal + xp.sum(xp.cos(fn(q, k[:, :JAX_TK], v[:, :JAX_TK], causal=False)))

        return f

    ours = jax.jit(jax.grad(loss(FN[op], jnp), argnums=(0, 1, 2)))(*arrays)
    tt = [torch.tensor(x, requires_grad=True) for x in np_arrays]
    loss(REF[op], torch)(*tt).backward()
    theirs = [t.grad for t in tt]
    for g, h in zip(ours, theirs):
        assert_close(g, h, 1e-11)
