"""loglinear_log_attention (hierarchical exp-kernel attention) against lsattn.reference, every namespace.

Promised accuracy (docs/hierarchical.md), per call against the float64 reference on the same inputs,
as an absolute error on log y:

    max |log y - ref| <= tol * (1 + max |ref|),   tol = TOL[dtype] + 2 eps(dtype) (max |q| + max |k|)

with TOL = 1e-12 (float64), 1e-5 (float32): the bound of log_attention (the second term is the
conditioning of q + k). Streamed and chunked results meet the same bound. With zero log weights and
no decay the output equals causal log_attention to 1e-13 (float64).
"""

import array_api_compat
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lsattn
from lsattn import reference as ref
from lsattn.hierarchical import _forward

from conftest import namespace
from helpers import JIT_JAX, assert_close, jax_jit, jitting, on, property_tests, to_numpy, traced_peak
from strategies import batch_shapes, decays_or_none, head_dims, log_decay, seeds, seq_lens, split_points

BASE = {"float64": 1e-12, "float32": 1e-5}
chunk_sizes = st.sampled_from([1, 2, 4, 8, 16, 64])
decays = decays_or_none
weight_kinds = st.sampled_from(["zero", "random", "off"])
#: JAX eager compiles every op for every new shape (seconds per call): few examples, small shapes;
#: one per JAX test in the ci profile (each its own compilations, ~30 s: CI time)
JAX_EXAMPLES = max(1, settings.default.max_examples // 12)

#: JAX property runs go through jax.jit (helpers.jitting; one call of T = 6: 0.9 s of CPU jitted,
#: 4.8 s eager); test_T1_and_T0 runs JAX eagerly.
every_namespace = property_tests(JAX_EXAMPLES, jax_context=jitting)


def make(seed, batch, T, dk, dv, *, scale=1.0, decay="moderate", weights="random", L=None):
    """NumPy float64 inputs q, k, log_v, log_level_weights, log_decay (None for decay="none")."""
    rng = np.random.default_rng(seed)
    q, k = (rng.standard_normal(batch + (T, dk)) * scale for _ in range(2))
    lv = rng.standard_normal(batch + (T, dv))
    a = log_decay(rng, batch + (T,), decay)
    L = lsattn.num_levels(T) if L is None else L
    lam = {
        "zero": np.zeros(batch + (T, L)),
        "random": 2.0 * rng.standard_normal(batch + (T, L)),
        # random, with levels >= 1 switched off at random (level 0 stays on: the output is defined)
        "off": np.where(
            (rng.random(batch + (T, L)) < 0.4) & (np.arange(L) > 0), -np.inf, rng.standard_normal(batch + (T, L))
        ),
    }[weights]
    return q, k, lv, lam, a


def check(out, arrays, dtype, what=""):
    q, k = arrays[0], arrays[1]
    tol = BASE[dtype] + 2 * np.finfo(dtype).eps * (np.abs(q).max() + np.abs(k).max())
    expected = ref.loglinear_log_attention(*arrays)
    assert_close(out, expected, tol, atol=tol, what=what)


def call(xp, arrays, dtype="float64", *, state=None, **kw):
    q, k, lv, lam, a = on(xp, arrays, dtype)
    if JIT_JAX[0]:
        return jax_jit(_positional, "loglinear_log_attention", (q, k, lv, lam, a), state=state, **kw)
    if state is not None:
        kw["state"] = state
    return _positional(q, k, lv, lam, a, **kw)


def _positional(q, k, lv, lam, a, **kw):
    return lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a, **kw)


# ---- against the reference -------------------------------------------------------------------------

test_matches_reference, test_matches_reference_jax = every_namespace(
    batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, decay=decays, weights=weight_kinds, seed=seeds
)(
    lambda xp, batch, T, dk, dv, decay, weights, seed: check(
        call(xp, make(seed, batch, T, dk, dv, decay=decay, weights=weights)),
        make(seed, batch, T, dk, dv, decay=decay, weights=weights),
        "float64",
    )
)


