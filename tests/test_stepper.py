"""lsattn.stepper: N decoding steps from a state at any offset equal the plain ``state=`` calls token
by token and lsattn.reference, on every CPU backend and namespace, at the operators' tolerances
(float64 1e-12, Gated DeltaNet 1e-10; float32 1e-5; the exp-kernel operators add their
conditioning term 2 eps (max |q| + max |k|), hierarchical attention bounds the absolute error of
log y by tol * (1 + max |ref|), the log-linear operators bound it by tol times the magnitude of
their terms, :func:`terms`). Its state continues a plain call; its buffers are updated in place.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import lsattn
from lsattn import reference as ref

from conftest import namespace
from helpers import assert_close, on, to_numpy
from strategies import DECAYS, batch_shapes, seeds

OPS = ["exp_kernel_attention", "log_attention", "loglinear_attention", "loglinear_gated_delta",
       "loglinear_log_attention"]
LEVEL_OPS = OPS[2:]
#: (namespace, backend) pairs every CPU step runs on (JAX: see test_jax_steps)
PATHS = [("numpy", "numba"), ("numpy", "array_api"), ("array_api_strict", "array_api"), ("torch", "array_api")]
BASE = {"float64": 1e-12, "float32": 1e-5}


def make(op, seed, batch, T, dk, dv, decay):
    """float64 NumPy inputs of ``op`` for T tokens: (positional arrays, keyword arrays)."""
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal(batch + (T, dk)), rng.standard_normal(batch + (T, dk))
    v = rng.standard_normal(batch + (T, dv))
    a = DECAYS[decay](rng, batch + (T,))
    L = lsattn.num_levels(T) + 1
    if op in ("exp_kernel_attention", "log_attention"):
        return [q, k, v], {}
    if op == "loglinear_attention":
        return [q, k, v, a, rng.standard_normal(batch + (T, L))], {}
    if op == "loglinear_gated_delta":
        k = k / np.linalg.norm(k, axis=-1, keepdims=True)
        return [q, k, v, a, rng.random(batch + (T,)), rng.standard_normal(batch + (T, L))], {}
    lam = np.where((rng.random(batch + (T, L)) < 0.3) & (np.arange(L) > 0), -np.inf, rng.standard_normal(batch + (T, L)))
    return [q, k, v, lam], {"log_decay": a}


def tokens(arrays, nb, i0, i1):
    """Tokens i0:i1 of every array (per-token scalars have T last)."""
    return [x[..., i0:i1] if x.ndim == nb + 1 else x[..., i0:i1, :] for x in arrays]


def terms(op, args):
    """Magnitude of what each output of a log-linear operator adds up, (..., T, d_v) float64:
    ``sum_{s <= t} |lam[t, level(t, s)]| e^{a_{s+1} + ... + a_t} ||q_t|| b_s ||k_s|| |v_s|`` with
    ``b_s = beta_s`` (Gated DeltaNet) or 1 (Mamba-2): ``loglinear_attention`` of those norms.

    It bounds the sum of the absolute values of the terms (Cauchy-Schwarz on ``q_t . k_s``; Gated
    DeltaNet's transitions ``I - beta k k^T`` are contractions for unit keys, beta in [0, 1], as
    :func:`make` draws them), hence ``|ref|``. Where the terms cancel (one-token calls: the
    diagonal ``lam_0 (q . k) v`` against a level's read, or ``q . k`` itself), ``|ref|`` is far
    below them and float32's rounding of the terms, a few eps times this magnitude, is not bounded
    by ``1e-5 max |ref|``: measured up to 47x that bound (one token, plain calls and steps, both
    backends), against at most 1.8 eps times this magnitude (3000 random streams, 18000 checks)."""
    q, k, v, a, lam = args[0], args[1], args[2], args[3], args[-1]
    k_norm = np.linalg.norm(k, axis=-1, keepdims=True)
    if op == "loglinear_gated_delta":
        k_norm = k_norm * args[4][..., None]
    return ref.loglinear_attention(np.linalg.norm(q, axis=-1, keepdims=True), k_norm, np.abs(v), a, np.abs(lam))


def check(op, out, args, kw, dtype, lo, what):
    """``out`` (tokens ``lo, lo + 1, ...``) against the reference over all tokens."""
    expected = getattr(ref, op)(*args, **kw)[..., lo : lo + out.shape[-2], :]
    base = BASE[dtype] if op != "loglinear_gated_delta" else {"float64": 1e-10, "float32": 1e-5}[dtype]
    if op in ("exp_kernel_attention", "log_attention", "loglinear_log_attention"):
        base += 2 * float(np.finfo(dtype).eps) * (np.abs(args[0]).max() + np.abs(args[1]).max())
    if op == "exp_kernel_attention":
        assert_close(out, expected, base, what=what)
    elif op == "log_attention":
        assert_close(out, expected, base, atol=base, what=what)
    elif op == "loglinear_log_attention":
        fin = np.isfinite(expected)
        assert_close(out, expected, 0.0, atol=base * (1 + np.abs(expected[fin]).max(initial=0)), what=what)
    else:  # signed sums that may cancel: the bound scales with their terms (>= |ref|)
        magnitude = terms(op, args)[..., lo : lo + out.shape[-2], :].max()
        assert_close(out, expected, 0.0, atol=base * magnitude, what=what)


def stream(xp, op, args, kw, nb, P, N, backend, dtype):
    """Prefill P tokens (plain call), N tokens by the stepper and by plain calls: outputs, states."""
    fn = getattr(lsattn, op)
    cast = lambda xs: on(xp, xs, dtype)
    kwx = lambda i0, i1: dict(zip(kw, cast(tokens(list(kw.values()), nb, i0, i1))))
    _, state = fn(*cast(tokens(args, nb, 0, P)), **kwx(0, P), return_state=True, backend=backend)
    step = lsattn.stepper(fn if P % 2 else op, state, max_tokens=P + N + 3, backend=backend)
    assert step.backend == backend
    stepped, plain, st_plain = [], [], state
    for t in range(P, P + N):
        xs, kws = cast(tokens(args, nb, t, t + 1)), kwx(t, t + 1)
        stepped.append(to_numpy(step(*xs, **kws)))
        o, st_plain = fn(*xs, **kws, state=st_plain, return_state=True, backend=backend)
        plain.append(to_numpy(o))
    return step, state, np.concatenate(stepped, axis=-2), np.concatenate(plain, axis=-2), st_plain


@pytest.mark.parametrize("path", PATHS, ids=["-".join(p) for p in PATHS])
@pytest.mark.parametrize("op", OPS)
@given(seed=seeds, batch=batch_shapes, dk=st.integers(1, 4), dv=st.integers(1, 4),
       P=st.one_of(st.sampled_from([0, 1, 7, 8, 15, 16]), st.integers(0, 40)), N=st.integers(1, 9),
       dtype=st.sampled_from(["float64", "float32"]), decay=st.sampled_from(sorted(DECAYS)))
def test_steps_equal_plain_calls_and_reference(op, path, seed, batch, dk, dv, P, N, dtype, decay):
    """N steps after a prefill of P tokens (0 included) = N plain one-token calls = the reference;
    the final states agree, and the stepper's state continues a plain call."""
    xp, backend = namespace(path[0]), path[1]
    T, nb = P + N + 3, len(batch)
    args, kw = make(op, seed, batch, T, dk, dv, decay)
    args32 = [to_numpy(x) for x in on(np, args, dtype)]  # the inputs as the compute dtype sees them
    kw32 = {n: to_numpy(x) for n, x in zip(kw, on(np, list(kw.values()), dtype))}
    step, state0, stepped, plain, st_plain = stream(xp, op, args32, kw32, nb, P, N, backend, dtype)
    check(op, stepped, args32, kw32, dtype, P, "stepped")
    check(op, plain, args32, kw32, dtype, P, "plain")
    st = step.state
    assert (st.op, st.offset, st.batch_shape, st.d_k, st.d_v) == (op, P + N, batch, dk, dv) == (
        st_plain.op, st_plain.offset, st_plain.batch_shape, st_plain.d_k, st_plain.d_v)
    assert set(st.tensors) == set(st_plain.tensors)
    for name, x in st.tensors.items():
        assert tuple(x.shape) == tuple(st_plain.tensors[name].shape), name
        assert x.dtype == st_plain.tensors[name].dtype, name
    # the stepper's state continues the stream in a plain call (and the incoming state is intact)
    fn = getattr(lsattn, op)
    rest = on(xp, tokens(args32, nb, P + N, T), dtype)
    rest_kw = dict(zip(kw32, on(xp, tokens(list(kw32.values()), nb, P + N, T), dtype)))
    check(op, to_numpy(fn(*rest, **rest_kw, state=st, backend=backend)), args32, kw32, dtype, P + N, "continued")
    assert state0.offset == P


def test_jax_steps(xp_jax):
    """JAX arrays are immutable: the steps rebind their buffers, with the same results. (Eager JAX
    compiles every operation per shape: a NumPy prefill's state moved to JAX, a few steps.)"""
    for op in ("exp_kernel_attention", "loglinear_gated_delta"):
        args, kw = make(op, 3, (2,), 7, 3, 2, "moderate")
        _, state = getattr(lsattn, op)(*tokens(args, 1, 0, 5), return_state=True)
        state = lsattn.state.State(state.op, state.offset, state.batch_shape, state.d_k, state.d_v, xp_jax.float64,
                                   {n: xp_jax.asarray(t) for n, t in state.tensors.items()})
        step = lsattn.stepper(op, state, max_tokens=7)
        assert step.backend == "array_api"
        outs = [to_numpy(step(*on(xp_jax, tokens(args, 1, t, t + 1)))) for t in (5, 6)]
        check(op, np.concatenate(outs, axis=-2), args, kw, "float64", 5, op)
        assert step.state.offset == 7


@pytest.mark.parametrize("backend", ["numba", "array_api"])
@pytest.mark.parametrize("op", OPS)
def test_buffers_updated_in_place(op, backend):
    """A step writes into the buffers the stepper allocated: no new State tensors per token, the
    state's tensors are views of them, and the incoming state is never modified."""
    args, kw = make(op, 1, (2,), 12, 3, 2, "moderate")
    fn = getattr(lsattn, op)
    _, state = fn(*tokens(args, 1, 0, 5), **{n: x[..., :5] for n, x in kw.items()}, return_state=True)
    before = {n: t.copy() for n, t in state.tensors.items()}
    step = lsattn.stepper(op, state, max_tokens=12, backend=backend)
    views = step.state.tensors
    bufs = dict(step._impl.buf)
    for t in range(5, 12):
        step(*tokens(args, 1, t, t + 1), **{n: x[..., t : t + 1] for n, x in kw.items()})
        assert all(step._impl.buf[n] is b for n, b in bufs.items())
    after = step.state.tensors
    for n in after:
        assert np.shares_memory(after[n], bufs[n]) and np.shares_memory(views[n], bufs[n])
    for n, t in state.tensors.items():
        np.testing.assert_array_equal(t, before[n])
    if op not in LEVEL_OPS:  # constant-size state: the view taken before the steps shows the current values
        for n in after:
            np.testing.assert_array_equal(views[n], after[n])


@pytest.mark.parametrize("op", OPS)
def test_numba_step_reads_strided_and_read_only_inputs(op):
    """The Numba steps pass the token's inputs to the kernels as views: inputs whose batch axes do
    not merge (transposed batch axes: a copy), strided slices and read-only arrays (broadcast
    heads) give exactly what contiguous copies give, and the reference."""
    batch = (2, 3)
    args0, kw0 = make(op, 5, batch, 11, 3, 2, "moderate")
    fn = getattr(lsattn, op)
    swap = lambda x: np.swapaxes(np.swapaxes(x, 0, 1).copy(), 0, 1)  # same values, batch axes strided
    heads = lambda x: np.broadcast_to(x[:, :1], x.shape)  # read-only, stride 0 over the heads
    for what, variant, inputs in (("swapped", swap, lambda x: x), ("broadcast", lambda x: x, heads)):
        args, kw = [inputs(x) for x in args0], {n: inputs(x) for n, x in kw0.items()}
        _, state = fn(*tokens(args, 2, 0, 6), **{n: x[..., :6] for n, x in kw.items()}, return_state=True)
        step, dense = (lsattn.stepper(op, state, max_tokens=11, backend="numba") for _ in range(2))
        outs, dense_outs = [], []
        for t in range(6, 11):
            xs = [variant(x) for x in tokens(args, 2, t, t + 1)]
            kws = {n: variant(x[..., t : t + 1]) for n, x in kw.items()}
            assert not all(x.flags.c_contiguous and x.flags.writeable for x in xs)
            outs.append(step(*xs, **kws))
            c = np.ascontiguousarray
            dense_outs.append(dense(*map(c, xs), **{n: c(x) for n, x in kws.items()}))
        out = np.concatenate(outs, axis=-2)
        np.testing.assert_array_equal(out, np.concatenate(dense_outs, axis=-2))
        check(op, out, args, kw, "float64", 6, what)


def test_automatic_backend_and_half_precision():
    """NumPy steps on numba by default; float16 inputs on a float32 state give float16 outputs."""
    args, _ = make("exp_kernel_attention", 2, (2,), 6, 3, 2, "zero")
    args = [x.astype(np.float32) for x in args]
    _, state = lsattn.exp_kernel_attention(*tokens(args, 1, 0, 3), return_state=True)
    step = lsattn.stepper(lsattn.exp_kernel_attention, state)
    assert step.backend == "numba"
    half = [x.astype(np.float16) for x in tokens(args, 1, 3, 4)]
    out = step(*half)
    assert out.dtype == np.float16 and step.state.offset == 4
    expected = lsattn.exp_kernel_attention(*[x.astype(np.float32) for x in half], state=state)
    np.testing.assert_allclose(out.astype(np.float32), expected, rtol=2e-3)


def test_bad_inputs_are_rejected():
    args, _ = make("loglinear_attention", 4, (2,), 10, 3, 2, "moderate")
    _, state = lsattn.loglinear_attention(*tokens(args, 1, 0, 4), return_state=True)
    one = tokens(args, 1, 4, 5)
    with pytest.raises(ValueError, match="op must be one of"):
        lsattn.stepper("softmax", state, max_tokens=8)
    with pytest.raises(ValueError, match="op must be one of"):
        lsattn.stepper(np.exp, state, max_tokens=8)

    def loglinear_attention(*args):  # a namesake is not the operator
        pass

    with pytest.raises(ValueError, match="op must be one of"):
        lsattn.stepper(loglinear_attention, state, max_tokens=8)
    with pytest.raises(ValueError, match="made by loglinear_attention"):
        lsattn.stepper(lsattn.loglinear_gated_delta, state, max_tokens=8)
    with pytest.raises(ValueError, match="State"):
        lsattn.stepper("loglinear_attention", dict(state.tensors), max_tokens=8)
    with pytest.raises(ValueError, match="needs max_tokens"):
        lsattn.stepper("loglinear_attention", state)
    with pytest.raises(ValueError, match="below the state's offset"):
        lsattn.stepper("loglinear_attention", state, max_tokens=3)
    with pytest.raises(TypeError, match="max_tokens"):
        lsattn.stepper("loglinear_attention", state, max_tokens=6.0)
    with pytest.raises(ValueError, match="does not implement a decoding step"):
        lsattn.stepper("loglinear_attention", state, max_tokens=8, backend="dask")
    for backend in ("numba", "array_api"):
        step = lsattn.stepper("loglinear_attention", state, max_tokens=5, backend=backend)
        with pytest.raises(ValueError, match=r"q must have shape \(2, 1, 3\)"):
            step(*tokens(args, 1, 4, 6))  # two tokens
        with pytest.raises(ValueError, match="v must have shape"):
            step(one[0], one[1], one[2][..., :1], one[3], one[4])
        with pytest.raises(ValueError, match="level_weights has 2 levels"):
            step(*one[:4], one[4][..., :2])
        with pytest.raises(TypeError, match="5 positional inputs"):
            step(*one[:4])
        with pytest.raises(ValueError, match="state computes in float64"):
            step(*[x.astype(np.float32) for x in one])
        with pytest.raises(TypeError):
            step(*one[:4], [[list(one[4][0, 0])]] * 2)
        assert step.state.offset == 4  # failed steps do not advance
        step(*one)
        with pytest.raises(ValueError, match="max_tokens = 5 reached"):
            step(*tokens(args, 1, 5, 6))
        assert step.state.offset == 5
    st_bad = lsattn.state.State("loglinear_attention", 4, (2,), 3, 2, np.float64, {"levels": np.zeros((2, 2, 3, 2))})
    with pytest.raises(ValueError, match="do not match"):
        lsattn.stepper("loglinear_attention", st_bad, max_tokens=8)


def test_mixed_namespaces_are_rejected():
    torch = pytest.importorskip("torch")
    args, _ = make("exp_kernel_attention", 5, (2,), 4, 3, 2, "zero")
    _, state = lsattn.exp_kernel_attention(*tokens(args, 1, 0, 2), return_state=True)
    step = lsattn.stepper("exp_kernel_attention", state, backend="array_api")
    with pytest.raises(TypeError, match="different namespaces|namespace"):
        step(*[torch.asarray(x) for x in tokens(args, 1, 2, 3)])


@pytest.mark.parametrize("backend", ["numba", "array_api"])
@pytest.mark.parametrize("op", ["loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"])
def test_hard_reset_decays_equal_plain_calls(op, backend):
    """``log_decay = -inf`` (forget everything before) at two tokens: the steps equal one plain call."""
    rng = np.random.default_rng(1)
    B, T, d = 2, 20, 4
    q, k, v = (rng.standard_normal((B, T, d)) for _ in range(3))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    a = -rng.random((B, T))
    a[:, 7] = a[:, 13] = -np.inf
    L = lsattn.num_levels(T)
    if op == "loglinear_attention":
        args, kw = [q, k, v, a, rng.random((B, T, L))], {}
    elif op == "loglinear_gated_delta":
        args, kw = [q, k, v, a, rng.random((B, T)), rng.random((B, T, L))], {}
    else:
        args, kw = [q, k, v, rng.standard_normal((B, T, L))], {"log_decay": a}
    f = getattr(lsattn, op)
    cut = lambda lo, hi: ([x[:, lo:hi] for x in args], {n: x[:, lo:hi] for n, x in kw.items()})  # noqa: E731
    pa, pk = cut(0, 3)
    _, st = f(*pa, **pk, return_state=True, backend=backend)
    step = lsattn.stepper(op, st, max_tokens=T, backend=backend)
    outs = [step(*cut(t, t + 1)[0], **cut(t, t + 1)[1]) for t in range(3, T)]
    want = f(*args, **kw, backend=backend)[:, 3:]
    assert np.isfinite(want).all()
    np.testing.assert_allclose(np.concatenate(outs, axis=1), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", OPS)
def test_torch_steps_read_only_the_device_offset(op):
    """Array-API steps never read the host offset: the offset lives in a 0-d torch tensor beside the
    buffers, advanced in place, and the Fenwick merges are masks from its bits. Driving the step as
    a CUDA-graph replay does (``impl.step`` with no host offset, no validation) equals the plain
    calls token by token; ``step.state`` then reads the device offset."""
    torch = pytest.importorskip("torch")
    P, N = 11, 9  # merges up to level 5 (offsets 11 .. 19)
    args, kw = make(op, 8, (2,), P + N + 1, 3, 2, "moderate")
    fn = getattr(lsattn, op)
    tt = lambda xs: [torch.asarray(x) for x in xs]  # noqa: E731
    kwt = lambda i0, i1: {n: torch.asarray(x[..., i0:i1]) for n, x in kw.items()}  # noqa: E731
    _, st = fn(*tt(tokens(args, 1, 0, P)), **kwt(0, P), return_state=True, backend="array_api")
    step = lsattn.stepper(op, st, max_tokens=P + N, backend="array_api")
    assert torch.is_tensor(step._impl.off) and step._impl.off.ndim == 0
    outs, plain = [], []
    for t in range(P, P + N):
        xs = tt(tokens(args, 1, t, t + 1)) + list(kwt(t, t + 1).values())
        outs.append(to_numpy(step._impl.step(None, *xs)))
        o, st = fn(*tt(tokens(args, 1, t, t + 1)), **kwt(t, t + 1), state=st, return_state=True, backend="array_api")
        plain.append(to_numpy(o))
    check(op, np.concatenate(outs, axis=-2), args, kw, "float64", P, "replayed steps")
    np.testing.assert_allclose(np.concatenate(outs, axis=-2), np.concatenate(plain, axis=-2), rtol=1e-12, atol=1e-12)
    got = step.state
    assert got.offset == P + N == st.offset
    for name, x in got.tensors.items():
        np.testing.assert_allclose(to_numpy(x), to_numpy(st.tensors[name]), rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numba_hierarchical_step_many_sequences_equals_reference(dtype):
    """The Numba hierarchical step reuses its scratch across batch elements (allocated once per
    call): nothing of one sequence leaks into the next, merges of several levels included."""
    batch = (3, 4)
    P, N = 13, 6
    args, kw = make("loglinear_log_attention", 9, batch, P + N + 3, 4, 3, "moderate")
    args = [to_numpy(x) for x in on(np, args, dtype)]
    kw = {n: to_numpy(x) for n, x in zip(kw, on(np, list(kw.values()), dtype))}
    _, _, stepped, plain, _ = stream(np, "loglinear_log_attention", args, kw, 2, P, N, "numba", dtype)
    check("loglinear_log_attention", stepped, args, kw, dtype, P, "many sequences")
