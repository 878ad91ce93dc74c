"""Non-finite inputs and strong decays (docs/api.md, "Non-finite inputs and strong decays").

A special value (NaN, +inf, -inf) at a random token, feature and argument of every operator, on
every CPU backend and namespace: the outputs it poisons (by the argument's role) are NaN, every
other output equals ``lsattn.reference`` (which is causal too) to the operator's bound, and the
same stream cut at that token (and just after it) gives the same outputs. Legitimate ``-inf``
(hard-reset decays, zero key / query features and values of the exp-kernel operators, switched-off
levels) poisons nothing. Strong decays (down to -1e6) among weak ones keep the promised bounds.
"""
from __future__ import annotations

import contextlib
import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lsattn
from lsattn import reference as ref

from lsattn import _nonfinite

from conftest import NAMESPACES
from helpers import to_numpy

#: name -> (arguments in call order with their roles, arguments where -inf is a legitimate zero,
#: float64 bound, float32 bound) -- the bounds the operators' own tests and docs state
OPS = {
    "log_attention": ((("q", "q"), ("k", "k"), ("log_v", "v")), ("q", "k", "log_v"), 1e-12, 1e-5),
    "exp_kernel_attention": ((("q", "q"), ("k", "k"), ("v", "v")), ("q", "k"), 1e-12, 1e-5),
    "loglinear_attention": ((("q", "q"), ("k", "k"), ("v", "v"), ("log_decay", "tok"), ("level_weights", "lev")),
                            ("log_decay",), 1e-12, 1e-5),
    "loglinear_gated_delta": ((("q", "q"), ("k", "k"), ("v", "v"), ("log_decay", "tok"), ("beta", "tok"),
                               ("level_weights", "lev")), ("log_decay",), 1e-10, 1e-5),
    "loglinear_log_attention": ((("q", "q"), ("k", "k"), ("log_v", "v"), ("log_level_weights", "lev"),
                                 ("log_decay", "tok")), ("q", "k", "log_v", "log_level_weights", "log_decay"), 1e-12, 1e-5),
}
#: where an operator runs: (namespace, backend)
WHERE = [("numpy", "array_api"), ("numpy", "numba"), ("array_api_strict", "array_api"), ("torch", "array_api"),
         ("dask", "dask"), ("jax", "array_api"), ("torch_checks", "array_api")]
#: on the GPU (``@pytest.mark.gpu``): the automatic choice on CuPy arrays and CUDA torch tensors
#: (the CuPy kernels where they serve the operator, the array-API path elsewhere)
WHERE_GPU = [("cupy", None), ("torch_cuda", None)]
GPU = [pytest.param(w, marks=pytest.mark.gpu, id="-".join(map(str, w))) for w in WHERE_GPU]
BATCH = (2,)


def make(op, seed, T, dk, dv):
    """NumPy float64 inputs in call order; one level more than needed (extra levels are ignored)."""
    rng = np.random.default_rng(seed)
    n = lambda *s: rng.standard_normal(BATCH + s)
    L = lsattn.num_levels(T) + 1
    out = {"q": n(T, dk), "k": n(T, dk), "v": n(T, dv), "log_v": n(T, dv), "log_decay": -rng.random(BATCH + (T,)),
           "beta": rng.random(BATCH + (T,)), "level_weights": 0.5 + rng.random(BATCH + (T, L)),
           "log_level_weights": n(T, L)}
    if op == "loglinear_gated_delta":
        out["k"] = out["k"] / np.linalg.norm(out["k"], axis=-1, keepdims=True)
    return [out[name] for name, _ in OPS[op][0]]


def call(op, arrays, **kw):
    f = getattr(lsattn, op)
    if op == "loglinear_log_attention":
        return f(*arrays[:4], log_decay=arrays[4], **kw)
    return f(*arrays, **kw)


def reference(op, arrays):
    f = getattr(ref, op)
    with np.errstate(all="ignore"):  # IEEE arithmetic on NaN and infinities is the point here
        return to_numpy(f(*arrays[:4], log_decay=arrays[4]) if op == "loglinear_log_attention" else f(*arrays))