@given(T=seq_lens, C=chunk_sizes, decay=decays, weights=weight_kinds, seed=seeds)
def test_chunk_size_invariance(T, C, decay, weights, seed):
    arrays = make(seed, (2,), T, 3, 2, decay=decay, weights=weights)
    out, _ = _forward(*arrays, None, False, chunk_size=C)
    check(out, arrays, "float64", what=f"C={C}")


def _stream(xp, arrays, cuts, dtype="float64", chunk_size=None):
    T = arrays[0].shape[-2]
    state, outs = None, []
    for s0, s1 in zip([0] + cuts, cuts + [T]):
        piece = [None if x is None else (x[..., s0:s1] if x.ndim == arrays[0].ndim - 1 else x[..., s0:s1, :]) for x in arrays]
        xs = on(xp, piece, dtype)
        if chunk_size is None:
            out, state = call(xp, piece, dtype, state=state, return_state=True)
        else:
            out, state = _forward(*xs, state, True, chunk_size=chunk_size)
        assert state.offset == s1 and state.op == "loglinear_log_attention"
        # JAX states keep a fixed number of level slots, the level weights' L (lsattn.state)
        jax_slots = chunk_size is None and array_api_compat.is_jax_namespace(xp)
        assert state.tensors["S"].shape[-3] == (xs[3].shape[-1] if jax_slots else s1.bit_length())
        outs.append(to_numpy(out))
    return np.concatenate(outs, axis=-2), state


@given(T=seq_lens, decay=decays, weights=weight_kinds, seed=seeds, data=st.data())
def test_stream_splits(xp_eager, T, decay, weights, seed, data):
    """Random cut points (decoding-sized pieces included) give the one-call result."""
    cuts = data.draw(split_points(T, max_splits=5))
    C = data.draw(st.sampled_from([None, 1, 4]))
    arrays = make(seed, (2,), T, 3, 2, decay=decay, weights=weights)
    out, _ = _stream(xp_eager, arrays, cuts, chunk_size=C)
    check(out, arrays, "float64", what=f"cuts={cuts}")


@settings(max_examples=JAX_EXAMPLES)
@given(T=st.integers(2, 12), seed=seeds, data=st.data())
def test_stream_splits_jax(xp_jax, T, seed, data):
    cuts = data.draw(split_points(T, max_splits=2))
    arrays = make(seed, (), T, 2, 2, decay="moderate", weights="random")
    with jitting():  # eager JAX: test_T1_and_T0[jax]
        out, _ = _stream(xp_jax, arrays, cuts)
    check(out, arrays, "float64", what=f"cuts={cuts}")


def test_decoding_token_by_token():
    """One token at a time over 70 tokens (every Fenwick transition up to 64) equals one call."""
    arrays = make(3, (2,), 70, 4, 3, decay="mixed", weights="off")
    out, state = _stream(np, arrays, list(range(1, 70)))
    check(out, arrays, "float64")
    assert state.offset == 70 and state.tensors["m"].shape == (2, 7, 4)


# ---- special cases -------------------------------------------------------------------------------------

@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, seed=seeds, C=chunk_sizes)
def test_zero_weights_no_decay_is_log_attention(xp_eager, batch, T, dk, dv, seed, C):
    q, k, lv, lam, _ = make(seed, batch, T, dk, dv, weights="zero", L=lsattn.num_levels(T) + 2)
    xq, xk, xv, xl = on(xp_eager, (q, k, lv, lam))
    ours = to_numpy(lsattn.loglinear_log_attention(xq, xk, xv, xl))
    theirs = to_numpy(lsattn.log_attention(xq, xk, xv))
    assert_close(ours, theirs, 1e-13, atol=1e-13)
    assert_close(ours, ref.log_attention(q, k, lv), 1e-12, atol=1e-12)
    assert_close(to_numpy(_forward(xq, xk, xv, xl, None, None, False, chunk_size=C)[0]), theirs, 1e-12, atol=1e-12)


