"""The CuPy backend's fused decoding steps (``lsattn/backends/cupy/step.cu``), checked on the CPU
through their NumPy twin (``step.Twin``: the kernels' loops, thread layout and summation order)
driven by the same host logic (buffers, device offset, ``step.state``) inside a ``Stepper``:
against the array-API step (same dtype; float64 1e-12, float32 1e-5 relative) and
``lsattn.reference`` at the bounds of ``test_stepper`` (offsets across many Fenwick carries,
``-inf`` decays, magnitudes). The GPU tests run the kernels themselves (``-m gpu``)."""
from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest
from hypothesis import given, strategies as st

import lsattn
from lsattn.backends.cupy import step as cstep
from lsattn.decoding import Stepper, _operators
from lsattn.state import State

from helpers import assert_close, cupy_source, emulation, on, to_numpy
from strategies import DECAYS, batch_shapes, seeds
from test_stepper import check, make, terms, tokens

OPS = ["exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"]
BASE = {"float64": 1e-12, "float32": 1e-5}


def twin_stepper(op, state, max_tokens, twin=cstep.Twin):
    """A Stepper on the cupy step's host logic with the NumPy twin for the kernels."""
    impl = getattr(cstep, op)(state, max_tokens, ops=twin())
    xp = lsattn._validate.namespace(x=next(iter(state.tensors.values())))
    return Stepper(_operators()[op][1], state, impl, max_tokens, xp, "cupy (twin)")


def run(op, args, kw, nb, P, N, dtype, max_tokens):
    """Prefill P tokens (plain call), then N steps of the twin and of the array-API step."""
    fn = getattr(lsattn, op)
    cast = lambda xs: on(np, xs, dtype)  # noqa: E731
    kwt = lambda i0, i1: dict(zip(kw, cast(tokens(list(kw.values()), nb, i0, i1))))  # noqa: E731
    _, state = fn(*cast(tokens(args, nb, 0, P)), **kwt(0, P), return_state=True, backend="array_api")  # no Numba compiles
    twin = twin_stepper(op, state, max_tokens)
    aapi = lsattn.stepper(op, state, max_tokens=max_tokens, backend="array_api")
    got, want = [], []
    for t in range(P, P + N):
        xs, kws = cast(tokens(args, nb, t, t + 1)), kwt(t, t + 1)
        got.append(to_numpy(twin(*xs, **kws)))
        want.append(to_numpy(aapi(*xs, **kws)))
    return twin, aapi, state, np.concatenate(got, axis=-2), np.concatenate(want, axis=-2)


def twin_bound(op, dtype, args, want, lo, N):
    """(rtol, atol) of the twin against the array-API step on tokens ``lo .. lo + N``: exp-kernel
    ``BASE (1 + scale)`` relative; Gated DeltaNet the bound of ``test_stepper.check`` (``BASE`` times the
    magnitude of its terms: signed sums that may cancel); hierarchical ``BASE + 2 eps (max |q| + max |k|)``
    times ``1 + max |log y|`` absolute; log-linear Mamba-2 ``BASE`` relative."""
    base = BASE[dtype]
    if op == "loglinear_gated_delta":
        return 0.0, base * terms(op, args)[..., lo : lo + N, :].max()
    if op == "loglinear_log_attention":
        base += 2 * float(np.finfo(dtype).eps) * (np.abs(args[0]).max() + np.abs(args[1]).max())
        return 0.0, base * (1 + np.abs(want[np.isfinite(want)]).max(initial=0))
    return base, 0.0


def assert_state_close(got, want, tol, what):
    """State tensors elementwise: ``|got - want| <= tol (1 + |want|)`` (shifts near the finite
    "minus infinity" included, each at its own scale), infinities matching."""
    got, want = to_numpy(got).astype(np.float64), to_numpy(want).astype(np.float64)
    assert got.shape == want.shape, what
    err = np.abs(got - want) / (1 + np.abs(want))
    assert err.max(initial=0) <= tol, f"{what}: max relative error {err.max()} > {tol}"


