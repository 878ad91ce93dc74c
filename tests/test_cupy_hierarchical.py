"""loglinear_log_attention on the CuPy backend (``hierarchical.cu`` + ``hierarchical.py``) against
lsattn.reference, with the bounds of tests/test_hierarchical.py (``check``: max |log y - ref| <=
tol (1 + max |ref|), tol = TOL[dtype] + 2 eps (max |q| + max |k|)).

* CPU (runs in CI): the backend's host logic (``compute``: chunk layout, work buffers, the
  incoming slots; ``new_state``) driving the kernels' CUDA source compiled for the CPU
  (``cuda_emu_hier.cpp``: a fiber per CUDA thread, a barrier per block), which checks the
  kernels' index arithmetic, shared tiles and barriers without a GPU.
* GPU (``@pytest.mark.gpu``; skipped cleanly without CuPy or a CUDA device): the public operator
  without ``backend=`` on CuPy arrays and CUDA torch tensors, streams moving between backends,
  16-bit inputs.
"""
from __future__ import annotations

import ctypes
import dataclasses
import shutil

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lsattn
from lsattn import reference as ref
from lsattn.backends.cupy import _compile, hierarchical as chi

from helpers import assert_close, cupy_source, emulation
from strategies import batch_shapes, decays_or_none, head_dims, seeds, seq_lens, split_points
from test_cupy_gated_delta import _gpu_ready, _torch_cuda
from test_hierarchical import check, make

weight_kinds = st.sampled_from(["zero", "random", "off"])
chunks = st.sampled_from([16, 32, 64])


def hier_source():
    """The forward's kernels as one source (``hierarchical.cu``, then ``hierarchical_intra.cu`` and its reads
    ``hierarchical_read.cu``: ``_compile._SOURCES``' order)."""
    return "\n".join(cupy_source(f) for f in _compile._SOURCES["hierarchical"])


class Emu:
    """``ops`` whose hi_intra / hi_merge / hi_snap / hi_read run the kernels' CUDA source on the CPU
    (``cuda_emu_hier.cpp``), built with g++ once per session and (compute type, CH, DKP)."""

    xp = np

    def _lib(self, cfg):
        return emulation("cuda_emu_hier.cpp", {"TA": cfg.ta, "CH": cfg.CH, "DKP": cfg.DKP},
                         {"KERNEL": hier_source()})

    @staticmethod
    def _ptrs(cfg, arrays):
        want = np.float64 if cfg.ta == "double" else np.float32
        for x in arrays:
            assert x is None or (x.dtype == want and x.flags.c_contiguous)
        return [None if x is None else x.ctypes.data_as(ctypes.c_void_p) for x in arrays]

    @staticmethod
    def _s(cfg, x):
        return ctypes.c_double(x) if cfg.ta == "double" else ctypes.c_float(x)

    def _smem(self, cfg, kernel):  # the FFMA kernels' (float32's config asks for the tensor-core ones)
        return ctypes.c_uint(dataclasses.replace(cfg, tc=False).smem(kernel))

    def hi_intra(self, cfg, q, k, lv, lam, a, lden, lnum, wm, wz, wn, wS, gch, T, DK, DV, L, p, F, n, n_old, alo, BH):
        ints = [ctypes.c_int(x) for x in (T, DK, DV, L)] + [ctypes.c_longlong(p), ctypes.c_longlong(F)]
        self._lib(cfg).run_intra(*self._ptrs(cfg, (q, k, lv, lam, a, lden, lnum, wm, wz, wn, wS, gch)), *ints,
                                 self._s(cfg, alo), ctypes.c_int(n_old), ctypes.c_int(wm.shape[1]), ctypes.c_int(n),
                                 ctypes.c_int(BH), self._smem(cfg, "hi_intra"))

    def hi_merge(self, cfg, wm, wz, wn, wS, gch, gnode, DK, DV, F, n, n_old, c0, d, count, BH):
        ints = [ctypes.c_int(x) for x in (DK, DV)] + [ctypes.c_longlong(F)] + [ctypes.c_int(x) for x in (n, n_old)]
        ints += [ctypes.c_longlong(c0)] + [ctypes.c_int(x) for x in (d, count, BH, wm.shape[1])]
        self._lib(cfg).run_merge(*self._ptrs(cfg, (wm, wz, wn, wS, gch, gnode)), *ints, self._smem(cfg, "hi_merge"))

    def hi_snap(self, cfg, wm, gnode, msnap, DK, p, F, n, n_old, NLC, BH):
        ints = [ctypes.c_int(DK), ctypes.c_longlong(p), ctypes.c_longlong(F)]
        ints += [ctypes.c_int(x) for x in (n, n_old, NLC, wm.shape[1], BH)]
        self._lib(cfg).run_snap(*self._ptrs(cfg, (wm, gnode, msnap)), *ints, self._smem(cfg, "hi_snap"))

    def hi_read(self, cfg, q, lam, a, lden, lnum, msnap, wz, wn, wS, out, T, DK, DV, L, p, F, n, n_old, NLC, alo, BH,
                ltot=None, wide=False, narrow=None):
        ints = [ctypes.c_int(x) for x in (T, DK, DV, L)] + [ctypes.c_longlong(p), ctypes.c_longlong(F)]
        ints += [ctypes.c_int(x) for x in (n, n_old, NLC)]
        # wide: out through the kernel's outf, its out pointer narrow's (null unless given: a store would fault)
        self._lib(cfg).run_read(*self._ptrs(cfg, (q, lam, a, lden, lnum, msnap, wz, wn, wS, narrow if wide else out)),
                                *ints, self._s(cfg, alo), ctypes.c_int(BH), ctypes.c_int(wz.shape[1]),
                                self._smem(cfg, "hi_read"), *self._ptrs(cfg, (ltot, out if wide else None)))


