"""The two-tier Gated DeltaNet scan's backward kernels (K1-K4 of benchmarks/NOTES.md "Session 24 — s24c":
gd_tier3_bwd, gd_coarse_bwd, gd_tier1x_bwd, gd_tier1_bwd) against the float64 NumPy twin ``gd_tier_twin``'s pieces,
emulated on the CPU (``cuda_emu_gd_tier_bwd.cpp``) and on the GPU.

K3 gd_tier1x_bwd (bounds: max |kernel - twin| / max |twin| per output, dqe, dek, dph, and for dg (a sum of d_k^2
products that cancels) over max |twin| + e^g |dX|_F |X_i|_F of its chunk; the twin on the values the kernel reads: float32-rounded, or bfloat16-rounded qe, ek, ph for GD_S16): ``K3_F32`` = 1e-4 for the 3xTF32 build
(float32 accumulation, ~2^-21 a product, over the 4 chunk steps' chains: observed ~1e-6 typically, but 2.8e-5 on dek of
a 3-chunk call under strong decays, a hypothesis draw; 1e-4 is the float32 bound gd_scan_bwd, whose work K3 and K4 take
over, is held to: test_cupy_gated_delta_grad.F32), ``K3_X1`` = 4e-3
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

from lsattn import gated_delta as gd_api
from lsattn._chunktree import chunk_layout, to_chunks
from lsattn.backends.cupy import gated_delta as cgd
from lsattn.backends.cupy._arrays import narrow, widen
from lsattn.backends.cupy._compile import CupyOps

import gd_tier_twin as tw
import test_gated_delta_tier_bwd as tb
from helpers import assert_close, cupy_source, emulation
from strategies import seeds

# ---- K1 gd_tier3_bwd (s25a) ----
# K1's tolerances (max |kernel - twin| <= tol * max |twin| per output: dQp, dSb, dlam's coarse columns), the twin
# (gd_tier_twin.tier3_bwd, float64) given the kernel's own inputs (Qp, qe as stored: bfloat16 in the GD_S16 build;
# Sb, lam, dout float32), so the bound measures the products alone:
# - gd_tier3_bwd (3xTF32, float32 callers): K1_F32 = 1e-5, float32's bound (split operands: ~2^-21 per product);
# - gd_tier3_bwd_x1 (1xTF32, bfloat16 callers), on float32 and on GD_S16 builds: K1_X1 = 4e-3 (operands rounded to
#   2^-11; gd_forms_bwd_x1's X1 bound, tests/test_cupy_gated_delta_grad.py).
# The saved Qp's rows of a period's first chunk and of period 0 (the forward does not write them) are NaN here: read,
# they would show.
K1_F32, K1_X1 = 1e-5, 4e-3


def tier_bwd_source():
    """The four kernel files of the two-tier backward as one source (TIER_BWD_KERNEL)."""
    return "\n".join(cupy_source(f) for f in ("gated_delta_tier3_bwd.cu", "gated_delta_coarse_bwd.cu",
                                               "gated_delta_tier1x_bwd.cu", "gated_delta_tier1_bwd.cu"))


def tier_bwd_lib(cfg, extra=None):
    """The emulation of the family's build for ``cfg`` (_compile.defines' TA, TI_BF16, CH, DKP, GD_S16, GD_DO16; extra: a
    timing build's other -D options)."""
    scan = "\n".join(cupy_source(f) for f in ("gated_delta.cu", "gated_delta_tier.cu", "gated_delta_coarse.cu"))
    bwd = cupy_source("gated_delta_bwd.cu") + "\n" + cupy_source("gated_delta_bwd_scan.cu")
    defines = {"TA": cfg.ta, "TI_BF16": int(cfg.half == "bf16"), "CH": cfg.CH, "DKP": cfg.DKP}
    defines |= ({"GD_S16": 1} if cfg.s16 else {}) | ({"GD_DO16": 1} if cfg.do16 else {}) | (extra or {})
    return emulation("cuda_emu_gd_tier_bwd.cpp", defines, {"KERNEL": scan, "BWD_KERNEL": bwd, "TIER_BWD_KERNEL": tier_bwd_source()})


class _EmuLaunch:
    """A kernel of the family as ``CupyOps``' launches call it (grid, block, args, shared_mem) on the emulation:
    arrays and int32 scalars, then x1 (the kernel's name), the blocks and the shared bytes."""

    RUN = {"gd_tier3_bwd": "run_tier3_bwd", "gd_coarse_bwd": "run_coarse_bwd", "gd_tier1x_bwd": "run_tier1x_bwd",
           "gd_tier1_bwd": "run_tier1_bwd"}

    def __init__(self, lib, name):
        self.lib, self.name = lib, name

    def __call__(self, grid, block, args, shared_mem=0):
        assert block == (256,)
        conv = [ctypes.c_int(int(x)) if isinstance(x, np.int32) else x.ctypes.data_as(ctypes.c_void_p) for x in args]
        base = self.name.removesuffix("_x1")
        getattr(self.lib, self.RUN[base])(*conv, ctypes.c_int(int(self.name != base)), ctypes.c_uint(grid[0]),
                                          ctypes.c_uint(shared_mem))


class EmuTierBwdOps:
    """``ops`` for CupyOps' two-tier backward methods whose ``_tk`` returns the emulated kernel (NumPy arrays)."""

    xp = np
    _i, _p = staticmethod(np.int32), staticmethod(CupyOps._p)
    gd_tier3_bwd = CupyOps.gd_tier3_bwd
    gd_coarse_bwd = CupyOps.gd_coarse_bwd
    gd_tier1x_bwd = CupyOps.gd_tier1x_bwd
    gd_tier1_bwd = CupyOps.gd_tier1_bwd

    r3b = None  # gd_tier3_bwd's chunks held (a timing build's GT3B_R_SET; None: GT3B_R)
    extra = {}  # a timing build's other -D options

    def _tk(self, op, cfg, name):
        assert op == "gated_delta_tier_bwd"
        extra = self.extra | ({"GT3B_R_SET": self.r3b} if self.r3b else {})
        smem = cfg.gd_tier3_bwd_smem(self.r3b) if self.r3b and name.startswith("gd_tier3_bwd") else cfg.smem(name)
        return _EmuLaunch(tier_bwd_lib(cfg, extra), name), (256,), smem