def test_T1_and_T0(xp):
    arrays = make(1, (2, 3), 1, 3, 2)
    check(call(xp, arrays), arrays, "float64")
    q, k, lv, lam, a = on(xp, make(1, (2,), 0, 3, 2, L=1))
    out, st_ = lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a, return_state=True)
    assert tuple(out.shape) == (2, 0, 2) and st_.offset == 0


@pytest.mark.parametrize("dtype,M", [("float32", 1e2), ("float32", 1e3), ("float64", 1e3), ("float64", 1e5)])
@pytest.mark.parametrize("decay", ["none", "strong"])
def test_magnitudes(xp_eager, dtype, M, decay):
    """|q|, |k| up to 1e3 in float32 (1e5 in float64): finite and within the promised bound, one
    call and streamed."""
    T = 40
    arrays = list(make(7, (2,), T, 3, 2, scale=M, decay=decay))
    arrays[1][..., T // 3 :, :] += M  # later keys huge: earlier ones must not underflow to 0/0
    arrays[3] = arrays[3] * 10.0  # log weights of magnitude ~20
    arrays = [None if x is None else x.astype(dtype) for x in arrays]
    f64 = [None if x is None else x.astype(np.float64) for x in arrays]
    out = call(xp_eager, arrays, dtype)
    assert np.isfinite(to_numpy(out)).all()
    check(out, f64, dtype, what=f"M={M}")
    if xp_eager is np:
        streamed, _ = _stream(np, arrays, [5, 17, 18], dtype)
        check(streamed, f64, dtype, what=f"streamed M={M}")


def test_float32_and_half_inputs():
    arrays = make(2, (2,), 50, 4, 3, decay="moderate")
    f32 = [x.astype(np.float32) for x in arrays]
    out = call(np, f32, "float32")
    assert out.dtype == np.float32
    check(out, [x.astype(np.float64) for x in f32], "float32")
    out16 = lsattn.loglinear_log_attention(*[x.astype(np.float16) for x in arrays[:4]], log_decay=arrays[4].astype(np.float16))
    assert out16.dtype == np.float16


def test_minus_inf_values_and_levels():
    """log_v = -inf (zero values) and whole levels switched off: no NaN, infinities where expected."""
    q, k, lv, lam, a = make(4, (2,), 33, 3, 3, weights="off")
    lv[..., 1] = -np.inf
    lv[..., :4, 0] = -np.inf
    out = lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a)
    expected = ref.loglinear_log_attention(q, k, lv, lam, a)
    assert np.isneginf(expected[..., 1]).all()
    assert_close(out, expected, 1e-12, atol=1e-12)
    lam[..., 1:] = -np.inf  # only the diagonal left: y_t = v_t
    out = lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a)
    assert_close(out, lv, 1e-12, atol=1e-12)


def _undefined_case(seed, T, L, p_off):
    """Inputs whose log level weights switch levels off at random, level 0 with probability p_off
    (rows whose every readable level is then off have no defined output)."""
    q, k, lv, _, a = make(seed, (2,), T, 3, 2)
    rng = np.random.default_rng(seed + 1)
    lam = np.where(rng.random((2, T, L)) < np.where(np.arange(L) == 0, p_off, 0.7), -np.inf, rng.standard_normal((2, T, L)))
    return q, k, lv, lam, a


def _same_nan(out, expected, what):
    out = to_numpy(out)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected), err_msg=f"{what}: NaN rows")
    ok = ~np.isnan(expected)
    assert_close(np.where(ok, out, 0.0), np.where(ok, expected, 0.0), 1e-12, atol=1e-12, what=what)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning", "ignore:divide by zero:RuntimeWarning")
