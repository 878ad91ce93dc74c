"""The two-tier Gated DeltaNet scan's backward kernels (K1-K4 of benchmarks/NOTES.md "Session 24 — s24c":
gd_tier3_bwd, gd_coarse_bwd, gd_tier1x_bwd, gd_tier1_bwd) against the float64 NumPy twin ``gd_tier_twin``'s pieces,
emulated on the CPU (``cuda_emu_gd_tier_bwd.cpp``) and on the GPU."""
from __future__ import annotations

import ctypes
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
from helpers import assert_close, cupy_source, emulation
from strategies import DECAYS, seeds

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
#: decay regimes (tests/test_gated_delta_tier_bwd.py's REGIMES): the shared ones and hard resets
K1_REGIMES = dict(DECAYS, reset=lambda rng, shape: np.where(rng.random(shape) < 0.15, -np.inf, -rng.random(shape)))


def tier_bwd_source():
    """The four kernel files of the two-tier backward as one source (TIER_BWD_KERNEL)."""
    return "\n".join(cupy_source(f) for f in ("gated_delta_tier3_bwd.cu", "gated_delta_coarse_bwd.cu",
                                               "gated_delta_tier1x_bwd.cu", "gated_delta_tier1_bwd.cu"))


def tier_bwd_lib(cfg, extra=None):
    """The emulation of the family's build for ``cfg`` (_compile.defines' TA, TI_BF16, CH, DKP, GD_S16; extra: a
    timing build's other -D options)."""
    scan = "\n".join(cupy_source(f) for f in ("gated_delta.cu", "gated_delta_tier.cu", "gated_delta_coarse.cu"))
    bwd = cupy_source("gated_delta_bwd.cu") + "\n" + cupy_source("gated_delta_bwd_scan.cu")
    defines = {"TA": cfg.ta, "TI_BF16": int(cfg.half == "bf16"), "CH": cfg.CH, "DKP": cfg.DKP}
    defines |= ({"GD_S16": 1} if cfg.s16 else {}) | (extra or {})
    return emulation("cuda_emu_gd_tier_bwd.cpp", defines, {"KERNEL": scan, "BWD_KERNEL": bwd, "TIER_BWD_KERNEL": tier_bwd_source()})


class _EmuLaunch:
    """A kernel of the family as ``CupyOps``' launches call it (grid, block, args, shared_mem) on the emulation:
    arrays and int32 scalars, then x1 (the kernel's name), the blocks and the shared bytes."""

    RUN = {"gd_tier3_bwd": "run_tier3_bwd", "gd_coarse_bwd": "run_coarse_bwd"}

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
    a, beta = K1_REGIMES[decay](rng, (B, T)), rng.random((B, T))
    lam = rng.random((B, T, (T - 1).bit_length() + 1)) + 0.25
    lay = chunk_layout(0, T, C)
    ch = gd_api._chunk_forms(np, *(to_chunks(np, x, lay, -2) for x in (q, k, v)), to_chunks(np, a, lay, -1),
                             to_chunks(np, beta, lay, -1), transition=False)
    return (ch["qeff"], ch["eGK"], ch["phi"], ch["H"], ch["g"]), lam


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


def run_k1(ops, cfg, tier, arrays, T, x1, xp=np):
    """CupyOps.gd_tier3_bwd on ``ops`` with zeroed outputs: (dQp, dSb, dlam) as NumPy arrays."""
    qe, qp, sb, lam, dout = (xp.asarray(a) for a in arrays)
    B, n, C, dk = qe.shape
    dv, L = dout.shape[-1], lam.shape[-1]
    dqp, dsb, dlam = xp.zeros(qe.shape, xp.float32), xp.full(sb.shape, np.nan, xp.float32), xp.zeros(lam.shape, xp.float32)
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
       dv=st.sampled_from([1, 5, 16, 70]), decay=st.sampled_from(list(K1_REGIMES)), build=st.sampled_from(["f32", "x1"]))
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
       dv=st.sampled_from([1, 5, 16, 70]), decay=st.sampled_from(list(K1_REGIMES)), build=st.sampled_from(["f32", "x1"]))
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

# ---- K4 gd_tier1_bwd (s25c) ----