def tier_inputs(seed, B, T, dk, dv, C, decay):
    """gd_forms' outputs (qe, ek, ph, H, g: float64, chunked) and lam (B, T, L) of random inputs (normalised keys)."""
    rng = np.random.default_rng(seed)
    q, v, k = rng.standard_normal((B, T, dk)), rng.standard_normal((B, T, dv)), rng.standard_normal((B, T, dk))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    a, beta = tb.REGIMES[decay](rng, (B, T)), rng.random((B, T))
    lam = rng.random((B, T, (T - 1).bit_length() + 1)) + 0.25
    lay = chunk_layout(0, T, C)
    ch = gd_api._chunk_forms(np, *(to_chunks(np, x, lay, -2) for x in (q, k, v)), to_chunks(np, a, lay, -1),
                             to_chunks(np, beta, lay, -1), transition=False)
    return (ch["qeff"], ch["eGK"], ch["phi"], ch["H"], ch["g"]), lam


#: outputs whose twin is below this (float32's normal range: dg, dek under strong decays, e^g ~ e^-400) are compared
#: absolutely: the kernels' float32 sums there are subnormal or zero
TINY = 1e-30


def rel32(x, y):
    """max |x - y| / max(max |y|, TINY)."""
    return float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), TINY))


def stored(x, s16):
    """x as the forward stores a gd_e element: (the kernel's array, its float64 value) (s16: bfloat16 patterns)."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if not s16:
        return x32, x32.astype(np.float64)
    h = narrow(np, x32, "bf16").view(np.uint16)
    return h, widen(np, h, "bf16").astype(np.float64)


def sb_compact(Sb, nP, B, dk, dv):
    """The twin's coarse slots (a list of nP dicts {cl: (B, dk, dv)}) in gd_coarse's compact layout (B, popsum(nP),
    dk, dv): entry popsum(pp) + the rank of bit cl - 1 among pp's set bits."""
    out = np.zeros((B, max(cgd.popsum(nP), 1), dk, dv))
    for pp in range(nP):
        for r, cl in enumerate(sorted(Sb[pp])):
            assert (pp >> (cl - 1)) & 1
            out[:, cgd.popsum(pp) + r] = Sb[pp][cl]
    return out


def tf32(x):
    """float32 ``x`` rounded to tf32 (cvt.rna: ties away from zero, the low 13 bits cleared; finite x), as the bfloat16
    builds' forward stores Sb (GD_SBR) and Z (GD_ZR)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


@pytest.mark.parametrize("grouped", [False, True])
def test_saved_layout_is_the_forwards_emulated(monkeypatch, grouped):
    """The layouts K1 / K2 read, as these tests build them from the twin's forward (Z (B, nP, dk, dk) row-major with
    S <- Z S + Tot; Sb compact: entry popsum(pp) + rank of the level's bit; Qp (B, n, C, dk), a period's first chunk
    unwritten, and period 0's), equal the forward kernels' (CupyOps.gd_tiers on the CPU emulation, float32, T3FILL off: gd_cfill's slots
    where grouped) within float32's bound."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    from test_cupy_gated_delta import Emulated

    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(cgd, "T3FILL", False)
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
    B, T, dk, dv, C = 2, 1100, 9, 20, 16  # 69 chunks: 18 periods (the last of one chunk), 5 coarse levels
    (qe, ek, ph, H, g), lam = tier_inputs(8, B, T, dk, dv, C, "moderate")
    geo = tw.Geo(qe, H, lam)
    _, (qp, Z, _tot, Sb) = tw.forward(np, qe, ek, ph, H, g, lam, keep=True)
    cfg = cgd._config("float", dk, C, "")
    tier = cgd.tier_plan(cfg, 0, geo.n, 0, False, dk, dv)
    assert tier.grouped == grouped and tier.nP == geo.nP
    scratch = [np.full((B,) + shape, np.nan, dtype=dt) for shape, dt in zip(tier.shapes(dk, dv), tier.dtypes(np.float32, cfg, np))]
    f32 = [np.ascontiguousarray(x, dtype=np.float32) for x in (qe, ek, ph, H, g, lam)]
    out = np.zeros((B, geo.n, C, dv), np.float32)
    CupyOps.gd_tiers(Emulated(), cfg, tier, *f32, out, T, dk, dv, lam.shape[-1], geo.n, B, scratch=scratch)
    z_k, _tot_k, sb_k, qp_k = scratch[:4]
    assert_close(z_k[:, :-1], np.stack(Z[:-1], 1), K1_F32, what="Z")
    e = cgd.popsum(geo.nP)
    assert_close(sb_k[:, :e], sb_compact(Sb, geo.nP, B, dk, dv)[:, :e], K1_F32, what="Sb")
    rest = (np.arange(geo.n) % tw.TP != 0) & (np.arange(geo.n) >= tw.TP)  # (period 0: no coarse slot, no Qp)
    assert_close(qp_k[:, rest], np.stack(qp, 1)[:, rest], K1_F32, what="Qp")