@pytest.mark.parametrize("op", OPS)
@given(seed=seeds, batch=batch_shapes, dk=st.sampled_from([1, 3, 8, 9, 17]), dv=st.sampled_from([1, 4, 32, 33]),
       P=st.one_of(st.sampled_from([0, 1, 7, 15, 31, 63, 127]), st.integers(0, 140)), N=st.integers(1, 6),
       dtype=st.sampled_from(["float64", "float32"]), decay=st.sampled_from(sorted(DECAYS)),
       scale=st.sampled_from([1e-3, 1.0, 3.0, 20.0]), resets=st.booleans())
def test_twin_step_equals_array_api_step_and_reference(op, seed, batch, dk, dv, P, N, dtype, decay, scale, resets):
    """N twin steps after a prefill of P tokens = the array-API step = the reference; the twin's
    state (device offset included) is the array-API step's and continues a plain call. Magnitudes:
    ``q, k`` scaled (Gated DeltaNet: ``q, v``, its keys unit: its transitions contract)."""
    T, nb = P + N + 2, len(batch)
    args, kw = make(op, seed, batch, T, dk, dv, decay)
    scaled = (0, 2) if op == "loglinear_gated_delta" else (0, 1)
    for i in scaled:
        args[i] = scale * args[i]
    if op != "exp_kernel_attention" and resets:  # hard resets: -inf decays at some tokens
        rng = np.random.default_rng(seed + 1)
        if op == "loglinear_log_attention":
            kw["log_decay"] = np.where(rng.random(kw["log_decay"].shape) < 0.2, -np.inf, kw["log_decay"])
        else:
            args[3] = np.where(rng.random(args[3].shape) < 0.2, -np.inf, args[3])
    args = [to_numpy(x) for x in on(np, args, dtype)]
    kw = {n: to_numpy(x) for n, x in zip(kw, on(np, list(kw.values()), dtype))}
    twin, aapi, state0, got, want = run(op, args, kw, nb, P, N, dtype, P + N + 1)
    rtol, atol = twin_bound(op, dtype, [x.astype(np.float64) for x in args], want, P, N)
    if op == "exp_kernel_attention":
        rtol *= 1 + scale
    assert_close(got, want, rtol, atol=atol, what="twin vs array-API step")
    f64 = [x.astype(np.float64) for x in args]
    kw64 = {n: x.astype(np.float64) for n, x in kw.items()}
    check(op, got, f64, kw64, dtype, P, "twin vs reference")
    st_t, st_a = twin.state, aapi.state
    assert st_t.offset == st_a.offset == P + N and state0.offset == P
    assert set(st_t.tensors) == set(st_a.tensors)
    for name, x in st_t.tensors.items():
        assert tuple(x.shape) == tuple(st_a.tensors[name].shape) and x.dtype == st_a.tensors[name].dtype, name
        if op == "loglinear_log_attention":
            assert_state_close(x, st_a.tensors[name], 10 * BASE[dtype] * (1 + scale), what=f"state {name}")
        else:
            assert_close(x, st_a.tensors[name], BASE[dtype] * (1 + scale), atol=1e-300, what=f"state {name}")
    rest = tokens(args, nb, P + N, T)
    rest_kw = dict(zip(kw, tokens(list(kw.values()), nb, P + N, T)))
    out = getattr(lsattn, op)(*rest, **rest_kw, state=st_t, backend="array_api")
    check(op, to_numpy(out), f64, kw64, dtype, P + N, "continued")


def synthetic_state(op, P, batch, dk, dv, rng, dtype=np.float64):
    """A State of ``op`` at offset ``P`` with random contents in the occupied level slots (bits of
    ``P``) and empty ones elsewhere: log-linear levels; hierarchical summaries with shifts of any
    size, positive ``S, z`` (a summary's rows and columns relative to its shifts)."""
    n = P.bit_length()
    occ = np.array([(P >> j) & 1 for j in range(n)], dtype=bool)
    if op != "loglinear_log_attention":
        levels = rng.standard_normal(batch + (n, dk, dv)) * occ[:, None, None]
        return State(op, P, batch, dk, dv, np.dtype(dtype), {"levels": levels.astype(dtype)})
    lo = -np.finfo(dtype).max / 8
    m = np.where(occ[:, None], 5 * rng.standard_normal(batch + (n, dk)), lo)
    nv = np.where(occ[:, None], 5 * rng.standard_normal(batch + (n, dv)), lo)
    S = rng.random(batch + (n, dk, dv)) * occ[:, None, None]
    z = (1 + rng.random(batch + (n, dk))) * occ[:, None]
    return State(op, P, batch, dk, dv, np.dtype(dtype), {n: x.astype(dtype) for n, x in zip("mnSz", (m, nv, S, z))})


