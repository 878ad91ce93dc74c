"""loglinear_gated_delta on the CuPy backend (``gated_delta.cu`` + ``gated_delta.py``) against
lsattn.reference.

* CPU (runs in CI): the backend's host logic (``compute``: chunk layout, slot counts, the state
  assembly) driven by ``Twin``, a NumPy transcription of the ``gd_scan`` kernel (same loops over
  column blocks, chunks and slots, same index arithmetic) whose ``gd_forms`` is the array-API
  formulation (``_chunk_forms``, ``_masked_intra``), against the float64 reference; and driven by
  the kernels' CUDA sources themselves compiled for the CPU (``cuda_emu_gd_scan.cpp``,
  ``cuda_emu_gd_forms.cpp``: a fiber per CUDA thread, a barrier per block, mma.sync emulated
  per warp for gd_scan's float32 tensor-core passes), which checks the kernels' thread mapping,
  fragments, shared tiles and barriers without a GPU.
* GPU (``@pytest.mark.gpu``; skipped cleanly without CuPy or a CUDA device): the public operator
  without ``backend=`` on CuPy arrays and CUDA torch tensors, streams moving between backends,
  strong decays and hard resets, float32 and bfloat16 bounds.

Tolerances (max |out - ref| <= tol * max |ref|), those of tests/test_gated_delta.py: float64
1e-10 (normalised keys with beta in [0, 1], and unnormalised keys of std up to 1); float32 1e-5
(normalised keys, unnormalised keys of std up to 0.5); bfloat16 inputs (computed in float32,
returned as bfloat16) 2e-2 against the reference on the bf16-rounded inputs (float16: 2e-3), and
the float32 state they return within float32's bound; float32's bound also covers gd_scan's
tensor-core passes (3xTF32). bfloat16 inputs' gd_scan runs 1xTF32 (``GD_X1``: ~2^-11 relative per
product, under their output's rounding to 8 bits): their float32 output before the rounding and
their state within TF32 = 1e-3 (measured 7e-5 / 4e-6 of max; the bf16 output bound 2e-2 is 20x wider). Their two-tier
path (from chunk 0 without state) stores its intermediates as bfloat16 (``gated_delta.S16``, the GD_S16 build: ~2^-9
relative per stored element): their float32 output within S16 = 1e-2 (the CPU emulation measured 3.3e-3 of max at
worst, zero decays: s21a16); the TF32 bound stays tested on the S16-off build.
"""
from __future__ import annotations

import copy
import ctypes
import shutil

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lsattn
from lsattn import reference as ref
from lsattn._chunktree import chunk_layout, to_chunks
from lsattn.gated_delta import _chunk_forms, _masked_intra
from lsattn.backends.cupy import gated_delta as cgd
from lsattn.backends.cupy._arrays import narrow, widen
from lsattn.backends.cupy._compile import GD_BW, GD_G, CupyOps, make_config
from lsattn.fenwick import _bit_length

from helpers import assert_close, cupy_source, emulation
from strategies import DECAYS, batch_shapes, head_dims, seeds, seq_lens, split_points

F64, F32, BF16, F16 = 1e-10, 1e-5, 2e-2, 2e-3
TF32 = 1e-3  # bfloat16 inputs' float32 output (before its rounding) and state: gd_scan's 1xTF32 products
S16 = 1e-2  # ... on the two-tier path's bfloat16 intermediates (gated_delta.S16; measured 3.3e-3 at worst, emulated)
BV = 16  # GD_BV of gated_delta.cu (gd_scan_bwd's column blocks)
BW = GD_BW  # gd_scan's column blocks


class Twin:
    """NumPy transcription of gd_scan (gated_delta.cu); the arguments of ``CupyOps.gd_scan``.
    The kernel's blocks (sequence, column block) are the batch axis and the loop over c0."""

    xp = np

    def gd_forms(self, cfg, q, k, v, a, beta, lam, qe, ek, ph, H, g, out, T, DK, DV, L, p, F, n, BH, lamw=None, bad=None,
                 xo=None):
        """The array-API formulation of what gd_forms writes (16-bit inputs: lamw, lam widened; xo: X = (I + N)^{-1}
        of each chunk, the GF_XO build's)."""
        if xo is not None:
            from lsattn.gated_delta import _unit_lower_inverse

            lay = chunk_layout(p, T, cfg.CH)
            xs = [widen(np, x, cfg.half) if cfg.half else x for x in (k, a, beta)]
            xo[...] = _unit_lower_inverse(np, to_chunks(np, xs[0], lay, -2), to_chunks(np, xs[1], lay, -1),
                                          to_chunks(np, xs[2], lay, -1))
        if lamw is not None:
            lamw[...] = widen(np, lam, cfg.half)
        if bad is not None and not (all(np.isfinite(x).all() for x in (q, k, v, beta, lam)) and (a < np.inf).all()):
            bad[0] = 1  # log decays: -inf passes
        lay = chunk_layout(p, T, cfg.CH)
        assert (lay.first_chunk, lay.n_chunks) == (F, n)
        Qc, Kc, Vc = (to_chunks(np, x, lay, -2) for x in (q, k, v))
        ch = _chunk_forms(np, Qc, Kc, Vc, to_chunks(np, a, lay, -1), to_chunks(np, beta, lay, -1), transition=False)
        for dst, name in ((qe, "qeff"), (ek, "eGK"), (ph, "phi"), (H, "H"), (g, "g")):
            dst[...] = ch[name]
        out[...] = _masked_intra(np, ch["attn"], Vc, to_chunks(np, lam, lay, -2))

    def gd_scan(self, cfg, qe, ek, ph, H, g, lam, out, lev, oldc, T, DK, DV, L, p, F, n, n_old, NLC, merge_last, BH,
                keep=True):
        CH = cfg.CH
        log2c = CH.bit_length() - 1
        assert lev.shape == (BH, NLC, DK, DV) and out.shape == (BH, n, CH, DV)
        cL = F + n - 1
        E = cL + int(merge_last)
        chains = [(s, 0, 0) for s in range(n_old)]
        chains += [(-1, m, k) for m in range(NLC, 0, -1) for k in range(F >> m, (cL >> m) + 1)]
        assert len(chains) == cgd.scan_chains(F, n, n_old, NLC)
        for c0 in range(0, DV, BW):
            cs = slice(c0, min(DV, c0 + BW))
            for s, m, k in chains:
                if s >= 0:
                    if not (p >> s) & 1:
                        continue
                    lo, mid, hi, live = F, F, cL + 1, True
                    S = oldc[:, s, :, cs].copy()
                else:
                    base = k << m
                    mid, lo, hi = base + (1 << (m - 1)), max(F, base), min(cL + 1, base + (1 << m))
                    if lo >= mid or (hi <= mid and not (keep and E == mid)):
                        continue
                    S, live = np.zeros((BH, DK, cs.stop - c0), dtype=out.dtype), False
                for c in range(lo, hi):
                    j, rd = c - F, c >= mid
                    if not live:  # the bucket's first chunk
                        S, live = H[:, j, :, cs].copy(), True
                        continue
                    W = ek[:, j] @ S
                    if rd:
                        tabs = c * CH + np.arange(CH)
                        gi = tabs - p
                        ok = (gi >= 0) & (gi < T)
                        level = np.maximum(s + 1, _bit_length(np, p ^ tabs)) if s >= 0 else np.full(CH, log2c + m)
                        w = np.zeros((BH, CH), dtype=out.dtype)
                        w[:, ok] = lam[:, gi[ok], level[ok]]  # an IndexError: a level beyond L
                        out[:, j, :, cs] += w[..., None] * (qe[:, j] @ S)
                    S = np.exp(g[:, j])[:, None, None] * S - ph[:, j] @ W + (0 if rd else H[:, j, :, cs])
                if keep and s >= 0:
                    oldc[:, s, :, cs] = S
                elif keep and hi == cL + 1 and (E >> (m - 1)) & 1:
                    lev[:, m - 1, :, cs] = S


