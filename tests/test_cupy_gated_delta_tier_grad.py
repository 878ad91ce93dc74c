"""The training step's two-tier scan backward (``gated_delta_bwd.TIER_BWD``: the forward keeps gd_tiers' Qp, Z, Sb,
``tier_backward`` runs K1 gd_tier3_bwd -> K2 gd_coarse_bwd -> K3 gd_tier1x_bwd, K4 gd_tier1_bwd) through the whole
training step (torch autograd through ``gated_delta_bwd.differentiable``) against float64 torch autograd of
``lsattn.reference``.

* CPU: ``TierTwinOps``: the four kernels are the float64 NumPy twin's pieces (tests/gd_tier_twin.py: tier3_bwd,
  coarse_bwd, tier1x_bwd, tier1_bwd) reading and writing the buffers in the kernels' layouts (those the forward
  kernels store: Qp (BH, n, C, d_k) with a period's first chunk's rows unwritten (read from qe), Z (BH, nP, d_k, d_k)
  row-major with S <- Z S + Tot (gd_tier1x's stores, gd_coarse's reads), Sb (BH, popsum(nP), d_k, d_v) compact: entry
  popsum(pp) + rank of level cl's bit among pp's set bits (gd_coarse's)); everything else the kernels' CUDA sources
  emulated (``EmulatedOps``: the forward's gd_forms (bfloat16 callers) / gd_tier1 / gd_tier1x / the coarse slots /
  gd_tier3, gd_forms_bwd; gd_scan_bwd for TIER_BWD off). This tests the host plumbing (which buffers, their zeroing,
  layouts, order, the saved arrays, the forward's complete Sb) and that the layouts are the forward kernels'.
* GPU (``@pytest.mark.gpu``): the same step on the H200 with the kernels, TIER_BWD on and off.

Bounds (tests/test_cupy_gated_delta_grad.py's, max |grad - ref| <= tol * max |ref| per gradient, the log decay's also
within tol * sum_t |dO_t . o_t|): float32 callers F32 (the forward's 3xTF32 products; the backward here float64 or
3xTF32), bfloat16 callers BF16 (gradients rounded to bfloat16; forward 1xTF32, GD_S16's bfloat16 intermediates).
TIER_BWD on and off agree within the same bounds. The saved intermediates against the twin's forward: F32 (float32), S16
(bfloat16 intermediates) of max |twin|.
"""
from __future__ import annotations

import contextlib
import shutil
import types

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import lsattn
from lsattn import reference as ref
from lsattn.backends.cupy import gated_delta as cgd, gated_delta_bwd as gdb
from lsattn.backends.cupy._arrays import narrow, widen
from lsattn.backends.cupy._compile import CupyOps, make_config

import gd_tier_twin as tw
from helpers import assert_close
from strategies import seeds
from test_cupy_gated_delta import S16, Emulated, make
from test_cupy_gated_delta_grad import BF16, F32, EmulatedOps, _grads, bf16_context, check
from test_cupy_gated_delta_tier_bwd import EmuTierBwdOps

torch = pytest.importorskip("torch")

KERNELS = ("gd_tier3_bwd", "gd_coarse_bwd", "gd_tier1x_bwd", "gd_tier1_bwd")


def _f64(x):
    """A kernel buffer as float64 (bfloat16 patterns, int16 / uint16: widened)."""
    return widen(np, x, "bf16").astype(np.float64) if x.dtype in (np.int16, np.uint16) else x.astype(np.float64)


def levels(pp):
    """The coarse levels held at period pp's start: cl with bit cl - 1 of pp set."""
    return [cl for cl in range(1, pp.bit_length() + 1) if (pp >> (cl - 1)) & 1]


def entry(pp, cl):
    """Sb's entry of level cl at period pp (gated_delta_coarse.cu: popsum(pp) + the rank of bit cl - 1 in pp)."""
    return cgd.popsum(pp) + bin(pp & ((1 << (cl - 1)) - 1)).count("1")


def twin_saved(qe, Qp, Z, Sb, nP):
    """The twin's (qp, Z, Sb) (lists over chunks / periods; Sb's dicts {cl: slot}) from the kernels' buffers (a period's
    first chunk's qp: its qe, which gd_tier3 reads there); Z or Sb None: not read."""
    qe = _f64(qe)
    qp = None if Qp is None else [qe[:, c] if c % tw.TP == 0 else _f64(Qp[:, c]) for c in range(qe.shape[1])]
    Zl = None if Z is None else [_f64(Z[:, pp]) for pp in range(nP)]
    Sl = None if Sb is None else [{cl: _f64(Sb[:, entry(pp, cl)]) for cl in levels(pp)} for pp in range(nP)]
    return qp, Zl, Sl