@pytest.mark.parametrize("op", ["loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"])
@pytest.mark.parametrize("P", [(1 << 20) - 3, (1 << 16) - 1, (1 << 16) + 5, 3 * (1 << 14) - 2])
def test_twin_levels_long_offsets_many_carries(op, P):
    """Synthetic states at large offsets: steps across carries that fold up to 20 levels (and
    ``-inf`` decays) equal the array-API step, and the empty slots stay empty."""
    rng = np.random.default_rng(P)
    batch, dk, dv, N = (2,), 5, 34, 6
    state = synthetic_state(op, P, batch, dk, dv, rng)
    L = lsattn.num_levels(P + N) + 1
    q, k, v = (rng.standard_normal(batch + (N, d)) for d in (dk, dk, dv))
    a, lam = -rng.random(batch + (N,)), rng.standard_normal(batch + (N, L))
    a[:, 2] = -np.inf
    xs, kw = {"loglinear_attention": ([q, k, v, a, lam], {}),
              "loglinear_gated_delta": ([q, k / np.linalg.norm(k, axis=-1, keepdims=True), v, a, rng.random(batch + (N,)),
                                         lam], {}),
              "loglinear_log_attention": ([q, k, v, lam], {"log_decay": a})}[op]
    twin = twin_stepper(op, state, P + N)
    aapi = lsattn.stepper(op, state, max_tokens=P + N, backend="array_api")
    for t in range(N):
        tok, tkw = tokens(xs, 1, t, t + 1), dict(zip(kw, tokens(list(kw.values()), 1, t, t + 1)))
        want = aapi(*tok, **tkw)
        assert_close(twin(*tok, **tkw), want, 1e-12, atol=1e-12 * (op == "loglinear_log_attention"), what=f"step {t}")
    K, p = twin._impl.slots, P + N
    empty = [j for j in range(K) if not (p >> j) & 1]
    for name, buf in twin._impl.buf.items():
        fill = -np.finfo(np.float64).max / 8 if name in ("m", "n") else 0.0
        assert (buf[:, empty] == fill).all(), f"slots of clear offset bits of {name} are empty"
        assert_state_close(twin.state.tensors[name], aapi.state.tensors[name], 1e-12, what=name)
    assert twin._impl.offset_now() == p


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mag", [1.0, 1e3])
def test_twin_hierarchical_infinities_and_magnitudes(dtype, mag):
    """``hier_step``'s twin with ``-inf`` log values (entries, a whole column), level weights (one
    level for all tokens; every level at one token), decays (a reset; with level 0 off, a row of
    no visible weight), ``|q|, |k|`` up to ``mag``: infinities exact, the rows with no visible
    weight NaN exactly where the reference's are (0 / 0, docs/hierarchical.md), every other row
    within the reference's bound and equal to the array-API step's."""
    args, kw, nb, P, T = hier_infinity_inputs(dtype, mag)
    twin, aapi, _, got, want = run("loglinear_log_attention", args, kw, nb, P, T - P, dtype, T)
    rows = check_hier_infinities(got, args, kw, P, dtype, "twin")
    rtol, atol = twin_bound("loglinear_log_attention", dtype, [x.astype(np.float64) for x in args], want[rows], P, T - P)
    assert_close(got[rows], want[rows], rtol, atol=atol, what="twin vs array-API step")


def hier_infinity_inputs(dtype, mag):
    """(args, kw, nb, P, T) of :func:`test_twin_hierarchical_infinities_and_magnitudes` (NumPy, ``dtype``)."""
    batch, T, P, nb = (2, 2), 24, 9, 2
    args, kw = make("loglinear_log_attention", 7, batch, T, 5, 6, "moderate")
    args[0], args[1] = mag * args[0], mag * args[1]
    args[2][..., 1] = -np.inf  # a column of zero values
    args[2][0, 1, 13, 3] = -np.inf
    args[3][..., 2] = -np.inf  # level 2 off for every token
    args[3][:, :, 12, :] = -np.inf  # token 12: every level off
    kw["log_decay"][..., 15] = -np.inf  # a reset ...
    args[3][0, 0, 15, 0] = -np.inf  # ... with the diagonal off: no visible weight in that row
    args = [to_numpy(x) for x in on(np, args, dtype)]
    kw = {n: to_numpy(x) for n, x in zip(kw, on(np, list(kw.values()), dtype))}
    return args, kw, nb, P, T