def make(seed, batch, T, dk, dv, *, keys="normalised", key_scale=0.5, decay="moderate", resets=False, offset=0,
         extra=0):
    """float64 inputs q, k, v, log_decay, beta, level_weights (levels for offset + T, plus extra)."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(batch + (T, dk))
    k = rng.standard_normal(batch + (T, dk))
    k = k / np.linalg.norm(k, axis=-1, keepdims=True) if keys == "normalised" else k * key_scale
    v = rng.standard_normal(batch + (T, dv))
    a = DECAYS[decay](rng, batch + (T,))
    if resets and T:  # decays of -1e3 .. -1e6 and hard resets (-inf) anywhere
        for _ in range(rng.integers(1, 4)):
            a[..., rng.integers(T)] = rng.choice([-1e3, -1e6, -np.inf])
    beta = rng.random(batch + (T,))
    lam = rng.standard_normal(batch + (T, lsattn.num_levels(offset + T) + extra))
    return q, k, v, a, beta, lam

def kernel_inputs(arrays, dtype):
    """(what the kernels read, the reference's float64 inputs, gd_scan's half argument) for dtype: bfloat16 as
    16-bit patterns with the reference on the rounded inputs, other dtypes as they are."""
    if dtype != "bfloat16":
        bits = [x.astype(dtype) for x in arrays]
        return bits, [x.astype(np.float64) for x in bits], ""
    bits = [narrow(np, x.astype(np.float32), "bf16").view(np.uint16) for x in arrays]
    return bits, [widen(np, b, "bf16").astype(np.float64) for b in bits], "bf16"


def _sl(arrays, lo, hi):
    return [x[..., lo:hi] if x.ndim == arrays[3].ndim else x[..., lo:hi, :] for x in arrays]


def twin_stream(arrays, cuts, C):
    """The twin-driven host logic over a stream cut at ``cuts``: (outputs, final levels)."""
    T = arrays[0].shape[-2]
    bounds = [0] + list(cuts) + [T]
    outs, old = [], None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        o, old = cgd.compute(Twin(), *_sl(arrays, lo, hi), C, lo, old if lo > 0 else None, True)
        outs.append(o)
    return np.concatenate(outs, axis=-2), old


key_kinds = st.sampled_from([("normalised", 0.5), ("raw", 0.3), ("raw", 1.0)])
chunks = st.sampled_from([16, 32, 64])


# ---- CPU: the host logic with the twin -------------------------------------------------------------

@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=st.sampled_from([1, 3, 17, 33]), C=chunks, keys=key_kinds,
       decay=st.sampled_from(list(DECAYS)), resets=st.booleans(), extra=st.integers(0, 2), seed=seeds)
@settings(max_examples=25)
def test_twin_matches_reference(batch, T, dk, dv, C, keys, decay, resets, extra, seed):
    arrays = make(seed, batch, T, dk, dv, keys=keys[0], key_scale=keys[1], decay=decay, resets=resets, extra=extra)
    out, _ = cgd.compute(Twin(), *arrays, C, 0, None, False)
    assert out.shape == batch + (T, dv)
    assert_close(out, ref.loglinear_gated_delta(*arrays), F64, what=f"T={T} C={C}")


@given(T=st.integers(1, 300), C=chunks, keys=key_kinds, resets=st.booleans(), seed=seeds, data=st.data())
@settings(max_examples=12)
def test_twin_stream_and_state(T, C, keys, resets, seed, data):
    """Streams cut anywhere (single tokens included) equal one call; the final state equals the
    array-API state (same tensors: streams move between backends)."""
    arrays = make(seed, (2,), T, 3, 2, keys=keys[0], key_scale=keys[1], resets=resets)
    cuts = data.draw(split_points(T, max_splits=5))
    out, levels = twin_stream(arrays, cuts, C)
    assert_close(out, ref.loglinear_gated_delta(*arrays), F64, what=f"cuts={cuts}")
    _, st_api = lsattn.loglinear_gated_delta(*arrays, chunk_size=C, return_state=True, backend="array_api")
    assert_close(levels, st_api.tensors["levels"], F64, what="levels")


@given(p=st.integers(1, 1200), T=st.integers(1, 150), C=chunks, seed=seeds)
@settings(max_examples=15)
def test_twin_continues_array_api_states(p, T, C, seed):
    """A state from the array-API backend at offset p (many incoming slots, chunks not aligned to
    p) continued by the twin-driven host logic equals one call over p + T tokens."""
    arrays = make(seed, (2,), p + T, 4, 3)
    _, state = lsattn.loglinear_gated_delta(*_sl(arrays, 0, p), return_state=True, backend="array_api")
    out, levels = cgd.compute(Twin(), *_sl(arrays, p, p + T), C, p, state.tensors["levels"], True)
    assert_close(out, ref.loglinear_gated_delta(*arrays)[..., p:, :], F64, what=f"p={p} T={T}")
    _, st_api = lsattn.loglinear_gated_delta(*arrays, return_state=True, backend="array_api")
    assert_close(levels, st_api.tensors["levels"], F64, what="levels")


@given(T=st.integers(1, 200), C=chunks, seed=seeds)
@settings(max_examples=10)
def test_twin_float32_bound(T, C, seed):
    arrays = [x.astype(np.float32) for x in make(seed, (2,), T, 8, 5)]
    out, _ = cgd.compute(Twin(), *arrays, C, 0, None, False)
    assert out.dtype == np.float32
    assert_close(out, ref.loglinear_gated_delta(*[x.astype(np.float64) for x in arrays]), F32)


def scan_source():
    """The scan's kernels as one source (``gated_delta.cu``, then its two-tier form: ``gated_delta_tier.cu``, its fine
    tier, and ``gated_delta_coarse.cu``, its coarse slots and gd_tier3)."""
    return "\n".join(cupy_source(f) for f in ("gated_delta.cu", "gated_delta_tier.cu", "gated_delta_coarse.cu"))


def forms_source():
    """gd_forms as one source (``gated_delta_forms_tc.cu``: its layout, loads and tensor-core products; then the kernel)."""
    return cupy_source("gated_delta_forms_tc.cu") + "\n" + cupy_source("gated_delta_forms.cu")


class Emulated:
    """``ops`` whose gd_forms and gd_scan run the kernels' CUDA sources on the CPU
    (``cuda_emu_gd_forms.cpp``, which includes ``cuda_emu_gd_scan.cpp``), built with g++ once per
    session and (compute type, CH, DKP) (``helpers.emulation``)."""

    xp = np
    bw = BW  # gd_scan's value columns per block (a timing build's GD_BW_SET when not the production one)
    g = GD_G  # gd_scan's slots per block, at run time (a build of more: GD_G_SET) whatever the call's chunks
    ws = True  # float32: W stored as tf32 pairs (GD_WS_SET=0: unsplit)
    sr = False  # float32: S in registers, shared as tf32 pairs (GD_SR_SET=1)
    tm = cgd.TIER_M  # the two-tier form's low levels (a timing build's GD_TM_SET)
    tbw = None  # gd_tier1 / gd_tier3's columns per block (a timing build's GD_TBW_SET; None: Config.tier_bw)
    walk3 = False  # gd_tier3 as session 13's walks (a timing build's GD_T3WALK_SET)
    r3 = None  # gd_tier3's chunks per block (a timing build's GD_T3R_SET; None: Config.tier3_chunks)
    extra = {}  # other -D options (a switch's off build: GF_S64: 0, T3FILL: 0, ...)

    def _lib(self, cfg):
        defines = {"TA": cfg.ta, "TI_BF16": int(cfg.half == "bf16"), "CH": cfg.CH, "DKP": cfg.DKP}
        defines |= ({"GD_S16": 1} if cfg.s16 else {}) | ({"GD_O16": 1} if cfg.o16 else {})  # (S16, O16: _compile.defines)
        defines |= {"GF_XO": 1} if cfg.xs else {}  # (gated_delta_bwd.FORMS_X_SAVED: _compile.defines)
        defines |= ({} if self.bw == BW else {"GD_BW_SET": self.bw}) | ({} if self.g <= GD_G else {"GD_G_SET": self.g})
        defines |= ({} if self.ws else {"GD_WS_SET": 0}) | ({"GD_SR_SET": 1} if self.sr else {})
        defines |= {} if self.tm == cgd.TIER_M else {"GD_TM_SET": self.tm}
        defines |= ({} if self.tbw is None else {"GD_TBW_SET": self.tbw}) | ({"GD_T3WALK_SET": 1} if self.walk3 else {})
        defines |= ({} if self.r3 is None else {"GD_T3R_SET": self.r3}) | self.extra
        return emulation("cuda_emu_gd_forms.cpp", defines,
                         {"KERNEL": scan_source(), "FORMS_KERNEL": forms_source()})

    @staticmethod
    def _ptrs(arrays):
        assert all(a.flags.c_contiguous and a.dtype == arrays[0].dtype for a in arrays)
        return [a.ctypes.data_as(ctypes.c_void_p) for a in arrays]

    def gd_forms(self, cfg, q, k, v, a, beta, lam, qe, ek, ph, H, g, out, T, DK, DV, L, p, F, n, BH, lamw=None, bad=None,
                 xo=None):
        ints = [ctypes.c_int(x) for x in (T, DK, DV, L)] + [ctypes.c_longlong(p), ctypes.c_longlong(F)]
        opt = [None if x is None else x.ctypes.data_as(ctypes.c_void_p) for x in (lamw, bad)]
        assert xo is None or (cfg.xs and xo.flags.c_contiguous and xo.dtype == out.dtype), "xo: the GF_XO build's"
        lib = self._lib(cfg)
        run, tail = (lib.run_forms_xo, [None if xo is None else xo.ctypes.data_as(ctypes.c_void_p)]) if cfg.xs else (lib.run_forms, [])
        run(*self._ptrs((q, k, v, a, beta, lam)), *self._ptrs((qe, ek, ph, H)), *self._ptrs((g, out)), *opt, *ints,
            ctypes.c_int(n), ctypes.c_int(BH), ctypes.c_uint(cfg.smem("gd_forms")), *tail)

    _i, _l, _p = staticmethod(np.int32), staticmethod(np.int64), staticmethod(CupyOps._p)

    def _tk(self, op, cfg, name):
        """CupyOps' kernel lookup: the two-tier form's kernels (CupyOps.gd_tiers) on this emulation."""
        bw = self.tbw or cfg.tier_bw
        smem = (cfg.smem(name) if name in ("gd_coarse", "gd_cgroup", "gd_coarse_g", "gd_cfill") else
                cfg.gd_tier3_smem(bw, self.r3) if name == "gd_tier3" and not self.walk3 else
                cfg.gd_smem(1, bw, bw <= 32) if name == "gd_tier1x" else cfg.gd_smem(self.tm, bw, bw <= 32, hc=True))
        return _EmuKernel(self._lib(cfg), name), (256,), smem

    def gd_scan(self, cfg, qe, ek, ph, H, g, lam, out, lev, oldc, T, DK, DV, L, p, F, n, n_old, NLC, merge_last, BH,
                keep=True):
        tier = cgd.tier_plan(cfg, F, n, n_old, keep, DK, DV, self.tm)
        if tier is not None and self.bw == BW:  # the host logic of CupyOps.gd_scan, launches on this emulation
            return CupyOps.gd_tiers(self, cfg, tier, qe, ek, ph, H, g, lam, out, T, DK, DV, L, n, BH, bw=self.tbw,
                                    walk3=self.walk3, r3=self.r3)
        arrays = (qe, ek, ph, H, g, lam, out, lev, oldc)
        ints = [ctypes.c_int(x) for x in (T, DK, DV, L)] + [ctypes.c_longlong(p), ctypes.c_longlong(F)]
        ints += [ctypes.c_int(x) for x in (n, n_old, NLC, int(merge_last), int(keep), BH, self.g)]
        blocks = cgd.scan_blocks(F, n, n_old, NLC, self.g) * BH * -(-DV // self.bw)
        smem = cfg.gd_smem(max(self.g, GD_G), self.bw, self.ws, self.sr)
        self._lib(cfg).run(*self._ptrs(arrays), *ints, ctypes.c_uint(blocks), ctypes.c_uint(smem))


@pytest.mark.parametrize("dtype, dk, dv, C", [("float32", 5, 20, 16), ("float64", 20, 3, 32), ("float64", 70, 3, 32)])
def test_kernel_source_emulated_on_cpu(dtype, dk, dv, C):
    """The CUDA source of gd_scan, run on the CPU through the host logic: a stream with single
    tokens, an incoming state, two column blocks (float32) and padded head dims, against the
    reference; its state equals the array-API state. Slot groups per block: 2 (float32, tensor-core
    passes, d = 16 padded), 2 and 1 (float64, d_k = 32 and 128 padded)."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernel")
    assert make_config("double" if dtype == "float64" else "float", dk, 16, C).CH == C
    T = 150
    arrays = [x.astype(dtype) for x in make(4, (2,), T, dk, dv, resets=True)]
    ops, bounds, outs, old = Emulated(), [0, 37, 38, 100, T], [], None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        o, old = cgd.compute(ops, *_sl(arrays, lo, hi), C, lo, old if lo > 0 else None, True)
        outs.append(o)
    full = [x.astype(np.float64) for x in arrays]
    tol = F64 if dtype == "float64" else F32
    assert_close(np.concatenate(outs, axis=-2), ref.loglinear_gated_delta(*full), tol)
    _, st_api = lsattn.loglinear_gated_delta(*full, return_state=True, backend="array_api")
    assert_close(old, st_api.tensors["levels"], tol, what="levels")


@pytest.fixture(scope="module")
def emulated():
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    return Emulated()


def test_fiber_locals_per_build(emulated):
    """The emulations' per-thread variables (EMU_FIBER_LOCAL: cp.async's queues) stay each thread's own with two
    emulation builds loaded in one process, as every test process loads several: once g++'s STB_GNU_UNIQUE symbols
    (inline variables) made two builds share them, every fiber switch handed a thread's queue to another and the
    two-tier scan's emulated tests failed whenever the hypothesis draws had loaded another gd_scan build first."""
    libs = [emulation("cuda_emu_fiber_check.cpp", {"BUILD": b}, {}) for b in (1, 2)]
    for lib in libs + libs[:1]:
        for reverse in (0, 1):
            assert lib.run_check(64, reverse) == 0


@given(batch=batch_shapes, T=seq_lens, dk=st.sampled_from([3, 16, 33]), dv=st.sampled_from([1, 17, 70]), C=chunks,
       keys=key_kinds, decay=st.sampled_from(list(DECAYS)), resets=st.booleans(), p=st.sampled_from([0, 5, 64, 77]),
       keep=st.booleans(), seed=seeds)
@settings(max_examples=6, deadline=None)  # the CPU emulation: CI time
def test_kernels_emulated_match_reference(emulated, batch, T, dk, dv, C, keys, decay, resets, p, keep, seed):
    """The CUDA sources of gd_forms and gd_scan on the CPU through the host logic, float64: any T
    (1, odd, not a multiple of the chunk), several batch axes, an incoming array-API state at
    offset p (chunks not aligned to it), strong decays and hard resets, unnormalised keys, head
    dims padded, value columns in several blocks, with and without the returned state (``keep``);
    output and state against the reference and the array-API state."""
    arrays = make(seed, batch, p + T, dk, dv, keys=keys[0], key_scale=keys[1], decay=decay, resets=resets)
    old = None
    if p:
        _, state = lsattn.loglinear_gated_delta(*_sl(arrays, 0, p), return_state=True, backend="array_api")
        old = state.tensors["levels"]
    out, levels = cgd.compute(emulated, *_sl(arrays, p, p + T), C, p, old, keep)
    what = f"p={p} T={T} C={C} dk={dk} dv={dv}"
    assert_close(out, ref.loglinear_gated_delta(*arrays)[..., p:, :], F64, what=what)
    if not keep:  # gd_scan without the returned state (its chains without reads skipped)
        assert levels is None
        return
    _, st_api = lsattn.loglinear_gated_delta(*arrays, return_state=True, backend="array_api")
    assert_close(levels, st_api.tensors["levels"], F64, what="levels " + what)


def test_chunk_slots():
    """chunk_slots is 1 + the largest trailing-zero count of c + 1 over the merged chunks."""
    for F in range(0, 70):
        for n in range(1, 40):
            for merge_last in (False, True):
                cs = [c + 1 for c in range(F, F + n - (0 if merge_last else 1))]
                want = 1 + max([((x & -x).bit_length() - 1) for x in cs], default=0)
                assert cgd.chunk_slots(F, n, merge_last) == want, (F, n, merge_last)


def test_scan_blocks():
    """gd_scan's level groups cover every level once, the top two alone; one slot per block is one
    block per chain (scan_chains)."""
    for NLC in range(1, 12):
        for G in (1, 2, 3):
            tops = cgd.group_tops(NLC, G)
            levels = [m for i, t in enumerate(tops) for m in range(t, tops[i + 1] if i + 1 < len(tops) else 0, -1)]
            assert levels == list(range(NLC, 0, -1)) and all(t - u <= (1 if t > NLC - 2 else G)
                                                             for t, u in zip(tops, tops[1:] + [0])), (NLC, G, tops)
        for F, n, n_old in ((0, 1, 0), (5, 37, 3), (77, 19, 11)):
            assert cgd.scan_blocks(F, n, n_old, NLC, 1) == cgd.scan_chains(F, n, n_old, NLC)
    assert cgd.scan_group(cgd.GROUP_MIN_CHUNKS - 1) == 1 and cgd.scan_group(cgd.GROUP_MIN_CHUNKS) == GD_G


