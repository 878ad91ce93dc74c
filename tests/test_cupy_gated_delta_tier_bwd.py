"""The two-tier Gated DeltaNet scan's backward kernels (K1-K4 of benchmarks/NOTES.md "Session 24 — s24c":
gd_tier3_bwd, gd_coarse_bwd, gd_tier1x_bwd, gd_tier1_bwd) against the float64 NumPy twin ``gd_tier_twin``'s pieces,
emulated on the CPU (``cuda_emu_gd_tier_bwd.cpp``) and on the GPU.

K3 gd_tier1x_bwd (bounds: max |kernel - twin| / max |twin| per output, dqe, dek, dph, and for dg (a sum of d_k^2
products that cancels) over max |twin| + e^g |dX|_F |X_i|_F of its chunk; the twin on the values the kernel reads: float32-rounded, or bfloat16-rounded qe, ek, ph for GD_S16): ``K3_F32`` = 2e-5 for the 3xTF32 build
(float32 accumulation, ~2^-21 a product, over the 4 chunk steps' chains: observed up to ~1e-6), ``K3_X1`` = 4e-3
(2^-8, gd_forms_bwd_x1's) for the 1xTF32 build on float32 or GD_S16 tiles (operands rounded to 2^-11: observed up to
~1e-3). Inputs: gd_forms' outputs (the array-API WY forms of ``test_gated_delta_tier_bwd.make``: zero, moderate,
strong, mixed decays and -inf resets), random adjoints dQp, dZ."""
from __future__ import annotations

import ctypes
import dataclasses
import shutil

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from lsattn.backends.cupy import gated_delta as cgd
from lsattn.backends.cupy._compile import CupyOps, make_config

import gd_tier_twin as tw
import test_gated_delta_tier_bwd as tb
from helpers import cupy_source, emulation
from strategies import seeds
from test_cupy_gated_delta import scan_source
from test_cupy_gated_delta_grad import bwd_source

TIER_BWD_FILES = ("gated_delta_tier3_bwd.cu", "gated_delta_coarse_bwd.cu", "gated_delta_tier1x_bwd.cu",
                  "gated_delta_tier1_bwd.cu")


def tier_bwd_lib(cfg, extra=None):
    """The emulation library of the four kernels' sources (with gd_scan's, gd_tiers' and gd_scan_bwd's) for ``cfg``."""
    defines = {"TA": cfg.ta, "CH": cfg.CH, "DKP": cfg.DKP} | ({"TI_BF16": 1} if cfg.half == "bf16" else {})
    defines |= ({"GD_S16": 1} if cfg.s16 else {}) | (extra or {})
    return emulation("cuda_emu_gd_tier_bwd.cpp", defines,
                     {"KERNEL": scan_source(), "BWD_KERNEL": bwd_source(),
                      "TIER_BWD_KERNEL": "\n".join(cupy_source(f) for f in TIER_BWD_FILES)})


def _bf16(x):
    """x rounded to bfloat16 (nearest even): (the uint16 patterns, their float64 values)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return u, (u.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def _rel(x, y):
    return float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-30))

# ---- K1 gd_tier3_bwd (s25a) ----

# ---- K2 gd_coarse_bwd (s25a) ----

# ---- K3 gd_tier1x_bwd (s25b) ----


class _K3Kernel:
    """gd_tier1x_bwd(_x1) of ``_compile`` launches as the emulation's run_tier1x_bwd: 10 arrays, then int32 scalars."""

    def __init__(self, lib, name):
        self.lib, self.x1 = lib, name.endswith("_x1")

    def __call__(self, grid, block, args, shared_mem=0):
        assert block == (256,) and all(a.flags.c_contiguous for a in args[:10])
        self.lib.run_tier1x_bwd(*[a.ctypes.data_as(ctypes.c_void_p) for a in args[:10]],
                                *[ctypes.c_int(int(x)) for x in args[10:]], ctypes.c_int(int(self.x1)),
                                ctypes.c_uint(grid[0]), ctypes.c_uint(shared_mem))


