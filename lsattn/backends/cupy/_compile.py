"""Compilation and launches of the CuPy backend's kernels: one compiled variant per (device,
``Config``), cached for the process; ``CupyOps`` launches them on CuPy's current device and stream
(the one object the host logic of ``loglinear.py`` / ``exp_kernel.py`` drives)."""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import numpy as np

from ..._upload import to_device

_HERE = os.path.dirname(os.path.abspath(__file__))
#: value columns per launch (a wider v is split into independent column blocks)
DV_BLOCK = 128
#: value columns per block of gd_scan (gated_delta.cu's GD_BW)
GD_BW = 32
#: slots (Fenwick levels, or incoming slots) per block of gd_scan (gated_delta.cu's GD_G)
GD_G = 2


@dataclass(frozen=True)
class Config:
    """One compiled variant: compute type, 16-bit inputs, chunk, padded head dims."""

    ta: str  # "float" | "double"
    half: str  # "" (inputs in the compute type) | "bf16" | "f16"
    CH: int
    DKP: int
    DVP: int
    tc: bool = True  # bf16: the tensor-core kernels (False: the FFMA kernels reading bf16, as the backward)
    logv: bool = False  # the exp-kernel kernels in log_attention's mode (-DLOGV=1: log values, log outputs)
    bwd: bool = False  # bf16 exp-kernel backward on tensor cores (exp_kernel_bwd_tc.cu; fp32 chunk summaries)

    @property
    def bf16(self):
        return self.half == "bf16"

    @property
    def hi_tc(self):
        """hierarchical.cu's tensor-core kernels (HI_TC): bf16 inputs, float32 / float16 inputs with ``tc``."""
        return self.bf16 or (self.tc and self.ta == "float")

    @property
    def itemsize(self):
        return 8 if self.ta == "double" else 4

    @property
    def QLD(self):
        return self.CH + 4

    @property
    def HS(self):
        return min(self.DKP, 32)

    @property
    def NLC(self):
        return int(math.log2(self.CH)) + 1

    def gd_smem(self, G=GD_G, BW=GD_BW, wsplit=True, sreg=False):
        """gd_scan's shared memory (gated_delta.cu) with G slots of BW columns per block: Qe, Ek (rows
        padded by 16 bytes; the slots' W over them: float32 as tf32 pairs, BW + 4 a row, unless a timing
        build keeps it unsplit (``wsplit``); float64 BW + 8), phi, the slots' S (BW + 8 a row; a timing
        build's tf32 pairs, ``sreg``) and CH weights."""
        CH, DKP, es = self.CH, self.DKP, self.itemsize
        pad = 16 // es
        w, sw = ((2 * (BW + 4) if f and es == 4 else BW + 8) for f in (wsplit, sreg))
        return (max(2 * CH * (DKP + pad), G * CH * w) + DKP * (CH + pad) + G * (DKP * sw + CH)) * es

    @property
    def tier_bw(self):
        """gd_tier1 / gd_tier3's columns per block (gated_delta_tier.cu's GD_TBW): float32 64, float64 32."""
        return 64 if self.ta == "float" else 32

    def gd_tier3_smem(self, BW, R=None):
        """gd_tier3's shared memory (gated_delta_tier.cu's gd_t3_smem) at BW columns and R chunks a block (None:
        ``tier3_chunks``): Qp's R chunks (rows padded by 16 bytes), two buffers of a slot (BW + 8 a row) and of R CH
        read weights."""
        R = R or self.tier3_chunks(BW)
        return (R * self.CH * (self.DKP + 16 // self.itemsize) + 2 * (self.DKP * (BW + 8) + R * self.CH)) * self.itemsize

    def tier3_chunks(self, BW=None):
        """gd_tier3's chunks per block (gated_delta_tier.cu's GD_T3R) at BW columns a block (None: ``tier_bw``): 4, 2
        or 1, the most whose shared memory allows 2 blocks per SM (GD_T3SMAX)."""
        BW = BW or self.tier_bw
        return next(R for R in (4, 2, 1) if R == 1 or self.gd_tier3_smem(BW, R) <= 113 * 1024)

    @property
    def coarse_group_bw(self):
        """The grouped coarse kernels' columns per block (gated_delta_tier.cu's GD_CGBW: gd_cgroup, gd_coarse_g,
        gd_cfill): float32 64, float64 32 (gd_coarse: GD_BW)."""
        return 64 if self.ta == "float" else GD_BW

    def gd_coarse_smem(self, BW=GD_BW, zb=2):
        """The coarse kernels' shared memory (gated_delta_tier.cu's gd_cchain: gd_coarse at BW = GD_BW; gd_cgroup,
        gd_coarse_g at ``coarse_group_bw``): zb buffers of a transfer (DKP x DKP, rows padded by 16 bytes; gd_cfill: 1)
        and two of a slot (DKP x BW, BW + 8 a row)."""
        return (zb * self.DKP * (self.DKP + 16 // self.itemsize) + 2 * self.DKP * (BW + 8)) * self.itemsize

    # dynamic shared memory of each kernel, in bytes (the kernels check it: check_smem)
    def smem(self, kernel):
        CH, DKP, DVP, QLD, HS, es = self.CH, self.DKP, self.DVP, self.QLD, self.HS, self.itemsize
        if kernel == "gd_scan":
            return self.gd_smem()
        if kernel == "gd_tier1":  # gd_walk<GD_TM>'s layout (GD_TM = 2 slots; W unsplit past 32 columns)
            return self.gd_smem(2, self.tier_bw, self.tier_bw <= 32)
        if kernel == "gd_tier3":
            return self.gd_tier3_smem(self.tier_bw)
        if kernel == "gd_coarse":  # (past SMEM_MAX: float64 at DKP = 128, which gated_delta.tier_plan leaves to gd_scan)
            return min(self.gd_coarse_smem(), SMEM_MAX)
        if kernel in ("gd_cgroup", "gd_coarse_g", "gd_cfill"):
            return min(self.gd_coarse_smem(self.coarse_group_bw, 1 if kernel == "gd_cfill" else 2), SMEM_MAX)
        if kernel == "gd_forms":  # gated_delta_forms.cu (GF_SMEM): four tiles, four CH vectors, Lambda's CH x 8 levels
            pad = 8 if self.ta == "float" and CH == DKP == 64 else 4  # GF_PAD (rows of the tensor-core operands)
            if pad == 8 and self.bf16:  # GF_H: Q and K / V as 16-bit tiles, two float32 tiles (GF_SMEM_BYTES)
                return 2 * CH * 64 * 2 + (2 * CH * (CH + pad) + 12 * CH) * es
            cc, vb = CH * (CH + pad), CH * (min(DKP, 64) + pad)
            tiles = max(CH * DKP, cc, 32 * 36) + max(CH * DKP, vb) + cc + max(cc, CH * (DKP + pad))
            return (tiles + 12 * CH) * es
        if kernel in ("gd_scan_bwd", "gd_scan_bwd_x1"):  # gated_delta_bwd.cu (GDB_SMEM): three chunk tiles, S, dS', W, dr, dW, a reduction
            bv = gd_scan_bwd_columns(self)
            if self.ta == "float":  # GDB_TC: the chunk tiles, two sets of the slot buffers, rows padded
                return (2 * CH * (DKP + 4) + DKP * (CH + 8) + 2 * (2 * DKP * (bv + 8) + 3 * CH * (bv + 4)) + 256) * es
            return (3 * DKP * CH + 2 * DKP * (bv + 1) + 3 * CH * bv + 256) * es
        if kernel in ("gd_forms_bwd", "gd_forms_bwd_x1"):  # gated_delta_forms_bwd.cu (FB_SMEM): six tiles (rows + FB_PAD), 32 CH vectors
            pad = 4 if self.ta == "float" and CH == DKP == 64 else 1  # FB_PAD (FB_TC: tensor-core operands)
            tc, tk, lv = CH * (CH + pad), CH * (DKP + pad), 32 + pad  # FB_VB = 32 value columns per pass
            ta_, tp = max(tc, tk), max(DKP * (CH + 1), tk, tc)
            return (tk + 2 * tc + ta_ + tp + max(max(CH, DKP) * lv + CH * lv, ta_) + 32 * CH) * es
        if kernel == "hi_intra":  # hierarchical.cu (HI_AV = 64 value columns per pass; HI_TC's tiles and strides)
            if self.hi_tc:
                return (CH * ((DKP + 8) + (DKP + 4) + (CH + 8) + max(DKP + 8, 68)) + 5 * CH + DKP + 64) * es
            return (2 * CH * (DKP + 1) + CH * (CH + 1) + CH * 65 + 2 * CH + DKP + 64) * es
        if kernel == "hi_merge":  # hierarchical.cu (HI_BV = 16 value columns per block, HI_LMAX = 64 slot decays)
            return (DKP + 16 + 64) * es
        if kernel == "hi_snap":
            return 65 * es
        if kernel == "hi_read":  # hierarchical.cu (HI_RW = 64 value columns per block, HI_LMAX = 64, NT = 256)
            if self.hi_tc:  # HI_RTC: two buffers of the slot tiles (S rows of 68), no E tile, the held slots (HI_HELD = 128)
                return (2 * (DKP * 68 + 2 * DKP + 64) + CH * (DKP + 8) + CH * 64 + 3 * CH + 257) * es
            return (DKP * 64 + 2 * CH * (DKP + 1) + CH * 64 + 2 * DKP + 64 + 256 + 5 * CH) * es
        if kernel in ("hib_dq", "hib_blocks", "hib_bmerge", "hib_dkdv"):  # hierarchical_bwd{,_chunk}.cu (HI_LMAX = 64 levels per row)
            K, V, X = CH * (DKP + 1), CH * (DVP + 1), CH * (CH + 1)
            TK, TV, TC = DKP + 4, DVP + 4, CH + 4  # mm_acc operands
            fp = 2 * DKP + DVP + 7 * CH  # Z, the CH vectors, hib_fpairs' shifts and flags
            freg = max(DVP * (TK + TC), 2 * DKP * TC, 2 * DVP * TC, CH * (TC + TK))  # HIB_FREG
            return {"hib_dq": 3 * K + 3 * V + 3 * X + 2 * CH * 64 + freg + fp,
                    "hib_blocks": CH * (TK + 2 * TV) + 3 * DKP + 2 * DVP + 4 * CH,
                    "hib_bmerge": 8 * (DKP + DVP),  # HIB_NPC pieces' factors
                    "hib_dkdv": self._hib_dkdv(self.hib_unb)}[kernel] * es
        if kernel == "ll_pk_read":  # loglinear_streams.cu: x transposed (PK_KROWS x PK_XLD), a stage of one old slot
            return (-(-DKP // 32) * 32 * 68 + 32 * DVP) * es
        if kernel in ("ll_pk_state", "hi_pk_state"):  # a stage of keys (or tot^T) and of values (or kept slots)
            return 32 * (DKP + DVP) * es
        if kernel == "hi_pk_read":  # the queries and their exponentials, k-major; a stage of one old S
            return (2 * -(-DKP // 32) * 32 * 68 + 32 * DVP) * es
        if kernel == "ll_chunk_states":
            return (CH * DKP + CH * DVP + 2 * CH) * es
        if kernel == "ll_output":
            return (2 * DKP * QLD + CH * DVP + CH * QLD + HS * DVP + 2 * CH + CH * self.NLC) * es
        if kernel == "ll_output_dl":
            return self.smem("ll_output") + (2 * DVP * QLD + CH * self.NLC) * es
        if kernel == "ll_bw_blocks":
            return (CH * DKP + CH * DVP + CH) * es
        if kernel == "ll_bw_dkdv":
            return (2 * DKP * QLD + 2 * DVP * QLD + CH * DKP + CH * DVP + 2 * CH * QLD + 2 * DKP * DVP + 3 * CH
                    + CH * self.NLC) * es
        lv = DVP if self.logv else 0  # per-column value shifts
        lo = CH * DVP if self.logv else 0  # the log outputs' tile of the backward
        lr = CH if self.logv else 0  # the backward's row caps
        if kernel == "ekb_dq":  # (LOGV: n_in, W^c, S_in's column scales, nn; the rows' flags)
            return (4 * CH * DKP + 2 * DVP * QLD + CH * DVP + CH * QLD + DVP * DKP + 2 * DKP + 2 * CH + lo + 4 * lv
                    + 2 * lr) * es
        if kernel == "ekb_dkdv":  # (LOGV: W, U's column scales, nn; the rows' flags)
            return (3 * CH * DKP + DKP * QLD + 2 * DVP * QLD + CH * DVP + 2 * CH * QLD + 2 * DKP * DVP + 2 * DKP
                    + 2 * CH + lo + 3 * lv + 2 * lr) * es
        if kernel == "ek_chunk":
            return (CH * DKP + CH * DVP + DKP + lv) * es
        if kernel == "ek_output":  # (+ two int flags per row: exact path, segment start)
            return (2 * DKP * QLD + CH * DVP + CH * QLD + HS * DVP + 3 * DKP + 2 * CH + 8 * (DKP + CH) + 2 * lv) * es + 2 * CH * 4
        LDK, LDV = DKP + 8, DVP + 8  # tensor-core kernels (bf16 tiles)
        if kernel == "ll_chunk_states_tc4":
            return (CH * LDK + CH * LDV) * 2 + 2 * CH * 4
        if kernel == "ll_output_tc4":
            return (2 * DKP * (DVP + 4) * 4 + (2 * CH * LDK + CH * LDV + DKP * LDV) * 2
                    + (2 * CH + (0 if DKP * (DVP + 4) >= CH * (CH + 1) else CH * (CH + 1)) + CH * self.NLC) * 4
                    + 128 * (4 + 4 + 8))
        if kernel in ("ekb_dq_tc", "ekb_dkdv_tc"):  # exp_kernel_bwd_tc.cu (its layouts; NTC = 128)
            aby = max(2 * CH * LDK * 2, lo * 4)  # A and B's bytes, the float32 log output's over them (LOGV)
            bt, ft = (2 * CH * LDK + 2 * CH * LDV + DKP * LDV) * 2 + aby, 4 * DKP + 5 * CH + 256 + 4 * DVP
            if kernel == "ekb_dkdv_tc":
                bt = (2 * CH * LDK + 2 * CH * LDV) * 2 + max(aby + DKP * LDV * 2, CH * (DKP + DVP) * 4)
                ft = 3 * DKP + 4 * CH + 128 + 2 * DVP
            return bt + ft * 4 + CH * 4
        if kernel in ("ek_chunk_tc5", "ek_chunk_tc5f"):  # (LOGV: the column maxima's 128 partials)
            return (CH * LDK + CH * LDV) * 2 + (128 + DKP + lv + (128 if self.logv else 0)) * 4
        if kernel in ("ek_output_tc5", "ek_output_tc5f"):
            return (2 * CH * LDK + CH * LDV + DKP * LDV) * 2 + (3 * DKP + 2 * CH + 4 * (DKP + CH) + 2 * lv) * 4 + 2 * CH * 4
        return 0

    def _hib_dkdv(self, nb):
        """hib_dkdv's shared elements (hierarchical_bwd_chunk.cu) with nb buffers of a right block's U (rows of
        HIB_SLD): its pairs' tiles (+ HIB_F2), the right blocks' operands over them (U buffers, E^T, B^T)."""
        CH, DKP, DVP = self.CH, self.DKP, self.DVP
        K, V, X, TC = CH * (DKP + 1), CH * (DVP + 1), CH * (CH + 1), CH + 4
        pairs = K + 2 * V + 3 * X + CH * (TC + max(DKP, DVP) + 4)
        blocks = nb * DKP * (DVP + (8 if self.tc else 4)) + (DVP + DKP) * TC
        return 2 * K + 2 * V + max(pairs, blocks) + CH * 64 + 2 * DKP + DVP + 7 * CH

    @property
    def hib_unb(self):
        """hib_dkdv's U buffers (HIB_UNB): two (the next right block's copy in flight) where they fit."""
        return 2 if self._hib_dkdv(2) * self.itemsize <= SMEM_MAX else 1

    def kernel(self, name):
        """(kernel name, threads per block): the tensor-core variants for bf16 inputs (log-linear
        ``*_tc4``; exp-kernel ``*_tc5``, in both modes, whose chunk summaries are stored as bf16;
        the version history is in ``benchmarks/NOTES.md``)."""
        if self.bwd and name in ("ekb_dq", "ekb_dkdv", "ek_chunk"):  # the backward's: fp32 summaries
            return {"ekb_dq": "ekb_dq_tc", "ekb_dkdv": "ekb_dkdv_tc", "ek_chunk": "ek_chunk_tc5f"}[name], 128
        if self.bf16 and self.tc and name in ("ll_chunk_states", "ll_output"):
            return name + "_tc4", 128
        if self.bf16 and self.tc and name in ("ek_chunk", "ek_output"):
            return name + "_tc5", 128
        if self.bf16 and self.tc and name == "ek_output_f32":  # the float32 log output of bf16 log_attention training
            return "ek_output_tc5f", 128
        if name == "hi_read" and self.hi_tc:  # hierarchical_read.cu's HI_RNT: two warps per m-tile at every chunk
            return name, max(4 * self.CH, 128)
        return name, 256


def _pad_dim(d):
    for p in (16, 32, 64, 128):
        if d <= p:
            return p
    raise ValueError(f"head dim {d} > 128 is not supported by the cupy kernels")


#: dynamic shared memory a block may use (H100 / H200: 227 KB)
SMEM_MAX = 227 * 1024


def gd_scan_bwd_columns(cfg):
    """gd_scan_bwd's value columns per block (gated_delta_bwd.cu's GDB_BV; fewer were slower, session 13)."""
    return 16


#: the backward kernels of each family whose shared memory bounds the chunk
_GRAD_TILES = {"loglinear": ("ll_bw_dkdv", "ll_output_dl"), "exp_kernel": ("ekb_dq", "ekb_dkdv")}


@functools.lru_cache(maxsize=256)  # on every call's path: the same few variants
def make_config(ta, DK, DV, chunk_size=None, half="", grad=None, logv=False):
    """The variant for compute type ``ta`` ('float'/'double'), 16-bit inputs ``half`` ('', 'bf16',
    'f16') and head dims (``DV <= 128``). ``grad``: a family ('loglinear' | 'exp_kernel') whose
    backward kernels (float / double) run: their larger tiles may need a smaller chunk (they may
    not fit even at CH = 16: ``grad_fits``). ``logv``: the exp-kernel kernels in log_attention's
    mode (the forward's bf16 inputs run its tensor-core variants too)."""
    DKP, DVP = _pad_dim(DK), _pad_dim(DV)
    ch_max = 32 if (ta == "double" and max(DKP, DVP) == 128) else 64
    CH = min(max(int(chunk_size or 64), 16), ch_max)
    CH = 1 << (CH.bit_length() - 1)  # power of two
    if grad == "exp_kernel" and half == "bf16" and ta == "float":  # tensor cores where the tiles fit
        cfg = Config(ta, half, 64, DKP, DVP, logv=logv, bwd=True)
        if max(cfg.smem(k) for k in ("ekb_dq_tc", "ekb_dkdv_tc")) <= SMEM_MAX:
            return cfg
    if grad:  # FFMA kernels, 16-bit inputs read and written as such
        while CH > 16 and max(Config(ta, "", CH, DKP, DVP, logv=logv).smem(k) for k in _GRAD_TILES[grad]) > SMEM_MAX:
            CH //= 2
        return Config(ta, half, CH, DKP, DVP, tc=False, logv=logv)
    if half == "bf16":
        CH = 64  # the tensor-core kernels tile 64 rows over 4 warps
    return Config(ta, half, CH, DKP, DVP, logv=logv)


@functools.lru_cache(maxsize=256)
def grad_tc(DK, DV, logv=False):
    """True when the exp-kernel backward of bfloat16 inputs with these head dims runs on tensor cores
    (``exp_kernel_bwd_tc.cu``), which read the 16-bit inputs (and ``log_attention``'s float32 log output)."""
    return max(DK, DV) <= DV_BLOCK and make_config("float", DK, DV, 64, "bf16", grad="exp_kernel", logv=logv).bwd


@functools.lru_cache(maxsize=256)
def grad_fits(ta, DK, DV, family="loglinear", logv=False):
    """True when the backward kernels of ``family`` fit shared memory for these head dims
    (``logv``: the exp-kernel's in log_attention's mode)."""
    if max(DK, DV) > DV_BLOCK:
        return False
    if family == "exp_kernel":
        cfg = make_config(ta, DK, DV, 16, "", grad=family, logv=logv)
        return max(cfg.smem(k) for k in _GRAD_TILES[family]) <= SMEM_MAX
    cfg = make_config(ta, DK, DV, 16, "", grad=family)
    dq = make_config(ta, DV, DK, 16, "", grad=family)  # the dq pass runs the forward's kernel on (dO, v, k)
    return cfg.smem("ll_bw_dkdv") <= SMEM_MAX and dq.smem("ll_output_dl") <= SMEM_MAX


def _source(name):
    with open(os.path.join(_HERE, name), encoding="utf-8") as f:
        return f.read()


_KERNELS = {
    "loglinear": ("ll_chunk_states", "ll_upsweep", "ll_output", "ll_new_state", "ll_decode",
                  "ll_pk_read", "ll_pk_state", "hi_pk_read", "hi_pk_state"),  # packed streams with states (loglinear_streams.cu)
    "loglinear_bwd": ("ll_output_dl", "ll_bw_blocks", "ll_bw_dkdv"),
    "exp_kernel": ("ek_chunk", "ek_scan_mz", "ek_scan_Sv", "ek_scan_S1", "ek_output", "ek_decode"),
    "exp_kernel_bwd": ("ekb_dq", "ekb_rscan", "ekb_dkdv"),
    "step": ("ek_step", "ll_step", "gd_step", "hier_step"),  # the stepper's fused steps (step.py); head dims at run time
    "gated_delta": ("gd_forms", "gd_scan", "gd_tier1", "gd_coarse", "gd_cgroup", "gd_coarse_g", "gd_cfill", "gd_tier3"),
    # gated_delta.py: the per-chunk WY forms, the scan over chunks (its two-tier form from chunk 0 without states:
    # gd_tier1, the coarse slots (gd_coarse, or from 65 periods gd_cgroup, gd_coarse_g, gd_cfill), gd_tier3)
    "gated_delta_bwd": ("gd_scan_bwd", "gd_scan_bwd_x1", "gd_forms_bwd", "gd_forms_bwd_x1"),  # gated_delta_bwd.py: its backward (the scan's, the forms')
    "hierarchical": ("hi_intra", "hi_merge", "hi_snap", "hi_read"),  # hierarchical.py: loglinear_log_attention
    "hierarchical_bwd": ("hib_dq", "hib_blocks", "hib_bmerge", "hib_dkdv"),  # hierarchical_bwd.py: its backward
}
#: the kernel files of each family, compiled after common.cu in this order
_SOURCES = {"loglinear": ("loglinear.cu", "loglinear_streams.cu"), "loglinear_bwd": ("loglinear.cu", "loglinear_bwd.cu"), "gated_delta": ("gated_delta.cu", "gated_delta_tier.cu", "gated_delta_forms.cu"),
            "gated_delta_bwd": ("gated_delta.cu", "gated_delta_bwd.cu", "gated_delta_forms_bwd.cu"),
            "exp_kernel": ("exp_kernel.cu", "exp_kernel_tc.cu"), "hierarchical": ("hierarchical.cu", "hierarchical_read.cu"),
            "hierarchical_bwd": ("hierarchical.cu", "hierarchical_bwd.cu", "hierarchical_bwd_chunk.cu"),
            "exp_kernel_bwd": ("exp_kernel_bwd.cu", "exp_kernel_bwd_tc.cu")}


def defines(op, cfg):
    """The ``-D`` options of ``op``'s sources for ``cfg`` (also benchmarks/device/nvcc_check.py's)."""
    return (
        f"-DTA={cfg.ta}",
        f"-DTI_BF16={int(cfg.half == 'bf16')}",
        f"-DTI_F16={int(cfg.half == 'f16')}",
        f"-DCH={cfg.CH}",
        f"-DDKP={cfg.DKP}",
        f"-DDVP={cfg.DVP}",
        f"-DLOGV={int(cfg.logv)}",
        f"-DHIB_TC={int(op == 'hierarchical_bwd' and cfg.tc)}",  # its products on bf16 tensor cores (bf16 callers)
        f"-DHIB_UNB={cfg.hib_unb}",  # hib_dkdv's U buffers
        # the forward's tensor-core kernels for float32 / float16 inputs: products as 3xTF32
        f"-DHI_TF32={int(op == 'hierarchical' and cfg.hi_tc and not cfg.bf16)}",
    )


@functools.lru_cache(maxsize=None)
def _kernels(op, device_id, cfg):
    """Compiled kernels of ``op`` ('loglinear' | 'exp_kernel') for ``cfg`` on one device."""
    import cupy

    code = "\n".join(_source(f) for f in ("common.cu",) + _SOURCES.get(op, (f"{op}.cu",)))
    options = ("-std=c++17",) + defines(op, cfg)
    names = list(_KERNELS[op])
    if cfg.bwd and op == "exp_kernel_bwd":  # the tensor-core kernels replace the FFMA ones
        names = [cfg.kernel(n)[0] for n in names]
    elif cfg.bf16 and cfg.tc:
        names += [cfg.kernel(n)[0] for n in names if cfg.kernel(n)[0] != n]
        if op == "exp_kernel":
            names += ["ek_scan_Shv", "ek_scan_Sh1", "ek_output_tc5f"]
    with cupy.cuda.Device(device_id):
        mod = cupy.RawModule(code=code, options=options)
        out = {}
        for name in names:
            fn = mod.get_function(name)
            need = cfg.smem(name)
            if need > 48 * 1024:
                fn.max_dynamic_shared_size_bytes = need
            out[name] = fn
    return out


@functools.lru_cache(maxsize=None)
def _aux_kernels():
    """The packed calls' small kernels: ``seg_tokens`` (the token table), ``chunk_resets``
    (the scans' resets, ``exp_kernel.cu``), ``rows_{2,4,8,16}`` (``gather_rows``, thread per unit of
    the output), ``token_map`` (``CupyOps.token_map``)."""
    import cupy

    return cupy.RawModule(code=r"""
// tab: (3, n) laid-out starts (sorted), packed starts, lengths; out[g] as lsattn._varlen.TokenMap says
extern "C" __global__ void token_map(const long long* tab, int* out, int n, long long size) {
    const long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= size) return;
    int lo = 0, hi = n;
    while (hi - lo > 1) { int mid = (lo + hi) / 2; if (tab[mid] <= g) lo = mid; else hi = mid; }
    const long long rel = g - tab[lo], r = tab[n + lo] + rel;
    out[g] = (rel >= 0 && rel < tab[2 * n + lo]) ? (int)(rel == 0 ? -2 - r : r) : -1;
}
extern "C" __global__ void seg_tokens(const long long* off, int* out, int nseg, int ntok) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= ntok) return;
    int lo = 0, hi = nseg;  // off: (nseg + 1,) offsets; the last segment starting at or before token i
    while (hi - lo > 1) { int mid = (lo + hi) / 2; if (off[mid] <= i) lo = mid; else hi = mid; }
    out[i] = (int)off[lo];
    out[ntok + i] = lo;
}
// rst[j]: the segment that starts in chunk j and holds its last token, else -1 (tok: (2, T) seg_tokens)
extern "C" __global__ void chunk_resets(const int* tok, int* rst, int T, int CH, int n) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    const int last = min((j + 1) * CH, T) - 1;
    rst[j] = tok[last] >= j * CH ? tok[T + last] : -1;
}
template <typename E>
__device__ __forceinline__ void rows(const E* __restrict__ x, E* __restrict__ y, const int* __restrict__ src,
                                     long long n, int t_in, int t_out, int w, E fill) {
    const long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n) return;
    const long long r = g / w, b = r / t_out;  // the output row, its sequence
    const int s = src[r - b * t_out];
    y[g] = s < 0 ? fill : x[(b * t_in + s) * w + (g - r * w)];
}
#define ROWS(U, E) extern "C" __global__ void rows_##U(const E* x, E* y, const int* src, long long n, int t_in, \
    int t_out, int w, E fill) { rows<E>(x, y, src, n, t_in, t_out, w, fill); }
ROWS(2, unsigned short)
ROWS(4, unsigned int)
ROWS(8, unsigned long long)
extern "C" __global__ void rows_16(const ulonglong2* x, ulonglong2* y, const int* src, long long n, int t_in, int t_out,
                                   int w, unsigned long long fill) {
    rows<ulonglong2>(x, y, src, n, t_in, t_out, w, make_ulonglong2(fill, fill));
}
""")


# ---- the kernel launches -------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _launch(op, device_id, cfg, name):
    """(kernel, block, shared bytes) of the variant of ``name`` for ``cfg`` (looked up once: every
    launch asks)."""
    real, threads = cfg.kernel(name)
    return _kernels(op, device_id, cfg)[real], (threads,), cfg.smem(real)


_NT = 256
#: device token maps of recent packed layouts (``CupyOps.token_map``), least recently used first: a few,
#: so the device memory held stays a few ``4 T`` bytes
_TOKEN_MAPS = {}
_TOKEN_MAPS_MAX = 4


class CupyOps:
    """Launches the kernels on CuPy's current device and stream. Arrays are CuPy arrays."""

    def __init__(self, device_id):
        import cupy

        self.xp = cupy
        self.device_id = device_id

    def _k(self, op, cfg, name):
        return _kernels(op, self.device_id, cfg)[name]

    def _tk(self, op, cfg, name):
        """(kernel, block, shared bytes) of the variant of ``name`` for ``cfg``."""
        return _launch(op, self.device_id, cfg, name)

    @staticmethod
    def _i(x):
        return np.int32(x)

    @staticmethod
    def _l(x):
        return np.int64(x)

    @staticmethod
    def _p(x):
        """A pointer argument the kernel does not read in this mode: None -> a null pointer."""
        return np.uint64(0) if x is None else x

    def token_map(self, tm):
        """The (tm.size,) int32 map of a ``lsattn._varlen.TokenMap`` (``TokenMap.array`` on the
        device): one launch over its positions, each binary-searching the segment laid out at or
        before it (a raw kernel: an ElementwiseKernel's call costs ~0.1 ms of host time). Kept for
        the next calls with the same layout on this device and stream (``_TOKEN_MAPS``: read-only to
        the kernels; the stream orders its build before them): no upload or launch per call."""
        cp = self.xp
        key = (tm.size, tm.table.tobytes(), self.device_id, cp.cuda.get_current_stream().ptr)
        out = _TOKEN_MAPS.pop(key, None)
        if out is None:
            out = cp.empty((tm.size,), dtype=cp.int32)
            if tm.size:
                _aux_kernels().get_function("token_map")((-(-tm.size // _NT),), (_NT,), (
                    to_device(cp, tm.table, out), out, np.int32(tm.table.shape[1]), np.int64(tm.size)))
            while len(_TOKEN_MAPS) >= _TOKEN_MAPS_MAX:
                _TOKEN_MAPS.pop(next(iter(_TOKEN_MAPS)))  # the least recently used
        _TOKEN_MAPS[key] = out
        return out

    def seg_tokens(self, off, like):
        """The exp-kernel kernels' ``tok`` (2, T) int32 of packed offsets ``off`` (N + 1,) int64 (host):
        the first token of every token's segment, then its segment (``exp_kernel.cu``); one elementwise
        launch over the tokens, each binary-searching the offsets (one copy of ``N + 1`` integers)."""
        cp = self.xp
        T = int(off[-1])
        out = cp.empty((2, T), dtype=cp.int32)
        if T:  # (a raw kernel: an ElementwiseKernel's call costs ~0.1 ms of host time, session 12's profile)
            _aux_kernels().get_function("seg_tokens")((-(-T // _NT),), (_NT,), (
                to_device(cp, np.asarray(off, np.int64), out), out, np.int32(off.shape[0] - 1), np.int32(T)))
        return out

    def chunk_resets(self, tok, T, CH, n):
        """(n,) int32: for each chunk of ``CH`` of the ``T`` tokens of the token table ``tok`` (2, T), the
        segment that starts in it and holds its last token, else -1 (the scans' resets, one launch)."""
        rst = self.xp.empty((n,), dtype=self.xp.int32)
        if n:
            _aux_kernels().get_function("chunk_resets")((-(-n // _NT),), (_NT,), (tok, rst, np.int32(T), np.int32(CH),
                                                                                    np.int32(n)))
        return rst

    def gather_rows(self, x, src, t_out, fill=0):
        """``(B, t_out, d)`` C-contiguous: row ``t`` of every sequence is row ``src[t]`` of ``x``
        ``(B, t_in, d)`` (C-contiguous), or every element the bit pattern ``fill`` (an int) where
        ``src[t] < 0``; ``src`` ``(t_out,)`` int32 on the device. One launch of plain row copies in units
        of up to 16 bytes (the packed backward's chunk layout and its way back: no scatter)."""
        cp = self.xp
        B, t_in, d = x.shape
        y = cp.empty((B, t_out, d), dtype=x.dtype)
        e = x.dtype.itemsize
        u = next(u for u in (16, 8, 4, 2) if (d * e) % u == 0 and x.data.ptr % u == 0)
        n = B * t_out * d * e // u
        if n:  # the fill's pattern over a unit (16 bytes: the 8-byte pattern twice)
            pattern = sum((int(fill) & ((1 << 8 * e) - 1)) << (8 * e * j) for j in range(min(u, 8) // e))
            _aux_kernels().get_function(f"rows_{u}")(
                (-(-n // _NT),), (_NT,), (x, y, src, np.int64(n), np.int32(t_in), np.int32(t_out), np.int32(d * e // u),
                                         getattr(np, f"uint{8 * min(u, 8)}")(pattern)))
        return y

    # log-linear
    def ll_chunk_states(self, cfg, k, v, a, H, gsum, T, DK, DV, p, F, n, BH, rows=None, tmap=None, Ts=None):
        """rows: (5, BH) int32, the inputs' row of every sequence (broadcast inputs), or None.
        tmap: (T,) int32, the input row of every token of the call (packed segments; ``tok_row``), or
        None; Ts: the inputs' rows per sequence (None: T)."""
        fn, block, smem = self._tk("loglinear", cfg, "ll_chunk_states")
        fn((n, BH), block, (k, v, a, H, gsum, self._i(T), self._i(DK), self._i(DV), self._l(p), self._l(F), self._i(n),
                            self._p(rows), self._p(tmap), self._i(T if Ts is None else Ts)),
           shared_mem=smem)

    def ll_upsweep(self, cfg, H, gsum, DK, DV, n, j0, step, stride, count, BH):
        self._k("loglinear", cfg, "ll_upsweep")(
            (count, BH), (_NT,), (H, gsum, self._i(DK), self._i(DV), self._i(n), self._l(j0), self._l(step), self._l(stride)))

    def ll_output(self, cfg, q, k, v, a, lam, H, gsum, old, out, T, DK, DV, L, p, F, n, n_old, BH, rows=None,
                  tmap=None, Ts=None):
        fn, block, smem = self._tk("loglinear", cfg, "ll_output")
        fn((n, BH), block,
           (q, k, v, a, lam, H, gsum, old, out, self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p),
            self._l(F), self._i(n), self._i(n_old), self._p(rows), self._p(tmap), self._i(T if Ts is None else Ts)),
           shared_mem=smem)

    def _ll_grid_launch(self, name, cfg, grid, args):
        fn, block, smem = self._tk("loglinear_bwd", cfg, name)
        fn(grid, block, args, shared_mem=smem)

    def ll_output_dl(self, cfg, q, k, v, a, lam, H, gsum, old, out, T, DK, DV, L, p, F, n, n_old, X, Y, dl, BH):
        self._ll_grid_launch("ll_output_dl", cfg, (n, BH), (
            q, k, v, a, lam, H, gsum, old, out, self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p),
            self._l(F), self._i(n), self._i(n_old), X, Y, dl))

    def ll_bw_blocks(self, cfg, q, do, a, lam, G, gtot, T, DK, DV, L, p, F, n, BH):
        self._ll_grid_launch("ll_bw_blocks", cfg, (n - 1, BH), (
            q, do, a, lam, G, gtot, self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p), self._l(F), self._i(n)))

    def ll_bw_dkdv(self, cfg, q, k, v, do, a, lam, G, gtot, dk, dv, T, DK, DV, L, p, F, n, BH):
        self._ll_grid_launch("ll_bw_dkdv", cfg, (n, BH), (
            q, k, v, do, a, lam, G, gtot, dk, dv, self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p),
            self._l(F), self._i(n)))

    def ll_new_state(self, cfg, k, v, a, H, gsum, old, newlev, T, DK, DV, p, F, n, n_old, h, Lnew, BH, rows=None):
        self._k("loglinear", cfg, "ll_new_state")(
            (Lnew, BH), (_NT,),
            (k, v, a, H, gsum, old, newlev, self._i(T), self._i(DK), self._i(DV), self._l(p), self._l(F), self._i(n),
             self._i(n_old), self._i(h), self._i(Lnew), self._p(rows)))

    def ll_decode(self, cfg, q, k, v, a, lam, old, newlev, out, DK, DV, L, p, n_old, h, Lnew, BH, rows=None):
        self._k("loglinear", cfg, "ll_decode")(
            (BH, -(-DV // 16)), (_NT,),
            (q, k, v, a, lam, old, newlev, out, self._i(DK), self._i(DV), self._i(L), self._l(p), self._i(n_old),
             self._i(h), self._i(Lnew), self._p(rows)))

    def ll_pk_read(self, cfg, x, a, lam, old, out, seg, tiles, T, DK, DV, L, N, L_old, ntiles, BH):
        """Packed streams' reads of their old slots into ``out`` (in place; ``loglinear_streams.cu``)."""
        fn, block, smem = self._tk("loglinear", cfg, "ll_pk_read")
        fn((ntiles, BH, -(-DV // cfg.DVP)), block,
           (x, self._p(a), lam, old, out, seg, tiles, self._i(T), self._i(DK), self._i(DV), self._i(L), self._i(N),
            self._i(L_old), self._i(ntiles)), shared_mem=smem)

    def ll_pk_state(self, cfg, y, v, a, tot, old, lev, seg, rng, T, DK, DV, N, L_old, L_new, BH):
        """Packed streams' new slots ``lev`` (BH, N, L_new, DK, DV) (``loglinear_streams.cu``)."""
        fn, block, smem = self._tk("loglinear", cfg, "ll_pk_state")
        fn((N * L_new, BH, -(-DV // cfg.DVP)), block,
           (y, v, self._p(a), self._p(tot), self._p(old), lev, seg, rng, self._i(T), self._i(DK), self._i(DV), self._i(N),
            self._i(L_old), self._i(L_new)), shared_mem=smem)

    def hi_pk_read(self, cfg, q, a, lam, old, part, out, seg, tiles, T, DK, DV, L, N, L_old, ntiles, BH):
        """Packed ``loglinear_log_attention`` streams: the partials ``part = (r, den, y)`` with the reads of
        the old slots ``old = (m, n, S, z)`` (None: none), finished into ``out`` (``loglinear_streams.cu``)."""
        fn, block, smem = self._tk("loglinear", cfg, "hi_pk_read")
        om, on, oS, oz = (None,) * 4 if old is None else old
        fn((ntiles, BH, -(-DV // cfg.DVP)), block,
           (q, self._p(a), lam, self._p(om), self._p(on), self._p(oS), self._p(oz), *part, out, seg, tiles, self._i(T),
            self._i(DK), self._i(DV), self._i(L), self._i(N), self._i(L_old), self._i(ntiles)), shared_mem=smem)

    def hi_pk_state(self, cfg, k, lv, a, old, new, seg, rng, T, DK, DV, N, L_old, L_new, BH):
        """Their new slots ``new = (m, n, S, z)`` (BH, N, L_new, ...) (``loglinear_streams.cu``)."""
        fn, block, smem = self._tk("loglinear", cfg, "hi_pk_state")
        om, on, oS, oz = (None,) * 4 if old is None else old
        fn((N * L_new, BH, -(-DV // cfg.DVP)), block,
           (k, lv, self._p(a), self._p(om), self._p(on), self._p(oS), self._p(oz), *new, seg, rng, self._i(T), self._i(DK),
            self._i(DV), self._i(N), self._i(L_old), self._i(L_new)), shared_mem=smem)

    # log-linear Gated DeltaNet
    def gd_forms(self, cfg, q, k, v, a, beta, lam, qe, ek, ph, H, g, out, T, DK, DV, L, p, F, n, BH, lamw=None, bad=None):
        """The per-chunk WY forms (gated_delta_forms.cu) of the contiguous (BH, T, ..) inputs into
        qe, ek (BH, n, CH, DK), ph (BH, n, DK, CH), H (BH, n, DK, DV), g (BH, n), out (BH, n, CH, DV);
        lamw (BH, T, L): lam in the compute type (or None); bad: an int32 (a (1,) array or its address as
        np.uint64) set to 1 when some input is not finite (log decays: +inf or NaN), else left as it is (or None)."""
        fn, block, smem = self._tk("gated_delta", cfg, "gd_forms")
        fn((n, BH), block,
           (q, k, v, a, beta, lam, qe, ek, ph, H, g, out, self._p(lamw), self._p(bad), self._i(T), self._i(DK),
            self._i(DV), self._i(L), self._l(p), self._l(F), self._i(n)),
           shared_mem=smem)

    def gd_scan(self, cfg, qe, ek, ph, H, g, lam, out, lev, oldc, T, DK, DV, L, p, F, n, n_old, NLC, merge_last, BH,
                keep=True):
        """The scan's independent chains (gated_delta.cu) in groups of ``gated_delta.scan_group(n)``
        slots: ``gated_delta.scan_blocks`` of them, each for every sequence and block of GD_BW value
        columns; ``keep``: write the returned state into lev / oldc (else only the output)."""
        from .gated_delta import scan_blocks, scan_group, tier_plan

        tier = tier_plan(cfg, F, n, n_old, keep, DK, DV)
        if tier is not None:
            return self.gd_tiers(cfg, tier, qe, ek, ph, H, g, lam, out, T, DK, DV, L, n, BH)
        fn, block, smem = self._tk("gated_delta", cfg, "gd_scan")
        per, G = BH * -(-DV // GD_BW), scan_group(n)
        fn((scan_blocks(F, n, n_old, NLC, G) * per,), block,
           (qe, ek, ph, H, g, lam, out, lev, oldc, self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p),
            self._l(F), self._i(n), self._i(n_old), self._i(NLC), self._i(int(merge_last)), self._i(int(keep)),
            self._i(BH), self._i(G)),
           shared_mem=smem)

    def gd_tiers(self, cfg, tier, qe, ek, ph, H, g, lam, out, T, DK, DV, L, n, BH, scratch=None, bw=None, walk3=False,
                 r3=None):
        """gd_scan's two-tier form (gated_delta_tier.cu: gd_tier1, the coarse slots, gd_tier3) for ``tier =
        gated_delta.tier_plan(..)``; scratch: (Z, Tot, Sb, Qp, Pc, Tg) of ``tier.shapes`` (None: allocated here); bw: gd_tier1 /
        gd_tier3's columns per block (None: ``cfg.tier_bw``; a timing build's GD_TBW_SET); walk3: gd_tier3 as session
        13's walks (a timing build's GD_T3WALK_SET=1; no Qp); r3: gd_tier3's chunks per block (None:
        ``cfg.tier3_chunks(bw)``; a timing build's GD_T3R_SET). The coarse slots: ``tier.grouped``, gd_cgroup, gd_coarse_g,
        gd_cfill (levels >= 3 over groups of 4 periods); else gd_coarse (every level over periods)."""
        nP, NCL, NPR, nG = tier.nP, tier.NCL, tier.NPR, tier.nG
        Z, Tot, Sb, Qp, Pc, Tg = scratch or [self.xp.empty((BH,) + shape, dtype=out.dtype) for shape in tier.shapes(DK, DV)]
        bw = bw or cfg.tier_bw
        r3 = r3 or cfg.tier3_chunks(bw)
        NCB, NCK, i = -(-DV // bw), -(-DK // bw), self._i
        head = (qe, ek, ph, H, g, lam, out)
        fn, block, smem = self._tk("gated_delta", cfg, "gd_tier1")
        fn((nP * BH * (NCB + NCK),), block, head + (Z, Tot, self._p(None) if walk3 else Qp, i(T), i(DK), i(DV), i(L),
                                                    i(n), i(nP), i(BH)), shared_mem=smem)
        if NCL == 0:  # one period: no level above GD_TM
            return
        cargs = (Z, Tot, Pc, Tg, Sb, i(DK), i(DV), i(nP), i(NCL), i(BH))
        if tier.grouped:  # levels >= 3 over groups of 4 periods: their transfers' prefixes and keys, the chains, the fill
            cbw = cfg.coarse_group_bw
            CB, CK = -(-DV // cbw), -(-DK // cbw)
            fn, block, smem = self._tk("gated_delta", cfg, "gd_cgroup")
            fn((nG * BH * (CK + CB),), block, (Z, Tot, Pc, Tg, i(DK), i(DV), i(nP), i(BH)), shared_mem=smem)
            fn, block, smem = self._tk("gated_delta", cfg, "gd_coarse_g")
            fn((tier.coarse_chains * BH * CB,), block, cargs, shared_mem=smem)
            fn, block, smem = self._tk("gated_delta", cfg, "gd_cfill")
            fn((nP * BH * CB,), block, (Z, Pc, Sb, i(DK), i(DV), i(nP), i(BH)), shared_mem=smem)
        else:
            fn, block, smem = self._tk("gated_delta", cfg, "gd_coarse")
            fn((tier.coarse_chains * BH * -(-DV // GD_BW),), block, cargs, shared_mem=smem)
        fn, block, smem = self._tk("gated_delta", cfg, "gd_tier3")
        if not walk3:  # one block per (r3 chunks of a period, sequence, column block)
            fn((-(-n // r3) * BH * NCB,), block, (Qp, lam, out, Sb, i(T), i(DK), i(DV), i(L), i(n), i(nP), i(BH)),
               shared_mem=smem)
            return
        fn((nP * NPR * BH * NCB,), block, head + (Sb, i(T), i(DK), i(DV), i(L), i(n), i(nP), i(NPR), i(BH)),
           shared_mem=smem)

    def gd_scan_bwd(self, cfg, qe, ek, ph, H, g, lam, dout, oldc, sv, dS, dqe, dek, dph, dH, dg, dlam, T, DK, DV, L, p, F,
                    n, n_old, NLC, merge_last, BH, x1=False):
        """The chunk scan's backward (gated_delta_bwd.cu); x1: its 1xTF32 build (gd_scan_bwd_x1, bfloat16 callers)."""
        fn, block, smem = self._tk("gated_delta_bwd", cfg, "gd_scan_bwd_x1" if x1 else "gd_scan_bwd")
        fn((BH, -(-DV // gd_scan_bwd_columns(cfg))), block,
           (qe, ek, ph, H, g, lam, dout, oldc, sv, dS, dqe, dek, dph, dH, dg, dlam, self._i(T), self._i(DK), self._i(DV),
            self._i(L), self._l(p), self._l(F), self._i(n), self._i(n_old), self._i(NLC), self._i(int(merge_last))),
           shared_mem=smem)

    def gd_forms_bwd(self, cfg, q, k, v, a, beta, lam, dqe, dek, dph, dH, dg, dI, dq, dk, dv, da, dbeta, dlam, T, DK, DV,
                     L, p, F, n, BH, x1=False):
        """The backward of the WY forms (gated_delta_forms_bwd.cu): the (BH, T, ..) gradients of the
        inputs from those of gd_forms' outputs (chunked), one block per (chunk, sequence); x1: its
        1xTF32 build (gd_forms_bwd_x1, bfloat16 callers)."""
        fn, block, smem = self._tk("gated_delta_bwd", cfg, "gd_forms_bwd_x1" if x1 else "gd_forms_bwd")
        fn((n, BH), block,
           (q, k, v, a, beta, lam, dqe, dek, dph, dH, dg, dI, dq, dk, dv, da, dbeta, dlam, self._i(T), self._i(DK),
            self._i(DV), self._i(L), self._l(p), self._l(F), self._i(n)),
           shared_mem=smem)

    # hierarchical exp-kernel attention
    def hi_intra(self, cfg, q, k, lv, lam, a, lden, lnum, wm, wz, wn, wS, gch, T, DK, DV, L, p, F, n, n_old, alo, BH):
        """a: (BH, T) log decays or None (no decay); alo: their clamp (compute-dtype scalar)."""
        fn, block, smem = self._tk("hierarchical", cfg, "hi_intra")
        fn((n, BH), block, (q, k, lv, lam, self._p(a), lden, lnum, wm, wz, wn, wS, gch, self._i(T), self._i(DK),
                            self._i(DV), self._i(L), self._l(p), self._l(F), self._s(cfg, alo), self._i(n_old),
                            self._i(wm.shape[1])), shared_mem=smem)

    def hi_merge(self, cfg, wm, wz, wn, wS, gch, gnode, DK, DV, F, n, n_old, c0, d, count, BH):
        """Depth d of the chunk tree: the chunks c0 + x 2^(d+1), x < count (``hierarchical.merge_levels``)."""
        fn, block, smem = self._tk("hierarchical", cfg, "hi_merge")
        fn((count, wm.shape[1], BH), block,
           (wm, wz, wn, wS, gch, gnode, self._i(DK), self._i(DV), self._l(F), self._i(n), self._i(n_old), self._l(c0),
            self._i(d)), shared_mem=smem)

    def hi_snap(self, cfg, wm, gnode, msnap, DK, p, F, n, n_old, NLC, BH):
        fn, block, smem = self._tk("hierarchical", cfg, "hi_snap")
        fn((n, BH), block, (wm, gnode, msnap, self._i(DK), self._l(p), self._l(F), self._i(n), self._i(n_old),
                            self._i(NLC), self._i(wm.shape[1])), shared_mem=smem)

    def hi_read(self, cfg, q, lam, a, lden, lnum, msnap, wz, wn, wS, out, T, DK, DV, L, p, F, n, n_old, NLC, alo, BH,
                ltot=None, wide=False):
        """ltot: (BH, T) compute dtype, the rows' log den (the partials of packed streams), or None; wide: out
        is in the compute dtype whatever the inputs' (16-bit inputs under autograd)."""
        fn, block, smem = self._tk("hierarchical", cfg, "hi_read")
        nrb = -(-DV // 64)  # HI_RW value columns per block
        fn((n * nrb, BH), block,
           (q, lam, self._p(a), lden, lnum, msnap, wz, wn, wS, out, self._i(T), self._i(DK), self._i(DV), self._i(L),
            self._l(p), self._l(F), self._i(n), self._i(n_old), self._i(NLC), self._s(cfg, alo), self._i(wz.shape[1]),
            self._i(nrb), self._p(ltot), out if wide else self._p(None)), shared_mem=smem)

    def hib_dq(self, cfg, q, k, lv, lam, a, gm, om, delta, lden0, msnap, wz, wn, wS, lden, dq, dlam, Pg, Dg, Fg, dsum, T,
               DK, DV, L, p, F, n, n_old, NLC, alo, BH):
        fn, block, smem = self._tk("hierarchical_bwd", cfg, "hib_dq")
        fn((n, BH), block, (q, k, lv, lam, self._p(a), gm, om, delta, lden0, msnap, wz, wn, wS, lden, dq, dlam, Pg, Dg, Fg,
                            self._p(dsum), self._i(T),
                            self._i(DK), self._i(DV), self._i(L), self._l(p), self._l(F), self._i(n), self._i(n_old),
                            self._i(NLC), self._s(cfg, alo), self._i(wz.shape[1])), shared_mem=smem)

    def hib_blocks(self, cfg, q, lam, a, gm, om, delta, lden, gch, U, Z, M, W, gt, Up, Zp, Mp, Wp, gp, T, DK, DV, L, p,
                   F, n, alo, items, slots, BH):
        fn, block, smem = self._tk("hierarchical_bwd", cfg, "hib_blocks")
        fn((items, BH), block, (q, lam, self._p(a), gm, om, delta, lden, gch, U, Z, M, W, gt, Up, Zp, Mp, Wp, gp,
                                self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p), self._l(F), self._i(n),
                                self._s(cfg, alo), self._i(slots)), shared_mem=smem)

    def hib_bmerge(self, cfg, Up, Zp, Mp, Wp, gp, U, Z, M, W, gt, DK, DV, F, n, split, slots, BH):
        fn, block, smem = self._tk("hierarchical_bwd", cfg, "hib_bmerge")
        fn((split, BH), block, (Up, Zp, Mp, Wp, gp, U, Z, M, W, gt, self._i(DK), self._i(DV), self._l(F), self._i(n),
                                self._i(slots)), shared_mem=smem)

    def hib_dkdv(self, cfg, q, k, lv, lam, a, gm, om, delta, lden, U, Z, M, W, gt, Pg, Dg, Fg, dk, dlv, dsum, T, DK, DV, L,
                 p, F, n, alo, BH):
        fn, block, smem = self._tk("hierarchical_bwd", cfg, "hib_dkdv")
        fn((n, BH), block, (q, k, lv, lam, self._p(a), gm, om, delta, lden, U, Z, M, W, gt, Pg, Dg, Fg, dk, dlv,
                            self._p(dsum), self._i(T),
                            self._i(DK), self._i(DV), self._i(L), self._l(p), self._l(F), self._i(n), self._s(cfg, alo)),
           shared_mem=smem)

    @staticmethod
    def _s(cfg, x):
        """A compute-type scalar argument."""
        return np.float64(x) if cfg.ta == "double" else np.float32(x)

    # exp-kernel
    def ek_chunk(self, cfg, k, v, mk, S, z, T, DK, DV, n, BH, nc=None, rows=None, tok=None):
        """nc (BH, n, DV): log_attention's chunk column maxima of log_v (``cfg.logv``), else None.
        rows: (3, BH) int32, the row of q, k, v every sequence reads (broadcast inputs), or None.
        tok: (2, T) int32 packed segments (the first token of every token's segment, then its
        segment; ``exp_kernel.cu``), or None: one stream."""
        fn, block, smem = self._tk("exp_kernel", cfg, "ek_chunk")
        fn((n, BH), block, (k, v, mk, S, z, self._i(T), self._i(DK), self._i(DV), self._i(n), self._p(nc), self._p(rows),
                            self._p(tok)), shared_mem=smem)

    def _scan_max(self, cfg, mk, z, m0, z0, m_in, m_out, z_out, DK, n, BH, segs=None, vshift=None, DV=0):
        """ek_scan_mz: the running maximum of mk (BH, n, DK) from m0 (None: no keys) -> m_in, and
        the factors (al, be) of every merge; z scanned alongside. segs: None, or (rst, N) packed
        segments (:meth:`ek_scan`; m0, z0 then hold N rows per sequence: each segment's incoming state).
        vshift: as :meth:`ek_scan` (``cfg.logv``): the value columns' max-scan (no z) in the same launch.
        Returns (al, be, ga, gb) (ga, gb: the value columns' factors, or None)."""
        xp = self.xp
        al = xp.empty((BH, n, DK), dtype=mk.dtype)
        be = xp.empty((BH, n, DK), dtype=mk.dtype)
        has = m0 is not None
        if not has:
            m0 = z0 = al  # not read
        lo = -float(np.finfo(mk.dtype).max) / 8
        scalar = np.float64 if cfg.ta == "double" else np.float32
        ga = gb = None
        vals = (None,) * 6
        if vshift is not None:
            nc, n0, n_in, n_out = vshift
            ga, gb = xp.empty((BH, n, DV), dtype=mk.dtype), xp.empty((BH, n, DV), dtype=mk.dtype)
            vals = (nc, n0 if has else al, n_in, ga, gb, n_out)
        self._k("exp_kernel", cfg, "ek_scan_mz")(
            (-(-max(DK, DV) // _NT), BH, 1 if vshift is None else 2), (_NT,),
            (mk, z, m0, z0, m_in, al, be, m_out, z_out, self._i(DK), self._i(n), self._i(has), scalar(lo))
            + self._segs(segs) + tuple(self._p(x) for x in vals) + (self._i(DV),))
        return al, be, ga, gb

    def _segs(self, segs):
        """The scans' trailing (rst, nseg) arguments of packed segments ``segs`` (None: one stream)."""
        rst, N = (None, 1) if segs is None else segs
        return (self._p(rst), self._i(N))

    def ek_scan(self, cfg, mk, S, z, m0, S0, z0, m_in, m_out, S_out, z_out, DK, DV, n, BH, vshift=None, segs=None):
        """m0, S0, z0: the incoming state, or None (no keys yet: m = -finfo.max / 8, S = z = 0).
        vshift (``cfg.logv``): (nc, n0, n_in, n_out), the chunks' column maxima of log_v, the incoming
        state's (or None), and the outputs: the column shift entering every chunk and the final one.
        segs: None, or (tok, T, N) packed segments (the incoming states then (BH N, ...)); the scans
        read the chunks' resets ``rst`` (n,) int32, one launch from ``tok`` (``exp_kernel.cu``)."""
        has = m0 is not None
        if segs is not None:
            segs = (self.chunk_resets(segs[0], segs[1], cfg.CH, n), segs[2])
        # the value columns' max-scan (log_attention) in the same launch
        al, be, ga, gb = self._scan_max(cfg, mk, z, m0, z0, m_in, m_out, z_out, DK, n, BH, segs, vshift, DV)
        if not has:
            S0 = m_in  # not read
        if S.dtype != mk.dtype:  # v5: bf16 summaries (stored as uint16)
            vec = 4
            name = "ek_scan_Shv" if DV % vec == 0 else "ek_scan_Sh1"
            vec = vec if DV % vec == 0 else 1
        elif DV % (16 // cfg.itemsize) == 0 and (not has or S0.data.ptr % 16 == 0):
            name, vec = "ek_scan_Sv", 16 // cfg.itemsize
        else:
            name, vec = "ek_scan_S1", 1
        self._k("exp_kernel", cfg, name)(
            (-(-DK * DV // (vec * _NT)), BH), (_NT,),
            (al, be, S, S0, S_out, self._i(DK), self._i(DV), self._i(n), self._i(has), self._p(ga), self._p(gb))
            + self._segs(segs))

    def ek_output(self, cfg, q, k, v, m_in, S_in, z_in, out, Tq, Tk, DK, DV, n_state, causal, BH, n_in=None, rows=None,
                  name="ek_output", tok=None, init=None, nseg=1):
        """n_in (BH, n_state, DV): log_attention's column shift of every summary read (``cfg.logv``);
        rows, tok as in :meth:`ek_chunk`; name 'ek_output_f32': a float32 ``out`` (bf16 tensor-core
        variants). init: packed segments' incoming states (m0, S0, z0[, n0]) (BH nseg, ...) or None."""
        nq = -(-Tq // cfg.CH)
        fn, block, smem = self._tk("exp_kernel", cfg, name)
        m0, S0, z0 = (None, None, None) if init is None else init[:3]
        n0 = init[3] if init is not None and len(init) > 3 else None
        fn((nq, BH), block,
           (q, k, v, m_in, S_in, z_in, out, self._i(Tq), self._i(Tk), self._i(DK), self._i(DV), self._i(n_state),
            self._i(int(causal)), self._p(n_in), self._p(rows), self._p(tok), self._p(m0), self._p(z0), self._p(S0),
            self._p(n0), self._i(nseg)),
           shared_mem=smem)

    def _ekb(self, cfg, name, grid, args):
        fn, block, smem = self._tk("exp_kernel_bwd", cfg, name)
        fn(grid, block, args, shared_mem=smem)

    def ekb_dq(self, cfg, q, k, v, y, do, m_in, S, z, dq, lden, dl, T, DK, DV, n, BH, n_in=None, Wc=None):
        """n_in, Wc (BH, n, DV): log_attention's column shift of every summary read, and the output
        column shift of every chunk's U^c (``cfg.logv``)."""
        self._ekb(cfg, "ekb_dq", (n, BH), (q, k, v, y, do, m_in, S, z, dq, lden, dl, self._i(T), self._i(DK),
                                           self._i(DV), self._i(n), self._p(n_in), self._p(Wc)))

    def ekb_rscan(self, cfg, U, Z, m_in, m_next, R0, DK, DV, n, BH, Wc=None, Wn=None, W0=None):
        """Wc (BH, n, DV) in; Wn (BH, n, DV), W0 (BH, DV) out: log_attention's column shifts (``cfg.logv``)."""
        self._ekb(cfg, "ekb_rscan", (-(-(DK * DV + DK) // _NT), BH), (U, Z, m_in, m_next, R0, self._i(DK), self._i(DV),
                                                                        self._i(n), self._p(Wc), self._p(Wn), self._p(W0)))

    def ekb_dkdv(self, cfg, q, k, v, do, lden, dl, U, Z, m_next, dk, dv, T, DK, DV, n, BH, y=None, Wn=None):
        """y: log_attention's output, Wn: the column shifts of U entering from the right (``cfg.logv``)."""
        self._ekb(cfg, "ekb_dkdv", (n, BH), (q, k, v, do, lden, dl, U, Z, m_next, dk, dv, self._i(T), self._i(DK),
                                             self._i(DV), self._i(n), self._p(y), self._p(Wn)))

    def ek_decode(self, cfg, q, k, v, m, S, z, m2, S2, z2, out, DK, DV, BH, rows=None):
        self._k("exp_kernel", cfg, "ek_decode")(
            (BH, -(-DV // 16)), (_NT,), (q, k, v, m, S, z, m2, S2, z2, out, self._i(DK), self._i(DV), self._p(rows)))