def test_tier_plan(monkeypatch):
    """The two-tier form takes calls from chunk 0 without incoming or returned state (of TIER_MIN_CHUNKS chunks or
    more); its coarse levels are those of the periods' indices; popsum counts gd_coarse's entries."""
    cfg = make_config("float", 64, 16, 64)
    assert cgd.tier_plan(cfg, 0, cgd.TIER_MIN_CHUNKS - 1, 0, False, 64, 64) is None
    assert cgd.tier_plan(cfg, 0, cgd.TIER_MIN_CHUNKS, 0, False, 64, 64) is not None
    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    assert cgd.tier_plan(cfg, 1, 10, 0, False, 64, 64) is None and cgd.tier_plan(cfg, 0, 10, 0, True, 64, 64) is None
    assert cgd.tier_plan(cfg, 0, 10, 2, False, 64, 64) is None
    for n in range(1, 300):
        tier = cgd.tier_plan(cfg, 0, n, 0, False, 64, 64)
        assert tier.nP << cgd.TIER_M >= n > (tier.nP - 1) << cgd.TIER_M
        assert tier.NCL == max(((c >> cgd.TIER_M).bit_length() for c in range(n)), default=0)  # the levels above read
        assert cgd.popsum(tier.nP) == sum(bin(x).count("1") for x in range(tier.nP))
        # the grouped coarse form from COARSE_GROUP_PERIODS periods (bfloat16 inputs: half as many, COARSE_GROUP_BF16)
        assert tier.grouped == (tier.NCL >= 3 and tier.nP > cgd.COARSE_GROUP_PERIODS)
        bf = cgd.tier_plan(cgd._config("float", 64, 64, "bf16"), 0, n, 0, False, 64, 64)
        assert bf.grouped == (tier.NCL >= 3 and tier.nP > cgd.COARSE_GROUP_PERIODS // 2)
    monkeypatch.setattr(cgd, "COARSE_GROUP_BF16", False)
    assert not cgd.tier_plan(cgd._config("float", 64, 64, "bf16"), 0, 256, 0, False, 64, 64).grouped  # 64 periods


@pytest.mark.parametrize("dtype, T, dk, dv, C, decay, grouped", [
    ("float64", 700, 5, 19, 16, "moderate", True),  # 44 chunks: 11 periods, 4 coarse levels, a partial last period
    ("float64", 300, 33, 3, 32, "strong", False),  # transfers in two column blocks (d_k > GD_BW)
    ("float32", 420, 16, 40, 16, "mixed", True),  # tensor cores (3xTF32); two value column blocks; 27 chunks
    ("float32", 300, 16, 66, 16, "mixed", True),  # gd_tier3's full tiles (its first column block of 64 but the last
    # period's: the reads all in flight) and partial ones (the second block, of 2 columns; the last period)
    ("float32", 20, 20, 17, 16, "strong", False),  # two chunks: one period, no coarse level
    ("bfloat16", 600, 64, 20, 64, "moderate", False),  # 1xTF32, 10 chunks at C = 64: 3 periods; bfloat16 intermediates
    ("bfloat16", 600, 64, 20, 64, "s16off", False),  # the same on float32 intermediates (S16 off: within TF32)
    ("float64", 700, 5, 19, 16, "tm3", False),  # the timing build of periods of 8 chunks (GD_TM_SET=3)
    ("float32", 420, 16, 40, 16, "tm3", False),
    # a timing build (CI time; d_k past 64 and 32 columns: the GPU tests and the A/B's checks): session 13's gd_tier3
    # walks (GD_T3WALK_SET=1; 11 periods)
    ("float32", 700, 5, 19, 16, "walk3", True)])
def test_two_tier_scan_emulated(emulated, monkeypatch, dtype, T, dk, dv, C, decay, grouped):
    """gd_scan's two-tier form (gd_tier1, the coarse slots: gd_coarse or, ``grouped``, gd_cgroup / gd_coarse_g /
    gd_cfill; gd_tier3; the public forward from chunk 0 without state) on the CPU emulation through the host logic:
    against the reference (float64 / float32 bounds; bfloat16 inputs' float32 output within TF32, gd_scan's 1xTF32)
    and against gd_scan itself (TIERED off), hard resets included."""
    s16 = dtype == "bfloat16" and decay != "s16off"
    monkeypatch.setattr(cgd, "S16", s16)
    if decay == "s16off":
        decay = "moderate"
    if decay in ("tm3", "walk3"):  # timing builds
        emulated, build, decay = copy.copy(emulated), decay, "mixed"
        if build == "tm3":  # (float32: gd_tier3 at one chunk a block too, GD_T3R_SET=1)
            emulated.tm, emulated.r3 = 3, (1 if dtype == "float32" else None)
        else:
            emulated.walk3 = True
    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)  # the small calls an emulation affords
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
    calls, real = [], CupyOps.gd_tiers
    monkeypatch.setattr(CupyOps, "gd_tiers", lambda *a, **k: calls.append(1) or real(*a, **k))
    arrays = make(7, (2,), T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay=decay, resets=True)
    bits, full, half = kernel_inputs(arrays, dtype)
    out, _ = cgd.compute(emulated, *bits, C, 0, None, False, half)
    assert calls == [1]
    monkeypatch.setattr(cgd, "TIERED", False)
    base, _ = cgd.compute(emulated, *bits, C, 0, None, False, half)
    assert calls == [1]
    tol = {"float64": F64, "float32": F32}.get(dtype, S16 if s16 else TF32)
    assert_close(out, ref.loglinear_gated_delta(*full), tol, what=f"{dtype} T={T} C={C}")
    assert_close(out, base, tol, what="against gd_scan")


@pytest.mark.parametrize("dtype, T, dk, dv, C, slow", [
    ("float32", 1100, 16, 40, 16, False),  # 69 chunks: 18 periods, 5 groups (the last partial); 3xTF32, 4 warps' rows
    ("float32", 1100, 16, 40, 16, True),
    ("float32", 2700, 16, 20, 16, True),  # 169 chunks: 43 periods, 6 coarse levels (levels 3 .. 6 read after the fold)
    ("bfloat16", 1400, 64, 20, 64, True),  # 1xTF32 at C = d_k = 64 (gd_tier3's production tiles): 22 chunks, 6 periods
    ("float64", 2300, 5, 19, 16, False)])  # FFMA: 144 chunks, 36 periods
def test_tier3_fill_emulated(emulated, monkeypatch, dtype, T, dk, dv, C, slow):
    """gd_cfill folded into gd_tier3 (``T3FILL``: a period inside a group reads its levels >= 3 from the group's first
    period's slots with its queries carried on by P_k) on the CPU emulation: against the reference (the dtype's bound;
    bfloat16 inputs' float32 output within S16) and against gd_cfill's slots (``T3FILL`` off), the same bound. slow:
    no decay and normalised keys, where the coarse levels carry most of the output (with mixed decays and resets they
    add little: s20s found T3FILL on / off bit-equal there)."""
    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0)
    calls, real = [], CupyOps.gd_tiers
    monkeypatch.setattr(CupyOps, "gd_tiers", lambda *a, **k: calls.append(1) or real(*a, **k))
    launched, real_tk = [], Emulated._tk

    def tk(self, op, cfg, name):
        fn, block, smem = real_tk(self, op, cfg, name)
        return (lambda *a, **k: launched.append(name) or fn(*a, **k)), block, smem

    monkeypatch.setattr(Emulated, "_tk", tk)
    arrays = (make(11, (2,), T, dk, dv, decay="zero") if slow else
              make(11, (2,), T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay="mixed", resets=True))
    bits, full, half = kernel_inputs(arrays, dtype)
    out, _ = cgd.compute(emulated, *bits, C, 0, None, False, half)
    assert "gd_cfill" not in launched and launched.count("gd_cgroup") == 1
    monkeypatch.setattr(cgd, "T3FILL", False)
    base, _ = cgd.compute(emulated, *bits, C, 0, None, False, half)
    assert "gd_cfill" in launched and calls == [1, 1]
    tol = {"float64": F64, "float32": F32}.get(dtype, S16)  # (bfloat16: S16's intermediates)
    assert_close(out, ref.loglinear_gated_delta(*full), tol, what=f"{dtype} T={T} C={C}")
    assert_close(out, base, tol, what="against gd_cfill")


def test_tier_fork_from_periods(emulated, monkeypatch):
    """gd_tiers asks for its second stream (``TIER_FORK``: gd_tier1x beside gd_tier1) from ``TIER_FORK_PERIODS``
    periods only (the CPU emulation's launches run in order whatever the answer: the same output)."""
    from lsattn.backends.cupy import _compile

    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    asked, real = [], _compile._side
    monkeypatch.setattr(_compile, "_side", lambda ops: asked.append(1) or real(ops))
    bits, _, half = kernel_inputs(make(3, (2,), 150, 16, 20, resets=True), "float32")  # 10 chunks at C = 16: 3 periods
    outs = []
    for periods, fork in ((3, True), (4, True), (3, False)):
        monkeypatch.setattr(cgd, "TIER_FORK_PERIODS", periods)
        monkeypatch.setattr(cgd, "TIER_FORK", fork)
        asked.clear()
        outs.append(cgd.compute(emulated, *bits, 16, 0, None, False, half)[0])
        assert asked == ([1] if fork and periods <= 3 else []), (periods, fork)
    assert all(np.array_equal(o, outs[0]) for o in outs)


@given(T=st.integers(65, 900).filter(lambda t: t % 64), dk=st.sampled_from([64, 40, 20]), dv=st.integers(1, 70),
       keys=key_kinds, decay=st.sampled_from(list(DECAYS)), resets=st.booleans(), grouped=st.booleans(), seed=seeds)
@settings(max_examples=5, deadline=None)  # the CPU emulation: CI time
def test_s16_bound_emulated(emulated, T, dk, dv, keys, decay, resets, grouped, seed):
    """bfloat16 inputs on the two-tier path with ``S16`` (the GD_S16 build: gd_forms' qeff, e^G K, phi, H and gd_tier1x's
    Qp stored as bfloat16, rounded to nearest even once; their 16-bit tiles in gd_tier1, gd_tier1x, gd_tier3) on the
    CPU emulation: the float32 output before its rounding within S16 of the reference on the rounded inputs (raw keys,
    strong decays, hard resets, T not a multiple of the chunk, both coarse forms, d_k of 16-byte rows or not: gd_copy's
    element copies); gd_forms wrote 16-bit patterns."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cgd, "S16", True)
        mp.setattr(cgd, "TIER_MIN_CHUNKS", 0)
        mp.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
        seen, real = [], Emulated.gd_forms
        mp.setattr(Emulated, "gd_forms", lambda self, cfg, *a, **k: seen.append((cfg.s16, a[6].dtype)) or real(self, cfg, *a, **k))
        if keys[0] == "raw":
            keys = ("raw", min(keys[1], 0.5) / np.sqrt(dk))  # (float32's bound: tests/test_gated_delta.py)
        arrays = make(seed, (1,), T, dk, dv, keys=keys[0], key_scale=keys[1], decay=decay, resets=resets)
        bits, full, half = kernel_inputs(arrays, "bfloat16")
        out, _ = cgd.compute(emulated, *bits, 64, 0, None, False, half)
    assert seen == [(True, np.uint16)]
    assert_close(out, ref.loglinear_gated_delta(*full), S16, what=f"T={T} dk={dk} dv={dv} {keys} {decay}")


@given(T=st.integers(65, 700).filter(lambda t: t % 64), dk=st.sampled_from([64, 40]), dv=st.sampled_from([64, 48, 7, 33]),
       keys=key_kinds, decay=st.sampled_from(list(DECAYS)), resets=st.booleans(), seed=seeds)
@settings(max_examples=3, deadline=None)  # the CPU emulation, four builds: CI time
def test_s16_forms_bf16_products_emulated(emulated, T, dk, dv, keys, decay, resets, seed):
    """GF_B16 (s22b16; GD_S16 builds): gd_forms' products after the solve by bf16 mma.sync m16n8k16, the float32
    operand rounded to bfloat16: the default (qeff, phi, H, the intra output; their A operands from 16-bit tiles,
    GF_ALDM) and every product (31: M X, X rounded too) within S16 of the reference, as the 1xTF32 build (0); the
    A operands from float32 tiles (GF_ALDM 0) equal to the default bit for bit; the default differs from 1xTF32 (the
    switch reaches the S16 build)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cgd, "S16", True)
        mp.setattr(cgd, "TIER_MIN_CHUNKS", 0)
        if keys[0] == "raw":
            keys = ("raw", min(keys[1], 0.5) / np.sqrt(dk))
        arrays = make(seed, (1,), T, dk, dv, keys=keys[0], key_scale=keys[1], decay=decay, resets=resets)
        bits, full, half = kernel_inputs(arrays, "bfloat16")
        want = ref.loglinear_gated_delta(*full)
        outs = []
        for extra in ({}, {"GF_B16": 31}, {"GF_B16": 0}, {"GF_ALDM": 0}):
            ops = copy.copy(emulated)
            ops.extra = extra
            outs.append(np.asarray(cgd.compute(ops, *bits, 64, 0, None, False, half)[0]))
    for out, name in zip(outs, ("default", "31", "0", "A by float32 tiles")):
        assert_close(out, want, S16, what=f"GF_B16 {name} T={T} dk={dk} dv={dv} {keys} {decay}")
    assert np.array_equal(outs[0], outs[3]) and not np.array_equal(outs[0], outs[2])


