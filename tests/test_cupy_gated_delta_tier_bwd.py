"""The two-tier Gated DeltaNet scan's backward kernels (K1-K4 of benchmarks/NOTES.md "Session 24 — s24c":
gd_tier3_bwd, gd_coarse_bwd, gd_tier1x_bwd, gd_tier1_bwd) against the float64 NumPy twin ``gd_tier_twin``'s pieces,
emulated on the CPU (``cuda_emu_gd_tier_bwd.cpp``) and on the GPU."""
from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from lsattn.backends.cupy import gated_delta as cgd
from lsattn.backends.cupy._arrays import narrow, widen
from lsattn.backends.cupy._compile import CupyOps
from lsattn.backends.cupy.gated_delta import _config as gd_config

import gd_tier_twin as tw
import test_gated_delta_tier_bwd as tb
from helpers import cupy_source, emulation
from strategies import seeds
from test_cupy_gated_delta import scan_source
from test_cupy_gated_delta_grad import bwd_source

# ---- K1 gd_tier3_bwd (s25a) ----

# ---- K2 gd_coarse_bwd (s25a) ----

# ---- K3 gd_tier1x_bwd (s25b) ----

# ---- K4 gd_tier1_bwd (s25c) ----
#: gd_tier1_bwd's bounds (max |kernel - twin| <= bound * max(max |twin|, T4_TINY), per output; the twin on the values
#: the kernel reads, widened to float64): 3xTF32 (float32 callers) T4_F32, its products ~2^-21 relative and the float32
#: sums of a period's chunk steps (measured 1.3e-6 at worst over 50 draws); 1xTF32 (bfloat16 callers, GD_S16 or not)
#: T4_X1 = 20 * 2^-11: its operands rounded to tf32 (W, dW, dS', the slots, dout's weighted rows) through a period's
#: chained steps (the slots two products deep, dS' passed down three), and dg a sum of d_k d_v signed products (measured
#: 3.4e-3 at worst over 100 draws, dg of a 3-chunk call 7.8e-3; at d = C = 64 ~5e-4). T4_TINY: an output whose twin is
#: below float32's range (dg under strong decays, e^g ~ e^-400) reads as zero. Under strong decays (e^-30 a token) dek
#: and dph are ~1e-14 of their operands' scale, sums of terms of mixed magnitudes, whose relative error no tf32 product
#: bounds (main's gd_scan_bwd / gd_scan_bwd_x1 on a 4-chunk call: up to 1.4e-4 / 0.40 of max |twin|): those two are
#: compared with gd_scan_bwd's own error on the same inputs (test_tier1_bwd_strong_decays_as_scan_bwd), the others as
#: above.
T4_F32, T4_X1, T4_TINY = 1e-5, 1e-2, 1e-30
T4_OUT = ("dqe", "dek", "dph", "dH", "dg", "dlam")


def t4_source():
    """The two-tier scan's backward kernels as one source (the four files, in _compile._SOURCES' order)."""
    return "\n".join(cupy_source(f) for f in ("gated_delta_tier3_bwd.cu", "gated_delta_coarse_bwd.cu",
                                              "gated_delta_tier1x_bwd.cu", "gated_delta_tier1_bwd.cu"))


class _T4Kernel:
    """gd_tier1_bwd(_x1) on the CPU emulation, called as CupyOps calls a CuPy RawKernel (arrays, int32 scalars)."""

    def __init__(self, lib, x1):
        self.lib, self.x1 = lib, x1

    def __call__(self, grid, block, args, shared_mem=0):
        conv = [ctypes.c_int(int(x)) if isinstance(x, np.int32) else x.ctypes.data_as(ctypes.c_void_p) for x in args]
        self.lib.run_tier1_bwd(*conv, ctypes.c_int(int(self.x1)), ctypes.c_uint(grid[0]), ctypes.c_uint(shared_mem))


class T4Ops:
    """``ops`` for ``CupyOps.gd_tier1_bwd``'s host logic, its kernel on the CPU emulation (cuda_emu_gd_tier_bwd.cpp)."""

    xp = np
    _i = staticmethod(np.int32)
    extra = {}  # -D switches of a build

    def _tk(self, op, cfg, name):
        assert op == "gated_delta_tier_bwd"
        defines = {"TA": cfg.ta, "TI_BF16": int(cfg.half == "bf16"), "CH": cfg.CH, "DKP": cfg.DKP}
        defines |= ({"GD_S16": 1} if cfg.s16 else {}) | self.extra
        lib = emulation("cuda_emu_gd_tier_bwd.cpp", defines,
                        {"KERNEL": scan_source(), "BWD_KERNEL": bwd_source(), "TIER_BWD_KERNEL": t4_source()})
        return _T4Kernel(lib, name.endswith("_x1")), (256,), cfg.smem(name)