class K3Ops:
    """``CupyOps.gd_tier1x_bwd``'s host logic with its launches on the emulation."""

    xp, _i = np, staticmethod(np.int32)
    extra = None  # other -D options

    def _tk(self, op, cfg, name):
        assert op == "gated_delta_tier_bwd"
        return _K3Kernel(tier_bwd_lib(cfg, self.extra), name), (256,), cfg.smem(name)


def k3_inputs(seed, B, T, dk, C, decay, s16):
    """gd_forms' outputs for T tokens (chunks of C) and random adjoints: (the kernel's arrays (qe, ek, ph: float32, or
    s16's bfloat16 patterns; g, dQp, dZ float32), the same as float64 values, the geometry)."""
    q, k, v, a, beta, lam = tb.make(seed, B, T, dk, 1, decay)
    (qe, ek, ph, H, g), _, lay = tb.forms(np, q, k, v, a, beta, lam, C)
    n = lay.n_chunks
    rng = np.random.default_rng(seed + 1)
    dqp, dZ = rng.standard_normal((B, n, C, dk)), rng.standard_normal((B, -(-n // tw.TP), dk, dk))
    pairs = [_bf16(x) if s16 else (x.astype(np.float32),) * 2 for x in (qe, ek, ph)]
    pairs += [(x.astype(np.float32),) * 2 for x in (g, dqp, dZ)]
    dev = [np.ascontiguousarray(p[0]) for p in pairs]
    return dev, [np.asarray(p[1], dtype=np.float64) for p in pairs], tw.Geo(qe, H, lam)


def k3_twin(vals, geo, mutate=None):
    """tier1x_bwd of the twin: dqe, dek, dph, dg."""
    qe, ek, ph, g, dqp, dZ = vals
    grads = {"dqe": np.zeros_like(qe), "dek": np.zeros_like(ek), "dph": np.zeros_like(ph), "dg": np.zeros_like(g)}
    tw.tier1x_bwd(qe, ek, ph, g, dqp, dZ.swapaxes(0, 1), geo, grads, mutate)
    return [grads[k] for k in ("dqe", "dek", "dph", "dg")]


def k3_dg_scale(vals, geo):
    """Per chunk e^g |dX|_F |X_i|_F (B, n) (the twin's dX, X_i): the size of dg's sum of d_k^2 products, on which its
    rounding errors scale (dg is a difference of such terms: its float32 sum cancels)."""
    qe, ek, ph, g, dqp, dZ = vals
    scale = np.zeros_like(g)
    for pp in range(geo.nP):
        cs = [c for c in range(tw.TP * pp, tw.TP * pp + tw.TP) if c < geo.n]
        X = [tw._eye(np, qe, geo.dk, geo.B)]
        for c in cs[:-1]:
            X.append(tw._step(np, ek, ph, g, c, X[-1]))
        dX = dZ[:, pp] if len(cs) == tw.TP else np.zeros((geo.B, geo.dk, geo.dk))
        for i in range(len(cs) - 1, -1, -1):
            c, eg = cs[i], np.exp(g[:, cs[i]])[:, None, None]
            scale[:, c] = eg[:, 0, 0] * np.linalg.norm(dX, axis=(-1, -2)) * np.linalg.norm(X[i], axis=(-1, -2))
            dX = eg * dX - tw._tr(ek[:, c]) @ (tw._tr(ph[:, c]) @ dX) + tw._tr(qe[:, c]) @ dqp[:, c]
    return scale


def k3_errors(got, want, vals, geo):
    """max |got - twin| / max |twin| per output (dqe, dek, dph), dg's over max |twin| + its chunk's k3_dg_scale."""
    errs = [_rel(x, y) for x, y in zip(got[:3], want[:3])]
    den = float(np.max(np.abs(want[3]))) + k3_dg_scale(vals, geo)
    return errs + [float(np.max(np.abs(got[3] - want[3]) / np.maximum(den, 1e-30)))]


def k3_run(ops, cfg, dev, geo, x1, xp=np, bw=None):
    """CupyOps.gd_tier1x_bwd on ``ops`` into zeroed float32 outputs: dqe, dek, dph, dg (NumPy); bw: a timing build's
    columns (GX_BW_SET)."""
    B, n, C, dk = geo.B, geo.n, geo.C, geo.dk
    outs = [xp.zeros(s, dtype=np.float32) for s in ((B, n, C, dk), (B, n, C, dk), (B, n, dk, C), (B, n))]
    tier = cgd.Tier(geo.nP, (geo.nP - 1).bit_length(), n=n, C=C)
    CupyOps.gd_tier1x_bwd(ops, cfg, tier, *dev, *outs, geo.T, dk, n, B, x1=x1, bw=bw)
    return [o if xp is np else o.get() for o in outs]


def k3_config(dk, C, s16):
    cfg = make_config("float", dk, 16, C)
    return dataclasses.replace(cfg, half="bf16", tc=False, s16=True) if s16 else cfg


K3_F32, K3_X1 = 2e-5, 4e-3
K3_BUILDS = {"f32": (False, False, K3_F32), "x1": (False, True, K3_X1), "s16": (True, True, K3_X1)}  # (s16, x1, bound)


def _k3_check(seed, B, T, dk, C, decay, build, mutate=None):
    s16, x1, bound = K3_BUILDS[build]
    cfg = k3_config(dk, C, s16)
    dev, vals, geo = k3_inputs(seed, B, T, dk, C, decay, s16)
    got = k3_run(K3Ops(), cfg, dev, geo, x1)
    return k3_errors(got, k3_twin(vals, geo, mutate), vals, geo), bound


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation of the kernels")
@given(seed=seeds, B=st.integers(1, 2), T=st.sampled_from([37, 100, 129, 176, 200]), dk=st.integers(1, 16),
       decay=st.sampled_from(list(tb.REGIMES)), build=st.sampled_from(list(K3_BUILDS)))
@example(seed=1, B=2, T=200, dk=13, decay="reset", build="s16")  # 13 chunks: 4 periods, the last of 1 chunk
@example(seed=2, B=1, T=176, dk=16, decay="strong", build="f32")  # 11 chunks: the last period of 3
@example(seed=3, B=1, T=128, dk=16, decay="zero", build="x1")  # every period complete (the last's dZ read)
@settings(max_examples=6, deadline=None)
def test_tier1x_bwd_emulated_matches_twin(seed, B, T, dk, decay, build):
    """gd_tier1x_bwd's CUDA source on the CPU (C = 16, d_k up to 16, odd ones included) against the twin's
    tier1x_bwd: dqe, dek, dph, dg within the build's bound."""
    errs, bound = _k3_check(seed, B, T, dk, 16, decay, build)
    assert max(errs) < bound, (errs, bound)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation of the kernels")
@pytest.mark.parametrize("T, dk, C, build", [(70, 70, 16, "f32"), (300, 50, 64, "s16")])
def test_tier1x_bwd_emulated_column_blocks(T, dk, C, build):
    """Larger heads: d_k = 70 (DKP = 128: 3 column blocks of 32, the last partial); d_k = 50 on the production build
    (C = DKP = 64, GD_S16: 16-bit tiles by element copies, 14 columns masked), 5 chunks."""
    errs, bound = _k3_check(4, 1, T, dk, C, "moderate", build)
    assert max(errs) < bound, (errs, bound)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation of the kernels")
@pytest.mark.parametrize("build", ["f32", "x1"])
def test_tier1x_bwd_one_tile_set_bit_equal(build):
    """GX_DB_SET=0 (one set of the chunk's tiles, each step's copies waited for at its top: what float32 tiles at
    DKP = CH = 64 run) gives the bits of the default build (two sets, the next step's copies under this one's)."""
    s16, x1, _ = K3_BUILDS[build]
    dev, vals, geo = k3_inputs(8, 2, 180, 14, 16, "mixed", s16)
    one = K3Ops()
    one.extra = {"GX_DB_SET": 0}
    got = [k3_run(ops, k3_config(14, 16, s16), dev, geo, x1) for ops in (K3Ops(), one)]
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation of the kernels")
def test_tier1x_bwd_emulated_timing_build_bw32():
    """The timing build of 32 columns a block at DKP = 64 (GX_BW_SET=32, GX_DB_SET=0: two blocks per SM) within the
    3xTF32 bound of the twin: d_k = 40, two column blocks, the second partial."""
    dev, vals, geo = k3_inputs(5, 2, 200, 40, 16, "moderate", False)
    ops = K3Ops()
    ops.extra = {"GX_BW_SET": 32, "GX_DB_SET": 0}
    got = k3_run(ops, k3_config(40, 16, False), dev, geo, False, bw=32)
    errs = k3_errors(got, k3_twin(vals, geo), vals, geo)
    assert max(errs) < K3_F32, errs


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation of the kernels")
def test_tier1x_bwd_emulated_mutant_fails():
    """The comparison can fail: the kernel (3xTF32) against the twin's deliberate error (``mutate='tier1x'``: dX's
    decay e^g dropped)."""
    errs, bound = _k3_check(5, 1, 100, 9, 16, "moderate", "f32", mutate="tier1x")
    assert max(errs) > 100 * bound, errs


@pytest.mark.gpu
@pytest.mark.parametrize("T, decay", [(8192 + 100, "zero"), (32768, "mixed")])
@pytest.mark.parametrize("build", ["s16", "f32"])
def test_gpu_tier1x_bwd_matches_twin(T, decay, build):
    """On the GPU at d_k = 64, C = 64, B H = 2: gd_tier1x_bwd_x1 on GD_S16 intermediates and gd_tier1x_bwd (3xTF32,
    float32) against the twin's tier1x_bwd, within K3_X1 / K3_F32 (8292 tokens: the last period of 2 chunks)."""
    import cupy

    s16, x1, bound = K3_BUILDS[build]
    dev, vals, geo = k3_inputs(11, 2, T, 64, 64, decay, s16)
    got = k3_run(CupyOps(cupy.cuda.Device().id), k3_config(64, 64, s16), [cupy.asarray(x) for x in dev], geo, x1,
                 xp=cupy)
    errs = k3_errors(got, k3_twin(vals, geo), vals, geo)
    assert max(errs) < bound, (errs, bound)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation of the kernels")
@pytest.mark.parametrize("s16", [False, True])
def test_tier1x_forward_layout_is_the_twins(s16):
    """gd_tier1x (the forward, emulated) stores Z as the twin's X_4 ([kk][col], no transpose) and Qp as the twin's
    (rows of chunks after a period's first): the layouts gd_tier1x_bwd reads dZ and dQp in."""
    T, dk, C, B = 150, 11, 16, 2
    cfg = k3_config(dk, C, s16)
    dev, vals, geo = k3_inputs(6, B, T, dk, C, "moderate", s16)
    qp, Z = tw.tier1x(np, *vals[:3], vals[3])
    n, nP = geo.n, geo.nP
    Zk, Tot = np.zeros((B, nP, dk, dk), np.float32), np.zeros((B, nP, dk, 1), np.float32)
    Qp = np.zeros((B, n, C, dk), np.uint16 if s16 else np.float32)
    H, lam, out = (np.zeros(s, np.uint16 if s16 and i == 0 else np.float32) for i, s in
                   enumerate([(B, n, dk, 1), (B, T, 8), (B, n, C, 1)]))
    lib = tier_bwd_lib(cfg)
    lib.run_tier1x(*[x.ctypes.data_as(ctypes.c_void_p) for x in (*dev[:3], H, dev[3], lam, out, Zk, Tot, Qp)],
                   *[ctypes.c_int(x) for x in (T, dk, 1, 8, n, nP, B)], ctypes.c_uint(nP * B),
                   ctypes.c_uint(cfg.smem("gd_tier1x")))
    tol = K3_X1 if s16 else K3_F32
    for pp in range(nP):
        if Z[pp] is not None:
            assert _rel(Zk[:, pp], Z[pp]) < tol
    Qv = (Qp.astype(np.uint32) << 16).view(np.float32) if s16 else Qp
    for c in range(tw.TP, n):
        if c % tw.TP:
            assert _rel(Qv[:, c], qp[c]) < tol, c

# ---- K4 gd_tier1_bwd (s25c) ----