@pytest.mark.parametrize("T, dk, dv, keys, decay, grouped", [(1400, 64, 64, "normalised", "zero", False),
                                                        (1100, 40, 33, "raw", "mixed", False),
                                                        (2300, 64, 48, "normalised", "zero", True),
                                                        (1500, 64, 64, "raw", "strong", True)])
def test_s16_tier1_bf16_products_emulated(emulated, monkeypatch, T, dk, dv, keys, decay, grouped):
    """GD_T1B16_SET (s26d; the public bf16 call's GD_S16 + GD_O16 build): the walks' (a) products (gd_tier1's low walks,
    gd_tier1x's transfers) by bf16 mma.sync m16n8k16, the slots S rounded to bfloat16: the direct path's bfloat16 output
    within BF16 of the reference, as the 1xTF32 build's; without decays the two differ (the switch reaches the walks). (The float32
    output before its rounding, emulated, NOTES s26d: 1.8e-3 .. 4.9e-3 of max against 1xTF32's 1.8e-3 .. 4.4e-3.)"""
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
    arrays = make(23, (2,), T, dk, dv, keys=keys, key_scale=0.5 / np.sqrt(dk), decay=decay, resets=True)
    outs = []
    for b16 in (0, 1):
        ops = copy.copy(emulated)
        ops.extra = {"GD_T1B16_SET": b16}
        torch = _direct_on_emulation(ops, monkeypatch)
        monkeypatch.setattr(cgd, "raw_launch", lambda *a: None)
        xs = [torch.as_tensor(x).to(torch.bfloat16) for x in arrays]
        outs.append(cgd._torch_call(*xs, 64, None))
        assert next(iter(cgd._TORCH_PLANS.values())).cfg.o16 and outs[-1].dtype == torch.bfloat16
    want = ref.loglinear_gated_delta(*[x.double().numpy() for x in xs])
    for out, name in zip(outs, ("1xTF32", "bf16")):
        assert_close(out.double().numpy(), want, BF16, what=f"{name} T={T} dk={dk} dv={dv} {keys} {decay}")
    if decay == "zero":  # (under decays the walks' share rounds away in the bfloat16 output)
        assert not torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("dtype, T, dk, dv, C, keys, decay, resets, grouped", [
    ("bfloat16", 1400, 64, 70, 64, "normalised", "zero", False, False),  # 22 chunks: 6 periods, 3 coarse levels (gd_coarse);
    # two value column blocks; no decay: the coarse levels carry most of the output
    ("bfloat16", 1100, 40, 33, 64, "raw", "mixed", True, False),  # padded d_k, strong decays and resets
    ("bfloat16", 1400, 64, 70, 64, "normalised", "zero", False, True),  # the grouped form (gd_cgroup, gd_coarse_g, fold)
    ("float32", 420, 16, 40, 16, "normalised", "mixed", True, False)])  # 3xTF32: the register stores (GD_CPR_SET) only
def test_scan_switches_bit_equal_emulated(emulated, monkeypatch, dtype, T, dk, dv, C, keys, decay, resets, grouped):
    """s23d16's switches of the two-tier scan, each bit-equal, on the CPU emulation (the two-tier path; bfloat16 inputs on
    S16): gd_tier1x's Z stored tf32-rounded (GD_ZR_SET) with the coarse chains' Z fragments then loaded without a cvt
    (GD_CAX_SET), gd_coarse's / gd_coarse_g's chain state tf32-rounded (GD_CSR_SET), their slots stored from the
    registers (GD_CPR_SET): the default against the state's cvts back, against Z's cvts and gd_cput's stores back, and
    against all four off (session 22's coarse chains), bit for bit; the default within the dtype's bound of the
    reference. (The walks' pair accesses have no switch left: batch 2's A/B found them bit-equal on the GPU.)"""
    monkeypatch.setattr(cgd, "S16", True)
    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
    launched, real_tk = [], Emulated._tk

    def tk(self, op, cfg, name):
        fn, block, smem = real_tk(self, op, cfg, name)
        return (lambda *a, **k: launched.append(name) or fn(*a, **k)), block, smem

    monkeypatch.setattr(Emulated, "_tk", tk)
    arrays = make(13, (2,), T, dk, dv, keys=keys, key_scale=0.5 / np.sqrt(dk), decay=decay, resets=resets)
    bits, full, half = kernel_inputs(arrays, dtype)
    off = {"GD_ZR_SET": 0, "GD_CAX_SET": 0, "GD_CSR_SET": 0, "GD_CPR_SET": 0}
    outs = []
    for extra in ({}, {"GD_CSR_SET": 0}, {"GD_CAX_SET": 0, "GD_CPR_SET": 0}, off):
        ops = copy.copy(emulated)
        ops.extra = extra
        launched.clear()
        outs.append(np.asarray(cgd.compute(ops, *bits, C, 0, None, False, half)[0]))
    assert ("gd_coarse_g" if grouped else "gd_coarse") in launched and "gd_tier3" in launched
    for out, name in zip(outs[1:], ("the state with cvts", "Z with cvts, gd_cput's stores", "all off")):
        assert np.array_equal(outs[0], out), f"default against {name}"
    assert_close(outs[0], ref.loglinear_gated_delta(*full), S16 if dtype == "bfloat16" else F32,
                 what=f"{dtype} T={T} dk={dk} dv={dv} {keys} {decay}")


@pytest.mark.parametrize("T, p, dk, dv, C, keys, decay", [
    (150, 0, 16, 20, 64, "normalised", "moderate"),  # one per DKP: CI time
    (97, 77, 20, 17, 32, "raw", "strong"),
    (130, 5, 64, 70, 64, "normalised", "mixed"),
    (40, 0, 100, 3, 16, "raw", "zero")])
def test_tensor_core_scan_emulated(emulated, T, p, dk, dv, C, keys, decay):
    """float32: gd_scan's passes on tensor cores (3xTF32 mma.sync, its fragments emulated warp by
    warp on the CPU, ``cuda_emu_gd_scan.cpp``) with gd_forms, through the host logic: T not a
    multiple of the chunk, an incoming state at an unaligned offset, every padded d_k (16 .. 128),
    value columns in several blocks, unnormalised keys (|k| ~0.5, the float32 bound's), strong
    decays and hard resets, value columns in several blocks; output and state within the float32
    bound of the reference and the array-API state."""
    arrays = make(11, (2,), p + T, dk, dv, keys=keys, key_scale=0.5 / np.sqrt(dk), decay=decay, resets=True)
    arrays = [x.astype(np.float32) for x in arrays]
    full = [x.astype(np.float64) for x in arrays]
    old = None
    if p:
        _, state = lsattn.loglinear_gated_delta(*_sl(full, 0, p), return_state=True, backend="array_api")
        old = state.tensors["levels"].astype(np.float32)
    out, levels = cgd.compute(emulated, *_sl(arrays, p, p + T), C, p, old, True)
    assert out.dtype == np.float32 and levels.dtype == np.float32
    what = f"p={p} T={T} C={C} dk={dk} dv={dv} {keys}"
    assert_close(out, ref.loglinear_gated_delta(*full)[..., p:, :], F32, what=what)
    _, st_api = lsattn.loglinear_gated_delta(*full, return_state=True, backend="array_api")
    assert_close(levels, st_api.tensors["levels"], F32, what="levels " + what)


@pytest.mark.parametrize("bw, g, ws, dtype, T, p, dk, dv, C", [
    (16, GD_G, True, "float32", 70, 37, 5, 40, 16),  # (b) with 2 tiles: 6 warps idle
    (64, GD_G, True, "float32", 90, 0, 40, 70, 32),
    (16, GD_G, True, "float64", 50, 20, 20, 17, 32),
    (64, GD_G, True, "float64", 40, 0, 3, 5, 16),
    (BW, 1, True, "float64", 200, 700, 9, 5, 16),  # one slot per block (at run time); 10 incoming slots, 6 held
    (BW, 1, True, "float32", 130, 5, 64, 70, 64),
    (BW, 3, True, "float64", 300, 1234, 9, 5, 16),  # 3 levels a block: groups 5-3, 2-1; 11 incoming slots, 5 held
    (BW, 3, False, "float32", 77, 90, 16, 33, 16),  # W unsplit
    (BW, GD_G, "sr", "float32", 130, 77, 20, 40, 32),  # S in registers (tf32 pairs shared)
    (16, GD_G, "sr", "float32", 70, 37, 5, 17, 16)])
def test_scan_column_widths_emulated(emulated, bw, g, ws, dtype, T, p, dk, dv, C):
    """gd_scan built for 16 and 64 value columns per block, for 1 and 3 slots per block, with W
    unsplit or S in registers in float32 (``ws`` False / "sr": the timing builds' GD_BW_SET,
    GD_G_SET, GD_WS_SET, GD_SR_SET; the production build runs in the tests above): the warps' tiles
    dealt over fewer or more columns, idle warps when a product has fewer than 8 tiles, the levels
    and incoming slots grouped otherwise; against the reference and the array-API state."""
    arrays = [x.astype(dtype) for x in make(5, (2,), p + T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk),
                                            resets=True)]
    full = [x.astype(np.float64) for x in arrays]
    old = None
    if p:
        _, state = lsattn.loglinear_gated_delta(*_sl(full, 0, p), return_state=True, backend="array_api")
        old = state.tensors["levels"].astype(dtype)
    ops = Emulated()
    ops.bw, ops.g, ops.ws, ops.sr = bw, g, bool(ws), ws == "sr"
    out, levels = cgd.compute(ops, *_sl(arrays, p, p + T), C, p, old, True)
    tol = F64 if dtype == "float64" else F32
    assert_close(out, ref.loglinear_gated_delta(*full)[..., p:, :], tol, what=f"bw={bw} {dtype}")
    _, st_api = lsattn.loglinear_gated_delta(*full, return_state=True, backend="array_api")
    assert_close(levels, st_api.tensors["levels"], tol, what="levels")


@pytest.mark.parametrize("T, p, dk, dv, C, decay", [(150, 0, 64, 20, 64, "moderate"), (130, 5, 33, 7, 64, "strong"),
                                                    (97, 77, 20, 17, 32, "strong"), (40, 0, 100, 3, 16, "mixed")])
def test_bfloat16_inputs_emulated(emulated, T, p, dk, dv, C, decay):
    """bfloat16 inputs as 16-bit patterns read by gd_forms itself (``half='bf16'``: TI_BF16, the
    emulation's ld() as common.cu's; at C = 64 K K^T and Q K^T on tensor cores, mma.sync emulated
    per warp), computed in float32 through the host logic (the level weights widened for gd_scan,
    the state's last chunk of values too): within TF32 (gd_scan's 1xTF32 products for bfloat16 inputs)
    of the reference on the rounded inputs, with an incoming state at an unaligned offset, d_k padded,
    hard resets."""
    arrays = make(5, (2,), p + T, dk, dv, key_scale=0.5 / np.sqrt(dk), decay=decay, resets=True)
    bits = [narrow(np, x.astype(np.float32), "bf16").view(np.uint16) for x in arrays]
    full = [widen(np, b, "bf16").astype(np.float64) for b in bits]
    old = None
    if p:
        _, state = lsattn.loglinear_gated_delta(*_sl(full, 0, p), return_state=True, backend="array_api")
        old = state.tensors["levels"].astype(np.float32)
    out, levels = cgd.compute(copy.copy(emulated), *_sl(bits, p, p + T), C, p, old, True, "bf16")
    assert out.dtype == np.float32 and levels.dtype == np.float32
    what = f"p={p} T={T} C={C} dk={dk} dv={dv}"
    assert_close(out, ref.loglinear_gated_delta(*full)[..., p:, :], TF32, what=what)
    _, st_api = lsattn.loglinear_gated_delta(*full, return_state=True, backend="array_api")
    assert_close(levels, st_api.tensors["levels"], TF32, what="levels " + what)


@pytest.mark.parametrize("half, ta, T, p, dk, dv, C", [("bf16", "float", 150, 0, 64, 20, 64), ("bf16", "float", 100, 0, 64, 24, 64),
                                                       ("", "float", 97, 77, 20, 17, 32),
                                                       ("", "double", 40, 5, 3, 70, 16)])