def k1_case(seed, B, T, dk, dv, C, decay, s16):
    """K1's inputs as the kernel reads them (qe, Qp, Sb, lam, dout; s16: qe, Qp bfloat16 patterns, Sb tf32 values) and
    the twin's tier3_bwd on their values:
    (tier, kernel arrays, (dQp, dSb compact, dlam) of the twin)."""
    (qe, ek, ph, H, g), lam = tier_inputs(seed, B, T, dk, dv, C, decay)
    geo = tw.Geo(qe, H, lam)
    _, (qp, Z, _tot, Sb) = tw.forward(np, qe, ek, ph, H, g, lam, keep=True)
    qe_k, qe_v = stored(qe, s16)
    qp_k, qp_v = stored(np.stack(qp, 1), s16)
    first = np.arange(geo.n) % tw.TP == 0
    qp_v[:, first] = qe_v[:, first]  # (the kernel reads qe there)
    unwritten = first | (np.arange(geo.n) < tw.TP)  # (and period 0's: no coarse slot)
    qp_k[:, unwritten] = 0xFFFF if s16 else np.nan  # rows the forward leaves unwritten: NaN
    sb_k = sb_compact(Sb, geo.nP, B, dk, dv).astype(np.float32)
    sb_k = tf32(sb_k) if s16 else sb_k  # (the bfloat16 builds' Sb: GD_SBR)
    Sb_v = [{cl: sb_k[:, cgd.popsum(pp) + r].astype(np.float64) for r, cl in enumerate(sorted(Sb[pp]))} for pp in range(geo.nP)]
    lam_k = lam.astype(np.float32)
    dout_k = np.random.default_rng(seed + 1).standard_normal((B, geo.n, C, dv)).astype(np.float32)
    dqp, dS, dlam = tw.tier3_bwd(list(np.moveaxis(qp_v, 1, 0)), Sb_v, lam_k.astype(np.float64), dout_k.astype(np.float64), geo)
    dsb = np.zeros(sb_k.shape)
    for (cl, pp), x in dS.items():
        dsb[:, cgd.popsum(pp) + sorted(Sb[pp]).index(cl)] = x
    tier = cgd.Tier(geo.nP, (geo.nP - 1).bit_length(), n=geo.n, C=C)
    return tier, (qe_k, qp_k, sb_k, lam_k, dout_k), (dqp, dsb, dlam)


def run_k1(ops, cfg, tier, arrays, T, x1, xp=np, stores=False):
    """CupyOps.gd_tier3_bwd on ``ops`` with zeroed outputs: (dQp, dSb, dlam) as NumPy arrays; stores: dQp NaN-filled,
    as tier_backward's TIER_BWD_STORES leaves it for K1's stores (d_v <= 64)."""
    qe, qp, sb, lam, dout = (xp.asarray(a) for a in arrays)
    B, n, C, dk = qe.shape
    dv, L = dout.shape[-1], lam.shape[-1]
    dqp, dsb, dlam = xp.zeros(qe.shape, xp.float32), xp.full(sb.shape, np.nan, xp.float32), xp.zeros(lam.shape, xp.float32)
    if stores:
        dqp[...] = np.nan
    ops.gd_tier3_bwd(cfg, tier, qe, qp, sb, lam, dout, dqp, dsb, dlam, T, dk, dv, L, n, B, x1=x1)
    get = (lambda a: a.get()) if xp is not np else (lambda a: a)
    return get(dqp), get(dsb), get(dlam)


def check_k1(got, want, tier, tol, what):
    """The kernel's (dQp, dSb, dlam) against the twin's: dSb's entries of periods >= 1 (period 0 holds none), dlam's
    coarse columns (every other column: zero)."""
    (dqp, dsb, dlam), (wq, ws, wl) = got, want
    e = cgd.popsum(tier.nP)  # (one period: Sb's one placeholder entry, no slot)
    assert_close(dqp, wq, tol, what=f"dQp {what}")
    assert_close(dsb[:, :e], ws[:, :e], tol, what=f"dSb {what}")
    assert_close(dlam, wl, tol, what=f"dlam {what}")


@given(seed=seeds, B=st.integers(1, 2), T=st.integers(33, 700).filter(lambda t: t % 16), dk=st.integers(1, 16),
       dv=st.sampled_from([1, 5, 16, 70]), decay=st.sampled_from(list(tb.REGIMES)), build=st.sampled_from(["f32", "x1"]))