@given(T=st.integers(1, 40), seed=seeds, p_off=st.sampled_from([0.3, 0.8]), data=st.data())
@settings(max_examples=15)
def test_undefined_rows_are_nan(T, seed, p_off, data):
    """A query whose every readable level is switched off (level 0 and the levels of the set bits of
    its position: no weight at all, 0/0) is NaN, as in the reference, on every backend, in streams cut
    anywhere, packed segments (positions restart) and the steppers; the other rows equal the reference."""
    q, k, lv, lam, a = _undefined_case(seed, T, lsattn.num_levels(T) + 1, p_off)
    expected = ref.loglinear_log_attention(q, k, lv, lam, a)
    cuts = data.draw(split_points(T, max_splits=3))
    for backend in ("array_api", "numba", "dask"):
        xs = [q, k, lv, lam, a]
        if backend == "dask":
            da = pytest.importorskip("dask.array")
            xs = [da.from_array(x, chunks=x.shape) for x in xs]
        _same_nan(lsattn.loglinear_log_attention(*xs[:4], log_decay=xs[4], backend=backend), expected, backend)
        if backend == "dask":
            continue
        outs, state = [], None
        for lo, hi in zip([0] + cuts, cuts + [T]):
            o, state = lsattn.loglinear_log_attention(q[:, lo:hi], k[:, lo:hi], lv[:, lo:hi], lam[:, lo:hi],
                                                      log_decay=a[:, lo:hi], state=state, return_state=True,
                                                      backend=backend)
            outs.append(o)
        _same_nan(np.concatenate(outs, axis=-2), expected, f"{backend} cuts={cuts}")
        _, state = lsattn.loglinear_log_attention(q[:, :0], k[:, :0], lv[:, :0], lam[:, :0], log_decay=a[:, :0],
                                                  return_state=True, backend=backend)
        step = lsattn.stepper(lsattn.loglinear_log_attention, state, max_tokens=T, backend=backend)
        tok = lambda x, t: x[:, t : t + 1]  # noqa: E731
        outs = [step(tok(q, t), tok(k, t), tok(lv, t), tok(lam, t), log_decay=tok(a, t)) for t in range(T)]
        _same_nan(np.concatenate(outs, axis=-2), expected, f"{backend} stepper")
        off = np.array([0, *sorted(set(cuts)), T])
        seg = [ref.loglinear_log_attention(q[:, s0:s1], k[:, s0:s1], lv[:, s0:s1], lam[:, s0:s1], a[:, s0:s1])
               for s0, s1 in zip(off[:-1], off[1:])]
        _same_nan(lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a, cu_seqlens=off, backend=backend),
                  np.concatenate(seg, axis=-2), f"{backend} packed {off}")


def test_extra_levels_ignored():
    q, k, lv, lam, a = make(5, (), 20, 2, 2, L=lsattn.num_levels(20) + 3)
    a_out = lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a)
    b_out = lsattn.loglinear_log_attention(q, k, lv, lam[..., : lsattn.num_levels(20)], log_decay=a)
    np.testing.assert_array_equal(a_out, b_out)


def test_inputs_not_modified():
    arrays = make(6, (2,), 30, 3, 2)
    copies = [x.copy() for x in arrays]
    call(np, arrays, return_state=True)
    for x, c in zip(arrays, copies):
        np.testing.assert_array_equal(x, c)


# ---- bad input -------------------------------------------------------------------------------------

def test_bad_inputs():
    q, k, lv, lam, a = make(0, (2,), 10, 3, 2)
    f = lsattn.loglinear_log_attention
    with pytest.raises(ValueError, match="num_levels.*= 5"):
        f(q, k, lv, lam[..., :4], log_decay=a)
    _, st_ = f(q, k, lv, lam, log_decay=a, return_state=True)
    with pytest.raises(ValueError, match=r"= 7"):  # offset 10 + 30 tokens need num_levels(40) = 7
        f(*make(1, (2,), 30, 3, 2)[:3], np.zeros((2, 30, 5)), state=st_)
    with pytest.raises(ValueError, match="k"):
        f(q, k[..., :9, :], lv, lam)
    with pytest.raises(ValueError, match="log_v"):
        f(q, k, lv[..., :9, :], lam)
    with pytest.raises(ValueError, match="log_decay"):
        f(q, k, lv, lam, log_decay=a[..., :9])
    with pytest.raises(ValueError, match="log_level_weights"):
        f(q, k, lv, lam[..., 0])
    with pytest.raises(TypeError, match="q"):
        f(q.astype(np.int64), k, lv, lam)
    with pytest.raises(TypeError):
        f(q, k, lv, [[0.0]])
    _, other = lsattn.log_attention(q, k, lv, return_state=True)
    with pytest.raises(ValueError, match="log_attention|loglinear_log_attention"):
        f(q, k, lv, lam, state=other)
    with pytest.raises(ValueError):
        f(q[..., :1], k[..., :1], lv, lam, state=st_)  # d_k mismatch
    with pytest.raises(ValueError):
        f(q, k, lv, lam, backend="no_such_backend")