def test_forms_check_and_level_weights_emulated(emulated, half, ta, T, p, dk, dv, C):
    """gd_forms' finiteness flag (``bad``, the prologue's ``KernelCheck``) and its compute-type copy of
    the level weights (``lamw``, gd_scan's for 16-bit inputs), on the CPU emulation: finite inputs
    (hard resets included: ``-inf`` log decays pass) leave the flag clear and copy lam exactly; one
    NaN or +-inf at a random entry of any input (a level weight beyond the levels gd_forms uses
    itself, the last token of a partial chunk), or +inf / NaN in a log decay, sets it."""
    rng = np.random.default_rng(T)
    arrays = make(7, (2,), T, dk, dv, resets=True)
    if half:
        arrays = [narrow(np, x.astype(np.float32), "bf16").view(np.uint16) for x in arrays]
        bad_vals = [np.uint16(0x7FC0), np.uint16(0x7F80), np.uint16(0xFF80)]  # NaN, +inf, -inf
    else:
        dt = np.float32 if ta == "float" else np.float64
        arrays = [x.astype(dt) for x in arrays]
        bad_vals = [np.nan, np.inf, -np.inf]
    L = arrays[5].shape[-1]
    cfg = make_config(ta, dk, 16, C)
    if half:
        import dataclasses

        cfg = dataclasses.replace(cfg, half=half, tc=False)

    def flag(xs):
        BH = 2
        flat = [np.ascontiguousarray(x.reshape((BH,) + x.shape[1:])) for x in xs]
        lamw = np.full(flat[5].shape, np.nan, dtype=np.float32 if ta == "float" else np.float64) if half else None
        bad = np.zeros(1, np.int32)
        cgd.forms(emulated, cfg, *flat, p, lamw, bad)
        return int(bad[0]), lamw

    b, lamw = flag(arrays)
    assert b == 0
    if half:
        np.testing.assert_array_equal(lamw, widen(np, arrays[5], "bf16"))
    for i in range(6):
        for j, val in enumerate(bad_vals):
            if i == 3 and j == 2:  # a hard reset: passes
                continue
            xs = [x.copy() for x in arrays]
            idx = tuple(int(rng.integers(n)) for n in xs[i].shape)
            if i == 5:
                idx = idx[:-1] + (L - 1,)  # the highest level, which only gd_scan reads
            if i in (0, 2) and j == 0:
                idx = idx[:-2] + (T - 1, idx[-1])  # the last token
            xs[i][idx] = val
            assert flag(xs)[0] == 1, (i, val, idx)


@pytest.mark.parametrize("half, T, p, dk, dv, C", [("bf16", 50, 0, 64, 64, 64), ("bf16", 301, 0, 40, 100, 64),
                                                   ("bf16", 70, 45, 20, 19, 16), ("", 77, 3, 33, 20, 32)])
def test_forms_reads_only_inputs_emulated(emulated, half, T, p, dk, dv, C):
    """gd_forms reads no element outside its inputs (issue 16: initcheck's reports of uninitialized 8-byte reads in its
    bf16 Q / K tile loads, s20h, were of rows in [0, T): filtered runs): each (BH, T, ..) input placed between NaN
    guards of 8 x 64 rows of 128 columns (16-byte aligned), every output and lamw NaN-filled before the launch, give the
    outputs of the zero-guarded, zero-filled call bit for bit, the flag clear (a NaN read anywhere would set it: every
    read is folded into it). The 16-bit tiles with V by cp.async (d = 64), d_k padded and V by 4-element loads (d_v
    100), the FFMA tiles at an unaligned offset (the first chunk's rows before the call), float32. Control: q's
    pointer one row early (row 0 of sequence 0 in the guard) sets the flag."""
    G = 8 * 64 * 128
    if half:
        arrays = [narrow(np, x.astype(np.float32), "bf16").view(np.uint16) for x in make(11, (2,), T, dk, dv, offset=p)]
        nan = np.uint16(0x7FC0)
    else:
        arrays = [x.astype(np.float32) for x in make(11, (2,), T, dk, dv, offset=p)]
        nan = np.float32(np.nan)
    cfg = make_config("float", dk, 16, C)
    if half:
        import dataclasses

        cfg = dataclasses.replace(cfg, half=half, tc=False)
    lay = chunk_layout(p, T, C)
    n, L = lay.n_chunks, arrays[5].shape[-1]

    def call(poison, shift=0):
        ins, bufs = [], []
        for i, x in enumerate(arrays):
            buf = np.full(x.size + 2 * G, nan if poison else 0, dtype=x.dtype)
            buf[G:G + x.size] = x.ravel()
            lo = G - (shift if i == 0 else 0)
            ins.append(buf[lo:lo + x.size].reshape(x.shape))
            bufs.append(buf)
        assert all(x.ctypes.data % 16 == 0 for x in ins[1:])
        fill = np.nan if poison else 0.0
        outs = [np.full(s, fill, np.float32) for s in ((2, n, C, dk), (2, n, C, dk), (2, n, dk, C), (2, n, dk, dv),
                                                       (2, n), (2, n, C, dv))]
        lamw = np.full(arrays[5].shape, fill, np.float32) if half else None
        bad = np.zeros(1, np.int32)
        emulated.gd_forms(cfg, *ins, *outs, T, dk, dv, L, p, lay.first_chunk, n, 2, lamw, bad)
        return outs + ([lamw] if half else []), int(bad[0])

    (want, b0), (got, b1) = call(False), call(True)
    assert b0 == 0 and b1 == 0
    for x, y, name in zip(want, got, ("qeff", "eGK", "phi", "H", "g", "intra", "lamw")):
        assert np.isfinite(y).all() and np.array_equal(x, y), name
    assert call(True, shift=dk)[1] == 1  # the control: a read in the guard shows


@given(half=st.sampled_from(["bf16", ""]), T=st.integers(1, 160), p=st.integers(0, 70), dk=st.sampled_from([64, 33, 20]),
       dv=st.sampled_from([64, 7]), C=st.sampled_from([32, 64]), keys=st.sampled_from(["normalised", "raw"]),
       decay=st.sampled_from(sorted(DECAYS)), seed=seeds)
@settings(max_examples=6, deadline=None)
def test_forms_solve_skips_zeros_bit_equal_emulated(emulated, half, T, p, dk, dv, C, keys, decay, seed):
    """gd_forms' solve over the nonzero terms only (GF_S64: the 64 x 64 stage, GF_OD4: the warp stage's 32 x 32 blocks;
    s19b16), its scratch in X's unread block with Q's tile kept for qeff (GF_QSH), the first value block by cp.async
    (GF_VEA), a level per 4 tokens in Lambda's pass (GF_LAM4), G and the suffixes on warps 1 and 5 (GF_GZB), the 16 x 16
    substitutions by rows (GF_DROW) against the build with all seven off (every term, the zeros of the triangular factors included; Q read again): the same outputs
    bit for bit (the same terms in the same order), 16-bit and float32 inputs, unnormalised keys, resets, d_v 64 / 7
    (cp.async and not)."""
    arrays = make(seed, (2,), T, dk, dv, keys=keys, decay=decay, resets=True, offset=p)
    if half:
        arrays = [narrow(np, x.astype(np.float32), "bf16").view(np.uint16) for x in arrays]
    else:
        arrays = [x.astype(np.float32) for x in arrays]
    cfg = make_config("float", dk, 16, C)
    if half:
        import dataclasses

        cfg = dataclasses.replace(cfg, half=half, tc=False)
    off = copy.copy(emulated)
    off.extra = {"GF_S64": 0, "GF_OD4": 0, "GF_QSH": 0, "GF_VEA": 0, "GF_LAM4": 0, "GF_GZB": 0, "GF_DROW": 0}
    got = [cgd.forms(ops, cfg, *arrays, p) for ops in (emulated, off)]
    for x, y, name in zip(*got, ("qeff", "eGK", "phi", "H", "g", "intra")):
        assert np.array_equal(x, y, equal_nan=True), (name, float(np.nanmax(np.abs(x - y))))


@pytest.mark.parametrize("flag, special", [(0, None), (1, np.nan), (None, np.nan), (None, None), (0, -np.inf)])
def test_kernel_check_protocol(flag, special):
    """The prologue's ``KernelCheck`` (CPU torch tensors checked as CUDA ones; the array-API implementation
    standing in for one with ``checks_inputs`` whose kernels answer ``flag``, or never answer: None): finite
    inputs (a hard reset included) run it once, with ``check=``; a set flag runs it again without it on the
    sanitised inputs; no answer is the prologue's own checks' (at the first access). Outputs (NaN where
    poisoned) equal the ordinary call's."""
    torch = pytest.importorskip("torch")
    from unittest import mock

    from lsattn import _nonfinite, backends
    from lsattn.gated_delta import _forward

    arrays = [torch.as_tensor(x) for x in make(3, (2,), 40, 4, 3)]
    if special is not None:
        arrays[1 if special != -np.inf else 3][0, 17] = special  # a key feature, or a hard reset
    want = lsattn.loglinear_gated_delta(*arrays, backend="array_api")
    calls = []

    def impl(*a, check=None):
        calls.append(type(check).__name__)
        if check is not None and flag is not None:
            check._wait = lambda: flag  # what pointer() / launched() arrange on a GPU
        return _forward(*a)

    impl.checks_inputs = True
    with mock.patch.object(_nonfinite, "_cuda_checks", lambda xp, arrays: True), \
            mock.patch.object(backends.Backend, "implementation", lambda self, name, **kw: impl):
        got = lsattn.loglinear_gated_delta(*arrays, backend="array_api")
    bad = special is not None and special != -np.inf
    assert calls == ["KernelCheck"] + (["NoneType"] if bad else []), calls
    assert (torch.isnan(got) == torch.isnan(want)).all() and torch.isnan(got).any() == bad
    ok = ~torch.isnan(want)
    assert_close(got[ok].numpy(), want[ok].numpy(), F64)


#: the two-tier form's kernels and their launches in cuda_emu_gd_scan.cpp
_TIER_RUN = {"gd_tier1": "run_tier1", "gd_tier1x": "run_tier1x", "gd_cgroup": "run_cgroup", "gd_coarse": "run_coarse", "gd_coarse_g": "run_coarse_g",
             "gd_cfill": "run_cfill", "gd_tier3": "run_tier3"}


class _EmuKernel:
    """A kernel of ``_compile._launch`` as the CPU emulation (``Emulated``'s library): launched like a CuPy
    RawKernel with the direct path's arguments (raw pointers as ints, NumPy scalars)."""

    def __init__(self, lib, name):
        self.lib, self.name = lib, name

    def __call__(self, grid, block, args, shared_mem=0):
        ptr = lambda x: ctypes.c_void_p(int(x) or None)  # noqa: E731
        if self.name in _TIER_RUN:  # pointers (arrays or ints), then int32 scalars
            conv = [ctypes.c_int(int(x)) if isinstance(x, np.int32) else
                    x.ctypes.data_as(ctypes.c_void_p) if isinstance(x, np.ndarray) else ptr(x) for x in args]
            getattr(self.lib, _TIER_RUN[self.name])(
                *conv, ctypes.c_uint(grid[0]), ctypes.c_uint(shared_mem))
        elif self.name == "gd_forms":  # 14 pointers, then T, DK, DV, L, p, F, n; grid (n, BH)
            T, DK, DV, L, p, F, n = (int(x) for x in args[14:])
            self.lib.run_forms(*map(ptr, args[:14]), *map(ctypes.c_int, (T, DK, DV, L)), ctypes.c_longlong(p),
                               ctypes.c_longlong(F), ctypes.c_int(n), ctypes.c_int(grid[1]), ctypes.c_uint(shared_mem))
        else:  # 9 pointers, then T, DK, DV, L, p, F, n, n_old, NLC, merge_last, keep, BH, G; a 1-D grid
            T, DK, DV, L, p, F, *rest = (int(x) for x in args[9:])
            self.lib.run(*map(ptr, args[:9]), *map(ctypes.c_int, (T, DK, DV, L)), ctypes.c_longlong(p),
                         ctypes.c_longlong(F), *map(ctypes.c_int, rest), ctypes.c_uint(grid[0]), ctypes.c_uint(shared_mem))


#: the kernels' C signatures after their pointers (gated_delta_forms.cu, gated_delta.cu): (pointers, scalar types)
_SIGNATURES = {"gd_forms": (14, "iiiiqqi"), "gd_scan": (9, "iiiiqqiiiiiii")}


def _emulated_driver(kernels, stream):
    """``cuLaunchKernel`` as the CPU emulation: the argument block decoded by the kernel's C signature (``_SIGNATURES``),
    the launch handed to the ``_EmuKernel`` registered under the function handle; the stream must be ``stream``."""
    import ctypes

    def launch(func, gx, gy, gz, bx, by, bz, smem, strm, params, extra):
        assert strm == stream and extra == 0 and (gz, by, bz) == (1, 1, 1)
        kernel = kernels[func]
        n_ptr, kinds = _SIGNATURES[kernel.name]
        params = (ctypes.c_void_p * (n_ptr + len(kinds))).from_address(params)  # (the block's address)
        args = [ctypes.c_uint64.from_address(params[i]).value for i in range(n_ptr)]
        args += [(ctypes.c_int32 if c == "i" else ctypes.c_int64).from_address(params[n_ptr + i]).value
                 for i, c in enumerate(kinds)]
        kernel((gx, gy), (bx,), args, shared_mem=smem)
        return 0

    return launch