@example(seed=1, B=2, T=650, dk=16, dv=70, decay="reset", build="f32")  # 41 chunks, 11 periods, 4 coarse levels; 2 column blocks
@example(seed=2, B=1, T=500, dk=7, dv=5, decay="strong", build="x1")
@settings(max_examples=6, deadline=None)  # the CPU emulation: CI time
def test_tier3_bwd_emulated(seed, B, T, dk, dv, decay, build):
    """gd_tier3_bwd (3xTF32) / gd_tier3_bwd_x1 (1xTF32) of a float32 build, emulated on the CPU through
    CupyOps.gd_tier3_bwd, against the twin's tier3_bwd on the same inputs: T not a multiple of C = 16, several periods
    and coarse levels, d_k / d_v odd and d_v past one column block, strong decays and hard resets."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    tier, arrays, want = k1_case(seed, B, T, dk, dv, 16, decay, False)
    cfg = cgd._config("float", dk, 16, "")
    got = run_k1(EmuTierBwdOps(), cfg, tier, arrays, T, build == "x1")
    check_k1(got, want, tier, K1_X1 if build == "x1" else K1_F32, f"{build} T={T} dk={dk} dv={dv} {decay}")


@given(seed=seeds, B=st.integers(1, 2), T=st.integers(81, 700).filter(lambda t: t % 16), dk=st.integers(1, 16),
       dv=st.sampled_from([1, 5, 16, 64]), decay=st.sampled_from(list(tb.REGIMES)), build=st.sampled_from(["f32", "x1"]))
@example(seed=3, B=2, T=650, dk=16, dv=64, decay="reset", build="x1")  # 41 chunks: the last of 10 rows, 54 padding
@example(seed=4, B=1, T=500, dk=7, dv=5, decay="strong", build="f32")
@settings(max_examples=4, deadline=None)  # the CPU emulation: CI time
def test_tier3_bwd_stores_emulated(seed, B, T, dk, dv, decay, build):
    """K1 at one column block (d_v <= 64) writes every row of dQp, its padding rows past T and period 0's as zeros: on
    dQp NaN-filled (tier_backward's TIER_BWD_STORES), the twin's within the build's bound and the bits of the zeroed
    buffer's run (T not a multiple of C = 16, d_k odd and even; from 6 chunks: two periods, K1 runs)."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    tier, arrays, want = k1_case(seed, B, T, dk, dv, 16, decay, False)
    cfg = cgd._config("float", dk, 16, "")
    got, zeroed = (run_k1(EmuTierBwdOps(), cfg, tier, arrays, T, build == "x1", stores=s) for s in (True, False))
    check_k1(got, want, tier, K1_X1 if build == "x1" else K1_F32, f"stores {build} T={T} dk={dk} dv={dv} {decay}")
    for a, b in zip(got, zeroed):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("T, dk, dv, decay", [(700, 64, 20, "zero"), (300, 40, 64, "reset")])
def test_tier3_bwd_s16_emulated(T, dk, dv, decay):
    """gd_tier3_bwd_x1 of the GD_S16 build (qe, Qp as bfloat16 patterns; C = 64) emulated, against the twin on the
    same rounded values within K1_X1."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    tier, arrays, want = k1_case(5, 1, T, dk, dv, 64, decay, True)
    cfg = cgd._config("float", dk, 64, "bf16", True)
    got = run_k1(EmuTierBwdOps(), cfg, tier, arrays, T, True)
    check_k1(got, want, tier, K1_X1, f"s16 T={T} dk={dk} dv={dv} {decay}")


@pytest.mark.parametrize("R", [1, 2])
def test_tier3_bwd_chunks_held_emulated(R):
    """gd_tier3_bwd with R < 4 chunks of a period held at a time (d = C = 64's production form, R = 2; R = 1: d_k = 128
    at C = 16; GT3B_R_SET): the slots copied once a group, dS of the later groups added to the first's; 3xTF32, within
    K1_F32."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    ops = EmuTierBwdOps()
    ops.r3b = R
    tier, arrays, want = k1_case(4, 2, 470, 9, 20, 16, "moderate", False)  # 30 chunks: the last period's 2 of 4
    got = run_k1(ops, cgd._config("float", 9, 16, ""), tier, arrays, 470, False)
    check_k1(got, want, tier, K1_F32, f"R={R}")


def bf16_dout(dout):
    """float32 ``dout`` rounded to bfloat16 (nearest even): (its patterns (int16), their exact float32 values)."""
    pats = narrow(np, np.ascontiguousarray(dout, dtype=np.float32), "bf16")
    return pats, widen(np, pats, "bf16")


@pytest.mark.parametrize("build, T, dk, dv, C", [
    ("s16", 700, 64, 20, 64),  # the bfloat16 callers' GD_S16 x1 build; d_v % 4 == 0: 8-byte loads; 11 chunks: T % C
    ("x1", 650, 16, 70, 16),   # 1xTF32 on float32 intermediates, two column blocks (the second partial), element loads
    ("f32", 500, 7, 5, 16),    # 3xTF32 (no tf32 rounding pass), odd d_v
])
def test_tier3_bwd_do16_bit_equal(build, T, dk, dv, C):
    """gd_tier3_bwd's GD_DO16 build (``TRAIN_OUT16``: dout as bfloat16 patterns, widened at the load; x1: no tf32
    rounding pass over them) equals the float32 build on the widened same values bit for bit (widening is exact, the
    tf32 rounding of a bfloat16 value the value): dQp, dSb, dlam (with two column blocks, d_v = 70, their atomic adds
    into dlam in the emulation's block order, which varies from run to run as on the GPU: within 2^-20 of max |dlam|)."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    s16 = build == "s16"
    tier, arrays, _ = k1_case(9, 2, T, dk, dv, C, "moderate", s16)
    pats, wide = bf16_dout(arrays[4])
    cfg = cgd._config("float", dk, C, "bf16" if s16 else "", s16)
    want = run_k1(EmuTierBwdOps(), cfg, tier, arrays[:4] + (wide,), T, build != "f32")
    got = run_k1(EmuTierBwdOps(), dataclasses.replace(cfg, do16=True), tier, arrays[:4] + (pats,), T, build != "f32")
    for name, g, w in zip(("dQp", "dSb", "dlam"), got, want):
        if name == "dlam" and dv > 64:
            assert rel32(g, w) <= 2.0 ** -20, (name, build, rel32(g, w))
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{name} {build}")


def _cupy_ready():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver or no device
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _cupy_ready(), reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("T", [8192 + 100, 32768])
@pytest.mark.parametrize("build", ["f32", "s16"])
def test_gpu_tier3_bwd(T, build):
    """gd_tier3_bwd on the GPU (d = 64, C = 64, B H = 2): the float32 build's 3xTF32 kernel within K1_F32, the
    GD_S16 build's gd_tier3_bwd_x1 within K1_X1, against the twin on the same inputs."""
    import cupy

    s16 = build == "s16"
    tier, arrays, want = k1_case(11, 2, T, 64, 64, 64, "moderate", s16)
    cfg = cgd._config("float", 64, 64, "bf16" if s16 else "", s16)
    got = run_k1(CupyOps(0), cfg, tier, arrays, T, s16, xp=cupy)
    check_k1(got, want, tier, K1_X1 if s16 else K1_F32, f"{build} T={T}")

@pytest.mark.gpu
@pytest.mark.skipif(not _cupy_ready(), reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("build", ["f32", "s16"])
def test_gpu_tier3_bwd_stores(build):
    """K1 on the GPU (d = C = 64, 8292 tokens: the last chunk's 28 padding rows) on a NaN-filled dQp
    (TIER_BWD_STORES): the twin's within the build's bound (every row written)."""
    import cupy

    s16, T = build == "s16", 8192 + 100
    tier, arrays, want = k1_case(13, 2, T, 64, 64, 64, "moderate", s16)
    cfg = cgd._config("float", 64, 64, "bf16" if s16 else "", s16)
    got = run_k1(CupyOps(0), cfg, tier, arrays, T, s16, xp=cupy, stores=True)
    check_k1(got, want, tier, K1_X1 if s16 else K1_F32, f"stores {build} T={T}")

# ---- K2 gd_coarse_bwd (s25a) ----
# K2's tolerances (max |kernel - twin| <= tol * max |twin| for dZ and dTot), the twin's coarse_bwd (grouped=False) on the
# kernel's float32 inputs (Z, Sb from the twin's forward, dSb random): K2_F32 = 1e-5 (3xTF32), K2_X1 = 4e-3 (1xTF32; a
# chain of up to nP - 1 products, each rounding its operands to 2^-11, with contracting transfers: measured below
# 1e-3). Z's entry of the last period (never read: the chains' last steps have no product) is NaN here.
K2_F32, K2_X1 = 1e-5, 4e-3


def k2_case(seed, B, T, dk, dv, C, decay):
    """K2's inputs as the kernel reads them (Z, Sb, dSb: float32) and the twin's coarse_bwd on their values:
    (tier, kernel arrays, (dZ, dTot) of the twin)."""
    (qe, ek, ph, H, g), lam = tier_inputs(seed, B, T, dk, dv, C, decay)
    geo = tw.Geo(qe, H, lam)
    _, (_qp, Z, _tot, Sb) = tw.forward(np, qe, ek, ph, H, g, lam, keep=True)
    z_k = np.stack([np.full((B, dk, dk), np.nan) if z is None or x == geo.nP - 1 else z for x, z in enumerate(Z)], 1)
    z_k = z_k.astype(np.float32)
    sb_k = sb_compact(Sb, geo.nP, B, dk, dv).astype(np.float32)
    dsb_k = np.random.default_rng(seed + 2).standard_normal(sb_k.shape).astype(np.float32)
    Sb_v = [{cl: sb_k[:, cgd.popsum(pp) + r].astype(np.float64) for r, cl in enumerate(sorted(Sb[pp]))} for pp in range(geo.nP)]
    dS = {(cl, pp): dsb_k[:, cgd.popsum(pp) + r].astype(np.float64) for pp in range(geo.nP) for r, cl in enumerate(sorted(Sb[pp]))}
    dtot, dZ = tw.coarse_bwd([z.astype(np.float64) for z in np.moveaxis(z_k, 1, 0)], Sb_v, dS, geo)
    tier = cgd.Tier(geo.nP, (geo.nP - 1).bit_length(), n=geo.n, C=C)
    return tier, (z_k, sb_k, dsb_k), (np.stack(dZ, 1), np.stack(dtot, 1))


def run_k2(ops, cfg, tier, arrays, x1, xp=np):
    """CupyOps.gd_coarse_bwd on ``ops`` with zeroed outputs: (dZ, dTot) as NumPy arrays."""
    z, sb, dsb = (xp.asarray(a) for a in arrays)
    B, nP, dk, _ = z.shape
    dv = sb.shape[-1]
    dz, dtot = xp.zeros(z.shape, xp.float32), xp.zeros((B, nP, dk, dv), xp.float32)
    ops.gd_coarse_bwd(cfg, tier, z, sb, dsb, dz, dtot, dk, dv, B, x1=x1)
    get = (lambda a: a.get()) if xp is not np else (lambda a: a)
    return get(dz), get(dtot)


def check_k2(got, want, tol, what):
    for name, x, y in zip(("dZ", "dTot"), got, want):
        assert_close(x, y, tol, what=f"{name} {what}")


@given(seed=seeds, B=st.integers(1, 2), T=st.integers(33, 1500).filter(lambda t: t % 16), dk=st.integers(1, 16),
       dv=st.sampled_from([1, 5, 16, 70]), decay=st.sampled_from(list(tb.REGIMES)), build=st.sampled_from(["f32", "x1"]))
@example(seed=1, B=1, T=1500, dk=16, dv=70, decay="zero", build="f32")  # 94 chunks, 24 periods, 5 levels; 2 column blocks
@example(seed=2, B=2, T=700, dk=5, dv=16, decay="reset", build="x1")
@settings(max_examples=6, deadline=None)  # the CPU emulation: CI time
def test_coarse_bwd_emulated(seed, B, T, dk, dv, decay, build):
    """gd_coarse_bwd (3xTF32) / gd_coarse_bwd_x1 (1xTF32) of a float32 build, emulated on the CPU through
    CupyOps.gd_coarse_bwd, against the twin's per-level reverse chains on the same inputs: several periods and coarse
    levels (chains of up to 15 steps), d_k / d_v odd and d_v past one column block, zero / strong decays and resets."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    tier, arrays, want = k2_case(seed, B, T, dk, dv, 16, decay)
    got = run_k2(EmuTierBwdOps(), cgd._config("float", dk, 16, ""), tier, arrays, build == "x1")
    check_k2(got, want, K2_X1 if build == "x1" else K2_F32, f"{build} T={T} dk={dk} dv={dv} {decay}")


def test_coarse_bwd_s16_emulated():
    """gd_coarse_bwd_x1 of the GD_S16 build (C = d_k = 64: the production tiles) emulated, within K2_X1."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    tier, arrays, want = k2_case(3, 1, 1300, 64, 20, 64, "zero")
    got = run_k2(EmuTierBwdOps(), cgd._config("float", 64, 64, "bf16", True), tier, arrays, True)
    check_k2(got, want, K2_X1, "s16 T=1300")


@pytest.mark.gpu
@pytest.mark.skipif(not _cupy_ready(), reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("T", [8192 + 100, 32768])
@pytest.mark.parametrize("build", ["f32", "s16"])
def test_gpu_coarse_bwd(T, build):
    """gd_coarse_bwd on the GPU (d = 64, C = 64, B H = 2; 32K: chains of up to 127 steps): the float32 build's 3xTF32
    kernel within K2_F32, the GD_S16 build's gd_coarse_bwd_x1 within K2_X1, against the twin on the same inputs."""
    import cupy

    s16 = build == "s16"
    tier, arrays, want = k2_case(12, 2, T, 64, 64, 64, "zero")
    cfg = cgd._config("float", 64, 64, "bf16" if s16 else "", s16)
    got = run_k2(CupyOps(0), cfg, tier, arrays, s16, xp=cupy)
    check_k2(got, want, K2_X1 if s16 else K2_F32, f"{build} T={T}")

# ---- K3 gd_tier1x_bwd (s25b) ----


def k3_inputs(seed, B, T, dk, C, decay, s16):
    """gd_forms' outputs for T tokens (chunks of C) and random adjoints: (the kernel's arrays (qe, ek, ph: float32, or
    s16's bfloat16 patterns; g, dQp, dZ float32), the same as float64 values, the geometry)."""
    q, k, v, a, beta, lam = tb.make(seed, B, T, dk, 1, decay)
    (qe, ek, ph, H, g), _, lay = tb.forms(np, q, k, v, a, beta, lam, C)
    n = lay.n_chunks
    rng = np.random.default_rng(seed + 1)
    dqp, dZ = rng.standard_normal((B, n, C, dk)), rng.standard_normal((B, -(-n // tw.TP), dk, dk))
    pairs = [stored(x, s16) for x in (qe, ek, ph)]
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
    errs = [rel32(x, y) for x, y in zip(got[:3], want[:3])]
    den = float(np.max(np.abs(want[3]))) + k3_dg_scale(vals, geo)
    return errs + [float(np.max(np.abs(got[3] - want[3]) / np.maximum(den, 1e-30)))]


def k3_run(ops, cfg, dev, geo, x1, xp=np, bw=None, st=False, fill=0.0):
    """CupyOps.gd_tier1x_bwd on ``ops`` into float32 outputs: dqe, dek, dph, dg (NumPy); bw: a timing build's columns
    (GX_BW_SET); st: the kernel's stores (TIER_BWD_STORES), dqe, dek, dph filled with ``fill`` before (NaN: an element
    the kernel does not write shows), dg zeroed; else all zeroed."""
    B, n, C, dk = geo.B, geo.n, geo.C, geo.dk
    outs = [xp.full(s, fill if st and len(s) == 4 else 0.0, dtype=np.float32)
            for s in ((B, n, C, dk), (B, n, C, dk), (B, n, dk, C), (B, n))]
    tier = cgd.Tier(geo.nP, (geo.nP - 1).bit_length(), n=n, C=C)
    CupyOps.gd_tier1x_bwd(ops, cfg, tier, *dev, *outs, geo.T, dk, n, B, x1=x1, bw=bw, st=st)
    return [o if xp is np else o.get() for o in outs]


def k3_config(dk, C, s16):
    return cgd._config("float", dk, C, "bf16" if s16 else "", s16)


K3_F32, K3_X1 = 1e-4, 4e-3
#: under strong decays (e^-30 a token) dek and dph are ~1e-14 of their operands' scale, sums of terms of mixed
#: magnitudes whose relative error no tf32 product bounds (as K4's, T4 below: main's gd_scan_bwd_x1 reaches 0.40 of
#: max |twin| there): the 1xTF32 builds' dek, dph are held to the end-to-end bfloat16 gradient bound,
#: test_cupy_gated_delta_grad.BF16 = 5e-2 (a hypothesis draw, a 3-chunk call, reached 5.9e-3 on dph); 3xTF32 as above
K3_STRONG = {"f32": K3_F32, "x1": 5e-2, "s16": 5e-2}
K3_BUILDS = {"f32": (False, False, K3_F32), "x1": (False, True, K3_X1), "s16": (True, True, K3_X1)}  # (s16, x1, bound)


def _k3_check(seed, B, T, dk, C, decay, build, mutate=None):
    s16, x1, bound = K3_BUILDS[build]
    cfg = k3_config(dk, C, s16)
    dev, vals, geo = k3_inputs(seed, B, T, dk, C, decay, s16)
    got = k3_run(EmuTierBwdOps(), cfg, dev, geo, x1)
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
    if decay == "strong":  # dek, dph: sums of mixed magnitudes (K3_STRONG)
        errs[1:3] = [e * bound / K3_STRONG[build] for e in errs[1:3]]
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
    one = EmuTierBwdOps()
    one.extra = {"GX_DB_SET": 0}
    got = [k3_run(ops, k3_config(14, 16, s16), dev, geo, x1) for ops in (EmuTierBwdOps(), one)]
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation of the kernels")
def test_tier1x_bwd_emulated_timing_build_bw32():
    """The timing build of 32 columns a block at DKP = 64 (GX_BW_SET=32, GX_DB_SET=0: two blocks per SM) within the
    3xTF32 bound of the twin: d_k = 40, two column blocks, the second partial."""
    dev, vals, geo = k3_inputs(5, 2, 200, 40, 16, "moderate", False)
    ops = EmuTierBwdOps()
    ops.extra = {"GX_BW_SET": 32, "GX_DB_SET": 0}
    got = k3_run(ops, k3_config(40, 16, False), dev, geo, False, bw=32)
    errs = k3_errors(got, k3_twin(vals, geo), vals, geo)
    assert max(errs) < K3_F32, errs


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation of the kernels")
@given(seed=seeds, B=st.integers(1, 2), T=st.sampled_from([37, 100, 129, 176, 200]), dk=st.integers(1, 16),
       decay=st.sampled_from(list(tb.REGIMES)), build=st.sampled_from(list(K3_BUILDS)))
@example(seed=1, B=2, T=200, dk=13, decay="reset", build="s16")  # 13 chunks: the last period of 1; d_k odd
@example(seed=2, B=1, T=176, dk=16, decay="mixed", build="x1")  # the last period of 3; float2 stores
@settings(max_examples=4, deadline=None)
def test_tier1x_bwd_stores_emulated(seed, B, T, dk, decay, build):
    """gd_tier1x_bwd's st (one column block: TIER_BWD_STORES) writes every element of dqe, dek, dph (NaN-filled
    before): the twin's within the build's bound (as test_tier1x_bwd_emulated_matches_twin) and the bits of the adds
    into zeros (st off), dg included."""
    s16, x1, bound = K3_BUILDS[build]
    cfg = k3_config(dk, 16, s16)
    dev, vals, geo = k3_inputs(seed, B, T, dk, 16, decay, s16)
    got = k3_run(EmuTierBwdOps(), cfg, dev, geo, x1, st=True, fill=np.nan)
    errs = k3_errors(got, k3_twin(vals, geo), vals, geo)
    if decay == "strong":
        errs[1:3] = [e * bound / K3_STRONG[build] for e in errs[1:3]]
    assert max(errs) < bound, (errs, bound)
    for a, b in zip(got, k3_run(EmuTierBwdOps(), cfg, dev, geo, x1)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation of the kernels")
@pytest.mark.parametrize("T, dk, C, build, bw, stores", [
    (300, 50, 64, "s16", None, True), (70, 70, 16, "f32", None, False), (200, 40, 16, "f32", 32, False)])
def test_tier1x_bwd_stores_column_blocks(T, dk, C, build, bw, stores):
    """st where K3 has one column block (d_k = 50 on the production build, C = DKP = 64, GD_S16: 14 columns masked)
    stores every element (NaN-filled before), bit-equal to st off; where it has several (d_k = 70: DKP = 128, three
    blocks of 32; the timing build GX_BW_SET=32 at d_k = 40) the kernel ignores st and adds (into zeros: bit-equal)."""
    s16, x1, _ = K3_BUILDS[build]
    dev, vals, geo = k3_inputs(6, 1, T, dk, C, "moderate", s16)
    ops = EmuTierBwdOps()
    ops.extra = {"GX_BW_SET": 32, "GX_DB_SET": 0} if bw else {}
    assert stores == (dk <= (bw or k3_config(dk, C, s16).tier1x_bwd_bw))
    run = lambda st, fill=0.0: k3_run(ops, k3_config(dk, C, s16), dev, geo, x1, bw=bw, st=st, fill=fill)
    got = run(True, np.nan if stores else 0.0)
    assert all(np.isfinite(x).all() for x in got)
    for a, b in zip(got, run(False)):
        np.testing.assert_array_equal(a, b)


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


@pytest.mark.gpu
@pytest.mark.parametrize("build", ["s16", "f32"])
def test_gpu_tier1x_bwd_stores(build):
    """gd_tier1x_bwd's st on the GPU (d_k = C = 64, 8292 tokens) into NaN-filled dqe, dek, dph: the twin's within the
    build's bound (every element written)."""
    import cupy

    s16, x1, bound = K3_BUILDS[build]
    dev, vals, geo = k3_inputs(12, 2, 8192 + 100, 64, 64, "mixed", s16)
    got = k3_run(CupyOps(cupy.cuda.Device().id), k3_config(64, 64, s16), [cupy.asarray(x) for x in dev], geo, x1,
                 xp=cupy, st=True, fill=np.nan)
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
            assert tb.rel(Zk[:, pp], Z[pp]) < tol
    Qv = (Qp.astype(np.uint32) << 16).view(np.float32) if s16 else Qp
    for c in range(tw.TP, n):
        if c % tw.TP:
            assert tb.rel(Qv[:, c], qp[c]) < tol, c

# ---- K4 gd_tier1_bwd (s25c) ----
#: gd_tier1_bwd's bounds (max |kernel - twin| <= bound * max(max |twin|, TINY), per output (rel32); the twin on the values
#: the kernel reads, widened to float64): 3xTF32 (float32 callers) T4_F32 = 1e-4, its products ~2^-21 relative and the
#: float32 sums of a period's chunk steps (measured 1.3e-6 at worst over 50 draws, but 2.8e-5 in a hypothesis draw of a
#: 3-chunk call under mixed decays): gd_scan_bwd's own float32 bound (test_cupy_gated_delta_grad.F32); 1xTF32 (bfloat16 callers, GD_S16 or not)
#: T4_X1 = 20 * 2^-11: its operands rounded to tf32 (W, dW, dS', the slots, dout's weighted rows) through a period's
#: chained steps (the slots two products deep, dS' passed down three), and dg a sum of d_k d_v signed products (measured
#: 3.4e-3 at worst over 100 draws, dg of a 3-chunk call 7.8e-3; at d = C = 64 ~5e-4). Outputs below float32's range:
#: rel32's TINY. Under strong decays (e^-30 a token) dek
#: and dph are ~1e-14 of their operands' scale, sums of terms of mixed magnitudes, whose relative error no tf32 product
#: bounds (main's gd_scan_bwd / gd_scan_bwd_x1 on a 4-chunk call: up to 1.4e-4 / 0.40 of max |twin|): those two are
#: compared with gd_scan_bwd's own error on the same inputs (test_tier1_bwd_strong_decays_as_scan_bwd), the others as
#: above.
T4_F32, T4_X1 = 1e-4, 1e-2
T4_OUT = ("dqe", "dek", "dph", "dH", "dg", "dlam")


def t4_case(seed, B, T, C, dk, dv, decay, mode, ops, xp=np, bw=None, raw=False, do16=None):
    """gd_tier1_bwd (``mode``: 'f32' 3xTF32, 'x1' 1xTF32 on float32 intermediates, 's16' 1xTF32 on bfloat16 ones) on
    ``ops`` against the twin's tier1_bwd, the forms of tests/test_gated_delta_tier_bwd.make's inputs, random dout and
    dTot (the last period's zero: no output) -> {output: relative error} (raw: {output: the kernel's}). do16: dout
    rounded to bfloat16, passed as float32 values ('wide') or as the patterns to the GD_DO16 build ('pats')."""
    q, k, v, a, beta, lam = tb.make(seed, B, T, dk, dv, decay)
    (qe, ek, ph, H, g), _, lay = tb.forms(np, q, k, v, a, beta, lam, C)
    n, nP, L = lay.n_chunks, -(-lay.n_chunks // tw.TP), lam.shape[-1]
    rng = np.random.default_rng(seed + 11)
    dout = rng.standard_normal((B, n, C, dv)).astype(np.float32)
    dtot = rng.standard_normal((B, nP, dk, dv)).astype(np.float32)
    dtot[:, -1] = 0
    dk_in = dout
    if do16:
        pats, dout = bf16_dout(dout)
        dk_in = pats if do16 == "pats" else dout
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
    cfg = cgd._config("float", dk, C, "bf16" if mode != "f32" else "", s16)
    cfg = dataclasses.replace(cfg, do16=True) if do16 == "pats" else cfg
    assert cfg.CH == C
    got = {key: xp.zeros(want[key].shape, dtype=xp.float32) for key in T4_OUT}
    got["dH"][...] = np.nan  # written whole
    dev = [xp.asarray(x) for x in kin + [g32, lam32, dk_in, dtot]]
    tier = cgd.Tier(nP, (nP - 1).bit_length(), n=n, C=C)
    CupyOps.gd_tier1_bwd(ops, cfg, tier, *dev, *(got[key] for key in T4_OUT), T, dk, dv, L, n, B, x1=mode != "f32", bw=bw)
    got = {key: np.asarray(x.get() if hasattr(x, "get") else x, dtype=np.float64) for key, x in got.items()}
    assert not np.isnan(got["dH"]).any(), "dH not written whole"
    if raw:
        return got
    return {key: rel32(got[key], want[key]) for key in T4_OUT}


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
    errs = t4_case(seed, B, T, C, dk, dv, decay, mode, EmuTierBwdOps())
    assert t4_checked(errs, decay) <= T4_BOUND[mode], (mode, errs)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
def test_tier1_bwd_emulated_two_column_blocks():
    """d_v = 70: two column blocks of 64 (the second of 6 columns, masked); dH, dqe's sums over both."""
    errs = t4_case(3, 1, 130, 16, 9, 70, "moderate", "f32", EmuTierBwdOps())
    assert max(errs.values()) <= T4_F32, errs


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
@pytest.mark.parametrize("mode", ["s16", "f32"])
def test_tier1_bwd_emulated_32_columns(mode):
    """The timing build of 32 value columns a block (GT4_BW_SET=32; 2 blocks per SM at d_k = 64 with GD_S16's tiles):
    d_v = 40, two column blocks."""
    ops = EmuTierBwdOps()
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
    errs = t4_case(seed, B, T, C, dk, dv, "strong", mode, EmuTierBwdOps())
    q, k, v, a, beta, lam = tb.make(seed, B, T, dk, dv, "strong")
    (qe, ek, ph, H, g), _, lay = tb.forms(np, q, k, v, a, beta, lam, C)
    n, L = lay.n_chunks, lam.shape[-1]
    dout = np.random.default_rng(seed + 11).standard_normal((B, n, C, dv)).astype(np.float32)  # (t4_case's)
    f = [x.astype(np.float32) for x in (qe, ek, ph, H, g, lam)]
    want = tw.backward(*[x.astype(np.float64) for x in f], dout.astype(np.float64))
    NLC = cgd.chunk_slots(0, n, T % C == 0)
    sv, dS = np.zeros((B, n, NLC, dk, dv), np.float32), np.zeros((B, NLC, dk, dv), np.float32)
    outs = [np.zeros(x.shape, np.float32) for x in (qe, ek, ph, H, g, lam)]
    cfg = cgd._config("float", dk, C, "" if mode == "f32" else "bf16")
    EmulatedOps().gd_scan_bwd(cfg, *f, dout, dS, sv, dS, *outs, T, dk, dv, L, 0, 0, n, 0, NLC, T % C == 0, B,
                              x1=mode != "f32")
    for key, o, w in zip(T4_OUT, outs, want):
        if key in ("dek", "dph"):
            theirs = rel32(o, w)
            assert errs[key] <= 2 * theirs + T4_BOUND[mode], (key, errs[key], theirs)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
@pytest.mark.parametrize("mode", ["s16", "x1"])
def test_tier1_bwd_pre_rounded_operands_bit_equal(mode):
    """GT4_PR_SET (1xTF32: GD_S16's tiles and W, dW taken as the tf32 values they are, no cvt at the loads) gives the
    bits of the build rounding every operand at its loads (GT4_PR_SET=0)."""
    ref = EmuTierBwdOps()
    ref.extra = {"GT4_PR_SET": 0}
    a = t4_case(8, 2, 150, 16, 11, 13, "moderate", mode, EmuTierBwdOps(), raw=True)
    b = t4_case(8, 2, 150, 16, 11, 13, "moderate", mode, ref, raw=True)
    for key in T4_OUT:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
@pytest.mark.parametrize("mode", ["s16", "x1", "f32"])
@pytest.mark.parametrize("dk, dv, bw", [(11, 13, None), (12, 40, 32)])
def test_tier1_bwd_float2_adds_unrolled_bit_equal(mode, dk, dv, bw):
    """GT4_F2_SET (dqe, dek, dph added as float2 pairs, dph's product taken transposed) and GT4_KU_SET (GD_S16's 1xTF32
    products reduced over their whole padded extent, unrolled: the extra terms zero) give the bits of session 25's form
    (both 0): d_k, d_v not multiples of 8, one or two column blocks (the second partial). 3xTF32 (f32): dph's three
    split products in another order (D_lo W_hi first, not W_lo D_hi): within 2^-20 of max |dph| (float32's sums). dlam
    where two warps add into one element (d_k > 8) and GT4_KU_SET ran more (zero) products: the warps' atomic order (on
    the GPU never fixed; on the emulation each mma a warp barrier, so another count another interleaving) within 2^-20."""
    ref = EmuTierBwdOps()
    ref.extra = {"GT4_F2_SET": 0, "GT4_KU_SET": 0}
    new = EmuTierBwdOps()
    if bw:
        ref.extra["GT4_BW_SET"] = bw
        new.extra = {"GT4_BW_SET": bw}
    a = t4_case(8, 2, 150, 16, dk, dv, "moderate", mode, new, bw=bw, raw=True)
    b = t4_case(8, 2, 150, 16, dk, dv, "moderate", mode, ref, bw=bw, raw=True)
    for key in T4_OUT:
        if (mode == "f32" and key == "dph") or (mode == "s16" and key == "dlam"):
            assert rel32(a[key], b[key]) <= 2.0 ** -20, (key, rel32(a[key], b[key]))
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
@pytest.mark.parametrize("mode, B, T, C, dk, dv", [("s16", 1, 600, 64, 64, 40), ("x1", 2, 150, 16, 11, 13),
                                                  ("f32", 2, 250, 16, 5, 70)])
def test_tier1_bwd_do16_bit_equal(mode, B, T, C, dk, dv):
    """gd_tier1_bwd's GD_DO16 build (``TRAIN_OUT16``: dout as bfloat16 patterns, widened at the load) equals the
    float32 build on the widened same values bit for bit: the production GD_S16 x1 build (d_v % 4 == 0: 8-byte loads;
    two 32-column blocks), 1xTF32 and 3xTF32 on float32 intermediates (odd d_v: element loads; two 64-column blocks, the
    second partial); T not a multiple of C (the last chunk's rows past T zero)."""
    a = t4_case(4, B, T, C, dk, dv, "moderate", mode, EmuTierBwdOps(), raw=True, do16="pats")
    b = t4_case(4, B, T, C, dk, dv, "moderate", mode, EmuTierBwdOps(), raw=True, do16="wide")
    for key in T4_OUT:
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key} {mode}")


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the CPU emulation")
def test_tier1_bwd_emulated_production_dims():
    """d_k = d_v = C = 64 (bfloat16 callers' GD_S16 build): 4 tiles a warp, two warps a row block; 10 chunks."""
    errs = t4_case(6, 1, 600, 64, 64, 64, "moderate", "s16", EmuTierBwdOps())
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