def t4_case(seed, B, T, C, dk, dv, decay, mode, ops, xp=np, bw=None, raw=False):
    """gd_tier1_bwd (``mode``: 'f32' 3xTF32, 'x1' 1xTF32 on float32 intermediates, 's16' 1xTF32 on bfloat16 ones) on
    ``ops`` against the twin's tier1_bwd, the forms of tests/test_gated_delta_tier_bwd.make's inputs, random dout and
    dTot (the last period's zero: no output) -> {output: relative error} (raw: {output: the kernel's})."""
    q, k, v, a, beta, lam = tb.make(seed, B, T, dk, dv, decay)
    (qe, ek, ph, H, g), _, lay = tb.forms(np, q, k, v, a, beta, lam, C)
    n, nP, L = lay.n_chunks, -(-lay.n_chunks // tw.TP), lam.shape[-1]
    rng = np.random.default_rng(seed + 11)
    dout = rng.standard_normal((B, n, C, dv)).astype(np.float32)
    dtot = rng.standard_normal((B, nP, dk, dv)).astype(np.float32)
    dtot[:, -1] = 0
    s16 = mode == "s16"
    if s16:  # bfloat16 patterns, as the GD_S16 forward stores them
        kin = [narrow(np, x.astype(np.float32), "bf16").view(np.uint16) for x in (qe, ek, ph, H)]
        wid = [widen(np, x, "bf16").astype(np.float64) for x in kin]
    else:
        kin = [x.astype(np.float32) for x in (qe, ek, ph, H)]
        wid = [x.astype(np.float64) for x in kin]
    g32, lam32 = g.astype(np.float32), lam.astype(np.float32)
    geo = tw.Geo(wid[0], wid[3], lam32)
    want = {"dqe": np.zeros(qe.shape), "dek": np.zeros(ek.shape), "dph": np.zeros(ph.shape), "dH": np.zeros(H.shape),
            "dg": np.zeros(g.shape), "dlam": np.zeros(lam.shape)}
    tw.tier1_bwd(*wid, g32.astype(np.float64), lam32.astype(np.float64), dout.astype(np.float64),
                 [dtot[:, p].astype(np.float64) for p in range(nP)], geo, want)
    cfg = gd_config("float", dk, C, "bf16" if mode != "f32" else "", s16)
    assert cfg.CH == C
    got = {key: xp.zeros(want[key].shape, dtype=xp.float32) for key in T4_OUT}
    got["dH"][...] = np.nan  # written whole
    dev = [xp.asarray(x) for x in kin + [g32, lam32, dout, dtot]]
    tier = cgd.Tier(nP, (nP - 1).bit_length(), n=n, C=C)
    CupyOps.gd_tier1_bwd(ops, cfg, tier, *dev, *(got[key] for key in T4_OUT), T, dk, dv, L, n, B, x1=mode != "f32", bw=bw)
    got = {key: np.asarray(x.get() if hasattr(x, "get") else x, dtype=np.float64) for key, x in got.items()}
    assert not np.isnan(got["dH"]).any(), "dH not written whole"
    if raw:
        return got
    return {key: float(np.max(np.abs(got[key] - want[key])) / max(np.max(np.abs(want[key])), T4_TINY)) for key in T4_OUT}


T4_BOUND = {"f32": T4_F32, "x1": T4_X1, "s16": T4_X1}


def t4_checked(errs, decay):
    """The errors the bounds apply to: under strong decays all but dek, dph (test_tier1_bwd_strong_decays_as_scan_bwd)."""
    return max(v for k, v in errs.items() if decay != "strong" or k not in ("dek", "dph"))


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
@given(seed=seeds, B=st.integers(1, 2), TC=st.sampled_from([(100, 16), (250, 16), (210, 32), (64, 16), (33, 16)]),
       dk=st.integers(1, 16), dv=st.integers(1, 16), decay=st.sampled_from(list(tb.REGIMES)),
       mode=st.sampled_from(list(T4_BOUND)))
@example(seed=1, B=2, TC=(250, 16), dk=16, dv=13, decay="reset", mode="f32")  # 16 chunks: 4 whole periods
@example(seed=2, B=1, TC=(210, 32), dk=5, dv=16, decay="strong", mode="s16")  # 7 chunks: the last period 3
@settings(max_examples=15, deadline=None)
def test_tier1_bwd_emulated_is_twin(seed, B, TC, dk, dv, decay, mode):
    """gd_tier1_bwd's CUDA source on the CPU against the twin's tier1_bwd: T not a multiple of C, periods of 1 .. 4
    chunks (the call's last incomplete: its merge unread), odd head dims, every decay regime incl. hard resets; the
    3xTF32 build, the 1xTF32 one, and the 1xTF32 one on GD_S16's bfloat16 intermediates."""
    T, C = TC
    errs = t4_case(seed, B, T, C, dk, dv, decay, mode, T4Ops())
    assert t4_checked(errs, decay) <= T4_BOUND[mode], (mode, errs)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
def test_tier1_bwd_emulated_two_column_blocks():
    """d_v = 70: two column blocks of 64 (the second of 6 columns, masked); dH, dqe's sums over both."""
    errs = t4_case(3, 1, 130, 16, 9, 70, "moderate", "f32", T4Ops())
    assert max(errs.values()) <= T4_F32, errs


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
@pytest.mark.parametrize("mode", ["s16", "f32"])
def test_tier1_bwd_emulated_32_columns(mode):
    """The timing build of 32 value columns a block (GT4_BW_SET=32; 2 blocks per SM at d_k = 64 with GD_S16's tiles):
    d_v = 40, two column blocks."""
    ops = T4Ops()
    ops.extra = {"GT4_BW_SET": 32}
    errs = t4_case(7, 2, 300, 16, 12, 40, "mixed", mode, ops, bw=32)
    assert max(errs.values()) <= T4_BOUND[mode], errs


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
@pytest.mark.parametrize("mode", ["f32", "x1"])
@pytest.mark.parametrize("seed, dk, dv", [(150296, 6, 6), (0, 15, 3), (3, 11, 9)])
def test_tier1_bwd_strong_decays_as_scan_bwd(mode, seed, dk, dv):
    """Strong decays (e^-30 a token), a call of 4 chunks (one period, its keys unread: this piece is the whole scan
    backward): dek and dph against the twin within twice main's gd_scan_bwd(_x1)'s error on the same inputs, plus the
    mode's bound (the other outputs: test_tier1_bwd_emulated_is_twin's bounds)."""
    from test_cupy_gated_delta_grad import EmulatedOps

    B, T, C = 1, 64, 16
    errs = t4_case(seed, B, T, C, dk, dv, "strong", mode, T4Ops())
    q, k, v, a, beta, lam = tb.make(seed, B, T, dk, dv, "strong")
    (qe, ek, ph, H, g), _, lay = tb.forms(np, q, k, v, a, beta, lam, C)
    n, L = lay.n_chunks, lam.shape[-1]
    dout = np.random.default_rng(seed + 11).standard_normal((B, n, C, dv)).astype(np.float32)  # (t4_case's)
    f = [x.astype(np.float32) for x in (qe, ek, ph, H, g, lam)]
    want = tw.backward(*[x.astype(np.float64) for x in f], dout.astype(np.float64))
    NLC = cgd.chunk_slots(0, n, T % C == 0)
    sv, dS = np.zeros((B, n, NLC, dk, dv), np.float32), np.zeros((B, NLC, dk, dv), np.float32)
    outs = [np.zeros(x.shape, np.float32) for x in (qe, ek, ph, H, g, lam)]
    cfg = gd_config("float", dk, C, "" if mode == "f32" else "bf16")
    EmulatedOps().gd_scan_bwd(cfg, *f, dout, dS, sv, dS, *outs, T, dk, dv, L, 0, 0, n, 0, NLC, T % C == 0, B,
                              x1=mode != "f32")
    for key, o, w in zip(T4_OUT, outs, want):
        if key in ("dek", "dph"):
            theirs = float(np.max(np.abs(o - w)) / max(np.max(np.abs(w)), T4_TINY))
            assert errs[key] <= 2 * theirs + T4_BOUND[mode], (key, errs[key], theirs)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
@pytest.mark.parametrize("mode", ["s16", "x1"])
def test_tier1_bwd_pre_rounded_operands_bit_equal(mode):
    """GT4_PR_SET (1xTF32: GD_S16's tiles and W, dW taken as the tf32 values they are, no cvt at the loads) gives the
    bits of the build rounding every operand at its loads (GT4_PR_SET=0)."""
    ref = T4Ops()
    ref.extra = {"GT4_PR_SET": 0}
    a = t4_case(8, 2, 150, 16, 11, 13, "moderate", mode, T4Ops(), raw=True)
    b = t4_case(8, 2, 150, 16, 11, 13, "moderate", mode, ref, raw=True)
    for key in T4_OUT:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
def test_tier1_bwd_emulated_production_dims():
    """d_k = d_v = C = 64 (bfloat16 callers' GD_S16 build): 4 tiles a warp, two warps a row block; 10 chunks."""
    errs = t4_case(6, 1, 600, 64, 64, 64, "moderate", "s16", T4Ops())
    assert max(errs.values()) <= T4_X1, errs


@pytest.mark.gpu
@pytest.mark.parametrize("T", [8192 + 100, 32768])
@pytest.mark.parametrize("mode", ["s16", "f32"])
def test_gpu_tier1_bwd_is_twin(T, mode):
    """gd_tier1_bwd on the GPU at d = 64, C = 64 (B H = 2) against the twin: bfloat16 callers' GD_S16 1xTF32 build and
    float32 callers' 3xTF32 one."""
    import lsattn.backends.cupy as cb

    cupy = pytest.importorskip("cupy")
    if cb.probe() is not None:
        pytest.skip(f"cupy backend unavailable: {cb.probe()}")
    decay = "reset" if T < 10000 else "moderate"
    errs = t4_case(5, 2, T, 64, 64, 64, decay, mode, CupyOps(0), xp=cupy)
    assert t4_checked(errs, decay) <= T4_BOUND[mode], errs