class TierTwinOps(EmulatedOps):
    """``EmulatedOps`` (the forward's and gd_forms_bwd's CUDA sources on the CPU; ``bf16``: gd_forms' too) whose K1-K4
    are the twin's pieces on the kernels' buffers; ``calls`` records the scan's launches (K1-K4, gd_scan_bwd, the
    two-tier kernels), the buffers checked against the interface (dtypes, shapes, zeroed where the kernels add)."""

    gd_tiers = CupyOps.gd_tiers  # (Emulated's gd_scan calls it unbound)

    def __init__(self, bf16=False):
        self.calls, self.bf16 = [], bf16

    def gd_forms(self, cfg, *args, **kw):
        if self.bf16:  # the CUDA source of gd_forms (cuda_emu_gd_forms.cpp)
            return Emulated().gd_forms(cfg, *args, **kw)
        return EmulatedOps.gd_forms(self, cfg, *args, **kw)

    def _tk(self, op, cfg, name):
        fn, block, smem = super()._tk(op, cfg, name)
        return (lambda *a, **k: self.calls.append(name) or fn(*a, **k)), block, smem

    def gd_scan_bwd(self, cfg, *args, **kw):
        self.calls.append("gd_scan_bwd")
        return super().gd_scan_bwd(cfg, *args, **kw)

    @staticmethod
    def _bufs(cfg, e16, *arrays, zero=()):
        """The kernels' arrays: C-contiguous; e16 (qe, ek, ph, H, Qp) bfloat16 patterns where cfg.s16, else float32;
        the rest float32; ``zero`` all zeros (the ones the kernels add into)."""
        for x in e16:
            assert x.flags.c_contiguous and x.dtype == (np.uint16 if cfg.s16 and x.dtype != np.int16 else
                                                        np.int16 if cfg.s16 else np.float32), x.dtype
        for x in arrays:
            assert x.flags.c_contiguous and x.dtype == np.float32, x.dtype
        for x in zero:
            assert not x.any(), "a buffer the kernels add into is zeroed"

    @staticmethod
    def _dout(cfg, dout):
        """dout as the kernels read it: bfloat16 patterns (int16) where cfg.do16 (TRAIN_OUT16), else float32."""
        assert dout.flags.c_contiguous and dout.dtype == (np.int16 if cfg.do16 else np.float32), dout.dtype

    def gd_tier3_bwd(self, cfg, tier, qe, Qp, Sb, lam, dout, dQp, dSb, dlam, T, DK, DV, L, n, BH, x1):
        self.calls.append("gd_tier3_bwd")
        # dQp: stored whole at one column block (d_v <= 64; period 0's rows: zeros), else added into zeros
        st, p0 = DV <= 64, 1 << tier.TM
        self._bufs(cfg, (qe, Qp), Sb, lam, dSb, dlam, zero=(dlam,) if st else (dQp, dlam))
        self._dout(cfg, dout)
        assert dQp.shape == Qp.shape == (BH, n, cfg.CH, DK) and dSb.shape == Sb.shape and dlam.shape == (BH, T, L)
        assert dQp.flags.c_contiguous and dQp.dtype == np.float32
        qp, _, sb = twin_saved(qe, Qp, None, Sb, tier.nP)
        geo = tw.Geo(_f64(qe), dout, lam)
        dqp, dS, dl = tw.tier3_bwd(qp, sb, _f64(lam), _f64(dout), geo)
        if st:
            dQp[:, :p0], dQp[:, p0:] = 0.0, dqp[:, p0:]
        else:
            dQp += dqp
        dSb[...] = np.nan  # every entry written (held slots of periods >= 1: all of them)
        for (cl, pp), v in dS.items():
            dSb[:, entry(pp, cl)] = v
        dlam += dl

    def gd_coarse_bwd(self, cfg, tier, Z, Sb, dSb, dZ, dTot, DK, DV, BH, x1):
        self.calls.append("gd_coarse_bwd")
        self._bufs(cfg, (), Z, Sb, dSb, dZ, dTot, zero=(dZ, dTot))
        assert not np.isnan(dSb).any() and dTot.shape == (BH, tier.nP, DK, DV) and dZ.shape == Z.shape
        _, Zl, sb = twin_saved(np.zeros((BH, 0, 1, DK), np.float32), None, Z, Sb, tier.nP)
        dS = {(cl, pp): _f64(dSb[:, entry(pp, cl)]) for pp in range(tier.nP) for cl in levels(pp)}
        geo = types.SimpleNamespace(B=BH, dk=DK, dv=DV, nP=tier.nP)
        dtot, dz = tw.coarse_bwd(Zl, sb, dS, geo)
        dZ += np.stack(dz, 1)
        dTot += np.stack(dtot, 1)

    def gd_tier1x_bwd(self, cfg, tier, qe, ek, ph, g, dQp, dZ, dqe, dek, dph, dg, T, DK, n, BH, x1, st=False):
        self.calls.append("gd_tier1x_bwd")
        # st: dqe, dek, dph stored (one column block of X's), else added into zeros; dg added; every row of dQp written
        assert not st or DK <= cfg.tier1x_bwd_bw
        self._bufs(cfg, (qe, ek, ph), g, dQp, dZ, dqe, dek, dph, dg, zero=(dg,) if st else (dqe, dek, dph, dg))
        assert np.isfinite(dQp).all() and np.isfinite(dZ).all()
        grads = {k: np.zeros(x.shape) for k, x in (("dqe", dqe), ("dek", dek), ("dph", dph), ("dg", dg))}
        geo = types.SimpleNamespace(B=BH, dk=DK, n=n, nP=tier.nP)
        tw.tier1x_bwd(_f64(qe), _f64(ek), _f64(ph), _f64(g), _f64(dQp), [_f64(dZ[:, pp]) for pp in range(tier.nP)], geo,
                      grads)
        for k, x in (("dqe", dqe), ("dek", dek), ("dph", dph), ("dg", dg)):
            if st and k != "dg":
                x[...] = grads[k]
            else:
                x += grads[k]

    def gd_tier1_bwd(self, cfg, tier, qe, ek, ph, H, g, lam, dout, dTot, dqe, dek, dph, dH, dg, dlam, T, DK, DV, L, n,
                     BH, x1):
        self.calls.append("gd_tier1_bwd")
        self._bufs(cfg, (qe, ek, ph, H), g, lam, dTot, dqe, dek, dph, dH, dg, dlam)
        assert all(np.isfinite(x).all() for x in (dTot, dqe, dek, dph, dg, dlam))  # (added into: zeroed or written)
        self._dout(cfg, dout)
        assert dH.shape == (BH, n, DK, DV)
        grads = {k: np.zeros(x.shape) for k, x in (("dqe", dqe), ("dek", dek), ("dph", dph), ("dH", dH), ("dg", dg),
                                                    ("dlam", dlam))}
        qe64 = _f64(qe)
        tw.tier1_bwd(qe64, _f64(ek), _f64(ph), _f64(H), _f64(g), _f64(lam), _f64(dout),
                     [_f64(dTot[:, pp]) for pp in range(tier.nP)], tw.Geo(qe64, dout, lam), grads)
        dH[...] = grads.pop("dH")  # (written whole)
        for k, x in (("dqe", dqe), ("dek", dek), ("dph", dph), ("dg", dg), ("dlam", dlam)):
            x += grads[k]


def _emu_ready():
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")


class TierKernelOps(TierTwinOps):
    """``TierTwinOps`` whose K1-K4 are ``CupyOps``' methods on the kernels' CUDA sources emulated on the CPU
    (tests/test_cupy_gated_delta_tier_bwd.py's ``EmuTierBwdOps``' launches)."""

    gd_tier3_bwd, gd_coarse_bwd = CupyOps.gd_tier3_bwd, CupyOps.gd_coarse_bwd
    gd_tier1x_bwd, gd_tier1_bwd = CupyOps.gd_tier1x_bwd, CupyOps.gd_tier1_bwd
    r3b = None  # (EmuTierBwdOps': the production build)

    def _tk(self, op, cfg, name):
        if op != "gated_delta_tier_bwd":
            return super()._tk(op, cfg, name)
        self.calls.append(name.removesuffix("_x1"))
        return EmuTierBwdOps._tk(self, op, cfg, name)


def _ops(kind, bf16=False):
    """The ops of a training-step test: ``TierTwinOps`` ('twin') or ``TierKernelOps`` ('kernels')."""
    return TierTwinOps(bf16) if kind == "twin" else TierKernelOps(bf16)


def _twin_forward(qe, ek, ph, H, g, lam):
    """The twin's reads (B, n, C, d_v) and saved (qp, Z, Tot, Sb) on the kernels' inputs."""
    return tw.forward(np, *[_f64(x) for x in (qe, ek, ph, H, g, lam)], keep=True)