def poisoned(op, arg, s, j, value, T, dv):
    """The rule of docs/api.md: which outputs (BATCH + (T, dv)) a special value at batch 0 poisons."""
    (name, role), neg_ok = OPS[op][0][arg], OPS[op][1]
    mask = np.zeros(BATCH + (T, dv), dtype=bool)
    if value == -math.inf and name in neg_ok:
        if op == "loglinear_log_attention" and role == "lev" and s == 0 and j == 0:
            mask[0, 0, :] = True  # the first query reads level 0 only: no weight left, 0/0 (docs/hierarchical.md)
        return mask
    if role == "q" or (role == "lev" and j <= s.bit_length()):
        mask[0, s, :] = True
    elif role in ("k", "tok"):
        mask[0, s:, :] = True
    elif role == "v":
        mask[0, s:, j] = True
    return mask


def check(out, expected, mask, rtol, what):
    """NaN exactly on ``mask``; elsewhere the infinities of ``expected`` and its finite values to
    ``rtol`` relative to their largest magnitude."""
    out = to_numpy(out).astype(np.float64)
    assert out.shape == mask.shape, what
    np.testing.assert_array_equal(np.isnan(out), mask, err_msg=f"{what}: NaN where poisoned, nowhere else")
    keep = ~mask
    assert not np.isnan(expected[keep]).any(), f"{what}: the reference has NaN outside the poisoned outputs"
    inf = keep & np.isinf(expected)
    np.testing.assert_array_equal(out[inf], expected[inf], err_msg=f"{what}: infinities differ")
    fin = keep & np.isfinite(expected)
    if fin.any():
        err = np.max(np.abs(out[fin] - expected[fin]))
        scale = np.max(np.abs(expected[fin]))
        assert err <= rtol * scale, f"{what}: error {err:.3e} > {rtol:.0e} * {scale:.3e}"