# ---- gradients, jit, memory ----------------------------------------------------------------------

def test_torch_gradcheck():
    torch = pytest.importorskip("torch")
    q, k, lv, lam, a = (torch.tensor(x, requires_grad=True) for x in make(8, (1,), 9, 2, 2))
    f = lambda *x: lsattn.loglinear_log_attention(*x[:4], log_decay=x[4])
    assert torch.autograd.gradcheck(f, (q, k, lv, lam, a))
    g = lambda *x: _forward(*x, None, False, chunk_size=2)[0]
    assert torch.autograd.gradcheck(g, (q, k, lv, lam, a))

    def streamed(*x):
        o1, s = lsattn.loglinear_log_attention(*[y[:, :5] for y in x[:4]], log_decay=x[4][:, :5], return_state=True)
        o2 = lsattn.loglinear_log_attention(*[y[:, 5:] for y in x[:4]], log_decay=x[4][:, 5:], state=s)
        return torch.cat([o1, o2], dim=-2)

    assert torch.autograd.gradcheck(streamed, (q, k, lv, lam, a))


def test_jax_grad_and_jit():
    jnp = namespace("jax")
    import jax

    torch = pytest.importorskip("torch")
    np_arrays = make(9, (), 6, 2, 2)
    arrays = [jnp.asarray(x) for x in np_arrays]
    w = np.arange(1.0, 3.0)
    loss = lambda fn, w: (lambda *x: (fn(*x) * w).sum())
    # under jit: one compilation (measured 2.6 s of CPU; eager jax.grad compiles each operation of
    # the backward pass, 12 s); the eager forward is test_T1_and_T0's
    ours = jax.jit(jax.grad(loss(_positional, jnp.asarray(w)), argnums=(0, 1, 2, 3, 4)))(*arrays)
    # the reference through torch autograd (eager jax.grad of it compiles each of its operations)
    tt = [torch.tensor(x, requires_grad=True) for x in np_arrays]
    loss(ref.loglinear_log_attention, torch.tensor(w))(*tt).backward()
    theirs = [t.grad for t in tt]
    for o, t in zip(ours, theirs):
        assert_close(o, t, 1e-10, atol=1e-12)
    jitted = jax.jit(_positional)
    check(jitted(*arrays), [np.asarray(x) for x in arrays], "float64")


def test_memory():
    """NumPy float32, T = 8192, d = 32, array-API path (tracemalloc sees NumPy's allocations, not
    Numba's; a first Numba call would also trace its compiler): peak traced allocation beyond the
    output under 32 MiB. One (T, d_k, d_v) tensor would be 32 MiB, a T x T one 256 MiB."""
    T, d = 8192, 32
    rng = np.random.default_rng(0)
    q, k, lv = (rng.standard_normal((T, d), dtype=np.float32) for _ in range(3))
    lam = rng.standard_normal((T, lsattn.num_levels(T)), dtype=np.float32)
    a = -rng.random(T, dtype=np.float32)
    out, peak = traced_peak(lambda: lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a, backend="array_api"))
    assert np.isfinite(out).all()
    extra = peak - out.nbytes
    assert extra < 32 * 2**20, f"{extra / 2**20:.1f} MiB beyond the output"
    check(out[:300], [x[:300].astype(np.float64) for x in (q, k, lv, lam, a)], "float32")