def _emulated_raw_launch(kernels, stream=77):
    """``_rawlaunch.raw_launch`` whose launches the CPU emulation runs (``_emulated_driver``; kernels: the handles)."""
    import types

    from lsattn.backends.cupy import _rawlaunch

    def raw_launch(fn, grid, block, shared, n_ptr, scalars):
        kernels[id(fn)] = fn
        return _rawlaunch.RawLaunch(types.SimpleNamespace(ptr=id(fn)), grid, block, shared, n_ptr, scalars,
                                    _emulated_driver(kernels, stream))

    return raw_launch


def test_raw_launch_blocks_are_per_call():
    """``_rawlaunch.RawLaunch``: the driver reads the pointers of the call that launched (several threads launching
    through one plan's block, the driver yielding mid-launch), the scalars in their C types, and the geometry."""
    import ctypes
    import threading
    import time
    import types

    from lsattn.backends.cupy import _rawlaunch

    seen, bad = [], []

    def driver(func, gx, gy, gz, bx, by, bz, smem, stream, params, extra):
        time.sleep(0)  # another thread may run here
        params = (ctypes.c_void_p * 5).from_address(params)  # (the block's address)
        got = [ctypes.c_uint64.from_address(params[i]).value for i in range(3)]
        if got != [stream, stream + 1, 0] or ctypes.c_int32.from_address(params[3]).value != -5 \
                or ctypes.c_int64.from_address(params[4]).value != 1 << 40:
            bad.append((stream, got))
        seen.append((func, gx, gy, gz, bx, by, bz, smem))
        return 0

    launch = _rawlaunch.RawLaunch(types.SimpleNamespace(ptr=99), (7, 3), (256,), 1024, 3,
                                  (np.int32(-5), np.int64(1 << 40)), driver)

    def work(base):
        for i in range(200):
            s = base + 16 * i
            launch(s, s, s + 1, 0)

    threads = [threading.Thread(target=work, args=(1 << (20 + t),)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, bad[:3]
    assert len(seen) == 800 and set(seen) == {(99, 7, 3, 1, 256, 1, 1, 1024)}


def _direct_on_emulation(emulated, monkeypatch):
    """``gated_delta._torch_call`` on CPU torch tensors, its kernels (through CuPy's RawKernel call) run by the CPU
    emulation: CuPy, the CUDA stream and device stood in for; gd_scan's two-tier form at every size. Returns torch."""
    torch = pytest.importorskip("torch")
    import contextlib
    import sys
    import types

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: -1)))
    monkeypatch.setitem(sys.modules, "cupy", fake)  # CPU tensors: device -1
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda dev: 77, raising=False)
    monkeypatch.setattr(cgd, "_RAW_STREAM", [])
    monkeypatch.setattr(cgd, "_external_stream", lambda ptr, dev: contextlib.nullcontext())
    monkeypatch.setattr(cgd, "_launch", lambda op, dev, cfg, name: (_EmuKernel(emulated._lib(cfg), name), (256,),
                                                                       cfg.smem(name)))
    monkeypatch.setattr(cgd, "_TORCH_PLANS", {})
    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)  # gd_scan's two-tier form (its scratch in the plan's allocation)
    return torch


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("dtype, batch, T, dk, dv, C", [("float32", (2, 1), 150, 20, 17, 32), ("float64", (3,), 64, 5, 3, 16),
                                                         ("bfloat16", (2,), 97, 64, 20, 64), ("float32", (1,), 1, 64, 64, 64),
                                                         ("bfloat16", (2,), 600, 64, 17, 64)])
def test_torch_direct_path_emulated(emulated, monkeypatch, dtype, batch, T, dk, dv, C, raw):
    """The direct path of torch tensors without state (``gated_delta._torch_call``: the cached plan, one scratch
    allocation, the kernels launched on raw pointers) on CPU torch tensors, its launches run by the CPU emulation
    (CuPy, the CUDA stream and device stood in for; ``raw``: through ``_rawlaunch``'s argument blocks, decoded by the
    kernels' C signatures, on torch's stream): output against the reference (T not a multiple of the chunk:
    the padding rows trimmed; bfloat16 inputs: a float32 output of the rounded inputs, within S16, or with gd_tier3 a
    bfloat16 output on bfloat16 partial sums (O16), within BF16), the plan reused by a
    second call; the finiteness flag: clear for finite inputs (a hard reset included), set by one NaN; strided
    inputs and misaligned bfloat16 rows are left to the general path (None). bfloat16 with gd_tier3 (more than one
    period of chunks: T = 600, odd d_v): the output in bfloat16, rounded by gd_tier3, equal bit for bit to the float32
    output (``OUT16`` off) rounded by torch (on float32 partial sums: ``O16`` off)."""
    torch = _direct_on_emulation(emulated, monkeypatch)
    from lsattn.backends.cupy import _compile

    kernels = {}
    monkeypatch.setattr(cgd, "raw_launch", _emulated_raw_launch(kernels) if raw else lambda *a: None)
    assert _compile.GD_BW == emulated.bw and _compile.GD_G == emulated.g
    arrays = make(5, batch, T, dk, dv, resets=True)
    tdt = getattr(torch, dtype)
    xs = [torch.as_tensor(x).to(tdt) for x in arrays]
    want = ref.loglinear_gated_delta(*[x.double().numpy() for x in xs])

    class Check:  # KernelCheck's protocol: a zeroed int32 the kernel sets, launched() after gd_forms
        def __init__(self):
            self.flag, self.calls = np.zeros(1, np.int32), []

        def pointer(self):
            self.calls.append("pointer")
            return self.flag.ctypes.data

        def launched(self, stream=None):
            assert stream == (77 if raw else None)
            self.calls.append("launched")

    check = Check()
    out = cgd._torch_call(*xs, C, check)
    o16 = dtype == "bfloat16" and -(-T // C) > 1 << cgd.TIER_M  # gd_tier3 runs: it rounds the output
    assert next(iter(cgd._TORCH_PLANS.values())).o16 == o16
    assert out.dtype == (torch.float32 if dtype == "bfloat16" and not o16 else tdt) and out.shape == batch + (T, dv)
    # (bfloat16 inputs at T not a multiple of the chunk: a view without the padding rows, which the registry's rounding
    # to bfloat16 compacts in its one pass)
    assert out.is_contiguous() == (dtype != "bfloat16" or T % C == 0 or o16)
    assert check.calls == ["pointer", "launched"] and check.flag[0] == 0
    tol = {"float64": F64, "bfloat16": BF16 if o16 else S16}.get(dtype, F32)  # bfloat16: S16's intermediates
    assert_close(out.double().numpy(), want, tol, what=f"{dtype} T={T} C={C}")
    again = cgd._torch_call(*xs, C, None)
    assert len(cgd._TORCH_PLANS) == 1 and len(kernels) == (2 if raw else 0)
    assert (next(iter(cgd._TORCH_PLANS.values())).raw_forms is not None) == raw
    np.testing.assert_array_equal(again.float().numpy(), out.float().numpy())
    if o16:  # the float32 sums rounded once: as torch rounds the float32 output (O16 off: float32 partial sums)
        assert next(iter(cgd._TORCH_PLANS.values())).cfg.o16 == cgd.O16  # (O16: bfloat16 partial sums, within BF16)
        monkeypatch.setattr(cgd, "O16", False)
        monkeypatch.setattr(cgd, "_TORCH_PLANS", {})
        out32 = cgd._torch_call(*xs, C, None)
        monkeypatch.setattr(cgd, "OUT16", False)
        monkeypatch.setattr(cgd, "_TORCH_PLANS", {})
        f32 = cgd._torch_call(*xs, C, None)
        assert f32.dtype == torch.float32 and torch.equal(f32.to(tdt), out32)
        monkeypatch.setattr(cgd, "OUT16", True)
        monkeypatch.setattr(cgd, "O16", True)
        monkeypatch.setattr(cgd, "_TORCH_PLANS", {})
    bad = [x.clone() for x in xs]
    bad[2].view(-1)[-1] = float("nan")  # the last token's last value feature
    check = Check()
    cgd._torch_call(*bad, C, check)
    assert check.flag[0] == 1
    strided = [x.clone() for x in xs]
    strided[0] = torch.cat([xs[0], xs[0]], dim=-1)[..., ::2]
    assert not strided[0].is_contiguous() and cgd._torch_call(*strided, C, None) is None
    if dtype == "bfloat16":
        buf = torch.zeros(xs[1].numel() + 2, dtype=tdt)
        buf[2:] = xs[1].reshape(-1)
        assert cgd._torch_call(xs[0], buf[2:].view(xs[1].shape), *xs[2:], C, None) is None


@pytest.mark.parametrize("T, dk, dv, decay", [(600, 64, 64, "zero"), (1000, 64, 64, "mixed"), (600, 64, 48, "zero"),
                                              (300, 40, 64, "mixed"), (300, 64, 20, "zero")])
def test_forms_staged_stores_bit_equal_emulated(emulated, monkeypatch, T, dk, dv, decay):
    """GF_STG (s26d): gd_forms' qeff, H and intra output (bit 1) and phi (bit 2) of the public bf16 call (GD_S16 +
    GD_O16: the direct path with gd_tier3) staged in shared memory and copied out by 16-byte stores: the bfloat16
    output equal bit for bit to the
    epilogues' stores' (GF_STG 0), T not a multiple of the chunk included; d_k or d_v other than 64: the copies within
    the rows' length (element by element where it is not a multiple of 8)."""
    torch = _direct_on_emulation(emulated, monkeypatch)
    monkeypatch.setattr(cgd, "raw_launch", lambda *a: None)
    # (weak decays: the chunks' states, and so qeff, phi and H, reach the output)
    xs = [torch.as_tensor(x).to(torch.bfloat16) for x in make(11, (2,), T, dk, dv, decay=decay, resets=True)]
    outs = []
    for stg in (0, 1, 2, 3):  # (bits: 1 qeff, H, the intra output; 2 phi)
        ops = copy.copy(emulated)
        ops.extra = {"GF_STG": stg, "DVP": 64}  # (DVP: the GPU builds' padded d_v, which the switch needs)
        torch = _direct_on_emulation(ops, monkeypatch)
        outs.append(cgd._torch_call(*xs, 64, None))
        assert next(iter(cgd._TORCH_PLANS.values())).cfg.o16
    assert outs[0].dtype == torch.bfloat16 and all(torch.equal(outs[0], x) for x in outs[1:])


@pytest.mark.parametrize("dtype, T, dk, dv, C, grouped", [
    ("float32", 420, 16, 40, 16, True),  # 27 chunks: 7 periods (the last partial), gd_cgroup / gd_coarse_g / gd_cfill
    ("float32", 1700, 16, 20, 16, True),  # 27 periods, 5 coarse levels: gd_tier3's fold (T3FILL) reads Z_{4q}, P_2, P_3
    ("float64", 300, 33, 3, 32, False),  # 10 chunks: gd_coarse; transfers in two column blocks (d_k > 32)
    ("bfloat16", 600, 64, 17, 64, False)])  # gd_tier3 rounds the output (OUT16) from the float32 sums in the scratch
def test_direct_path_reads_only_written_scratch_emulated(emulated, monkeypatch, dtype, T, dk, dv, C, grouped):
    """compute-sanitizer initcheck reported gd_tier1 reading uninitialized global memory (issue 16): the direct path's
    scratch (gd_forms' outputs and the two-tier form's Z, Tot, Sb, Qp, Pc, Tg in one ``torch.empty``, which the caching
    allocator may hand back holding NaN) and its output filled with NaN before the call give the output of the
    zero-filled call bit for bit, on the CPU emulation: no kernel reads an element no kernel wrote into anything
    that reaches the output, not even through a zero weight (0 * NaN = NaN)."""
    torch = _direct_on_emulation(emulated, monkeypatch)
    monkeypatch.setattr(cgd, "raw_launch", lambda *a: None)
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
    empty, fill = torch.empty, [0]

    def filled(*args, **kwargs):  # every byte 0xff: NaN in float32 and float64
        x = empty(*args, **kwargs)
        x.view(torch.uint8).fill_(fill[0])
        return x

    monkeypatch.setattr(torch, "empty", filled)
    xs = [torch.as_tensor(x).to(getattr(torch, dtype)) for x in make(3, (2,), T, dk, dv, resets=True)]
    out = cgd._torch_call(*xs, C, None)
    assert cgd._TORCH_PLANS and next(iter(cgd._TORCH_PLANS.values())).tier.grouped == grouped
    fill[0] = 0xFF
    got = cgd._torch_call(*xs, C, None)
    assert torch.isfinite(got).all() and torch.equal(got, out)
    assert next(iter(cgd._TORCH_PLANS.values())).o16 == (dtype == "bfloat16") and got.dtype == xs[0].dtype
    assert_close(got.double().numpy(), ref.loglinear_gated_delta(*[x.double().numpy() for x in xs]),
                 {"float64": F64, "bfloat16": BF16}.get(dtype, F32))


def test_registered_on_cupy():
    import lsattn.backends.cupy as cb

    assert "loglinear_gated_delta" in cb.OPS and "loglinear_gated_delta" in cb.GRAD_OPS  # tests/test_cupy_gated_delta_grad.py
    assert "loglinear_gated_delta" in cb.HALF_OPS  # 16-bit inputs reach gd_forms as they are


# ---- GPU ------------------------------------------------------------------------------------------

def _gpu_ready():
    import lsattn.backends.cupy as cb

    pytest.importorskip("cupy")
    if cb.probe() is not None:
        pytest.skip(f"cupy backend unavailable: {cb.probe()}")


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    return torch


@pytest.mark.gpu
@given(batch=batch_shapes, T=st.one_of(st.just(0), seq_lens, st.integers(100, 400)), dk=st.sampled_from([1, 5, 64, 128]),
       dv=st.sampled_from([1, 7, 16, 64, 130]), C=st.sampled_from([16, 64]), keys=key_kinds,
       decay=st.sampled_from(list(DECAYS)), resets=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       seed=seeds)
@settings(max_examples=25, deadline=None)
def test_gpu_matches_reference(batch, T, dk, dv, C, keys, decay, resets, dtype, seed):
    """CuPy arrays, no backend=: the automatic choice is this backend's kernel."""
    _gpu_ready()
    import cupy

    if dtype == "float32" and keys[0] == "raw":
        # unnormalised keys with |k| around 0.5 whatever d_k: beta |k|^2 > 2 makes I - beta k k^T
        # expand, and a product of such transitions over hundreds of tokens exceeds what float32
        # holds relative to the output (any formulation: the array-API path fails the same bound);
        # float64 keeps the large raw keys
        keys = ("raw", 0.5 / np.sqrt(dk))
    arrays = [x.astype(dtype) for x in make(seed, batch, T, dk, dv, keys=keys[0], key_scale=keys[1], decay=decay,
                                            resets=resets)]
    xp = cupy
    import array_api_compat

    assert lsattn.backends.resolve("loglinear_gated_delta", array_api_compat.array_namespace(xp.zeros(1)),
                                   xp.zeros((2, dk))).name == "cupy"
    out = lsattn.loglinear_gated_delta(*[cupy.asarray(x) for x in arrays], chunk_size=C)
    assert isinstance(out, cupy.ndarray) and str(out.dtype) == dtype and out.shape == batch + (T, dv)
    if T:
        assert_close(out.get(), ref.loglinear_gated_delta(*arrays), F64 if dtype == "float64" else F32,
                     what=f"T={T} C={C} {dtype}")


@pytest.mark.gpu
@given(T=st.integers(2, 500), C=chunks, dtype=st.sampled_from(["float32", "float64"]), resets=st.booleans(),
       seed=seeds, data=st.data())
@settings(max_examples=12, deadline=None)
def test_gpu_stream_moves_between_backends(T, C, dtype, resets, seed, data):
    """CUDA torch tensors streamed with random cuts (single tokens included); the state moves
    cupy -> array_api -> cupy mid-stream; outputs and final state as one call."""
    _gpu_ready()
    torch = _torch_cuda()
    arrays = [x.astype(dtype) for x in make(seed, (2, 3), T, 16, 8, resets=resets)]
    dev = [torch.as_tensor(x, device="cuda") for x in arrays]
    cuts = data.draw(split_points(T, max_splits=6))
    bounds = [0] + cuts + [T]
    outs, state = [], None
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        backend = "array_api" if i % 3 == 1 else None
        o, state = lsattn.loglinear_gated_delta(*_sl(dev, lo, hi), chunk_size=C, state=state, return_state=True,
                                                backend=backend)
        assert isinstance(o, torch.Tensor) and o.is_cuda
        outs.append(o.cpu().numpy())
    tol = F64 if dtype == "float64" else F32
    assert_close(np.concatenate(outs, axis=-2), ref.loglinear_gated_delta(*arrays), tol, what=f"cuts={cuts}")
    _, st_api = lsattn.loglinear_gated_delta(*arrays, return_state=True, backend="array_api")
    assert_close(state.tensors["levels"].cpu().numpy(), st_api.tensors["levels"], tol, what="levels")


@pytest.mark.gpu
@given(T=st.integers(1, 300), p=st.sampled_from([0, 37, 64]), C=chunks, dtype=st.sampled_from(["float32", "float64"]),
       resets=st.booleans(), seed=seeds)
@settings(max_examples=10, deadline=None)
def test_gpu_torch_no_grad(T, p, C, dtype, resets, seed):
    """CUDA torch tensors without grad (the fused kernels, no torch WY forms), with and without an
    incoming state, under torch.no_grad() with tensors that require grad too: against the reference."""
    _gpu_ready()
    torch = _torch_cuda()
    arrays = make(seed, (2, 3), p + T, 16, 8, resets=resets)
    dev = [torch.as_tensor(x.astype(dtype), device="cuda") for x in arrays]
    state = None
    if p:
        _, state = lsattn.loglinear_gated_delta(*_sl(dev, 0, p), chunk_size=C, return_state=True)
    out = lsattn.loglinear_gated_delta(*_sl(dev, p, p + T), chunk_size=C, state=state)
    assert isinstance(out, torch.Tensor) and out.is_cuda and not out.requires_grad
    tol = F64 if dtype == "float64" else F32
    want = ref.loglinear_gated_delta(*[x.astype(dtype).astype(np.float64) for x in arrays])[..., p:, :]
    assert_close(out.cpu().numpy(), want, tol, what=f"p={p} T={T} C={C}")
    with torch.no_grad():
        out2 = lsattn.loglinear_gated_delta(*[x.detach().clone().requires_grad_() for x in _sl(dev, p, p + T)],
                                            chunk_size=C, state=state)
    assert not out2.requires_grad
    assert_close(out2.detach().cpu().numpy(), want, tol, what="no_grad()")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, T, dk, dv, C, decay, grouped", [
    ("float32", 1000, 64, 64, 16, "mixed", True),  # 63 chunks: 16 periods, 4 coarse levels, a partial last period
    ("float32", 700, 100, 130, 32, "strong", False),  # d_k padded to 128: transfers in two column blocks; d_v in three
    ("float32", 700, 100, 130, 32, "strong", True),  # (the grouped coarse form at 64 columns: two blocks of d_k, three of d_v)
    ("float64", 700, 5, 19, 16, "moderate", True),  # float64 at 32 columns a block
    ("bfloat16", 1200, 64, 70, 64, "moderate", True),  # the direct torch path, 1xTF32: 19 chunks, 5 periods (S16)
    ("bfloat16", 1200, 64, 70, 64, "s16off", True)])  # ... on float32 intermediates: within TF32