def on(where, arrays, dtype="float64"):
    """The NumPy ``arrays`` in the namespace of ``where`` (Dask: chunked in two along T)."""
    ns = where[0]
    if ns == "cupy":
        cp = pytest.importorskip("cupy")
        return [cp.asarray(a.astype(dtype)) for a in arrays]
    if ns == "torch_cuda":
        torch = pytest.importorskip("torch")
        return [torch.as_tensor(a.astype(dtype), device="cuda") for a in arrays]
    if ns == "dask":
        da = pytest.importorskip("dask.array")
        return [da.from_array(a.astype(dtype), chunks=BATCH + (max(1, a.shape[1] // 2),) + a.shape[2:]) for a in arrays]
    try:
        xp = NAMESPACES["torch" if ns == "torch_checks" else ns]()
    except ImportError as exc:
        pytest.skip(f"{ns} not installed: {exc}")
    return [xp.asarray(a, dtype=getattr(xp, dtype)) for a in arrays]


def forced(where):
    """``torch_checks``: CPU torch tensors checked as CUDA arrays are (``_nonfinite.checks``: every
    flag of a call from minima and maxima, read together once), so that path runs on every machine."""
    if where[0] != "torch_checks":
        return contextlib.nullcontext()
    return mock.patch.object(_nonfinite, "_cuda_checks", lambda xp, arrays: True)


def run(op, where, arrays, dtype="float64"):
    """One call of ``op`` on ``where``; JAX through ``jax.jit`` (eager JAX compiles every op)."""
    with forced(where):
        return _run(op, where, arrays, dtype)


def _run(op, where, arrays, dtype):
    backend = where[1]
    if where[0] == "jax":
        import jax

        return jax.jit(lambda *a: call(op, list(a), backend=backend))(*on(where, arrays, dtype))
    if where[0] == "dask":
        import dask

        with dask.config.set(scheduler="synchronous"):
            return to_numpy(call(op, on(where, arrays, dtype), backend=backend))
    return call(op, on(where, arrays, dtype), backend=backend)


def _stream(op, where, arrays, cuts):
    """The outputs of ``op`` streamed in pieces cut at ``cuts``, concatenated (NumPy)."""
    xs = on(where, arrays)
    T = arrays[0].shape[-2]
    bounds = [0] + list(cuts) + [T]
    outs, state = [], None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        piece = [x[..., lo:hi] if x.ndim == 2 else x[..., lo:hi, :] for x in xs]
        with forced(where):
            o, state = call(op, piece, backend=where[1], state=state, return_state=True)
        outs.append(to_numpy(o))
    return np.concatenate(outs, axis=-2)


special = st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def cases(draw, op):
    T = draw(st.integers(1, 24))
    dk, dv = draw(st.integers(2, 3)), draw(st.integers(1, 3))
    arg = draw(st.integers(0, len(OPS[op][0]) - 1))
    s = draw(st.integers(0, T - 1))
    role = OPS[op][0][arg][1]
    width = {"q": dk, "k": dk, "v": dv, "tok": 1, "lev": lsattn.num_levels(T) + 1}[role]
    return dict(seed=draw(st.integers(0, 2**32 - 1)), T=T, dk=dk, dv=dv, arg=arg, s=s,
                j=draw(st.integers(0, width - 1)), value=draw(special))


def _place(arrays, arg, s, j, value, role):
    arrays = [a.copy() for a in arrays]
    if role == "tok":
        arrays[arg][0, s] = value
    else:
        arrays[arg][0, s, j] = value
    return arrays


@pytest.mark.parametrize("where", WHERE + GPU, ids=["-".join(w) for w in WHERE] + [p.id for p in GPU])
@pytest.mark.parametrize("op", list(OPS))
@settings(max_examples=max(3, settings.default.max_examples // 2))
@given(data=st.data())
def test_special_value_at_a_random_token(op, where, data):
    """NaN on the poisoned outputs only, the reference elsewhere; the stream cut at the token agrees."""
    if where[0] == "jax" and data.draw(st.integers(0, 3)) > 0:  # a quarter of the examples: one jit each
        return
    c = data.draw(cases(op))
    role = OPS[op][0][c["arg"]][1]
    arrays = _place(make(op, c["seed"], c["T"], c["dk"], c["dv"]), c["arg"], c["s"], c["j"], c["value"], role)
    mask = poisoned(op, c["arg"], c["s"], c["j"], c["value"], c["T"], c["dv"])
    expected = reference(op, arrays)
    rtol = OPS[op][2]
    check(to_numpy(run(op, where, arrays)), expected, mask, rtol, f"{op} on {where}")
    if where[0] in ("jax", "dask"):
        return
    for cut in {c["s"], c["s"] + 1} - {0, c["T"]}:
        check(to_numpy(_stream(op, where, arrays, [cut])), expected, mask, rtol, f"{op} on {where}, cut at {cut}")


@pytest.mark.parametrize("where", [("torch_checks", "array_api")] + GPU, ids=["torch_checks"] + [p.id for p in GPU])
@pytest.mark.parametrize("op", list(OPS))
def test_empty_calls(op, where):
    """T = 0 (level weights then (..., 0, 0)) and an empty batch axis: the checks have nothing to
    read, the outputs are empty (a defect of the one-read checks found on the GPU: they indexed
    level 0 of an empty level axis)."""
    for batch, T in (((2,), 0), ((0,), 5)):
        shapes = {"q": (T, 2), "k": (T, 2), "v": (T, 3), "tok": (T,), "lev": (T, lsattn.num_levels(T))}
        arrays = [np.zeros(batch + shapes[role]) + (0.5 if role == "lev" else 0.0) for _, role in OPS[op][0]]
        out = to_numpy(run(op, where, arrays))
        assert out.shape == batch + (T, 3)


@pytest.mark.parametrize("op", ["loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"])
@pytest.mark.parametrize("where", WHERE[:2] + GPU, ids=["-".join(w) for w in WHERE[:2]] + [p.id for p in GPU])
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(2, 24), s=st.integers(1, 23))
def test_hard_reset_forgets_everything_before(op, where, seed, T, s):
    """``log_decay[s] = -inf``: outputs from ``s`` on do not depend on the keys and values before ``s``."""
    s = min(s, T - 1)
    a = make(op, seed, T, 3, 2)
    a[3 if op != "loglinear_log_attention" else 4][:, s] = -math.inf
    b = [x.copy() for x in a]
    rng = np.random.default_rng(seed + 1)
    for i in (1, 2):  # k and v (log_v) before the reset
        b[i][:, :s] = rng.standard_normal(b[i][:, :s].shape)
    out_a, out_b = (to_numpy(call(op, on(where, x), backend=where[1])) for x in (a, b))
    assert np.isfinite(out_a).all()
    np.testing.assert_allclose(out_a[:, s:], out_b[:, s:], rtol=0, atol=1e-12 * np.abs(out_a).max())
    check(out_a, reference(op, a), np.zeros(out_a.shape, bool), OPS[op][2], f"{op} reset at {s}")


@pytest.mark.parametrize("op", ["loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"])
@settings(max_examples=max(3, settings.default.max_examples // 2))
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(20, 48), block=st.sampled_from([4, 8, 16]),
       resets=st.lists(st.integers(1, 47), min_size=1, max_size=3))
def test_hard_resets_across_dask_blocks(op, seed, T, block, resets):
    """Hard resets anywhere in a sequence of several Dask blocks (the block summaries are folded
    across the reset): finite outputs equal to the reference."""
    da = pytest.importorskip("dask.array")
    import dask

    a = make(op, seed, T, 3, 2)
    for s in resets:
        a[3 if op != "loglinear_log_attention" else 4][:, s % T] = -math.inf
    xs = [da.from_array(x, chunks=BATCH + (block,) + x.shape[2:]) for x in a]
    with dask.config.set(scheduler="synchronous"):
        out = to_numpy(call(op, xs, backend="dask"))
    assert np.isfinite(out).all()
    check(out, reference(op, a), np.zeros(out.shape, bool), OPS[op][2], f"{op} on dask, resets at {resets}")


@pytest.mark.parametrize("where", WHERE[:4], ids=["-".join(w) for w in WHERE[:4]])
@pytest.mark.parametrize("op", ["log_attention", "exp_kernel_attention", "loglinear_log_attention"])
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(1, 24), s=st.integers(0, 23))
def test_zero_key_row(op, where, seed, T, s):
    """A whole key row of ``-inf`` (a key of weight 0): every output the reference defines is
    finite and matches it (a query that sees only that key is 0/0)."""
    s = min(s, T - 1)
    arrays = make(op, seed, T, 3, 2)
    arrays[1][:, s, :] = -math.inf
    expected = reference(op, arrays)
    defined = np.isfinite(expected)
    assert defined[:, :s].all() and defined[:, s + 1 :].all()
    out = to_numpy(run(op, where, arrays)).astype(np.float64)
    assert np.isfinite(out[defined]).all()
    check(np.where(defined, out, 0.0), np.where(defined, expected, 0.0), np.zeros(out.shape, bool), OPS[op][2], op)


STRONG = [-1e3, -1e4, -1e6]


@pytest.mark.parametrize("where", WHERE + GPU, ids=["-".join(w) for w in WHERE] + [p.id for p in GPU])
@pytest.mark.parametrize("op", ["loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@settings(max_examples=max(2, settings.default.max_examples // 3))
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(8, 40), strong=st.lists(
    st.tuples(st.integers(0, 39), st.sampled_from(STRONG)), min_size=1, max_size=3))
def test_strong_decays_among_weak_ones(op, where, dtype, seed, T, strong):
    """A few decays of -1e3 .. -1e6 among weak ones (-0.05 .. 0): the promised bound (1e-5 float32,
    1e-12 / 1e-10 float64) holds, with or without the strong decays' neighbours streamed apart."""
    if where[0] == "jax" and seed % 4:
        return
    arrays = make(op, seed, T, 4, 4)
    d = 3 if op != "loglinear_log_attention" else 4
    arrays[d] = -0.05 * np.random.default_rng(seed).random(arrays[d].shape)
    for s, a in strong:
        arrays[d][:, s % T] = a
    arrays = [x.astype(dtype).astype(np.float64) for x in arrays]  # the reference sees what the call sees
    expected = reference(op, arrays)
    check(run(op, where, arrays, dtype), expected, np.zeros(expected.shape, bool), OPS[op][3 if dtype == "float32" else 2],
          f"{op} {dtype} on {where}")


@pytest.mark.parametrize("where", WHERE[:4], ids=["-".join(w) for w in WHERE[:4]])
@pytest.mark.parametrize("op", ["log_attention", "exp_kernel_attention"])
@given(seed=st.integers(0, 2**32 - 1), Tq=st.integers(1, 12), Tk=st.integers(1, 12), data=st.data())
def test_non_causal(op, where, seed, Tq, Tk, data):
    """Non-causal: a poisoned key reaches every row, a poisoned value its feature in every row, a
    poisoned query its row; everything else is the reference."""
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((2, Tq, 3)), rng.standard_normal((2, Tk, 3)), rng.standard_normal((2, Tk, 2))
    arg = data.draw(st.integers(0, 2))
    x = (q, k, v)[arg]
    s, j = data.draw(st.integers(0, x.shape[1] - 1)), data.draw(st.integers(0, x.shape[2] - 1))
    value = data.draw(st.sampled_from([math.nan, math.inf]))
    x[0, s, j] = value
    mask = np.zeros((2, Tq, 2), dtype=bool)
    if arg == 0:
        mask[0, s] = True
    elif arg == 1:
        mask[0] = True
    else:
        mask[0, :, j] = True
    with np.errstate(all="ignore"):
        expected = to_numpy(getattr(ref, op)(q, k, v, causal=False))
    xs = on(where, [q, k, v])
    out = getattr(lsattn, op)(*xs, causal=False, backend=where[1])
    check(out, expected, mask, OPS[op][2], f"{op} non-causal on {where}")


@pytest.mark.parametrize("where", ["torch", pytest.param("torch_cuda", marks=pytest.mark.gpu),
                                   pytest.param("cupy", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_one_read_flags(where, dtype):
    """The flags of ``_nonfinite.checks`` (one read per call on CUDA arrays) from minima and maxima:
    finite; no NaN / +inf (-inf allowed); no -inf; each special value alone and together, values at
    the range's ends, on contiguous, transposed and broadcast views."""
    torch = pytest.importorskip("torch")
    if where == "cupy" and dtype == "bfloat16":
        pytest.skip("CuPy has no bfloat16")
    if where != "torch" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import array_api_compat

    tdt = getattr(torch, dtype)
    big = float(torch.finfo(tdt).max)
    modes = {"finite": ((None, math.inf), lambda a: np.isfinite(a).all()),
             "below_inf": ((-math.inf, math.inf), lambda a: (a < np.inf).all()),
             "no_minus_inf": ((None, None), lambda a: not np.isnan(a).any() and not (a == -np.inf).any())}
    for special in (None, math.nan, math.inf, -math.inf, "all"):
        base = np.random.default_rng(0).standard_normal((3, 6, 5)) * 3
        base[0, 0, 0], base[1, 2, 3] = big, -big
        if special == "all":
            base[0, 1, 2], base[2, 4, 1], base[0, 5, 4] = math.nan, math.inf, -math.inf
        elif special is not None:
            base[0, 5, 4] = special  # reached by every view below
        host = torch.tensor(base, dtype=tdt)
        for view in (lambda t: t, lambda t: t.transpose(-1, -2), lambda t: t[:1].expand(4, 6, 5)):
            x = view(host if where == "torch" else host.cuda())
            if where == "cupy":
                import cupy

                x = cupy.asarray(x.cpu().numpy())
            xp = array_api_compat.array_namespace(x)
            for name, ((low, high), want) in modes.items():
                got = _nonfinite._host(_nonfinite._clean(xp, x, low, high))
                assert bool(got) == bool(want(view(host).double().numpy())), (name, special)
    empty = torch.zeros((2, 0, 3), dtype=tdt)
    assert _nonfinite._clean(array_api_compat.array_namespace(empty), empty) is None