def check_hier_infinities(got, args, kw, P, dtype, what):
    """Steps ``P ..`` of :func:`hier_infinity_inputs` against the reference: NaN exactly in the rows of
    no visible weight, the zero column ``-inf``, the rest within the reference's bound. Returns the
    defined rows (mask over (..., T - P))."""
    f64 = [x.astype(np.float64) for x in args]
    kw64 = {n: x.astype(np.float64) for n, x in kw.items()}
    with np.errstate(all="ignore"):
        expected = lsattn.reference.loglinear_log_attention(*f64, **kw64)[..., P:, :]
    undefined = np.isnan(expected)
    assert undefined[..., 12 - P, :].all() and undefined[0, 0, 15 - P].all() and undefined.sum() == 2 * 2 * 6 + 6
    np.testing.assert_array_equal(np.isnan(got), undefined, err_msg=f"{what}: NaN rows")
    rows = ~undefined.any(axis=-1)
    assert np.isneginf(got[rows][:, 1]).all(), f"{what}: the column of zero values"
    base = BASE[dtype] + 2 * float(np.finfo(dtype).eps) * (np.abs(f64[0]).max() + np.abs(f64[1]).max())
    ref = expected[rows]
    assert_close(got[rows], ref, 0.0, atol=base * (1 + np.abs(ref[np.isfinite(ref)]).max()), what=f"{what} vs reference")
    return rows