def test_gpu_two_tier_matches_reference(monkeypatch, dtype, T, dk, dv, C, decay, grouped):
    """gd_scan's two-tier form (gd_tier1, the coarse slots (``grouped``: gd_cgroup / gd_coarse_g / gd_cfill, else
    gd_coarse), gd_tier3: calls from chunk 0 without state, here from any number of chunks) on the GPU against the
    reference: float32 / float64 bounds, bfloat16 inputs' float32 output
    (their direct torch path, widened before its rounding: gd_scan's 1xTF32) within S16 of the reference on the
    rounded inputs (on float32 intermediates, S16 off: TF32); hard resets, unnormalised keys."""
    _gpu_ready()
    torch = _torch_cuda()
    monkeypatch.setattr(cgd, "S16", decay != "s16off")
    decay = "moderate" if decay == "s16off" else decay
    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)  # the coarse slots' two forms
    monkeypatch.setattr(cgd, "OUT16", False)  # bfloat16: the float32 sums (gd_tier3's rounding: its own test below)
    calls, real = [], CupyOps.gd_tiers
    monkeypatch.setattr(CupyOps, "gd_tiers", lambda *a, **k: calls.append(1) or real(*a, **k))
    cgd._TORCH_PLANS.clear()
    arrays = make(9, (2,), T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay=decay, resets=True)
    if dtype == "bfloat16":
        dev = [torch.as_tensor(x, device="cuda").to(torch.bfloat16) for x in arrays]
        full = [x.double().cpu().numpy() for x in dev]
        out = cgd._torch_call(*dev, C, None).double().cpu().numpy()  # float32, before the output's rounding
        tol = S16 if cgd.S16 else TF32
    else:
        dev = [torch.as_tensor(x.astype(dtype), device="cuda") for x in arrays]
        full = [x.astype(dtype).astype(np.float64) for x in arrays]
        out = lsattn.loglinear_gated_delta(*dev, chunk_size=C).double().cpu().numpy()
        tol = F64 if dtype == "float64" else F32
    cgd._TORCH_PLANS.clear()  # plans made with the two-tier form from any size
    assert calls == [1]
    assert_close(out, ref.loglinear_gated_delta(*full), tol, what=f"{dtype} T={T} C={C} dk={dk} dv={dv}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, T, dk, dv, C", [
    ("bfloat16", 6437, 64, 64, 64),  # 101 chunks: 26 periods, the direct path's 1xTF32, production tiles
    ("float32", 2000, 64, 70, 16),  # 125 chunks: 32 periods, 5 coarse levels; two value column blocks
    ("float64", 900, 20, 19, 16)])  # FFMA at 32 columns a block
def test_gpu_tier3_fill_matches_reference(monkeypatch, dtype, T, dk, dv, C):
    """gd_cfill folded into gd_tier3 (``T3FILL``, the grouped coarse form from any size) on the GPU: against the reference
    (float32 / float64 bounds; bfloat16 inputs' float32 output within S16) and against gd_cfill's slots (``T3FILL``
    off) at the same bound; hard resets, unnormalised keys."""
    _gpu_ready()
    torch = _torch_cuda()
    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0)
    monkeypatch.setattr(cgd, "OUT16", False)
    arrays = make(13, (2,), T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay="mixed", resets=True)
    if dtype == "bfloat16":
        dev = [torch.as_tensor(x, device="cuda").to(torch.bfloat16) for x in arrays]
        full = [x.double().cpu().numpy() for x in dev]
        run = lambda: cgd._torch_call(*dev, C, None).double().cpu().numpy()  # noqa: E731
        tol = S16
    else:
        dev = [torch.as_tensor(x.astype(dtype), device="cuda") for x in arrays]
        full = [x.astype(dtype).astype(np.float64) for x in arrays]
        run = lambda: lsattn.loglinear_gated_delta(*dev, chunk_size=C).double().cpu().numpy()  # noqa: E731
        tol = F64 if dtype == "float64" else F32
    cgd._TORCH_PLANS.clear()
    out = run()
    monkeypatch.setattr(cgd, "T3FILL", False)
    base = run()
    cgd._TORCH_PLANS.clear()
    assert_close(out, ref.loglinear_gated_delta(*full), tol, what=f"{dtype} T={T} C={C}")
    assert_close(out, base, tol, what="against gd_cfill")


@pytest.mark.gpu
# T from TIER_MIN_CHUNKS chunks of 64 on (the two-tier path, where S16 applies; session 21's final GPU run drew 1500:
# 24 chunks, gd_scan's path, and the plan check below failed as it should)
@given(T=st.integers(64 * (cgd.TIER_MIN_CHUNKS - 1) + 1, 3000), decay=st.sampled_from(list(DECAYS)), resets=st.booleans(),
       keys=key_kinds, seed=seeds)
@settings(max_examples=2, deadline=None)  # (its three builds' compiles: the GPU batch's 100 s)
def test_gpu_s16_bound(T, decay, resets, keys, seed):
    """bfloat16 CUDA tensors on the direct path's two-tier scan with ``S16`` (bfloat16 intermediates) at production
    tiles (d = 64, C = 64, 32-47 chunks: the two-tier form with its coarse levels): the float32 output before its rounding
    (``OUT16`` off) within S16 of the reference on the rounded inputs (float64 on the GPU), the bfloat16 output within
    BF16; the S16-off build's within TF32."""
    _gpu_ready()
    torch = _torch_cuda()
    if keys[0] == "raw":
        keys = ("raw", min(keys[1], 0.5) / 8)
    tb = [torch.as_tensor(x, device="cuda").to(torch.bfloat16)
          for x in make(seed, (2,), T, 64, 64, keys=keys[0], key_scale=keys[1], decay=decay, resets=resets)]
    want = ref.loglinear_gated_delta(*[t.double() for t in tb]).cpu().numpy()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cgd, "_TORCH_PLANS", {})
        out = lsattn.loglinear_gated_delta(*tb)
        mp.setattr(cgd, "OUT16", False)
        for s16, tol in ((True, S16), (False, TF32)):
            mp.setattr(cgd, "S16", s16)
            mp.setattr(cgd, "_TORCH_PLANS", {})
            f32 = cgd._torch_call(*tb, 64, None)
            assert next(iter(cgd._TORCH_PLANS.values())).cfg.s16 == s16
            assert_close(f32.double().cpu().numpy(), want, tol, what=f"S16={s16} T={T} {decay} {keys}")
    assert out.dtype == torch.bfloat16
    assert_close(out.double().cpu().numpy(), want, BF16, what=f"T={T} {decay}")