class EmuTC(Emu):
    """``Emu`` with the bf16 inputs' tensor-core variant (``HI_TC``): hi_read's E S and hi_intra's pair
    weights and W V as split products (float32 operands split into bf16 halves, mma.sync emulated per
    warp, ``cuda_emu_mma.h``), hi_intra's exact rows below DEN_FLOOR; the bf16 variant's shared memory."""

    def _lib(self, cfg):
        assert cfg.ta == "float"
        return emulation("cuda_emu_hier.cpp", {"TA": cfg.ta, "CH": cfg.CH, "DKP": cfg.DKP, "HI_TC": 1},
                         {"KERNEL": hier_source()})

    def _smem(self, cfg, kernel):
        return ctypes.c_uint(dataclasses.replace(cfg, half="bf16").smem(kernel))


class EmuTF32(EmuTC):
    """``EmuTC`` with the float32 / float16 inputs' variant (``HI_TF32``: the products with tf32 halves, 3xTF32,
    two m16n8k8 triples per 16 reduction indices, emulated per warp)."""

    def _lib(self, cfg):
        assert cfg.ta == "float"
        return emulation("cuda_emu_hier.cpp", {"TA": cfg.ta, "CH": cfg.CH, "DKP": cfg.DKP, "HI_TC": 1, "HI_TF32": 1},
                         {"KERNEL": hier_source()})

    def _smem(self, cfg, kernel):  # float32's (tf32 planes)
        return ctypes.c_uint(dataclasses.replace(cfg, tc=True).smem(kernel))


@pytest.fixture(scope="module")
def emu():
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    return Emu()


@pytest.fixture(scope="module")
def emu_tc(emu):
    return EmuTC()


@pytest.fixture(scope="module")
def emu_tf32(emu):
    return EmuTF32()


def _sl(arrays, lo, hi):
    return [None if x is None else (x[..., lo:hi] if x.ndim == arrays[0].ndim - 1 else x[..., lo:hi, :]) for x in arrays]


