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

import array_api_compat
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lsattn
from lsattn import reference as ref

from lsattn import _nonfinite
from lsattn._prologue import Op

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
#: the exp-kernel operators (a row whose every weight is 0 is 0/0: NaN, :func:`zero_weight_rows`)
EXP_OPS = ("log_attention", "exp_kernel_attention")
#: where an operator runs: (namespace, backend)
WHERE = [("numpy", "array_api"), ("numpy", "numba"), ("array_api_strict", "array_api"), ("torch", "array_api"),
         ("dask", "dask"), ("jax", "array_api"), ("torch_checks", "array_api")]
#: on the GPU (``@pytest.mark.gpu``): the automatic choice on CuPy arrays and CUDA torch tensors
#: (the CuPy kernels where they serve the operator, the array-API path elsewhere)
WHERE_GPU = [("cupy", None), ("torch_cuda", None), ("cupy_kernel", None), ("torch_cuda_kernel", None)]
GPU = [pytest.param(w, marks=pytest.mark.gpu, id="-".join(map(str, w))) for w in WHERE_GPU]
#: where non-causal calls run (the dask backend computes causal calls only)
NON_CAUSAL = [w for w in WHERE if w[0] != "dask"]
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


def poisoned(op, arg, s, j, value, T, dk, dv):
    """The rule of docs/api.md: which outputs (BATCH + (T, dv)) a special value at batch 0 poisons,
    or leaves without any weight (0/0, NaN too)."""
    (name, role), neg_ok = OPS[op][0][arg], OPS[op][1]
    mask = np.zeros(BATCH + (T, dv), dtype=bool)
    if value == -math.inf and name in neg_ok:
        if op == "loglinear_log_attention" and role == "lev" and s == 0 and j == 0:
            mask[0, 0, :] = True  # the first query reads level 0 only: no weight left, 0/0 (docs/hierarchical.md)
        if op in EXP_OPS and dk == 1 and (role == "q" or (role == "k" and s == 0)):
            mask[0, s, :] = True  # the query's only feature / the first row's only key is 0: 0/0 (docs/api.md)
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
    ``rtol`` relative to their largest magnitude; ``log_attention`` (``what`` starts with the
    operator) to its promised bound (tests/test_exp_kernel.py): ``rtol`` relative plus ``rtol`` as an
    absolute error in log y, whose rounding is absolute (outputs all near log y = 0 have no
    relative scale)."""
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
        atol = rtol if what.startswith("log_attention") else 0.0
        assert err <= rtol * scale + atol, f"{what}: error {err:.3e} > {rtol:.0e} * {scale:.3e} + {atol:.0e}"


def on(where, arrays, dtype="float64"):
    """The NumPy ``arrays`` in the namespace of ``where`` (Dask: chunked in two along T)."""
    ns = where[0].replace("_kernel", "")  # *_kernel: the checks by _nonfinite.KERNEL (``forced``)
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
    flag of a call from minima and maxima, read together once), so that path runs on every machine
    (the reductions: CPU tensors never take ``_nonfinite.KERNEL``'s launch); ``*_kernel``: the checks
    by ``KERNEL`` (the default), the others by one reduction per array."""
    stack = contextlib.ExitStack()
    if where[0] == "torch_checks":
        stack.enter_context(mock.patch.object(_nonfinite, "_cuda_checks", lambda xp, arrays: True))
    stack.enter_context(mock.patch.object(_nonfinite, "KERNEL", where[0].endswith("_kernel")))
    return stack


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
    dk, dv = draw(st.integers(1 if op in EXP_OPS else 2, 3)), draw(st.integers(1, 3))
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
    mask = poisoned(op, c["arg"], c["s"], c["j"], c["value"], c["T"], c["dk"], c["dv"])
    expected = reference(op, arrays)
    rtol = OPS[op][2]
    check(to_numpy(run(op, where, arrays)), expected, mask, rtol, f"{op} on {where}")
    if where[0] in ("jax", "dask"):
        return
    for cut in {c["s"], c["s"] + 1} - {0, c["T"]}:
        check(to_numpy(_stream(op, where, arrays, [cut])), expected, mask, rtol, f"{op} on {where}, cut at {cut}")