class Emulated(cstep.Twin):
    """The twin's host side with the kernels of ``step.cu`` themselves, compiled for the CPU
    (``tests/cuda_emu_step.cpp``: a fiber per CUDA thread, barriers, the device offset's
    ticket), built with g++ once per session and compute type (``helpers.emulation``)."""

    def _lib(self, x):
        ta = "double" if x.dtype == np.float64 else "float"
        return emulation("cuda_emu_step.cpp", {"TA": ta}, {"KERNEL": cupy_source("step.cu")})

    @staticmethod
    def _args(*xs):
        """Pointers of ``xs`` (None: null), then the row strides (elements) of the token inputs among them."""
        for x in xs:
            assert x is None or x.strides[-1] == x.itemsize or x.shape[-1] == 1
        return [None if x is None else x.ctypes.data_as(ctypes.c_void_p) for x in xs]

    @staticmethod
    def _strides(*xs):
        return [ctypes.c_longlong(0 if x is None else x.strides[0] // x.itemsize) for x in xs]

    def ek_step(self, q, k, v, m, S, z, out, off, DK, DV, B):
        es = S.itemsize
        self._lib(S).run_ek(*self._args(q, k, v), *self._strides(q, k, v), *self._args(m, S, z, out, off),
                            ctypes.c_int(DK), ctypes.c_int(DV), ctypes.c_int(B), ctypes.c_uint((4 * DK + cstep.NT) * es))

    def ll_step(self, q, k, v, a, lam, S, out, off, DK, DV, L, K, B):
        self._lib(S).run_ll(*self._args(q, k, v, a, lam), *self._strides(q, k, v, a, lam), *self._args(S, out, off),
                            *(ctypes.c_int(x) for x in (DK, DV, L, K, B)), ctypes.c_uint((2 * DK + cstep.NT) * S.itemsize))

    def gd_step(self, q, k, v, a, beta, lam, S, out, off, DK, DV, L, K, B):
        self._lib(S).run_gd(*self._args(q, k, v, a, beta, lam), *self._strides(q, k, v, a, beta, lam),
                            *self._args(S, out, off), *(ctypes.c_int(x) for x in (DK, DV, L, K, B)),
                            ctypes.c_uint((2 * DK + cstep.NT) * S.itemsize))

    def hier_step(self, q, k, lv, lam, a, m, n, S, z, out, off, DK, DV, L, K, B):
        self._lib(S).run_hier(*self._args(q, k, lv, lam, a), *self._strides(q, k, lv, lam, a),
                              *self._args(m, n, S, z, out, off), *(ctypes.c_int(x) for x in (DK, DV, L, K, B)),
                              ctypes.c_uint(cstep.hier_smem(DK, K, S.itemsize)))


@pytest.mark.parametrize("op, dtype", [(op, "float64") for op in OPS] + [(op, "float32") for op in OPS[2:]])
def test_kernel_source_emulated_on_cpu(op, dtype):
    """The CUDA source of the fused steps run on the CPU (``Emulated``) through the host logic: five
    steps from offset 59 (carries folding up to six levels; d_k = 19 over the 8 warps' rows, d_v = 40
    in two column tiles, a ``-inf`` decay) equal the twin's (BASE relative; the twin bounds of
    ``twin_bound``) and the reference; the states equal the twin's; a level step replayed past
    ``max_tokens`` only advances the offset."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    batch, nb, P, N = (3,), 1, 59, 5
    args, kw = make(op, 9, batch, P + N, 19, 40, "moderate")
    if op == "loglinear_log_attention":
        kw["log_decay"][..., P + 2] = -np.inf
    elif op != "exp_kernel_attention":
        args[3][..., P + 2] = -np.inf
    args = [to_numpy(x) for x in on(np, args, dtype)]
    kw = {n: to_numpy(x) for n, x in zip(kw, on(np, list(kw.values()), dtype))}
    cast = lambda xs: on(np, xs, dtype)  # noqa: E731
    kwt = lambda i0, i1: dict(zip(kw, cast(tokens(list(kw.values()), nb, i0, i1))))  # noqa: E731
    fn = getattr(lsattn, op)
    _, state = fn(*cast(tokens(args, nb, 0, P)), **kwt(0, P), return_state=True, backend="array_api")
    emu = twin_stepper(op, state, P + N, Emulated)
    twin = twin_stepper(op, state, P + N)
    got, want = [], []
    for t in range(P, P + N):
        xs, kws = cast(tokens(args, nb, t, t + 1)), kwt(t, t + 1)
        got.append(emu(*xs, **kws))
        want.append(twin(*xs, **kws))
    got, want = np.concatenate(got, axis=-2), np.concatenate(want, axis=-2)
    f64 = [x.astype(np.float64) for x in args]
    kw64 = {n: x.astype(np.float64) for n, x in kw.items()}
    rtol, atol = twin_bound(op, dtype, f64, want, P, N)
    assert_close(got, want, rtol, atol=atol, what="emulated kernels vs twin")
    check(op, got, f64, kw64, dtype, P, "emulated kernels vs reference")
    assert emu._impl.offset_now() == P + N
    for name, x in emu.state.tensors.items():
        assert_state_close(x, twin.state.tensors[name], 10 * BASE[dtype], what=f"state {name}")
    if op != "exp_kernel_attention":  # past the slots (a graph replayed beyond max_tokens): the offset only
        K = emu._impl.slots
        emu._impl.off[0] = (1 << K) - 1  # the token at 2^K - 1 would merge into slot K
        before = {n: b.copy() for n, b in emu._impl.buf.items()}
        xs = cast(tokens(args, nb, P + N - 1, P + N))
        emu._impl.step(P + N, *xs, *kwt(P + N - 1, P + N).values())
        assert emu._impl.offset_now() == 1 << K
        for n, b in emu._impl.buf.items():
            np.testing.assert_array_equal(b, before[n])


@pytest.mark.parametrize("twin", ["twin", "emulated"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_exp_step_rows_without_weight(twin, dtype):
    """Rows whose every weight is 0 (a query all ``-inf``; queries live only in features whose keys
    so far are all ``-inf``, from a plain call's state at the stand-in and from offset 0) are NaN,
    as the reference; the others equal it (float16 inputs into a float32 state: as they are)."""
    if twin == "emulated" and shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    rng = np.random.default_rng(5)
    q, k, v = rng.standard_normal((3, 2, 12, 19))
    k[:, :4, 3:] = -np.inf  # the first keys live in features 0..2 only
    q[0, 2, :3] = -np.inf  # row 2 (batch 0) sees no live feature pair
    q[1, 5] = -np.inf  # a query of weight 0
    k[0, 6:9] = -np.inf
    q[0, 7, :] = -np.inf
    q[0, 7, 5] = 0.3  # live where the keys 4, 5 are
    k[0, 4:6, 5] = -np.inf  # ... which are -inf there: row 7 has no weight
    half = dtype == "float16"
    sdt = "float32" if half else dtype
    xs = [x.astype(dtype) for x in (q, k, v)]
    expected = to_numpy(lsattn.reference.exp_kernel_attention(*xs))
    undefined = np.isnan(expected)
    assert undefined[0, [2, 7]].all() and undefined[1, 5].all() and undefined.any(-1).sum() == 3
    cls = {"twin": _HalfTwin if half else cstep.Twin, "emulated": Emulated}[twin]
    if half and twin == "emulated":
        pytest.skip("the emulation builds float / double inputs only")
    for P in (0, 3):
        _, state = lsattn.exp_kernel_attention(*[x[:, :P].astype(sdt) for x in xs], return_state=True,
                                               backend="array_api")
        step = twin_stepper("exp_kernel_attention", state, None, cls)
        got = np.concatenate([to_numpy(step(*[x[:, t:t + 1] for x in xs])) for t in range(P, 12)], axis=-2)
        got = got.astype(np.float64)
        np.testing.assert_array_equal(np.isnan(got), undefined[:, P:], err_msg=f"{twin} {dtype} from {P}")
        tol = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3}[dtype]
        ok = ~undefined[:, P:]
        assert_close(got[ok], expected[:, P:][ok], tol, what=f"{twin} {dtype} from {P}")


def test_twin_exp_kernel_extreme_magnitudes():
    """Keys far above the running shift and far below it: the shift carried in the state keeps the
    step exact (factor exactly 1 on the larger side), as the array-API step."""
    rng = np.random.default_rng(3)
    q, k, v = rng.standard_normal((3, 2, 12, 6))
    k[:, 4] += 80.0
    k[:, 7] -= 80.0
    _, state = lsattn.exp_kernel_attention(q[:, :3], k[:, :3], v[:, :3], return_state=True, backend="array_api")
    twin = twin_stepper("exp_kernel_attention", state, None)
    got = np.concatenate([twin(q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1]) for t in range(3, 12)], axis=-2)
    check("exp_kernel_attention", got, [q, k, v], {}, "float64", 3, "twin vs reference")


def test_cupy_step_registered_and_declines_cpu_arrays():
    """The cupy backend lists a step for its two operators; NumPy states never pick it."""
    b = lsattn.backends.get("cupy")
    assert sorted(b.steps) == OPS
    _, state = lsattn.exp_kernel_attention(*np.ones((3, 1, 2, 2)), return_state=True)
    assert lsattn.stepper("exp_kernel_attention", state).backend != "cupy"
    with pytest.raises((RuntimeError, ValueError)):
        lsattn.stepper("exp_kernel_attention", state, backend="cupy")


class _HalfTwin(cstep.Twin):
    half_ok = True  # as the kernels of a float32 state: float16 inputs read as they are


@pytest.mark.parametrize("op", OPS)
def test_twin_half_inputs_reach_the_step_as_they_are(op):
    """float16 inputs into a float32 state (``native``): the Stepper passes them uncast (checked once),
    the output is float16, equal to the float32 step on the same values to float16's rounding, and
    the states are the same; mixed dtypes are cast as before."""
    args, _ = make(op, 4, (2, 3), 12, 5, 7, "moderate")
    args16 = [x.astype(np.float16) for x in args]
    _, state = getattr(lsattn, op)(*[x.astype(np.float32) for x in tokens(args16, 2, 0, 6)], return_state=True,
                                   backend="array_api")
    s16 = twin_stepper(op, state, 12, _HalfTwin)
    s32 = twin_stepper(op, state, 12)
    for t in range(6, 11):
        tok = tokens(args16, 2, t, t + 1)
        o16 = s16(*tok)
        o32 = s32(*[x.astype(np.float32) for x in tok])
        assert o16.dtype == np.float16 and o32.dtype == np.float32
        np.testing.assert_array_equal(o16, o32.astype(np.float16))
    assert s16._native_dtypes == {np.dtype(np.float16)}
    for name, x in s16.state.tensors.items():
        np.testing.assert_array_equal(x, s32.state.tensors[name])
    mixed = tokens(args16, 2, 11, 12)
    mixed[0] = mixed[0].astype(np.float32)
    assert s16(*mixed).dtype == np.float32  # cast to the state's dtype, output in the result type