@pytest.mark.parametrize("dtype, T, dk, dv, C, grouped", [
    ("float32", 700, 5, 19, 16, True),    # 44 chunks: 11 periods, 4 coarse levels (grouped: gd_cfill), a partial period
    ("float32", 420, 16, 40, 16, False),  # 27 chunks: 7 periods, 3 levels; two value column blocks
    ("bfloat16", 600, 64, 20, 64, False),  # GD_S16: 10 chunks at C = 64, 3 periods; Qp as bfloat16 patterns
])
def test_saved_layouts_are_the_twins(monkeypatch, dtype, T, dk, dv, C, grouped):
    """``scan_tiers`` (the training forward's gd_tiers with gd_cfill as its own kernel) on the forward kernels' CUDA
    sources: its saved Qp, Z, Sb read in the kernels' layouts (``twin_saved``) equal the twin's forward's qp, Z (of the
    complete periods), Sb (every held slot: none left unwritten; NaN-filled scratch), its reads the twin's; and with
    gd_cfill folded into gd_tier3 (``t3fill`` None: T3FILL) the grouped form leaves slots of Sb unwritten (the reason
    the training forward turns the fold off)."""
    _emu_ready()
    from test_cupy_gated_delta import kernel_inputs

    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
    s16 = dtype == "bfloat16"
    arrays = make(3, (2,), T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay="zero", resets=True)
    bits, _, half = kernel_inputs(arrays, dtype)
    cfg = cgd._config("float", dk, C, half, s16)
    sc = gdb.Scan(cfg, T, 0, 0, -(-T // C), 1, False, s16, half)
    ops = TierTwinOps(bf16=s16)
    lamw = np.empty(bits[5].shape, np.float32) if half else None
    qe, ek, ph, H, g, intra = cgd.forms(ops, cfg, *bits, 0, lamw)
    lam = lamw if half else bits[5]
    tier = gdb.scan_tier(sc, None, dk, dv)
    assert tier is not None and tier.grouped == grouped and tier.NCL >= 2
    ops.calls.clear()
    out, saved = gdb.scan_tiers(ops, sc, tier, qe, ek, ph, H, g, lam, intra)
    assert ("gd_cfill" in ops.calls) == grouped and "gd_tier3" in ops.calls
    want_out, (qp_w, Z_w, _, Sb_w) = _twin_forward(qe, ek, ph, H, g, lam)
    tol = S16 if s16 else F32
    assert_close(out - intra, want_out, tol, what="the reads")
    Qp, Z, Sb = saved
    assert Qp.dtype == (np.uint16 if s16 else np.float32) and Qp.shape == qe.shape
    assert Z.shape == (2, tier.nP, dk, dk) and Sb.shape == (2, cgd.popsum(tier.nP), dk, dv)
    qp, Zl, Sl = twin_saved(qe, Qp, Z, Sb, tier.nP)
    for c in range(tw.TP, qe.shape[1]):  # (period 0's Qp is not read: no coarse slot there)
        assert_close(qp[c], qp_w[c], tol, what=f"Qp chunk {c}")
    for pp in range(tier.nP):
        if Z_w[pp] is not None and pp < tier.nP - 1:
            assert_close(Zl[pp], Z_w[pp], tol, what=f"Z {pp}")
        assert sorted(Sl[pp]) == sorted(Sb_w[pp])
        for cl in Sl[pp]:
            assert_close(Sl[pp][cl], Sb_w[pp][cl], tol, what=f"Sb {pp} level {cl}")
    if grouped:  # the same forward with the fold (gd_tier3 reads P_k S_l(4q) itself): in-group slots never written
        scratch = [np.full((2,) + s, np.nan, dtype=d)
                   for s, d in zip(tier.shapes(dk, dv), tier.dtypes(np.float32, cfg, np))]
        monkeypatch.setattr(cgd, "T3FILL", True)
        args = (cfg, tier, qe, ek, ph, H, g, lam, np.array(intra), T, dk, dv, lam.shape[-1], sc.n, 2)
        ops.gd_tiers(*args, scratch=scratch)
        assert np.isnan(scratch[2]).any()
        scratch[2][...] = np.nan
        ops.gd_tiers(*args[:8], np.array(intra), *args[9:], scratch=scratch, t3fill=False)
        assert not np.isnan(scratch[2]).any()


def test_scan_tier_plans():
    """The two-tier backward takes float32 compute types from chunk 0 without state where the forward is two-tier
    (``tier_plan``), with TIER_BWD; float64 callers, incoming states, short calls and TIER_BWD off keep gd_scan_bwd."""
    n, DK, DV = cgd.TIER_MIN_CHUNKS, 64, 64
    f32, f64 = make_config("float", DK, 16, 64), make_config("double", DK, 16, 64)
    T = n * 64
    sc = gdb.Scan(f32, T, 0, 0, n, 1, True)
    assert gdb.scan_tier(sc, None, DK, DV) == cgd.tier_plan(f32, 0, n, 0, False, DK, DV) is not None
    assert gdb.scan_tier(gdb.Scan(f64, T, 0, 0, n, 1, True), None, DK, DV) is None
    assert gdb.scan_tier(sc, object(), DK, DV) is None  # an incoming state
    assert gdb.scan_tier(gdb.Scan(f32, T - 64, 0, 0, n - 1, 1, True), None, DK, DV) is None
    gdb.TIER_BWD = False
    try:
        assert gdb.scan_tier(sc, None, DK, DV) is None
    finally:
        gdb.TIER_BWD = True


def _step(ops, arrays, do, C, dtype, x1, context):
    """Gradients and output of one training step through ``differentiable`` (float64 torch autograd around it)."""
    def ours(*xs):
        xs = [x.to(getattr(torch, dtype)) for x in xs]
        return gdb.differentiable(*xs, C, 0, None, context=context, x1=x1).double()

    return _grads(ours, arrays, do)


def _context(ops):
    @contextlib.contextmanager
    def emulated(like):
        yield (lambda x: (x.numpy(), "")), (lambda x, half: torch.from_numpy(np.ascontiguousarray(x))), ops

    return emulated


#: (T, C, d_k, d_v): chunks / periods / coarse levels at C = 16: 19 / 5 / 3, 27 / 7 / 3, 33 / 9 / 4, 44 / 11 / 4
SHAPES = st.sampled_from([(300, 16, 5, 3), (420, 16, 3, 17), (520, 16, 16, 2), (700, 16, 1, 5)])


@given(TC=SHAPES, dtype=st.sampled_from(["float32", "bfloat16"]), decay=st.sampled_from(["moderate", "strong", "zero",
       "mixed"]), resets=st.booleans(), grouped=st.booleans(), seed=seeds)
@example(TC=(700, 16, 1, 5), dtype="float32", decay="zero", resets=True, grouped=True, seed=4)
@example(TC=(420, 16, 3, 17), dtype="bfloat16", decay="moderate", resets=False, grouped=False, seed=5)
@settings(max_examples=2, deadline=None)
@pytest.mark.parametrize("kind", ["twin", "kernels"])
def test_training_step_tier_bwd(kind, TC, dtype, decay, resets, grouped, seed):
    """The whole training step (gd_forms, the two-tier forward keeping Qp, Z, Sb, tier_backward on ``TierTwinOps`` or
    the emulated kernels ``TierKernelOps``, gd_forms_bwd) against float64 autograd of the reference on the same (rounded) inputs, float32 callers (3xTF32
    forward) within F32 and bfloat16 callers (the forms reading bfloat16, 1xTF32, gradients in bfloat16; at C = 16: the
    scan on float32 intermediates) within BF16; TIER_BWD off (gd_scan_bwd, nothing kept) within the same bounds of
    both. Several periods and coarse levels, the coarse slots' grouped form (gd_cfill run: Sb complete)."""
    _emu_ready()
    T, C, dk, dv = TC
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(cgd, "TIER_MIN_CHUNKS", 0)
        mp.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
        arrays = make(seed % 1000, (2,), T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay=decay)
        x1 = dtype == "bfloat16"
        if resets:  # strong single-token decays (hard -inf resets have no derivative in the reference)
            arrays[3][..., [37, T - 90]] = [-1e3, -1e6]
        arrays = [torch.tensor(x).to(getattr(torch, dtype)).double().numpy() for x in arrays]  # the reference's inputs
        do = np.random.default_rng(seed % 997).standard_normal((2, T, dv))
        want, want_out = _grads(ref.loglinear_gated_delta, arrays, do)
        got = {}
        for on in (True, False):
            mp.setattr(gdb, "TIER_BWD", on)
            ops = _ops(kind, x1)
            got[on], out = _step(ops, arrays, do, C, dtype, x1, bf16_context(ops) if x1 else _context(ops))
            bwd = [c for c in ops.calls if c in KERNELS + ("gd_scan_bwd",)]
            assert bwd == (list(KERNELS) if on else ["gd_scan_bwd"]), ops.calls
            assert ("gd_cfill" in ops.calls) == (grouped and on), ops.calls  # (off: the inference forward's fold)
            check(got[on], want, want_out, do, BF16 if x1 else F32, f"{dtype} T={T} TIER_BWD={on} {decay}")
        check(got[True], got[False], want_out, do, BF16 if x1 else F32, "TIER_BWD on against off")
    finally:
        mp.undo()


@pytest.mark.parametrize("kind", ["twin", "kernels"])
@pytest.mark.parametrize("T, dk, dv, decay", [(600, 64, 20, "moderate"), (330, 20, 17, "strong")])
def test_training_step_s16_tier_bwd(monkeypatch, kind, T, dk, dv, decay):
    """The bfloat16 training step on the GD_S16 path (``S16_TRAIN``: gd_forms writing bfloat16 qeff, e^G K, phi, H, the
    two-tier forward on them keeping Qp as bfloat16 patterns, Z, Sb) with tier_backward on ``TierTwinOps`` or the
    emulated kernels reading them, gd_forms_bwd_x1: bfloat16 gradients against float64 autograd of the reference within BF16; TIER_BWD off
    (gd_scan_bwd_x1 on the same intermediates) within BF16 of both; the output identical."""
    _emu_ready()
    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    arrays = make(12, (2,), T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay=decay)
    arrays[3][..., [70, T - 90]] = [-1e3, -1e6]
    arrays = [torch.tensor(x).to(torch.bfloat16).double().numpy() for x in arrays]
    do = np.random.default_rng(3).standard_normal((2, T, dv))
    want, want_out = _grads(ref.loglinear_gated_delta, arrays, do)
    got, outs = {}, {}
    for on in (True, False):
        monkeypatch.setattr(gdb, "TIER_BWD", on)
        ops = _ops(kind, True)
        got[on], outs[on] = _step(ops, arrays, do, 64, "bfloat16", True, bf16_context(ops))
        bwd = [c for c in ops.calls if c in KERNELS + ("gd_scan_bwd",)]
        assert bwd == (list(KERNELS) if on else ["gd_scan_bwd"]), ops.calls
        check(got[on], want, want_out, do, BF16, f"S16 T={T} TIER_BWD={on}")
    check(got[True], got[False], want_out, do, BF16, "S16 TIER_BWD on against off")
    # (TRAIN_OUT16: on, gd_tier3's bfloat16 output; off, the float32 one: its rounding to bfloat16)
    assert np.array_equal(outs[True], _bf16(outs[False]) if gdb.TRAIN_OUT16 else outs[False])


def _bf16(x):
    """float32-valued ``x`` rounded to bfloat16 (nearest even), as float64."""
    return widen(np, narrow(np, np.asarray(x, dtype=np.float32), "bf16"), "bf16").astype(np.float64)


def _do16_ops(kind):
    """``_ops(kind, bf16=True)`` recording (kernel, cfg.do16) of K1, K4 and gd_forms_bwd in ``seen``."""
    base = TierTwinOps if kind == "twin" else TierKernelOps

    class Ops(base):
        def __init__(self):
            super().__init__(True)
            self.seen = []

        def gd_tier3_bwd(self, cfg, *a, **k):
            self.seen.append(("gd_tier3_bwd", cfg.do16))
            return base.gd_tier3_bwd(self, cfg, *a, **k)

        def gd_tier1_bwd(self, cfg, *a, **k):
            self.seen.append(("gd_tier1_bwd", cfg.do16))
            return base.gd_tier1_bwd(self, cfg, *a, **k)

        def gd_forms_bwd(self, cfg, *a, **k):
            self.seen.append(("gd_forms_bwd", cfg.do16))
            return base.gd_forms_bwd(self, cfg, *a, **k)

    return Ops()


@pytest.mark.parametrize("kind, batch, T, dk, dv", [
    ("kernels", (2,), 600, 64, 20),  # 10 chunks (T % 64 = 24: padding rows), 3 periods: the production tiles
    ("twin", (2,), 600, 64, 20),
    ("kernels", (2, 2), 330, 20, 17),  # several batch axes, 6 chunks (2 periods, one coarse level), d_v odd
    ("twin", (3,), 1, 20, 17),  # one token: one period, no gd_tier3 (the float32 output, cast by the caller)
])
def test_training_step_train_out16(monkeypatch, kind, batch, T, dk, dv):
    """``TRAIN_OUT16`` on and off: the bfloat16 training step on the S16 path with the two-tier backward (K1-K4 on
    ``TierTwinOps`` or the emulated kernels, gd_forms_bwd_x1's CUDA source). On, where gd_tier3 runs: the output
    bfloat16 from the Function (gd_tier3's rounding), equal bit for bit to the float32 output of off rounded to bfloat16;
    the backward's K1, K4 and gd_forms_bwd on their GD_DO16 builds (the bfloat16 output gradient as it arrives). Both
    within BF16 of float64 autograd of the reference and of each other. One period (T = 1): the float32 output either
    way, the float32 builds."""
    _emu_ready()
    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(gdb, "TIER_BWD", True)
    arrays = make(13, batch, T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay="moderate")
    if T > 100:
        arrays[3][..., [70, T - 90]] = [-1e3, -1e6]
    arrays = [torch.tensor(x).to(torch.bfloat16).double().numpy() for x in arrays]
    do = np.random.default_rng(4).standard_normal(batch + (T, dv))
    want, want_out = _grads(ref.loglinear_gated_delta, arrays, do)
    o16 = T > 4 * 64  # (more than one period: gd_tier3 runs)
    got, outs = {}, {}
    for on in (True, False):
        monkeypatch.setattr(gdb, "TRAIN_OUT16", on)
        ops = _do16_ops(kind)
        dtypes = []

        def ours(*xs):
            xs = [x.to(torch.bfloat16) for x in xs]
            out = gdb.differentiable(*xs, 64, 0, None, context=bf16_context(ops), x1=True)
            dtypes.append(out.dtype)
            assert out.shape == batch + (T, dv)
            return out.double()

        got[on], outs[on] = _grads(ours, arrays, do)
        assert dtypes == [torch.bfloat16 if on and o16 else torch.float32], dtypes
        d16 = on and o16
        assert ops.seen == ([("gd_tier3_bwd", d16)] if o16 else []) + [("gd_tier1_bwd", d16), ("gd_forms_bwd", d16)], ops.seen
        check(got[on], want, want_out, do, BF16, f"TRAIN_OUT16={on} T={T} {kind}")
    check(got[True], got[False], want_out, do, BF16, "TRAIN_OUT16 on against off")
    assert np.array_equal(outs[True], _bf16(outs[False]) if o16 else outs[False])


@pytest.mark.parametrize("dtype, T, dk, dv, C", [("float32", 420, 16, 17, 16), ("bfloat16", 600, 64, 20, 64)])
def test_training_step_forms_x_saved(monkeypatch, dtype, T, dk, dv, C):
    """``FORMS_X_SAVED`` (R1: gd_forms' X kept, gd_forms_bwd's FB_XIN build reading it) in the training step on the
    two-tier backward (TIER_BWD, ``TierTwinOps``): float32 callers (gd_forms the twin's, X its float32 inverse) within
    F32, bfloat16 callers (S16: gd_forms' CUDA source, GF_XO) within BF16 of float64 autograd of the reference, as with
    the switch off, and the two within the same bound of each other; X passed to gd_forms_bwd (BH, n, C, C) float32."""
    _emu_ready()
    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(gdb, "TIER_BWD", True)
    x1 = dtype == "bfloat16"
    arrays = make(7, (2,), T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay="moderate")
    arrays[3][..., [37, T - 90]] = [-1e3, -1e6]
    arrays = [torch.tensor(x).to(getattr(torch, dtype)).double().numpy() for x in arrays]
    do = np.random.default_rng(11).standard_normal((2, T, dv))
    want, want_out = _grads(ref.loglinear_gated_delta, arrays, do)
    got, tol, n = {}, BF16 if x1 else F32, -(-T // C)
    for on in (True, False):
        monkeypatch.setattr(gdb, "FORMS_X_SAVED", on)
        ops = _ops("twin", x1)
        xins = []
        bwd = ops.gd_forms_bwd
        ops.gd_forms_bwd = lambda cfg, *a, xin=None, **k: xins.append(None if xin is None else xin.shape) or bwd(
            cfg, *a, xin=xin, **k)
        got[on], _ = _step(ops, arrays, do, C, dtype, x1, bf16_context(ops) if x1 else _context(ops))
        assert xins == [(2, n, C, C) if on else None], xins
        assert [c for c in ops.calls if c in KERNELS] == list(KERNELS), ops.calls
        check(got[on], want, want_out, do, tol, f"{dtype} T={T} FORMS_X_SAVED={on}")
    check(got[True], got[False], want_out, do, tol, "FORMS_X_SAVED on against off")


class _NanXp:
    """The array module ``xp`` (NumPy, CuPy) whose ``empty`` fills floating arrays with NaN: ``tier_backward``'s buffers
    a kernel must write whole (an element none writes shows in the gradients)."""

    def __init__(self, xp):
        self.xp = xp

    def __getattr__(self, name):
        return getattr(self.xp, name)

    def empty(self, shape, dtype=np.float64):
        xp = self.xp
        return xp.full(shape, np.nan, dtype) if np.dtype(dtype).kind == "f" else xp.empty(shape, dtype)


def _nan_tier_backward(mp, seen):
    """``tier_backward`` with its ops' empty NaN-filled; ``seen`` gets each call's ``tier_stores``."""
    real, stores = gdb.tier_backward, gdb.tier_stores

    def tier_backward(ops, *args):
        xp = ops.xp
        ops.xp = _NanXp(xp)
        try:
            return real(ops, *args)
        finally:
            ops.xp = xp

    mp.setattr(gdb, "tier_backward", tier_backward)
    mp.setattr(gdb, "tier_stores", lambda *a: seen.append(stores(*a)) or seen[-1])


@pytest.mark.parametrize("kind", ["twin", "kernels"])
@pytest.mark.parametrize("dtype, T, C, dk, dv, k1, k3", [
    ("float32", 300, 16, 5, 3, True, True),      # 19 chunks, 5 periods; 4 padding rows; d_k odd
    ("bfloat16", 420, 16, 16, 70, False, True),  # d_v = 70: K1's two column blocks add (dQp zeroed)
    ("float32", 330, 16, 70, 5, True, False),    # d_k = 70: DKP = 128, K3's three column blocks add (zeroed)
    ("bfloat16", 600, 64, 64, 20, True, True),   # GD_S16 (C = d_k = 64, the production build), 10 chunks
    ("float32", 50, 16, 3, 2, False, False),     # one period: K4 alone, its buffers zeroed
])
def test_training_step_tier_bwd_stores(kind, dtype, T, C, dk, dv, k1, k3):
    """``TIER_BWD_STORES`` on and off: the training step with tier_backward's empty buffers NaN-filled (on: dQp where
    K1 stores it, dqe / dek / dph where K3 stores them, as ``tier_stores`` says: k1, k3 here) on the
    twin or the emulated kernels, every gradient bit-equal on against off (a store where an add into zeros was) and
    within F32 / BF16 of float64 autograd of the reference."""
    _emu_ready()
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(cgd, "TIER_MIN_CHUNKS", 0)
        x1 = dtype == "bfloat16"
        mp.setattr(gdb, "S16_TRAIN", C == 64)
        arrays = make(9, (2,), T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay="moderate")
        arrays[3][..., [20, T - 25]] = [-1e3, -1e6]
        arrays = [torch.tensor(x).to(getattr(torch, dtype)).double().numpy() for x in arrays]
        do = np.random.default_rng(4).standard_normal((2, T, dv))
        want, want_out = _grads(ref.loglinear_gated_delta, arrays, do)
        got, seen = {}, []
        _nan_tier_backward(mp, seen)
        for on in (True, False):
            mp.setattr(gdb, "TIER_BWD_STORES", on)
            seen.clear()
            ops = _ops(kind, x1)
            got[on], _ = _step(ops, arrays, do, C, dtype, x1, bf16_context(ops) if x1 else _context(ops))
            assert seen == [(on and k1, on and k3)], seen
            assert [c for c in ops.calls if c in KERNELS] == (list(KERNELS) if T > 4 * C else ["gd_tier1_bwd"])
            check(got[on], want, want_out, do, BF16 if x1 else F32, f"{dtype} T={T} dk={dk} dv={dv} stores={on}")
        for a, b in zip(got[True], got[False]):
            np.testing.assert_array_equal(a, b)
    finally:
        mp.undo()


def test_tier_bwd_one_period_and_retain_graph(monkeypatch):
    """One period (no coarse level): tier_backward runs K4 alone (nothing to read for K1-K3); a second backward
    through a retained graph, one period and several, gives the first's gradients again (Qp, Z, Sb are saved tensors,
    kept with the graph)."""
    _emu_ready()
    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    arrays = make(2, (2,), 50, 3, 2)
    arrays = [x.astype(np.float32).astype(np.float64) for x in arrays]
    do = np.random.default_rng(1).standard_normal((2, 50, 2))
    ops = TierTwinOps()
    got, out = _step(ops, arrays, do, 16, "float32", False, _context(ops))
    assert [c for c in ops.calls if c in KERNELS] == ["gd_tier1_bwd"]
    want, want_out = _grads(ref.loglinear_gated_delta, arrays, do)
    check(got, want, want_out, do, F32, "one period")
    for T in (50, 300):  # 4 chunks of 16: one period; 19: 5 periods, 3 coarse levels
        arrays = [x.astype(np.float32).astype(np.float64) for x in make(3, (2,), T, 3, 2)]
        xs = [torch.tensor(x, dtype=torch.float32, requires_grad=True) for x in arrays]
        ops = TierTwinOps()
        y = gdb.differentiable(*xs, 16, 0, None, context=_context(ops))
        first = torch.autograd.grad(y.sum(), xs, retain_graph=True)
        second = torch.autograd.grad(y.sum(), xs)
        assert ops.calls.count("gd_tier1_bwd") == 2 and ops.calls.count("gd_tier3_bwd") == (2 if T > 64 else 0)
        for a, b in zip(first, second):
            assert torch.equal(a, b)


# ---- GPU ------------------------------------------------------------------------------------------

def _gpu_step_inputs(seed, T, decay, resets, dtype, do_seed):
    """The GPU training tests' inputs (B = 1, H = 2, d = 64; resets: strong decays at tokens 100, 400, 401) ->
    torch dtype, dO (float64, CUDA), the inputs rounded to the dtype as float64 CUDA leaves requiring grad."""
    arrays = make(seed, (1, 2), T, 64, 64, decay=decay)
    if resets:
        for i in (100, 400, 401):
            arrays[3][..., i] = -1e3 if i == 100 else -1e6
    td = getattr(torch, dtype)
    do = torch.randn(1, 2, T, 64, device="cuda", dtype=torch.float64,
                     generator=torch.Generator("cuda").manual_seed(do_seed))
    return td, do, [torch.tensor(x, device="cuda").to(td).double().requires_grad_(True) for x in arrays]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, T, decay, resets, grouped, s16", [
    ("bfloat16", 1000, "moderate", True, False, True),   # 16 chunks at C = 64: 4 periods; GD_S16
    ("bfloat16", 2100, "strong", False, True, True),     # 33 chunks: 9 periods, 4 levels, grouped (gd_cfill)
    ("bfloat16", 1500, "mixed", True, False, False),     # S16_TRAIN off: the scan on float32 intermediates, 1xTF32
    ("float32", 2100, "moderate", False, True, False),   # 3xTF32
    ("float32", 1000, "zero", False, False, False),
])
def test_gpu_training_tier_bwd(monkeypatch, dtype, T, decay, resets, grouped, s16):
    """The training step with TIER_BWD on and off in one process (B = 1, H = 2, d = 64, the two-tier path from 16
    chunks: TIER_MIN_CHUNKS 0): on, the backward launches K1-K4 (no gd_scan_bwd); every gradient of both against
    float64 autograd of the reference on the same inputs within the dtype's bound (errors printed), on against off
    within the same bound."""
    from test_training import _cuda

    _cuda(torch)
    from lsattn.backends.cupy import _compile

    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
    monkeypatch.setattr(gdb, "S16_TRAIN", s16)
    launched, real = [], _compile.CupyOps._tk
    monkeypatch.setattr(_compile.CupyOps, "_tk",
                        lambda self, op, cfg, name: launched.append(name) or real(self, op, cfg, name))
    td, do, rs = _gpu_step_inputs(5, T, decay, resets, dtype, 1)
    want_out = ref.loglinear_gated_delta(*rs)
    (want_out * do).sum().backward()
    want, want_out, do_np = [r.grad.cpu().numpy() for r in rs], want_out.detach().cpu().numpy(), do.cpu().numpy()
    tol, got = BF16 if dtype == "bfloat16" else F32, {}
    from test_cupy_gated_delta_grad import _rel_errors

    for on in (True, False):
        monkeypatch.setattr(gdb, "TIER_BWD", on)
        launched.clear()
        xs = [r.detach().to(td).requires_grad_(True) for r in rs]
        out = lsattn.loglinear_gated_delta(*xs)
        (out.double() * do).sum().backward()
        got[on] = [x.grad.double().cpu().numpy() for x in xs]
        names = [k.removesuffix("_x1") for k in launched]
        assert [k for k in names if k in KERNELS] == (list(KERNELS) if on else []), launched
        assert ("gd_scan_bwd" in names) == (not on), launched
        assert all(np.isfinite(g).all() for g in got[on])
        print(f"T={T} {dtype} s16={s16} TIER_BWD={on}: " + " ".join(
            f"{k} {v:.2e}" for k, v in _rel_errors(got[on], want, want_out, do_np).items()))
        check(got[on], want, want_out, do_np, tol, f"{dtype} T={T} TIER_BWD={on}")
    check(got[True], got[False], want_out, do_np, tol, f"{dtype} T={T} on against off")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, T, s16, resets", [("bfloat16", 1100, True, True), ("bfloat16", 1100, False, False),
                                                   ("float32", 1100, False, True), ("bfloat16", 8192 + 100, True, False)])