def emu_stream(emu, arrays, cuts, C, dtype):
    """The emulated kernels through the host logic over a stream cut at ``cuts``: (outputs, state)."""
    T = arrays[0].shape[-2]
    bounds = [0] + list(cuts) + [T]
    outs, state = [], None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        q, k, lv, lam, a = (None if x is None else np.ascontiguousarray(x, dtype=dtype) for x in _sl(arrays, lo, hi))
        old = None if lo == 0 else tuple(state.tensors[x] for x in ("m", "n", "S", "z"))
        outs.append(chi.compute(emu, q, k, lv, lam, a, lo, old, C))
        state = chi.new_state(np, k, lv, a, old, lo)
    return np.concatenate(outs, axis=-2), state


def _with_neg_inf(arrays, rng, values=True):
    """-inf at random tokens: log values (a zero value), decays (a hard reset), keys (a feature off;
    with d_k >= 2, so no key has weight 0 and every output stays defined), then the prologue's clamp
    of q, k (``-inf`` -> the finite stand-in)."""
    q, k, lv, lam, a = (None if x is None else x.copy() for x in arrays)
    T = q.shape[-2]
    if T:
        for _ in range(rng.integers(1, 4)):
            t = rng.integers(T)
            if values:
                lv[..., t, rng.integers(lv.shape[-1])] = -np.inf
            if k.shape[-1] > 1:  # (not a key's last finite feature: s30, T = 1 with every feature off drew 0 / 0)
                i = rng.integers(k.shape[-1])
                if np.isfinite(np.delete(k[..., t, :], i, axis=-1)).any(axis=-1).all():
                    k[..., t, i] = -np.inf
            if a is not None:
                a[..., t] = -np.inf
    return q, np.maximum(k, -np.finfo(np.float32).max / 8), lv, lam, a


# ---- CPU: the kernels' source, emulated, through the host logic ------------------------------------

@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=st.sampled_from([1, 3, 17]), C=chunks, decay=decays_or_none,
       weights=weight_kinds, dtype=st.sampled_from(["float64", "float32"]), scale=st.sampled_from([1.0, 30.0, 1e3]),
       neg_inf=st.booleans(), seed=seeds)