@pytest.mark.parametrize("op", EXP_OPS)
@settings(max_examples=max(3, settings.default.max_examples // 2))
@given(data=st.data())
def test_numba_chunked_kernel_answers_the_check(op, data):
    """The numba backend's chunked exp-kernel counts the non-finite entries it reads (``KernelCheck``):
    finite inputs make no pass of the prologue's own (``_all_finite`` never called), a special value
    at a random token gives the outputs of :func:`test_special_value_at_a_random_token` (the call
    computed again from the sanitised inputs); the token-by-token path (short calls) asks for the pass."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from lsattn.backends import numba_cpu

    c = data.draw(cases(op))
    finite = data.draw(st.booleans())
    role = OPS[op][0][c["arg"]][1]
    arrays, mask = make(op, c["seed"], c["T"], c["dk"], c["dv"]), np.zeros(BATCH + (c["T"], c["dv"]), bool)
    if not finite:
        arrays = _place(arrays, c["arg"], c["s"], c["j"], c["value"], role)
        mask = poisoned(op, c["arg"], c["s"], c["j"], c["value"], c["T"], c["dk"], c["dv"])
    expected = reference(op, arrays)
    calls, real = [], _nonfinite._all_finite

    def counted(*a):
        calls.append(1)
        return real(*a)

    for min_t, passes in ((1, 0), (c["T"] + 1, 1)):  # chunked, then token by token
        calls.clear()
        with mock.patch.object(numba_cpu, "EK_CHUNKED_MIN_T", min_t), mock.patch.object(_nonfinite, "_all_finite", counted):
            out = run(op, ("numpy", "numba"), arrays)
        if finite:
            assert len(calls) == passes, (min_t, calls)
        check(to_numpy(out), expected, mask, OPS[op][2], f"{op} on numba, EK_CHUNKED_MIN_T = {min_t}")


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
    finite and matches it; a query that sees only that key (the first) is 0/0: NaN (the exp-kernel
    operators; ``loglinear_log_attention`` does not mark such rows yet, see docs/api.md)."""
    s = min(s, T - 1)
    arrays = make(op, seed, T, 3, 2)
    arrays[1][:, s, :] = -math.inf
    expected = reference(op, arrays)
    undefined = np.isnan(expected)
    assert not undefined[:, 1:].any() and undefined[:, 0].all() == (s == 0)
    out = to_numpy(run(op, where, arrays)).astype(np.float64)
    assert np.isfinite(out[~undefined]).all()
    if op not in EXP_OPS:
        out, expected, undefined = np.where(undefined, 0.0, out), np.where(undefined, 0.0, expected), undefined & False
    check(out, expected, undefined, OPS[op][2], op)


def zero_weight_rows(q, k, causal=True, state_keys=None):
    """The rows (BATCH + (Tq,)) of the exp-kernel operators without any weight, by the rule of
    docs/api.md: no feature ``i`` with ``q_ti > -inf`` and ``k_si > -inf`` for a key ``s`` the row
    sees (``s <= t``, or every key when not causal; ``state_keys``: earlier keys before them)."""
    keys = k if state_keys is None else np.concatenate([state_keys, k], axis=-2)
    live = keys > -np.inf
    seen = np.any(live, axis=-2, keepdims=True) if not causal else np.logical_or.accumulate(live, axis=-2)
    if causal and state_keys is not None:
        seen = seen[..., state_keys.shape[-2]:, :]
    return ~np.any((q > -np.inf) & seen, axis=-1)


@st.composite
def zero_weight_cases(draw):
    """Exp-kernel inputs with ``-inf`` in whole key / query rows and in single features at random
    tokens (often enough that some rows see no live feature pair: 0/0), float64 NumPy."""
    T, dk, dv = draw(st.integers(1, 24)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    feature, row = draw(st.sampled_from([0.0, 0.3, 0.6, 0.9])), draw(st.sampled_from([0.0, 0.2, 0.5]))
    q, k, v = rng.standard_normal(BATCH + (T, dk)), rng.standard_normal(BATCH + (T, dk)), rng.standard_normal(BATCH + (T, dv))
    for x in (q, k):
        x[rng.random(x.shape) < feature] = -math.inf
        x[rng.random(x.shape[:-1]) < row] = -math.inf
    cut = draw(st.integers(0, T))
    cu = [0] + sorted(draw(st.lists(st.integers(0, T), max_size=3))) + [T]
    return q, k, v, cut, cu


def _packed_reference(op, arrays, cu):
    return np.concatenate([reference(op, [x[..., a:b, :] for x in arrays]) for a, b in zip(cu[:-1], cu[1:]) if b > a],
                          axis=-2)


@pytest.mark.parametrize("where", WHERE + GPU, ids=["-".join(w) for w in WHERE] + [p.id for p in GPU])
@pytest.mark.parametrize("op", EXP_OPS)
@settings(max_examples=max(3, settings.default.max_examples // 2))
@given(case=zero_weight_cases(), jax_example=st.integers(0, 3))
def test_zero_weight_rows(op, where, case, jax_example):
    """Rows whose every weight is 0 (``-inf`` key / query rows and features): NaN exactly there, as
    in the reference (whose NaN pattern is that of the rule), the reference elsewhere; the same for
    the stream cut anywhere (the state's live features count as earlier keys) and for packed
    segments (each its own stream)."""
    if where[0] == "jax" and jax_example:  # a quarter of the examples: one jit each
        return
    q, k, v, cut, cu = case
    arrays = [q, k, v]
    expected = reference(op, arrays)
    undefined = np.isnan(expected)
    np.testing.assert_array_equal(undefined, np.broadcast_to(zero_weight_rows(q, k)[..., None], undefined.shape))
    rtol = OPS[op][2]
    check(to_numpy(run(op, where, arrays)), expected, undefined, rtol, f"{op} on {where}")
    if where[0] == "dask":
        return
    xs = on(where, arrays)
    f = getattr(lsattn, op)
    if where[0] != "jax":
        check(_stream(op, where, arrays, [cut] if 0 < cut < q.shape[-2] else []), expected, undefined, rtol,
              f"{op} on {where}, cut at {cut}")
        # a state before any token (offset 0) and a T = 0 call in the stream change nothing
        _, st0 = f(*[x[..., :0, :] for x in xs], return_state=True, backend=where[1])
        check(f(*xs, state=st0, backend=where[1]), expected, undefined, rtol, f"{op} on {where} after T = 0")
    packed = _packed_reference(op, arrays, cu)
    run_packed = lambda *a: f(*a, cu_seqlens=cu, backend=where[1])  # noqa: E731
    if where[0] == "jax":
        import jax

        run_packed = jax.jit(run_packed)
    check(to_numpy(run_packed(*xs)), packed, np.isnan(packed), rtol, f"{op} on {where}, packed {cu}")
    if where[0] == "jax":
        return
    # packed streams continued from a packed state: segment i's tokens before / from its cut
    first = [min(max(cut - a, 0), b - a) for a, b in zip(cu[:-1], cu[1:])]
    parts = [[], []]
    for a, b, c in zip(cu[:-1], cu[1:], first):
        parts[0].append([x[..., a:a + c, :] for x in xs])
        parts[1].append([x[..., a + c:b, :] for x in xs])
    offs = [[0, *np.cumsum(n).tolist()] for n in (first, [b - a - c for a, b, c in zip(cu[:-1], cu[1:], first)])]
    xp = array_api_compat.array_namespace(xs[0])
    cat = [[xp.concat([p[j] for p in ps], axis=-2) for j in range(3)] for ps in parts]
    o1, st1 = f(*cat[0], cu_seqlens=offs[0], return_state=True, backend=where[1])
    o2 = f(*cat[1], cu_seqlens=offs[1], state=st1, backend=where[1])
    o1, o2 = to_numpy(o1), to_numpy(o2)
    got = np.concatenate([np.concatenate([o1[..., offs[0][i]:offs[0][i + 1], :], o2[..., offs[1][i]:offs[1][i + 1], :]],
                                         axis=-2) for i in range(len(first))], axis=-2)
    check(got, packed, np.isnan(packed), rtol, f"{op} on {where}, packed streams {cu} cut at {first}")


@pytest.mark.parametrize("where", NON_CAUSAL + GPU, ids=["-".join(w) for w in NON_CAUSAL] + [p.id for p in GPU])
@pytest.mark.parametrize("op", EXP_OPS)
@settings(max_examples=max(3, settings.default.max_examples // 2))
@given(case=zero_weight_cases(), Tq=st.integers(1, 6), jax_example=st.integers(0, 3))
def test_zero_weight_rows_non_causal(op, where, case, Tq, jax_example):
    """Non-causal: a row is 0/0 when no feature is live in its query and in some key of the call."""
    if where[0] == "jax" and jax_example:
        return
    _, k, v, _, _ = case
    q = np.random.default_rng(Tq).standard_normal(BATCH + (Tq, k.shape[-1]))
    q[np.random.default_rng(Tq + 1).random(q.shape) < 0.5] = -math.inf
    with np.errstate(all="ignore"):
        expected = to_numpy(getattr(ref, op)(q, k, v, causal=False))
    undefined = np.isnan(expected)
    rule = zero_weight_rows(q, k, causal=False)
    np.testing.assert_array_equal(undefined, np.broadcast_to(rule[..., None], undefined.shape))
    f = getattr(lsattn, op)
    xs = on(where, [q, k, v])
    if where[0] == "jax":
        import jax

        out = jax.jit(lambda *a: f(*a, causal=False, backend=where[1]))(*xs)
    else:
        out = f(*xs, causal=False, backend=where[1])
    check(to_numpy(out), expected, undefined, OPS[op][2], f"{op} non-causal on {where}")


@pytest.mark.parametrize("backend", ["array_api", "numba"])
@pytest.mark.parametrize("op", EXP_OPS)
@settings(max_examples=max(3, settings.default.max_examples // 2))
@given(case=zero_weight_cases())
def test_zero_weight_rows_stepper(op, backend, case):
    """The steppers, from a plain call's state at the cut (whose dead features hold keys at the
    stand-in) or from offset 0: NaN on the rows without weight, the reference elsewhere."""
    if backend == "numba":
        pytest.importorskip("numba")
    q, k, v, cut, _ = case
    arrays = [q, k, v]
    expected = reference(op, arrays)
    undefined = np.isnan(expected)
    f = getattr(lsattn, op)
    first, state = f(*[x[..., :cut, :] for x in arrays], return_state=True, backend=backend)
    step = lsattn.stepper(op, state, backend=backend)
    outs = [first] + [step(*[x[..., t:t + 1, :] for x in arrays]) for t in range(cut, q.shape[-2])]
    check(np.concatenate(outs, axis=-2), expected, undefined, OPS[op][2], f"{op} stepper on {backend} from {cut}")


def _on_gpu(ns, arrays, dtype):
    """``arrays`` as CuPy arrays / CUDA torch tensors of ``dtype`` (bfloat16 through torch), and their
    values as rounded, float64 NumPy (what the reference sees)."""
    if ns == "cupy":
        cp = pytest.importorskip("cupy")
        xs = [cp.asarray(a.astype(dtype)) for a in arrays]
        return xs, [cp.asnumpy(x).astype(np.float64) for x in xs]
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    xs = [torch.as_tensor(a, device="cuda").to(getattr(torch, dtype)) for a in arrays]
    return xs, [x.double().cpu().numpy() for x in xs]


@pytest.mark.gpu
@pytest.mark.parametrize("ns, dtype", [("cupy", "float32"), ("cupy", "float16"), ("torch_cuda", "float32"),
                                       ("torch_cuda", "bfloat16"), ("torch_cuda", "float16")])
@pytest.mark.parametrize("op", EXP_OPS)
@settings(max_examples=max(3, settings.default.max_examples // 2))
@given(case=zero_weight_cases())
def test_zero_weight_rows_gpu_kernels_and_steppers(op, ns, dtype, case):
    """On the GPU (the automatic backend: the CuPy kernels, half precision as it is), a plain call up
    to the cut and the stepper from its state (the CuPy fused step for ``exp_kernel_attention``):
    NaN exactly on the rows without weight, the reference of the rounded inputs elsewhere
    (float32 1e-5; float16 2e-3, bfloat16 1e-2: the output's rounding)."""
    q, k, v, cut, _ = case
    xs, rounded = _on_gpu(ns, [q, k, v], dtype)
    expected = reference(op, rounded)
    undefined = np.isnan(expected)
    rtol = {"float32": OPS[op][3], "float16": 2e-3, "bfloat16": 1e-2}[dtype]
    f = getattr(lsattn, op)
    whole = to_numpy(f(*xs).float() if ns == "torch_cuda" else f(*xs)).astype(np.float64)
    check(whole, expected, undefined, rtol, f"{op} {ns} {dtype}")
    first, state = f(*[x[..., :cut, :] for x in xs], return_state=True)
    step = lsattn.stepper(op, state)
    outs = [first] + [step(*[x[..., t:t + 1, :] for x in xs]) for t in range(cut, q.shape[-2])]
    outs = [to_numpy(o.float() if ns == "torch_cuda" else o).astype(np.float64) for o in outs]
    check(np.concatenate(outs, axis=-2), expected, undefined, rtol, f"{op} {ns} {dtype} stepper ({step.backend}) from {cut}")


def test_zero_weight_rows_examples():
    """The cases of docs/api.md, on NumPy (array_api and numba): the first keys all ``-inf``; a query
    all ``-inf``; queries live only where every key so far is ``-inf``; a packed segment whose first
    key is ``-inf``; a stream continued from a state that holds only ``-inf`` keys."""
    rng = np.random.default_rng(7)
    q, k, v = rng.standard_normal((3, 1, 8, 2))
    k[0, :3] = -math.inf  # rows 0, 1, 2 see no key with weight
    q[0, 5] = -math.inf  # row 5: a query of weight 0
    k[0, 3:, 1] = -math.inf  # later keys live in feature 0 only ...
    q[0, 6, 0] = -math.inf  # ... so row 6 (live in feature 1 only) has none either
    want = np.zeros((1, 8), bool)
    want[0, [0, 1, 2, 5, 6]] = True
    np.testing.assert_array_equal(zero_weight_rows(q, k), want)
    for op in EXP_OPS:
        expected = reference(op, [q, k, v])
        np.testing.assert_array_equal(np.isnan(expected).all(-1), want)
        for backend in ("array_api", "numba"):
            f = getattr(lsattn, op)
            check(f(q, k, v, backend=backend), expected, np.isnan(expected), OPS[op][2], f"{op} {backend}")
            # a state that holds only the -inf keys, then rows 3 .. 7 (live keys from row 3 on)
            _, state = f(q[:, :3], k[:, :3], v[:, :3], return_state=True, backend=backend)
            check(f(q[:, 3:], k[:, 3:], v[:, 3:], state=state, backend=backend), expected[:, 3:],
                  np.isnan(expected[:, 3:]), OPS[op][2], f"{op} {backend} from a state")
            # packed: segment [3, 8) starts at a live key; [0, 1) and [1, 3) hold only -inf keys
            cu = [0, 1, 3, 8]
            packed = _packed_reference(op, [q, k, v], cu)
            assert np.isnan(packed[0, [0, 1, 2, 5, 6]]).all() and np.isfinite(packed[0, [3, 4, 7]]).all()
            check(f(q, k, v, cu_seqlens=cu, backend=backend), packed, np.isnan(packed), OPS[op][2],
                  f"{op} {backend} packed")


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


@pytest.mark.parametrize("op", EXP_OPS)
@pytest.mark.parametrize("backend", ["array_api", "numba"])
def test_state_from_half_precision_inputs_reads_no_key_as_float32(op, backend):
    """A state made from 16-bit inputs (the GPU kernels: ``-inf`` keys clamped to float16's stand-in
    ``-finfo.max / 8``, in a float32 state) marks a feature without a key above ``-inf`` as a float32
    state does (``canonical_shifts``): plain calls and steppers from it give NaN on the rows without
    weight, the reference elsewhere."""
    from lsattn import _nonfinite, exp_kernel

    rng = np.random.default_rng(11)
    q, k, v = rng.standard_normal((3, 1, 5, 2))
    k[0, :4, 1] = -math.inf  # feature 1: no key above -inf in tokens 0 .. 3
    q[0, 3, 0] = -math.inf  # row 3 is live in feature 1 only: no weight
    expected = reference(op, [q, k, v])
    assert np.isnan(expected[0, 3]).all() and np.isnan(expected).sum() == 2
    lo16, lo32 = -float(np.finfo(np.float16).max) / 8, -float(np.finfo(np.float32).max) / 8
    f = getattr(lsattn, op)
    k16 = np.maximum(k, lo16)  # what a half-precision kernel reads for these keys
    _, state = f(*[x[:, :2].astype(np.float32) for x in (q, k16, v)], return_state=True, backend=backend)
    assert state.tensors["m"][0, 1] == lo16
    spec = exp_kernel._SPECS[op]
    state = _nonfinite.canonical_shifts(spec, array_api_compat.array_namespace(q), state, np.float16)
    assert state.tensors["m"][0, 1] == lo32 and state.tensors["m"][0, 0] > lo16
    assert _nonfinite.canonical_shifts(spec, array_api_compat.array_namespace(q), state, np.float32) is state
    rest = [x[:, 2:].astype(np.float32) for x in (q, k, v)]
    want = expected[:, 2:]
    check(f(*rest, state=state, backend=backend), want, np.isnan(want), OPS[op][3], f"{op} {backend} plain")
    step = lsattn.stepper(op, state, backend=backend)
    got = np.concatenate([step(*[x[:, t:t + 1] for x in rest]) for t in range(3)], axis=-2)
    check(got, want, np.isnan(want), OPS[op][3], f"{op} {backend} stepper")

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
                got = _nonfinite._clean(xp, x, low, high)
                assert bool(got) == bool(want(view(host).double().numpy())), (name, special)
            # the same flags from the reductions and, on the GPU, from the one-launch kernel (KERNEL; views
            # not at one flat stride: the reductions)
            for how in ("reduce",) + ("kernel",) * (where != "torch"):
                for name, passes in (("finite", ()), ("below_inf", ("a",))):
                    op = Op("flags", (("a", "q"),), lambda *a: {}, neg_inf=passes)
                    with mock.patch.object(_nonfinite, "_cuda_checks", lambda xp, arrays: True), \
                            mock.patch.object(_nonfinite, "KERNEL", how == "kernel"):
                        got = _nonfinite.checks(op, [x], None, xp).finite
                    assert got == bool(modes[name][1](view(host).double().numpy())), (name, special, how)
    empty = torch.zeros((2, 0, 3), dtype=tdt)
    assert _nonfinite._clean(array_api_compat.array_namespace(empty), empty) is None


@pytest.mark.gpu
@pytest.mark.parametrize("where", ["torch_cuda", "cupy"])
def test_gpu_side_stream_checks_order_and_reuse(where):
    """The checks' reads on their side stream (``_extrema.SIDE``) see what the caller's stream wrote before
    the call (a NaN written after a long matmul; on a torch side stream too), and two answers pending at once
    (one call inside another's implementation) each read their own arrays: the second takes new buffers."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cp = pytest.importorskip("cupy")
    from lsattn.backends.cupy import _extrema

    assert _extrema.SIDE
    op = Op("flags", (("a", "q"), ("b", "k")), lambda *a: {})
    streams = [None] + ([torch.cuda.Stream()] if where == "torch_cuda" else [])
    for s in streams:
        with contextlib.nullcontext() if s is None else torch.cuda.stream(s):
            x = torch.randn(2048, 2048, device="cuda")
            for _ in range(4):  # ~ms of work queued before the NaN
                x = torch.tanh(x @ x)
            x[1000, 7] = math.nan
            y = torch.randn(3, 5, 40, device="cuda")
            z = y.clone()
            z[2, 4, 39] = math.inf
            if where == "cupy":
                x, y, z = cp.asarray(x), cp.asarray(y), cp.asarray(z)
            xp = array_api_compat.array_namespace(x)
            dev = torch.cuda.current_device()
            with mock.patch.object(_nonfinite, "KERNEL", True):
                first = _nonfinite.checks(op, [x, y], None, xp)  # pending while the next is made
                b1 = _extrema._SIDE.by_device[dev]
                second = _nonfinite.checks(op, [y, y[:, :, :1]], None, xp)
                b2 = _extrema._SIDE.by_device[dev]
                assert b1 is not b2 and b1.busy and b2.busy
                assert second.finite and not first.finite
                assert not b1.busy and not b2.busy
                again = _nonfinite.checks(op, [y[:1], z], None, xp)  # the buffers free (and large enough): reused
                assert _extrema._SIDE.by_device[dev] is b2 and not again.finite
            # deferred (``_nonfinite.Deferred``): made at the first access, after more work was queued (the call's
            # kernels), its reads still see the NaN written just before the call (they wait on the call's start)
            x2 = torch.randn(2048, 2048, device="cuda")
            for _ in range(4):
                x2 = torch.tanh(x2 @ x2)
            x2[5, 3] = math.nan
            x2 = cp.asarray(x2) if where == "cupy" else x2
            with mock.patch.object(_nonfinite, "KERNEL", True):
                late = _nonfinite.checks(op, [x2, y], None, xp, defer=True)
                assert isinstance(late, _nonfinite.Deferred)
                u = torch.randn(2048, 2048, device="cuda")
                for _ in range(4):
                    u = torch.tanh(u @ u)
                assert not late.finite and not late.own_off
                assert _nonfinite.checks(op, [y[:1], y], None, xp, defer=True).finite


def test_deferred_checks_made_once():
    """``_nonfinite.Deferred`` (``loglinear_log_attention``'s CuPy calls): made once, by ``launch_pending`` (the
    implementation, after its first launch; only the thread's latest, only while EARLY) or at the first access,
    whichever comes first; nothing kept alive for a call that never asked."""
    made = []

    def make(tag):
        return lambda: (made.append(tag), _nonfinite._Answer(tag != "bad"))[1]

    first = _nonfinite.Deferred(make("first"))
    _nonfinite.launch_pending()
    assert made == ["first"] and first.finite and made == ["first"]
    late = _nonfinite.Deferred(make("bad"))
    with mock.patch.object(_nonfinite, "EARLY", False):
        _nonfinite.launch_pending()
    assert made == ["first"] and not late.finite and made == ["first", "bad"]
    _nonfinite.launch_pending()  # (the latest was made already: nothing)
    gone = _nonfinite.Deferred(make("gone"))
    del gone
    _nonfinite.launch_pending()
    assert made == ["first", "bad"]


def test_kernel_checks_host_side():
    """``_nonfinite.KERNEL``'s host pieces without a GPU: which arrays the one-launch kernel reads at one
    flat stride (contiguous, a level axis's first entries; not transposed or broadcast views), and the
    host reduction of its per-block partials (NaN propagates; an empty block is (+inf, -inf))."""
    torch = pytest.importorskip("torch")
    from lsattn.backends.cupy import _extrema

    lam = torch.randn(2, 3, 5, 4)
    for x, stride in ((lam, 1), (lam[..., 0], 4), (lam[:1], 1), (lam[:, :1], None), (lam[0, 0, :, 0], 4), (lam[:1, :, :, :1], 4),
                      (lam.transpose(-1, -2), None), (lam[:1].expand(3, 3, 5, 4), None), (lam[..., :2], None)):
        got = _extrema.flat(x)
        assert (got is None) == (stride is None), tuple(x.stride())
        if got is not None:
            ptr, n, s, name = got
            assert (ptr, n, s, name) == (x.data_ptr(), x.numel(), stride, "float32"), (got, tuple(x.stride()))
    assert _extrema.flat(lam.to(torch.bfloat16))[3] == "bfloat16" and _extrema.flat(lam.to(torch.int32)) is None
    inf, nan = math.inf, math.nan
    partials = np.array([[[1.0, 2.0], [-3.0, 0.5], [inf, -inf]], [[0.0, 1.0], [nan, nan], [2.0, 3.0]],
                         [[inf, -inf], [inf, -inf], [inf, -inf]]])
    r = _extrema.reduce_twin(partials)
    assert r[0].tolist() == [-3.0, 2.0] and np.isnan(r[1]).all() and r[2].tolist() == [inf, -inf]


def test_one_read_flags_copy_nothing():
    """The flags of a broadcast (grouped heads) or transposed torch tensor are read without a copy:
    full reductions of a non-contiguous tensor copy it first (16 MiB for bf16 grouped heads at 8K,
    caught on the GPU by ``test_gpu_exp_kernel_grouped_heads_share_rows``)."""
    torch = pytest.importorskip("torch")
    from torch.profiler import ProfilerActivity, profile

    base = torch.randn(1, 1, 1, 4096, 64, dtype=torch.bfloat16)
    xp = array_api_compat.array_namespace(base)
    for x in (base.expand(1, 1, 16, 4096, 64), base[0, 0].transpose(-1, -2), base):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            flag = _nonfinite._clean(xp, x)
        grown = sum(max(0, e.self_cpu_memory_usage) for e in prof.key_averages())
        assert bool(flag) and grown < 2**12, (tuple(x.stride()), grown)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("special", [None, math.nan, -math.inf])
def test_checks_waited_after_the_launch(op, special):
    """CUDA arrays (here CPU torch tensors checked as CUDA ones): one copy of the extrema per call, waited
    for after the implementation ran (its kernels launched); finite inputs (and ``-inf`` where it is a
    legitimate zero that needs no clamp) run the implementation once, on the inputs as they are; any
    other input runs it again on the sanitised ones, with the reference's outputs and NaN where poisoned."""
    torch = pytest.importorskip("torch")
    from lsattn import backends

    arrays = make(op, 3, 9, 3, 2)
    names = [name for name, _ in OPS[op][0]]
    arg = names.index("log_decay" if op == "loglinear_attention" else "k")
    if special is not None:
        arrays[arg][0, 4] = special
    expected = reference(op, arrays)
    events, read, impl = [], _nonfinite._read, backends.Backend.implementation

    def reading(*a):
        wait = read(*a)
        events.append("copy")
        return lambda: (events.append("wait"), wait())[1]

    def implementation(self, name, **kw):
        f = impl(self, name, **kw)
        return lambda *a, **k: (events.append("launch"), f(*a, **k))[1]

    with mock.patch.object(_nonfinite, "_cuda_checks", lambda xp, arrays: True), \
            mock.patch.object(_nonfinite, "_read", reading), \
            mock.patch.object(backends.Backend, "implementation", implementation):
        out = call(op, [torch.as_tensor(a) for a in arrays], backend="array_api")
    legit = special == -math.inf and names[arg] in _nonfinite._passes(_ops()[op])
    assert events == (["copy", "launch", "wait"] + ([] if special is None or legit else ["launch"])), events
    check(out, expected, np.isnan(expected) if special is not None else np.zeros(expected.shape, bool),
          OPS[op][2], f"{op} {special}")


def _ops():
    """The operators' ``Op`` descriptions by name."""
    from lsattn import exp_kernel, gated_delta, hierarchical, loglinear

    return {**exp_kernel._SPECS, **{m.OP: m.SPEC for m in (loglinear, gated_delta, hierarchical)}}