def test_gpu_training_forms_x_saved(monkeypatch, dtype, T, s16, resets):
    """``FORMS_X_SAVED`` (s27r, R1) on the GPU: the training step (B = 1, H = 2, d = 64, TIER_BWD, the two-tier path
    from 16 chunks) with the switch on and off in one process: on, gd_forms' GF_XO build and gd_forms_bwd's FB_XIN build
    launched (Config.xs) and X (B H, n, 64, 64) float32 passed; every gradient of both against float64 autograd of the
    reference within the dtype's bound (errors printed; at 8292 tokens, past what the reference's float64 autograd can
    hold on one GPU (> 113 GiB), on against off only), on against off within the same bound; the output identical."""
    from test_training import _cuda

    _cuda(torch)
    from lsattn.backends.cupy import _compile
    from test_cupy_gated_delta_grad import _rel_errors

    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(gdb, "S16_TRAIN", s16)
    launched, real = [], _compile.CupyOps._tk
    monkeypatch.setattr(_compile.CupyOps, "_tk",
                        lambda self, op, cfg, name: launched.append((name, cfg.xs)) or real(self, op, cfg, name))
    # (the bfloat16 S16 forward's gd_forms by the driver, TRAIN_DIRECT: its build looked up once per plan, made here)
    monkeypatch.setattr(cgd, "_TRAIN_PLANS", {})
    rl = cgd._launch
    monkeypatch.setattr(cgd, "_launch", lambda op, dev, cfg, name: launched.append((name, cfg.xs)) or rl(op, dev, cfg, name))
    xins, rb = [], _compile.CupyOps.gd_forms_bwd
    monkeypatch.setattr(_compile.CupyOps, "gd_forms_bwd", lambda self, *a, xin=None, **k: xins.append(
        None if xin is None else (xin.shape, str(xin.dtype))) or rb(self, *a, xin=xin, **k))
    td, do, rs = _gpu_step_inputs(6, T, "moderate", resets, dtype, 2)
    want = None
    if T <= 4096:
        want_out = ref.loglinear_gated_delta(*rs)
        (want_out * do).sum().backward()
        want, want_out = [r.grad.cpu().numpy() for r in rs], want_out.detach().cpu().numpy()
    do_np, tol, got, outs, n = do.cpu().numpy(), BF16 if dtype == "bfloat16" else F32, {}, {}, -(-T // 64)
    for on in (True, False):
        monkeypatch.setattr(gdb, "FORMS_X_SAVED", on)
        launched.clear()
        xins.clear()
        xs = [r.detach().to(td).requires_grad_(True) for r in rs]
        out = lsattn.loglinear_gated_delta(*xs)
        (out.double() * do).sum().backward()
        got[on], outs[on] = [x.grad.double().cpu().numpy() for x in xs], out.detach().double().cpu().numpy()
        forms = [(k, xs_) for k, xs_ in launched if k.startswith("gd_forms")]
        assert forms == [("gd_forms", on), ("gd_forms_bwd_x1" if dtype == "bfloat16" else "gd_forms_bwd", on)], launched
        assert xins == [((2, n, 64, 64), "float32") if on else None], xins
        assert all(np.isfinite(g).all() for g in got[on])
        if want is not None:
            print(f"T={T} {dtype} s16={s16} FORMS_X_SAVED={on}: " + " ".join(
                f"{k} {v:.2e}" for k, v in _rel_errors(got[on], want, want_out, do_np).items()))
            check(got[on], want, want_out, do_np, tol, f"{dtype} T={T} FORMS_X_SAVED={on}")
    if want is None:
        want_out = outs[False]
        print(f"T={T} {dtype} s16={s16} on against off: " + " ".join(
            f"{k} {v:.2e}" for k, v in _rel_errors(got[True], got[False], want_out, do_np).items()))
    check(got[True], got[False], want_out, do_np, tol, f"{dtype} T={T} on against off")
    assert np.array_equal(outs[True], outs[False])


@pytest.mark.gpu
@pytest.mark.parametrize("T, grouped, tmin", [(1000, False, 0), (2100, True, 0), (8192 + 100, False, None)])
def test_gpu_training_train_out16(monkeypatch, T, grouped, tmin):
    """``TRAIN_OUT16`` on the GPU: the public bfloat16 training step (B = 1, H = 2, d = 64, S16, TIER_BWD) with the
    switch on and off in one process: the output bfloat16 either way and identical bit for bit (gd_tier3's rounding
    against the registry's cast of the float32 output); on, K1, K4 and gd_forms_bwd_x1 launched from their GD_DO16
    builds (Config.do16), off from the others; every gradient against float64 autograd of the reference within BF16
    (up to 2100 tokens: 33 chunks, the grouped coarse form; 8292: the production TIER_MIN_CHUNKS, on against off only),
    on against off within BF16 (errors printed)."""
    from test_training import _cuda

    _cuda(torch)
    from lsattn.backends.cupy import _compile

    if tmin is not None:
        monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", tmin)
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
    launched, real = [], _compile.CupyOps._tk
    monkeypatch.setattr(_compile.CupyOps, "_tk",
                        lambda self, op, cfg, name: launched.append((name, cfg.do16)) or real(self, op, cfg, name))
    td, do, rs = _gpu_step_inputs(7, T, "moderate", T < 2000, "bfloat16", 3)

    def each(on, out):
        assert out.dtype == torch.bfloat16
        do16 = {k: d for k, d in launched if k in ("gd_tier3_bwd_x1", "gd_tier1_bwd_x1", "gd_forms_bwd_x1")}
        assert do16 == {k: on for k in ("gd_tier3_bwd_x1", "gd_tier1_bwd_x1", "gd_forms_bwd_x1")}, launched

    outs = _step_on_off(monkeypatch, gdb, "TRAIN_OUT16", td, do, rs, launched, each)
    assert np.array_equal(outs[True], outs[False]), "gd_tier3's bfloat16 output: the float32 output's rounding"


def _step_on_off(monkeypatch, module, name, td, do, rs, launched, each):
    """The public bfloat16 training step (``_gpu_step_inputs``' ``td``, ``do``, ``rs``) with the switch ``module.name``
    on, then off: ``each(on, out)`` after each step's backward (``launched`` cleared before its forward); every
    gradient finite and, up to 4096 tokens, within BF16 of float64 autograd of the reference; on against off within
    BF16 (errors printed). -> {on: the output as float64 NumPy}."""
    from test_cupy_gated_delta_grad import _rel_errors

    T, want = rs[0].shape[-2], None
    if T <= 4096:
        want_out = ref.loglinear_gated_delta(*rs)
        (want_out * do).sum().backward()
        want, want_out = [r.grad.cpu().numpy() for r in rs], want_out.detach().cpu().numpy()
    do_np, got, outs = do.cpu().numpy(), {}, {}
    for on in (True, False):
        monkeypatch.setattr(module, name, on)
        launched.clear()
        xs = [r.detach().to(td).requires_grad_(True) for r in rs]
        out = lsattn.loglinear_gated_delta(*xs)
        (out.double() * do).sum().backward()
        each(on, out)
        got[on], outs[on] = [x.grad.double().cpu().numpy() for x in xs], out.detach().double().cpu().numpy()
        assert all(np.isfinite(g).all() for g in got[on])
        if want is not None:
            print(f"T={T} {name}={on}: " + " ".join(
                f"{k} {v:.2e}" for k, v in _rel_errors(got[on], want, want_out, do_np).items()))
            check(got[on], want, want_out, do_np, BF16, f"T={T} {name}={on}")
    if want is None:
        want_out = outs[False]
    print(f"T={T} {name} on against off: " + " ".join(
        f"{k} {v:.2e}" for k, v in _rel_errors(got[True], got[False], want_out, do_np).items()))
    check(got[True], got[False], want_out, do_np, BF16, f"T={T} {name} on against off")
    return outs


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, T", [("bfloat16", 8192 + 100), ("bfloat16", 32768), ("float32", 8192 + 100)])
def test_gpu_tier_bwd_long_against_gd_scan_bwd(monkeypatch, dtype, T):
    """The production path (C = 64, TIER_MIN_CHUNKS as it is; 32K: 128 periods, the grouped coarse form with gd_cfill
    run) at lengths the reference's autograd cannot reach: every gradient with TIER_BWD on against off (gd_scan_bwd,
    tested against the reference above and in test_cupy_gated_delta_grad.py) within the dtype's bound, B = 1, H = 2,
    d = 64 (errors printed)."""
    from test_training import _cuda

    _cuda(torch)
    arrays = make(6, (1, 2), T, 64, 64, decay="moderate")
    td = getattr(torch, dtype)
    do = torch.randn(1, 2, T, 64, device="cuda", dtype=torch.float32, generator=torch.Generator("cuda").manual_seed(2))
    got = {}
    for on in (True, False):
        monkeypatch.setattr(gdb, "TIER_BWD", on)
        xs = [torch.tensor(x, device="cuda").to(td).requires_grad_(True) for x in arrays]
        out = lsattn.loglinear_gated_delta(*xs).float()
        (out * do).sum().backward()
        got[on] = [x.grad.double().cpu().numpy() for x in xs]
        assert all(np.isfinite(g).all() for g in got[on])
    from test_cupy_gated_delta_grad import _rel_errors

    out, do = out.detach().double().cpu().numpy(), do.double().cpu().numpy()
    print(f"T={T} {dtype} on against off: " + " ".join(
        f"{k} {v:.2e}" for k, v in _rel_errors(got[True], got[False], out, do).items()))
    check(got[True], got[False], out, do, BF16 if dtype == "bfloat16" else F32, f"{dtype} T={T} on against off")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, T, s16", [("bfloat16", 1100, True), ("float32", 1100, False), ("bfloat16", 1500, False),
                                           ("bfloat16", 8192 + 100, True), ("bfloat16", 32768, True)])