@settings(max_examples=max(6, settings.default.max_examples // 2))  # the CPU emulation: CI time
def test_kernels_emulated_match_reference(emu, batch, T, dk, dv, C, decay, weights, dtype, scale, neg_inf, seed):
    """One call (T = 1, odd T, T not a multiple of C, several batch axes), magnitudes up to 1e3 in
    float32, -inf at random tokens. Zero values (log_v = -inf) only at magnitude 1 in float32: a zero
    value at a key whose weight exceeds every other visible key's by more than float32's range (e^87,
    easy with |q|, |k| ~ 30) leaves the output to terms that underflow in the float32 slot summaries
    (the array-API path's regime, docs/hierarchical.md)."""
    if dtype == "float64":
        scale = min(scale, 30.0)
    arrays = make(seed, batch, T, dk, dv, scale=scale, decay=decay, weights=weights)
    if neg_inf:
        arrays = _with_neg_inf(arrays, np.random.default_rng(seed), values=dtype == "float64" or scale == 1.0)
    out, _ = emu_stream(emu, arrays, [], C, dtype)
    assert out.shape == batch + (T, dv) and out.dtype == dtype
    check(out, [None if x is None else x.astype(dtype).astype(np.float64) for x in arrays], dtype, what=f"T={T} C={C}")


@given(batch=batch_shapes, T=st.integers(1, 150), dk=head_dims, dv=st.sampled_from([1, 3, 8, 17, 70]), C=chunks,
       decay=decays_or_none, weights=weight_kinds, scale=st.sampled_from([1.0, 30.0]), seed=seeds, data=st.data())
@settings(max_examples=max(4, settings.default.max_examples // 4))  # the CPU emulation: CI time
def test_kernels_on_tensor_cores_emulated(emu_tc, batch, T, dk, dv, C, decay, weights, scale, seed, data):
    """The tensor-core products (bf16 inputs on the GPU: hi_read's E S, hi_intra's pair weights and
    W V, operands as hi + lo bf16 halves, three mma per step, fp32 accumulation; every product to
    ~2^-16; hi_read's slot tiles copied asynchronously, 16 bytes at a time when 4 divides d_v) on float32
    operands, over a stream cut anywhere (incoming slots read too), d_v across two column blocks: the
    float32 bound of ``check`` plus 1e-4 (the split products' rounding, relative to 1 + max |ref|)."""
    arrays = make(seed, batch, T, dk, dv, scale=scale, decay=decay, weights=weights)
    cuts = data.draw(split_points(T, max_splits=2))
    out, _ = emu_stream(emu_tc, arrays, cuts, C, "float32")
    arrays = [None if x is None else x.astype(np.float32).astype(np.float64) for x in arrays]
    tol = 1e-4 + 1e-5 + 2 * np.finfo(np.float32).eps * (np.abs(arrays[0]).max() + np.abs(arrays[1]).max())
    assert_close(out, ref.loglinear_log_attention(*arrays[:4], log_decay=arrays[4]), tol, atol=tol,
                 what=f"T={T} C={C} cuts={cuts}")


@given(batch=batch_shapes, T=st.integers(1, 150), dk=head_dims, dv=st.sampled_from([1, 3, 8, 17, 70]), C=chunks,
       decay=decays_or_none, weights=weight_kinds, scale=st.sampled_from([1.0, 30.0, 1e3]), neg_inf=st.booleans(),
       seed=seeds, data=st.data())
@settings(max_examples=max(4, settings.default.max_examples // 4))  # the CPU emulation: CI time
def test_kernels_tf32_emulated_match_reference(emu_tf32, batch, T, dk, dv, C, decay, weights, scale, neg_inf, seed, data):
    """The float32 (and float16) inputs' kernels (``HI_TF32``: the products of
    ``test_kernels_on_tensor_cores_emulated`` with tf32 halves, ~2^-21 relative) at the float32 bound of
    ``check`` itself: magnitudes up to 1e3, -inf at random tokens (zero values at magnitude 1, as
    ``test_kernels_emulated_match_reference``), a stream cut anywhere (incoming slots), d_v across two
    column blocks."""
    arrays = make(seed, batch, T, dk, dv, scale=scale, decay=decay, weights=weights)
    if neg_inf:
        arrays = _with_neg_inf(arrays, np.random.default_rng(seed), values=scale == 1.0)
    cuts = data.draw(split_points(T, max_splits=2))
    out, _ = emu_stream(emu_tf32, arrays, cuts, C, "float32")
    check(out, [None if x is None else x.astype(np.float32).astype(np.float64) for x in arrays], "float32",
          what=f"T={T} C={C} cuts={cuts}")


def _exact_row_inputs(batch, C, dk, dv):
    """3 C + 5 tokens on which hi_intra's tensor-core sums fall below DEN_FLOOR: a value 150 above the others
    at token C - 2 of every chunk (column 1), a key 100 below the others at token 3 with every level but
    the diagonal 120 lower."""
    q, k, lv, lam, a = make(5, batch, 3 * C + 5, dk, dv, decay="moderate", weights="random")
    lv[..., C - 2::C, 1] = 150.0
    k[..., 3::C, :] -= 100.0
    lam[..., 1:] -= 120.0
    return [q, k, lv, lam, a]


@pytest.mark.parametrize("C", [16, 32, 64])
def test_intra_exact_rows_tf32_emulated(emu_tf32, C):
    """``test_intra_exact_rows_on_tensor_cores_emulated`` on the 3xTF32 variant, at the float32 bound of ``check``."""
    arrays = _exact_row_inputs((2,), C, 8, 3)
    out, _ = emu_stream(emu_tf32, arrays, [], C, "float32")
    check(out, [x.astype(np.float32).astype(np.float64) for x in arrays], "float32", what=f"C={C}")


@pytest.mark.parametrize("C", [16, 32, 64])
def test_intra_exact_rows_on_tensor_cores_emulated(emu_tc, C):
    """hi_intra's rows whose tensor-core sums fall below DEN_FLOOR take the exact path: a value 150 above
    the others late in every chunk (the earlier rows' W V underflows in that column), and a key 100 below
    the others at row 3 of every chunk with every level but the diagonal 120 lower (its row sum
    underflows); without the exact rows those log outputs would be -inf. Against the reference at the
    bound of ``test_kernels_on_tensor_cores_emulated``."""
    arrays = _exact_row_inputs((2,), C, 8, 3)
    out, _ = emu_stream(emu_tc, arrays, [], C, "float32")
    arrays = [x.astype(np.float32).astype(np.float64) for x in arrays]
    tol = 1e-4 + 1e-5 + 2 * np.finfo(np.float32).eps * (np.abs(arrays[0]).max() + np.abs(arrays[1]).max())
    assert_close(out, ref.loglinear_log_attention(*arrays[:4], log_decay=arrays[4]), tol, atol=tol, what=f"C={C}")


@given(T=st.integers(1, 150), C=chunks, decay=decays_or_none, weights=weight_kinds, seed=seeds, data=st.data())
@settings(max_examples=max(4, settings.default.max_examples // 3))
def test_kernels_emulated_stream_and_state(emu, T, C, decay, weights, seed, data):
    """Streams cut anywhere (single tokens included) equal one call; the final state equals the
    array-API state (same tensors: streams move between backends)."""
    arrays = make(seed, (2,), T, 3, 2, decay=decay, weights=weights)
    cuts = data.draw(split_points(T, max_splits=5))
    out, state = emu_stream(emu, arrays, cuts, C, "float64")
    check(out, arrays, "float64", what=f"cuts={cuts}")
    _, st_api = lsattn.loglinear_log_attention(*arrays[:4], log_decay=arrays[4], return_state=True, backend="array_api")
    for name in ("m", "n", "S", "z"):
        assert_close(state.tensors[name], st_api.tensors[name], 1e-12, what=name)


@given(p=st.integers(1, 600), T=st.integers(1, 80), C=chunks, seed=seeds)
@settings(max_examples=max(4, settings.default.max_examples // 3))
def test_kernels_emulated_continue_array_api_states(emu, p, T, C, seed):
    """A state from the array-API backend at offset p (many incoming slots, chunks not aligned to
    p) continued by the emulated kernels equals one call over p + T tokens."""
    arrays = make(seed, (2,), p + T, 4, 3, decay="mixed", weights="off")
    _, state = lsattn.loglinear_log_attention(*_sl(arrays, 0, p)[:4], log_decay=arrays[4][..., :p], return_state=True,
                                              backend="array_api")
    old = tuple(state.tensors[x] for x in ("m", "n", "S", "z"))
    q, k, lv, lam, a = (np.ascontiguousarray(x) for x in _sl(arrays, p, p + T))
    out = chi.compute(emu, q, k, lv, lam, a, p, old, C)
    tol = 1e-12 + 4e-16 * (np.abs(arrays[0]).max() + np.abs(arrays[1]).max())
    assert_close(out, ref.loglinear_log_attention(*arrays[:4], log_decay=arrays[4])[..., p:, :], tol, atol=tol,
                 what=f"p={p} T={T}")


def test_kernels_emulated_two_column_blocks(emu):
    """d_v = 70: hi_read's two blocks of 64 value columns (the second partial), continued at an offset."""
    arrays = make(12, (1,), 60, 3, 70, decay="mixed", weights="random")
    out, _ = emu_stream(emu, arrays, [13], 16, "float64")
    check(out, arrays, "float64", what="d_v=70")


def test_kernels_emulated_row_log_den(emu):
    """hi_read's ``ltot`` (packed streams' partials, ``forward(partial=True)``): with d_v = 70 (two
    column blocks, the first writes it), decays and level weights switched off at random, the partial
    ``(ltot, 1, log y)`` stands for the array-API twin's ``(r, den, y)``: ``ltot = r + log den`` and
    ``log y = y - log den`` (float64 bound of test_kernels_emulated_continue_array_api_states)."""
    from lsattn.hierarchical import _forward

    arrays = make(13, (2,), 90, 4, 70, decay="mixed", weights="random")
    q, k, lv, lam, a = (np.ascontiguousarray(x) for x in arrays)
    ltot = np.full(q.shape[:-1], np.nan)
    out = chi.compute(emu, q, k, lv, lam, a, 0, None, 16, "", ltot)
    (r, den, y), _ = _forward(q, k, lv, lam, a, None, False, chunk_size=16, partial=True)
    tol = 1e-12 + 4e-16 * (np.abs(q).max() + np.abs(k).max())
    assert_close(ltot, r + np.log(den), tol, atol=tol, what="log den")
    assert_close(out, y - np.log(den)[..., None], tol, atol=tol, what="log y")


@pytest.mark.parametrize("which", ["ffma", "tc"])
def test_kernels_emulated_wide_output(emu, emu_tc, which):
    """hi_read's ``outf`` (16-bit inputs under autograd: log y in the compute type): with d_v = 70 (two
    column blocks), an incoming state and -inf at random tokens, the output written through it equals the
    one written through ``out``, bit for bit (the same values, stored elsewhere); so does the one written
    through ``out`` beside it (``narrow``: the 16-bit caller's output, here in the compute type)."""
    ops = emu if which == "ffma" else emu_tc
    beside = []

    class Wide:
        xp = np

        def __getattr__(self, name):
            return getattr(ops, name)

        def hi_read(self, *args, **kw):
            narrow = np.full_like(args[10], np.nan) if beside == [] else None  # (the second call: outf alone)
            beside.append(narrow)
            return ops.hi_read(*args, **dict(kw, wide=True, narrow=narrow))

    p = 21
    arrays = _with_neg_inf(make(14, (2,), p + 75, 4, 70, decay="mixed", weights="off"), np.random.default_rng(14))
    arrays = [np.ascontiguousarray(x, dtype=np.float32) for x in arrays]
    _, state = lsattn.loglinear_log_attention(*_sl(arrays, 0, p)[:4], log_decay=arrays[4][..., :p], return_state=True,
                                              backend="array_api")
    old = tuple(np.ascontiguousarray(state.tensors[x], dtype=np.float32) for x in ("m", "n", "S", "z"))
    cur = [np.ascontiguousarray(x) for x in _sl(arrays, p, p + 75)]
    want = chi.compute(ops, *cur, p, old, 16)
    for _ in range(2):
        got = chi.compute(Wide(), *cur, p, old, 16)
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(beside[0].reshape(want.shape), want)


def test_kernels_emulated_deep_chunk_tree(emu):
    """35 chunks of 16 continued at an unaligned offset (incoming slots, a partial first chunk): the
    chunk tree's merges five levels deep (hi_merge's launches per depth) equal the reference."""
    p, dtype = 21, "float64"
    arrays = make(11, (1,), p + 540, 3, 5, decay="mixed", weights="random")
    out, _ = emu_stream(emu, arrays, [p], 16, dtype)
    check(out, arrays, dtype, what=f"p={p}")


def test_registered_on_cupy():
    import lsattn.backends.cupy as cb

    assert cb.OPS["loglinear_log_attention"] == "lsattn.backends.cupy.hierarchical:forward"
    assert "loglinear_log_attention" in cb.HALF_OPS  # 16-bit inputs are read as they are
    assert "loglinear_log_attention" in cb.GRAD_OPS  # autograd: hierarchical_bwd.cu


# ---- GPU ------------------------------------------------------------------------------------------

@pytest.mark.gpu
@given(batch=batch_shapes, T=st.one_of(st.just(0), seq_lens, st.integers(100, 300)), dk=st.sampled_from([1, 5, 64, 128]),
       dv=st.sampled_from([1, 7, 16, 64, 130]), decay=decays_or_none, weights=weight_kinds,
       dtype=st.sampled_from(["float32", "float64"]), scale=st.sampled_from([1.0, 1e3]), neg_inf=st.booleans(),
       seed=seeds)
@settings(max_examples=12, deadline=None)
def test_gpu_matches_reference(batch, T, dk, dv, decay, weights, dtype, scale, neg_inf, seed):
    """CuPy arrays, no backend=: the automatic choice is this backend's kernels."""
    _gpu_ready()
    import array_api_compat
    import cupy

    if dtype == "float64":
        scale = 1.0
    arrays = make(seed, batch, T, dk, dv, scale=scale, decay=decay, weights=weights)
    if neg_inf:
        arrays = _with_neg_inf(arrays, np.random.default_rng(seed), values=scale == 1.0)
    arrays = [None if x is None else x.astype(dtype) for x in arrays]
    assert lsattn.backends.resolve("loglinear_log_attention", array_api_compat.array_namespace(cupy.zeros(1)),
                                   cupy.zeros((2, dk))).name == "cupy"
    dev = [None if x is None else cupy.asarray(x) for x in arrays]
    out = lsattn.loglinear_log_attention(*dev[:4], log_decay=dev[4])
    assert isinstance(out, cupy.ndarray) and str(out.dtype) == dtype and out.shape == batch + (T, dv)
    if T:
        check(out.get(), [None if x is None else x.astype(np.float64) for x in arrays], dtype, what=f"T={T} {dtype}")


@pytest.mark.gpu
@given(T=st.integers(2, 300), dtype=st.sampled_from(["float32", "float64"]), seed=seeds, data=st.data())
@settings(max_examples=6, deadline=None)
def test_gpu_stream_moves_between_backends(T, dtype, seed, data):
    """CUDA torch tensors streamed with random cuts (single tokens included); the state moves
    cupy -> array_api -> cupy mid-stream; outputs and final state as one call."""
    _gpu_ready()
    torch = _torch_cuda()
    arrays = [x.astype(dtype) for x in make(seed, (2, 3), T, 16, 8, decay="mixed", weights="off")]
    dev = [torch.as_tensor(x, device="cuda") for x in arrays]
    cuts = data.draw(split_points(T, max_splits=6))
    bounds = [0] + cuts + [T]
    outs, state = [], None
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        backend = "array_api" if i % 3 == 1 else None
        piece = _sl(dev, lo, hi)
        o, state = lsattn.loglinear_log_attention(*piece[:4], log_decay=piece[4], state=state, return_state=True,
                                                  backend=backend)
        assert isinstance(o, torch.Tensor) and o.is_cuda
        outs.append(o.cpu().numpy())
    check(np.concatenate(outs, axis=-2), [x.astype(np.float64) for x in arrays], dtype, what=f"cuts={cuts}")
    _, st_api = lsattn.loglinear_log_attention(*arrays[:4], log_decay=arrays[4], return_state=True, backend="array_api")
    tol = 1e-10 if dtype == "float64" else 1e-4
    for name in ("m", "n", "S", "z"):
        assert_close(state.tensors[name].cpu().numpy(), st_api.tensors[name], tol, what=name)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("T", [1, 63, 64, 1000])
def test_gpu_16bit_in_16bit_out(T, dtype):
    """16-bit tensors read as they are, computed in float32, returned in their dtype, within 2e-2
    (log space, relative to 1 + max |ref|) of the reference on the rounded inputs."""
    _gpu_ready()
    torch = _torch_cuda()
    half = getattr(torch, dtype)
    tb = [torch.as_tensor(x, device="cuda").to(half) for x in make(7, (2, 2), T, 64, 64, decay="moderate")]
    out = lsattn.loglinear_log_attention(*tb[:4], log_decay=tb[4])
    assert out.dtype == half and out.is_cuda
    want = ref.loglinear_log_attention(*[t.double().cpu().numpy() for t in tb[:4]], log_decay=tb[4].double().cpu().numpy())
    assert_close(out.double().cpu().numpy(), want, 2e-2, atol=2e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("C", [16, 32, 64])
def test_gpu_bf16_tensor_core_read_every_chunk(C):
    """bfloat16 through the backend at every chunk (hi_read's tensor-core tile has 8, 4 or 2 warps per
    16-row tile at C = 16, 32, 64; the public call takes 64 from 8K tokens on), d_v = 70 (two column
    blocks), within the 16-bit bound of ``test_gpu_16bit_in_16bit_out``; and against the float32 (FFMA)
    kernels (3xTF32) on the same rounded inputs to the output's bfloat16 rounding (2^-8 relative) plus 1e-4:
    the split products are nearly float32-exact."""
    _bf16_against_reference_and_float32(make(11, (2, 2), 700, 64, 70, decay="moderate"), C)


def _bf16_against_reference_and_float32(arrays, C):
    """The arrays rounded to bfloat16 through the backend at chunk C: within 2e-2 of the reference (on the
    rounded inputs) and within 2^-8 relative + 1e-4 of the float32 kernels on the same rounded inputs."""
    _gpu_ready()
    torch = _torch_cuda()
    tb = [torch.as_tensor(x, device="cuda").to(torch.bfloat16) for x in arrays]
    out, _ = chi.forward(*tb[:4], tb[4], None, False, chunk_size=C)
    want = ref.loglinear_log_attention(*[t.double().cpu().numpy() for t in tb[:4]], log_decay=tb[4].double().cpu().numpy())
    assert_close(out.double().cpu().numpy(), want, 2e-2, atol=2e-2)
    out32, _ = chi.forward(*[t.float() for t in tb[:4]], tb[4].float(), None, False, chunk_size=C)
    err = (out.float() - out32).abs()
    assert bool(torch.all(err <= 2.0 ** -8 * out32.abs() + 1e-4)), float(err.max())


@pytest.mark.gpu
@pytest.mark.parametrize("scale", [1.0, 1e3])
@pytest.mark.parametrize("C", [16, 32, 64])
def test_gpu_float32_tensor_cores_every_chunk(C, scale):
    """float32 on the 3xTF32 kernels at every chunk (the public call takes 64 from 8K tokens on), d_k = 64, d_v = 70
    (two column blocks), magnitudes to 1e3, -inf at random tokens, a stream cut at 300 (incoming slots read):
    the float32 bound of ``check``; then the exact-row inputs of ``test_gpu_bf16_intra_exact_rows`` at that bound."""
    _gpu_ready()
    import cupy

    arrays = make(13, (2, 2), 700, 64, 70, scale=scale, decay="moderate", weights="off")
    arrays = [x.astype(np.float32) for x in _with_neg_inf(arrays, np.random.default_rng(13), values=scale == 1.0)]
    dev = [cupy.asarray(x) for x in arrays]
    o1, state = chi.forward(*_sl(dev, 0, 300), state=None, return_state=True, chunk_size=C)
    o2, _ = chi.forward(*_sl(dev, 300, 700), state=state, return_state=False, chunk_size=C)
    check(cupy.concatenate([o1, o2], axis=-2).get(), [x.astype(np.float64) for x in arrays], "float32", what=f"C={C}")
    arrays = [x.astype(np.float32) for x in _exact_row_inputs((2, 2), C, 64, 64)]
    out, _ = chi.forward(*[cupy.asarray(x) for x in arrays], state=None, return_state=False, chunk_size=C)
    check(out.get(), [x.astype(np.float64) for x in arrays], "float32", what=f"exact rows C={C}")


@pytest.mark.gpu
@pytest.mark.parametrize("C", [16, 32, 64])
def test_gpu_bf16_intra_exact_rows(C):
    """bfloat16 hi_intra's exact rows on the GPU (the inputs of ``test_intra_exact_rows_on_tensor_cores_emulated``:
    tensor-core sums below DEN_FLOOR), d_k = d_v = 64: within the 16-bit bound of the reference and, on the
    same rounded inputs, of the float32 kernels as in ``test_gpu_bf16_tensor_core_read_every_chunk``."""
    _bf16_against_reference_and_float32(_exact_row_inputs((2, 2), C, 64, 64), C)