@pytest.mark.gpu
@pytest.mark.parametrize("T", [1, 63, 64, 1000, 2048])
def test_gpu_bfloat16_in_bfloat16_out(T):
    """bfloat16 tensors: computed in float32, returned as bfloat16, within 2e-2 of the reference
    on the rounded inputs (the reference computed on the GPU in float64)."""
    _gpu_ready()
    torch = _torch_cuda()
    tb = [torch.as_tensor(x, device="cuda").to(torch.bfloat16) for x in make(7, (2, 2), T, 64, 64)]
    out = lsattn.loglinear_gated_delta(*tb)
    assert out.dtype == torch.bfloat16 and out.is_cuda
    want = ref.loglinear_gated_delta(*[t.double() for t in tb])
    assert_close(out.double().cpu().numpy(), want.cpu().numpy(), BF16)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_many_levels_and_periods(dtype):
    """A stream of 1500 + 2500 tokens at chunk 16 (250 chunks, 8 chunk levels: gd_scan's chains of
    every length, periods cut by the call's start, incoming slots), two blocks of value columns,
    with and without the returned state: against the reference (float64, on the GPU) and the
    array-API state."""
    _gpu_ready()
    torch = _torch_cuda()
    p, T, C = 1500, 2500, 16
    arrays = make(3, (2,), p + T, 8, 70, keys="raw", key_scale=0.5 / np.sqrt(8), decay="mixed", resets=True)
    dev = [torch.as_tensor(x.astype(dtype), device="cuda") for x in arrays]
    _, state = lsattn.loglinear_gated_delta(*_sl(dev, 0, p), chunk_size=C, return_state=True)
    out, st2 = lsattn.loglinear_gated_delta(*_sl(dev, p, p + T), chunk_size=C, state=state, return_state=True)
    out_ns = lsattn.loglinear_gated_delta(*_sl(dev, p, p + T), chunk_size=C, state=state)
    full = [x.double() for x in dev]
    want = ref.loglinear_gated_delta(*full)[..., p:, :].cpu().numpy()
    tol = F64 if dtype == "float64" else F32
    assert_close(out.double().cpu().numpy(), want, tol, what=dtype)
    assert_close(out_ns.double().cpu().numpy(), want, tol, what=dtype + " without the state")
    _, st_api = lsattn.loglinear_gated_delta(*full, chunk_size=C, return_state=True, backend="array_api")
    assert_close(st2.tensors["levels"].double().cpu().numpy(), st_api.tensors["levels"].cpu().numpy(), tol,
                 what="levels")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_gpu_half_inputs_read_as_they_are(dtype):
    """16-bit CUDA tensors reach gd_forms as they are (``HALF_OPS``): a stream of three calls (an
    incoming state at an unaligned offset, a single token, T not a multiple of the chunk, hard
    resets) returns the inputs' dtype within the 16-bit output bound of the reference on the rounded
    inputs, and a float32 state within the float32 bound of the array-API state (bfloat16: TF32, gd_scan's
    1xTF32); float16 CuPy arrays too."""
    _gpu_ready()
    torch = _torch_cuda()
    T = 300
    th = [torch.as_tensor(x, device="cuda").to(getattr(torch, dtype)) for x in make(3, (2, 2), T, 64, 64, resets=True)]
    full = [t.double().cpu().numpy() for t in th]
    outs, state = [], None
    for lo, hi in ((0, 77), (77, 78), (78, T)):
        o, state = lsattn.loglinear_gated_delta(*_sl(th, lo, hi), state=state, return_state=True)
        assert o.dtype == th[0].dtype and o.is_cuda
        outs.append(o.double().cpu().numpy())
    assert_close(np.concatenate(outs, axis=-2), ref.loglinear_gated_delta(*full), BF16 if dtype == "bfloat16" else F16)
    assert state.tensors["levels"].dtype == torch.float32
    _, st_api = lsattn.loglinear_gated_delta(*full, return_state=True, backend="array_api")
    assert_close(state.tensors["levels"].cpu().numpy(), st_api.tensors["levels"], TF32 if dtype == "bfloat16" else F32,
                 what="levels")
    if dtype == "float16":  # CuPy float16 arrays take the same path
        import cupy

        out = lsattn.loglinear_gated_delta(*[cupy.asarray(x, dtype=cupy.float16) for x in full])
        assert out.dtype == cupy.float16
        assert_close(cupy.asnumpy(out).astype(np.float64), ref.loglinear_gated_delta(*full), F16, what="cupy float16")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, T, C, grouped", [("bfloat16", 4500, 64, False), ("bfloat16", 4500, 64, True),
                                                  ("float32", 1300, 16, False), ("float32", 5000, 16, True)])
def test_gpu_tier_fork_bit_equal(monkeypatch, dtype, T, C, grouped):
    """gd_tier1x on a second stream beside gd_tier1 (``TIER_FORK``): the direct path's output (bfloat16: 18 periods;
    float32 at C = 16: 21 / 79 periods) bit for bit that of one stream, twice in a row on a torch stream of its own,
    and on CuPy's path (CuPy arrays, a CuPy stream of its own); within the dtype's bound of the reference."""
    _gpu_ready()
    torch = _torch_cuda()
    import cupy

    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
    arrays = make(17, (2,), T, 64, 48, resets=True)
    dev = [torch.as_tensor(x, device="cuda").to(getattr(torch, dtype)) for x in arrays]
    outs, stream = {}, torch.cuda.Stream()
    monkeypatch.setattr(cgd, "TIER_FORK_PERIODS", 16)
    for fork in (False, True):
        monkeypatch.setattr(cgd, "TIER_FORK", fork)
        monkeypatch.setattr(cgd, "_TORCH_PLANS", {})
        with torch.cuda.stream(stream):
            got = [lsattn.loglinear_gated_delta(*dev, chunk_size=C) for _ in range(2)]
        stream.synchronize()
        assert torch.equal(got[0], got[1])
        outs[fork] = got[0]
        if dtype == "float32":  # CuPy's path (CupyOps.gd_tiers)
            with cupy.cuda.Stream(non_blocking=True) as cs:
                got = lsattn.loglinear_gated_delta(*[cupy.asarray(x, dtype=cupy.float32) for x in arrays], chunk_size=C)
            cs.synchronize()
            outs[fork, "cupy"] = torch.as_tensor(cupy.asnumpy(got))
    assert torch.equal(outs[True], outs[False])
    if dtype == "float32":
        assert torch.equal(outs[True, "cupy"], outs[False, "cupy"])
    want = ref.loglinear_gated_delta(*[t.double() for t in dev])
    assert_close(outs[True].double().cpu().numpy(), want.cpu().numpy(), BF16 if dtype == "bfloat16" else F32)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, T, dv", [("bfloat16", 2100, 64), ("float16", 2100, 64), ("bfloat16", 2049, 7)])
def test_gpu_direct_output_rounded_by_gd_tier3(monkeypatch, dtype, T, dv):
    """16-bit CUDA tensors on the direct path with the two-tier scan (33 chunks, T not a multiple of the chunk, an odd
    d_v): gd_tier3 writes the output in their dtype (``OUT16``), equal bit for bit to the float32 output (``OUT16``
    off) rounded by torch (bfloat16: on float32 partial sums, ``O16`` off), and within the 16-bit bound of the
    reference (bfloat16 with ``O16``: its bfloat16 partial sums too)."""
    _gpu_ready()
    torch = _torch_cuda()
    tdt = getattr(torch, dtype)
    dev = [torch.as_tensor(x, device="cuda").to(tdt) for x in make(5, (2, 3), T, 64, dv, resets=True)]
    want = ref.loglinear_gated_delta(*[t.double() for t in dev])
    tol = BF16 if dtype == "bfloat16" else F16
    monkeypatch.setattr(cgd, "_TORCH_PLANS", {})
    if dtype == "bfloat16":  # (O16: the bfloat16 partial sums)
        out = cgd._torch_call(*dev, 64, None)
        assert next(iter(cgd._TORCH_PLANS.values())).cfg.o16 and out.dtype == tdt
        assert_close(out.double().cpu().numpy(), want.cpu().numpy(), tol, what="O16")
        monkeypatch.setattr(cgd, "O16", False)
        monkeypatch.setattr(cgd, "_TORCH_PLANS", {})
    out = cgd._torch_call(*dev, 64, None)
    assert next(iter(cgd._TORCH_PLANS.values())).o16 and out.dtype == tdt and out.is_contiguous()
    public = lsattn.loglinear_gated_delta(*dev)  # (the registry's call: the plan's output as it is)
    assert public.dtype == tdt and torch.equal(public, out)
    monkeypatch.setattr(cgd, "OUT16", False)
    monkeypatch.setattr(cgd, "_TORCH_PLANS", {})
    f32 = cgd._torch_call(*dev, 64, None)
    assert f32.dtype == torch.float32 and torch.equal(f32.to(tdt), out)
    assert_close(out.double().cpu().numpy(), want.cpu().numpy(), tol)


@pytest.mark.gpu
@given(batch=batch_shapes, T=st.one_of(seq_lens, st.integers(60, 300)), dk=st.sampled_from([5, 64, 128]),
       dv=st.sampled_from([1, 7, 64, 130]), C=st.sampled_from([16, 64]), decay=st.sampled_from(list(DECAYS)),
       resets=st.booleans(), dtype=st.sampled_from(["float32", "float64", "bfloat16", "float16"]),
       layout=st.sampled_from(["contiguous", "strided", "misaligned"]), seed=seeds)
@settings(max_examples=16, deadline=None)
def test_gpu_torch_direct_path(batch, T, dk, dv, C, decay, resets, dtype, layout, seed):
    """CUDA torch tensors without state (``gated_delta._torch_call``: launched on the tensors' pointers from a
    cached plan): against the reference at the dtype's bound and against the CuPy views' path (``TORCH_DIRECT``
    off) at the same bound; strided inputs and bfloat16 rows off 16 bytes take the general path (same results);
    the same shapes again reuse the plan, on another torch stream."""
    _gpu_ready()
    torch = _torch_cuda()
    if T == 0:
        T = 1
    arrays = make(seed, batch, T, dk, dv, decay=decay, resets=resets)
    tdt = getattr(torch, dtype)
    dev = [torch.as_tensor(x, device="cuda").to(tdt) for x in arrays]
    if layout == "strided":  # q not contiguous: its last axis every other element of a wider tensor
        wide = torch.zeros(dev[0].shape[:-1] + (2 * dk,), dtype=tdt, device="cuda")
        wide[..., ::2] = dev[0]
        dev[0] = wide[..., ::2]
    elif layout == "misaligned":  # k's rows start 2 elements into a buffer
        buf = torch.zeros(dev[1].numel() + 2, dtype=tdt, device="cuda")
        buf[2:] = dev[1].reshape(-1)
        dev[1] = buf[2:].view(dev[1].shape)
    want = ref.loglinear_gated_delta(*[t.double().cpu().numpy() for t in dev])
    tol = {"float64": F64, "float32": F32, "bfloat16": BF16, "float16": F16}[dtype]
    outs = []
    side = torch.cuda.Stream()
    for direct, on_side in ((True, False), (True, True), (False, False)):  # twice: a plan built, then reused
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(cgd, "TORCH_DIRECT", direct)
            if on_side:  # on another torch stream: the launches and the finiteness flag's event there
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    out = lsattn.loglinear_gated_delta(*dev, chunk_size=C)
                torch.cuda.current_stream().wait_stream(side)
            else:
                out = lsattn.loglinear_gated_delta(*dev, chunk_size=C)
        assert isinstance(out, torch.Tensor) and out.dtype == tdt and out.shape == batch + (T, dv) and out.is_contiguous()
        outs.append(out.double().cpu().numpy())
    what = f"T={T} C={C} dk={dk} dv={dv} {dtype} {layout}"
    assert_close(outs[0], want, tol, what=what)
    assert_close(outs[1], outs[0], tol, what="plan reused " + what)
    assert_close(outs[0], outs[2], tol, what="direct vs views " + what)