def test_gpu_training_tier_bwd_stores(monkeypatch, dtype, T, s16):
    """``TIER_BWD_STORES`` on the GPU: the training step (B = 1, H = 2, d = 64, the two-tier path from 16 chunks) with
    the switch on and off in one process, tier_backward's empty buffers NaN-filled (an element no kernel writes would
    show): on, dQp and dqe / dek / dph stored (``tier_stores`` (True, True)), off neither; every gradient finite, on
    against off within the dtype's bound (errors printed; not bit for bit: K4's and K1's atomics reorder between runs),
    against float64 autograd of the reference too where it fits (T <= 4096); the output identical."""
    from test_training import _cuda

    _cuda(torch)
    from test_cupy_gated_delta_grad import _rel_errors

    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(gdb, "S16_TRAIN", s16)
    seen = []
    _nan_tier_backward(monkeypatch, seen)
    td, do, rs = _gpu_step_inputs(7, T, "moderate", T <= 4096, dtype, 3)
    want = None
    if T <= 4096:
        want_out = ref.loglinear_gated_delta(*rs)
        (want_out * do).sum().backward()
        want, want_out = [r.grad.cpu().numpy() for r in rs], want_out.detach().cpu().numpy()
    do_np, tol, got, outs = do.cpu().numpy(), BF16 if dtype == "bfloat16" else F32, {}, {}
    for on in (True, False):
        monkeypatch.setattr(gdb, "TIER_BWD_STORES", on)
        seen.clear()
        xs = [r.detach().to(td).requires_grad_(True) for r in rs]
        out = lsattn.loglinear_gated_delta(*xs)
        (out.double() * do).sum().backward()
        got[on], outs[on] = [x.grad.double().cpu().numpy() for x in xs], out.detach().double().cpu().numpy()
        assert seen == [(on, on)], seen
        assert all(np.isfinite(g).all() for g in got[on])
        if want is not None:
            print(f"T={T} {dtype} s16={s16} TIER_BWD_STORES={on}: " + " ".join(
                f"{k} {v:.2e}" for k, v in _rel_errors(got[on], want, want_out, do_np).items()))
            check(got[on], want, want_out, do_np, tol, f"{dtype} T={T} TIER_BWD_STORES={on}")
    ref_out = want_out if want is not None else outs[False]
    print(f"T={T} {dtype} s16={s16} on against off: " + " ".join(
        f"{k} {v:.2e}" for k, v in _rel_errors(got[True], got[False], ref_out, do_np).items()))
    check(got[True], got[False], ref_out, do_np, tol, f"{dtype} T={T} on against off")
    assert np.array_equal(outs[True], outs[False])


