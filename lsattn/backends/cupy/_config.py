"""The CuPy backend's compiled variants: ``Config`` (compute type, 16-bit inputs, chunk, padded head dims) with
every kernel's dynamic shared memory (``Config.smem``), and the host's choice of variant (``make_config``,
``grad_tc``, ``grad_fits``). No CuPy here: ``_compile`` compiles and launches what these describe."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

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
    s16: bool = False  # bf16 inputs' two-tier scan on bfloat16 intermediates (-DGD_S16=1: gated_delta.S16; the
    # backward's gd_scan_bwd reading them: gated_delta_bwd.S16_TRAIN)
    o16: bool = False  # ... and the output's partial sums in bfloat16 (-DGD_O16=1, with s16: gated_delta.O16)
    xs: bool = False  # the training forward's X saved for the forms' backward (gated_delta_bwd.FORMS_X_SAVED): gd_forms'
    # GF_XO build (-DGF_XO=1: one more argument, X written), gd_forms_bwd's FB_XIN build (-DFB_XIN=1: X read, no solve)
    do16: bool = False  # the scan output's gradient read as bfloat16 by K1, K4 and gd_forms_bwd (-DGD_DO16=1:
    # gated_delta_bwd.TRAIN_OUT16; the backward families only)

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
    def te(self):
        """Bytes of an element of gd_forms' outputs as the two-tier scan stores and copies them (GD_S16: bfloat16)."""
        return 2 if self.s16 else self.itemsize

    @property
    def QLD(self):
        return self.CH + 4

    @property
    def HS(self):
        return min(self.DKP, 32)

    @property
    def NLC(self):
        return int(math.log2(self.CH)) + 1

    def gd_smem(self, G=GD_G, BW=GD_BW, wsplit=True, sreg=False, hc=False):
        """gd_scan's shared memory (gated_delta.cu) with G slots of BW columns per block: Qe, Ek (rows
        padded by 16 bytes; the slots' W over them: float32 as tf32 pairs, BW + 4 a row, unless a timing
        build keeps it unsplit (``wsplit``); float64 BW + 8), phi, the slots' S (BW + 8 a row; a timing
        build's tf32 pairs, ``sreg``) and CH weights; ``hc``: and an H tile (gd_tier1's low walks, BW + 8 a row). The tiles
        of gd_forms' outputs (Qe, Ek, phi, H) of ``te`` bytes (``s16``: the two-tier walks' 16-bit tiles, rows padded by
        16 bytes; gated_delta_tier.cu's GD_TSMEM)."""
        CH, DKP, es, te = self.CH, self.DKP, self.itemsize, self.te
        pad = 16 // te
        w, sw = ((2 * (BW + 4) if f and es == 4 else BW + 8) for f in (wsplit, sreg))
        return (max(2 * CH * (DKP + pad) * te, G * CH * w * es) + DKP * (CH + pad) * te + G * (DKP * sw + CH) * es
                + hc * DKP * (BW + 8) * te)

    @property
    def tier_bw(self):
        """gd_tier1 / gd_tier3's columns per block (gated_delta_tier.cu's GD_TBW): float32 64, float64 32."""
        return 64 if self.ta == "float" else 32

    def gd_tier3_smem(self, BW, R=None):
        """gd_tier3's shared memory (gated_delta_coarse.cu's gd_t3_smem) at BW columns and R chunks a block (None:
        ``tier3_chunks``): Qp's R chunks (rows padded by 16 bytes), two buffers of a slot (BW + 8 a row) and of R CH
        read weights (Qp's rows of ``te`` bytes: ``s16``'s 16-bit tile)."""
        R = R or self.tier3_chunks(BW)
        return R * self.CH * (self.DKP + 16 // self.te) * self.te + 2 * (self.DKP * (BW + 8) + R * self.CH) * self.itemsize

    def gd_tier3_bwd_smem(self, R=None):
        """gd_tier3_bwd's shared memory (gated_delta_tier3_bwd.cu's gt3b_smem) at R chunks of a period held (None:
        GT3B_R, the most of 4, 2 within two blocks a SM (113 KB), else within SMEM_MAX): their Qp rows (``te`` bytes,
        padded by 16 bytes) and dout rows (64 + 8 columns), two buffers of a slot (64 + 8 columns) and of R CH read
        weights."""
        if R is None:
            fits = [(r, lim) for lim in (113 * 1024, SMEM_MAX) for r in (4, 2) if self.gd_tier3_bwd_smem(r) <= lim]
            return self.gd_tier3_bwd_smem(fits[0][0] if fits else 1)
        CH, DKP = self.CH, self.DKP
        return R * CH * (DKP + 16 // self.te) * self.te + (R * CH * 72 + 2 * (DKP * 72 + R * CH)) * self.itemsize

    def tier3_chunks(self, BW=None):
        """gd_tier3's chunks per block (gated_delta_coarse.cu's GD_T3R) at BW columns a block (None: ``tier_bw``): 4, 2
        or 1, the most whose shared memory allows 2 blocks per SM (GD_T3SMAX)."""
        BW = BW or self.tier_bw
        return next(R for R in (4, 2, 1) if R == 1 or self.gd_tier3_smem(BW, R) <= 113 * 1024)

    @property
    def tier1x_bwd_bw(self):
        """gd_tier1x_bwd's columns of X per block (gated_delta_tier1x_bwd.cu's GX_BW): DKP up to 64, else 32."""
        return self.DKP if self.DKP <= 64 else 32

    def gd_tier1x_bwd_smem(self, BW=None, db=True):
        """gd_tier1x_bwd's shared memory (gated_delta_tier1x_bwd.cu's GX_SMEM) at BW of X's columns a block (None:
        ``tier1x_bwd_bw``; a timing build's GX_BW_SET): two sets where they fit (GX_NB; ``db`` False: one, a timing
        build's GX_DB_SET=0) of the chunk's tiles qe, ek, ph (rows + 8, ``te`` bytes) and dQp's; X_1 .. X_3, dX, W, dW
        (float32, rows of BW + 8)."""
        CH, DKP, lx = self.CH, self.DKP, ((BW or self.tier1x_bwd_bw) + 8) * 4
        tiles, rest = (2 * CH * (DKP + 8) + DKP * (CH + 8)) * self.te + CH * lx, (4 * DKP + 2 * CH) * lx
        return (2 if db and 2 * tiles + rest <= SMEM_MAX else 1) * tiles + rest

    @property
    def coarse_group_bw(self):
        """The grouped coarse kernels' columns per block (gated_delta_coarse.cu's GD_CGBW: gd_cgroup, gd_coarse_g,
        gd_cfill): float32 64, float64 32 (gd_coarse: GD_BW)."""
        return 64 if self.ta == "float" else GD_BW

    def tier1_bwd_smem(self, BW):
        """gd_tier1_bwd's shared memory (gated_delta_tier1_bwd.cu's gt4_smem) at BW value columns a block: the chunk's
        three tiles (gd_tier1's: ``te`` bytes, rows padded by 16 bytes), four slot buffers (BW + 8 a row), W, dW, dout
        (BW + 4 a row), two slots' read weights."""
        CH, DKP, te = self.CH, self.DKP, self.te
        return (2 * CH * (DKP + 16 // te) + DKP * (CH + 16 // te)) * te + (4 * DKP * (BW + 8) + 3 * CH * (BW + 4) + 2 * CH) * 4

    @property
    def tier1_bwd_bw(self):
        """gd_tier1_bwd's value columns per block (GT4_BW): 64, or 32 where only 32 let 2 blocks share an SM (``s16`` at
        DKP = 64) or 64 do not fit (DKP = 128)."""
        s64, s32 = self.tier1_bwd_smem(64), self.tier1_bwd_smem(32)
        return 32 if s64 > SMEM_MAX or (2 * s64 > SMEM_MAX and 2 * s32 <= SMEM_MAX) else 64

    def gd_coarse_smem(self, BW=GD_BW, zb=2):
        """The coarse kernels' shared memory (gated_delta_coarse.cu's gd_cchain: gd_coarse at BW = GD_BW; gd_cgroup,
        gd_coarse_g at ``coarse_group_bw``): zb buffers of a transfer (DKP x DKP, rows padded by 16 bytes; gd_cfill: 1)
        and two of a slot (DKP x BW, BW + 8 a row)."""
        return (zb * self.DKP * (self.DKP + 16 // self.itemsize) + 2 * self.DKP * (BW + 8)) * self.itemsize

    # dynamic shared memory of each kernel, in bytes (the kernels check it: check_smem)
    def smem(self, kernel):
        CH, DKP, DVP, QLD, HS, es = self.CH, self.DKP, self.DVP, self.QLD, self.HS, self.itemsize
        if kernel == "gd_scan":
            return self.gd_smem()
        if kernel == "gd_tier1":  # the low walks: gd_walk<GD_TM>'s layout (GD_TM = 2 slots; W unsplit past 32 columns)
            return self.gd_smem(2, self.tier_bw, self.tier_bw <= 32, hc=True)  # and H's tile
        if kernel == "gd_tier1x":  # the transfers: one slot
            return self.gd_smem(1, self.tier_bw, self.tier_bw <= 32)
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
        if kernel in ("gd_tier3_bwd", "gd_tier3_bwd_x1"):  # gated_delta_tier3_bwd.cu (GT3B_SMEM): R chunks' Qp, dout
            return self.gd_tier3_bwd_smem()
        if kernel in ("gd_coarse_bwd", "gd_coarse_bwd_x1"):  # gated_delta_coarse_bwd.cu (GCB_SMEM): Z_x, two R, A(x)
            return (DKP * (DKP + 8) + 2 * DKP * 72 + 3 * DKP * 68) * es  # and two of its slots (GCB_NSA)
        if kernel in ("gd_scan_bwd", "gd_scan_bwd_x1"):  # gated_delta_bwd.cu (GDB_SMEM): three chunk tiles, S, dS', W, dr, dW, a reduction
            bv = gd_scan_bwd_columns(self)
            if self.ta == "float":  # GDB_TC: the chunk tiles, two sets of the slot buffers, rows padded (s16: the
                # tiles' bfloat16 staging area over the sets)
                return (2 * CH * (DKP + 4) + DKP * (CH + 8) + 2 * (2 * DKP * (bv + 8) + 3 * CH * (bv + 4)) + 256) * es
            return (3 * DKP * CH + 2 * DKP * (bv + 1) + 3 * CH * bv + 256) * es
        if kernel in ("gd_tier1x_bwd", "gd_tier1x_bwd_x1"):
            return self.gd_tier1x_bwd_smem()
        if kernel in ("gd_tier1_bwd", "gd_tier1_bwd_x1"):  # gated_delta_tier1_bwd.cu (GT4_SMEM)
            return self.tier1_bwd_smem(self.tier1_bwd_bw)
        if kernel in ("gd_forms_bwd", "gd_forms_bwd_x1"):  # gated_delta_forms_bwd.cu (FB_SMEM): six tiles (rows + FB_PAD), 32 CH vectors
            pad = 4 if self.ta == "float" and CH == DKP == 64 else 1  # FB_PAD (FB_TC: tensor-core operands)
            tc, tk, lv = CH * (CH + pad), CH * (DKP + pad), 32 + pad  # FB_VB = 32 value columns per pass
            ta_, tp = max(tc, tk), max(DKP * (CH + 1), tk, tc)
            return (tk + 2 * tc + ta_ + tp + max(max(CH, DKP) * lv + CH * lv, ta_) + 32 * CH) * es
        if kernel == "hi_intra":  # hierarchical_intra.cu (HI_AV = 64 value columns per pass; HI_TC's tiles and strides)
            if self.hi_tc:
                return (CH * ((DKP + 8) + (DKP + 4) + (CH + 8) + max(DKP + 8, 68)) + 5 * CH + DKP + 64) * es
            return (2 * CH * (DKP + 1) + CH * (CH + 1) + CH * 65 + 2 * CH + DKP + 64) * es
        if kernel == "hi_merge":  # hierarchical.cu (HI_BV = 16 value columns per block, HI_LMAX = 64 slot decays)
            return (DKP + 16 + 64) * es
        if kernel == "hi_snap":
            return 65 * es
        if kernel == "hi_read":  # hierarchical_read.cu (HI_RW = 64 value columns per block, HI_LMAX = 64, NT = 256)
            if self.hi_tc:  # HI_RTC: two buffers of the slot tiles (S rows of 68), no E tile, the held slots (HI_HELD = 128)
                return (2 * (DKP * 68 + 2 * DKP + 64) + CH * (DKP + 8) + CH * 64 + 3 * CH + 257) * es
            return (DKP * 64 + 2 * CH * (DKP + 1) + CH * 64 + 2 * DKP + 64 + 256 + 5 * CH) * es
        if kernel in ("hib_dq", "hib_blocks", "hib_bmerge", "hib_dkdv"):  # hierarchical_bwd{,_chunk}.cu (HI_LMAX = 64 levels per row)
            K, V, X = CH * (DKP + 1), CH * (DVP + 1), CH * (CH + 1)
            TK, TV, TC = DKP + 4, DVP + 4, CH + 4  # mm_acc operands
            fp = 2 * DKP + DVP + 7 * CH  # Z, the CH vectors, hib_fpairs' shifts and flags
            freg = max(DVP * (TK + TC), 2 * DKP * TC, 2 * DVP * TC, CH * (TC + TK))  # HIB_FREG
            return {"hib_dq": 3 * K + 3 * V + 3 * X + 2 * CH * 64 + freg + fp + 2 * CH,  # (the held slots' row shifts)
                    "hib_blocks": CH * (TK + 2 * TV) + 5 * DKP + 2 * DVP + 5 * CH + 8  # (NT / 32 warps' minima)
                    + (CH // 2 * (DKP + DVP + 16) if self.tc else 0),  # (HIB_TC: the product's bf16 pairs)
                    "hib_bmerge": 8 * (DKP + DVP + 1) + DKP,  # HIB_NPC pieces' factors and shifts, M
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
        """hib_dkdv's shared elements (hierarchical_bwd_dkdv.cu) with nb buffers of a right block's U (rows of
        HIB_SLD): its pairs' tiles (+ HIB_F2), the right blocks' operands over them (U buffers, E^T, B^T)."""
        CH, DKP, DVP = self.CH, self.DKP, self.DVP
        K, V, X, TC = CH * (DKP + 1), CH * (DVP + 1), CH * (CH + 1), CH + 4
        pairs = K + 2 * V + 3 * X + CH * (TC + max(DKP, DVP) + 4)
        blocks = nb * DKP * (DVP + (8 if self.tc else 4)) + (DVP + DKP) * TC
        if self.tc and CH * DKP <= 2048 and CH * DVP <= 2048:  # HIB_DKR's HIB_DKX: E^T, B^T as bf16 pairs, M per buffer
            blocks += (DVP // 2 + DKP // 2) * (CH + 8) + nb * DKP
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