@pytest.mark.gpu
@pytest.mark.parametrize("T, tmin, nan", [(1000, 0, False), (2100, 0, False), (8192 + 100, None, False), (1000, 0, True)])
def test_gpu_training_train_direct(monkeypatch, T, tmin, nan):
    """``gated_delta.TRAIN_DIRECT`` on the GPU: the public bfloat16 training step (B = 1, H = 2, d = 64, S16, TIER_BWD)
    with the switch on and off in one process: on, gd_forms launched by the driver on the inputs' pointers (not through
    CupyOps), off through CupyOps; the output identical bit for bit, every gradient against float64 autograd of the
    reference within BF16 (up to 2100 tokens; 8292: on against off only), on against off within BF16 (errors printed).
    nan: a NaN log decay at token T / 2 of sequence (0, 1): gd_forms' finiteness answer reaches the prologue either way
    (that sequence's rows from the token on NaN, every other row finite, on and off identical)."""
    from test_training import _cuda

    _cuda(torch)
    from lsattn.backends.cupy import _compile

    if tmin is not None:
        monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", tmin)
    launched, real = [], _compile.CupyOps._tk
    monkeypatch.setattr(_compile.CupyOps, "_tk", lambda self, op, cfg, name: launched.append(name) or real(self, op, cfg, name))
    td, do, rs = _gpu_step_inputs(11, T, "moderate", T < 2000, "bfloat16", 5)
    outs = {}
    if nan:
        with torch.no_grad():
            rs[3][0, 1, T // 2] = float("nan")
        for on in (True, False):
            monkeypatch.setattr(cgd, "TRAIN_DIRECT", on)
            outs[on] = lsattn.loglinear_gated_delta(*[r.detach().to(td).requires_grad_(True) for r in rs])
            outs[on] = outs[on].detach().double().cpu().numpy()
        bad = np.zeros(outs[True].shape, dtype=bool)
        bad[0, 1, T // 2:] = True
        assert np.array_equal(np.isnan(outs[True]), bad), "the poisoned rows NaN, every other finite"
        assert np.array_equal(outs[True], outs[False], equal_nan=True)
        return

    def each(on, out):
        assert ("gd_forms" in launched) != on, launched

    outs = _step_on_off(monkeypatch, cgd, "TRAIN_DIRECT", td, do, rs, launched, each)
    assert np.array_equal(outs[True], outs[False]), "gd_forms' outputs are the same launch's"
