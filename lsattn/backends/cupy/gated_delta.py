"""Log-linear Gated DeltaNet (``loglinear_gated_delta``) on the kernels ``gd_forms`` and ``gd_scan``.

``gd_forms`` (``gated_delta_forms.cu``) computes the per-chunk WY quantities of the array-API twin
(``lsattn.gated_delta._chunk_forms`` and ``_masked_intra``) in one kernel, one block per
(sequence, chunk), straight from the (BH, T, d) inputs; ``gd_scan`` (``gated_delta.cu``) replaces
the chunk tree of ``d_k x d_k`` transition products by independent chains over the chunks, one per
chunk-level Fenwick level and period and per incoming slot, run two per block
(``scan_group``, ``group_tops``, ``scan_blocks``; the header of ``gated_delta.cu``); the
returned state is assembled by ``lsattn.gated_delta.assemble_levels`` (the array-API layout: a stream moves between backends).
Inputs are float32 / float64, or float16 / bfloat16 (``HALF_OPS``): ``gd_forms`` reads those as they
are and computes in float32 (writing the float32 level weights ``gd_scan`` reads; the output is rounded
once: by gd_tier3 itself on the direct path, ``OUT16``); both kernels' products run on tensor cores in
float32 (3xTF32; ``gd_forms`` at C = d_k = 64; 1xTF32 for bfloat16 inputs, whose ``S16`` calls run
``gd_forms``' products after the solve as bf16 mma: ``GF_B16``) and FFMA in float64. ``gd_forms``
also answers the prologue's finiteness check (``KernelCheck``: it reads every input entry). Under torch autograd 16-bit inputs are widened to float32.
CUDA torch tensors that require grad run ``gated_delta_bwd.differentiable`` (the same kernels;
backward: ``gd_forms_bwd`` and ``gd_scan_bwd``); torch tensors without grad
take the kernels here.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from ..._chunktree import chunk_layout, from_chunks, to_chunks
from ...gated_delta import assemble_levels
from ...loglinear import _ns
from ...state import State
from ._arrays import _external_stream, _half, array_kind, check_grid, inputs, on_gpu, ta_name, widen
from .exp_kernel import _tracks_grad
from ._compile import GD_BW, GD_G, SMEM_MAX, CupyOps, _launch, make_config
from ._rawlaunch import cached_plan, raw_launch

__all__ = ["forward", "compute", "forms", "chunk_slots", "scan_chains", "scan_blocks", "scan_group", "group_tops",
           "tier_plan"]

OP = "loglinear_gated_delta"


def chunk_slots(F, n, merge_last):
    """Chunk-level slots the scan needs: ``1 + max`` trailing zeros of ``c + 1`` over the merged
    chunks ``c = F .. F + n - 2`` (and ``F + n - 1`` when ``merge_last``); at least 1."""
    lo, hi = F + 1, F + n - (0 if merge_last else 1)  # the values of c + 1
    if hi < lo:
        return 1
    z = hi.bit_length()
    while (hi >> z) << z < lo:  # the largest power of two with a multiple in [lo, hi]
        z -= 1
    return z + 1


def scan_chains(F, n, n_old, NLC):
    """The chains of ``gd_scan`` (gated_delta.cu) over chunks ``F .. F + n - 1``: the ``n_old``
    incoming slots, then for levels ``m = NLC .. 1`` their periods of ``2^m`` chunks that meet the call."""
    cL = F + n - 1
    return n_old + sum((cL >> m) - (F >> m) + 1 for m in range(1, NLC + 1))


#: gd_scan runs GD_G slots per block from this many chunks per call, one below: GD_G at every size
#: measured (H200, T = 2K / 8K / 32K at C = 64: 2 slots 5% / 23% / 25% faster than 1; benchmarks/NOTES.md
#: "Session 11 — s11a16"); 1 stays for timing
GROUP_MIN_CHUNKS = 0


def scan_group(n):
    """gd_scan's slots per block for a call of ``n`` chunks."""
    return GD_G if n >= GROUP_MIN_CHUNKS else 1


def group_tops(NLC, G):
    """The top levels of ``gd_scan``'s level groups: ``NLC`` and ``NLC - 1`` alone (the longest
    chains), then groups of ``G`` from ``NLC - 2`` down (the last cut at level 1)."""
    tops, m = [], NLC
    while m >= 1:
        tops.append(m)
        m -= 1 if m > NLC - 2 else G
    return tops


def scan_blocks(F, n, n_old, NLC, G=GD_G):
    """The blocks of ``gd_scan`` per sequence and column block: the incoming slots ``G`` at a time,
    then the level groups (``group_tops``), one per period of ``2^m`` chunks of the group's top
    level ``m`` that meets the call."""
    cL = F + n - 1
    return -(-n_old // G) + sum((cL >> m) - (F >> m) + 1 for m in group_tops(NLC, G))


#: calls from chunk 0 without incoming or returned state take gd_scan's two-tier form (gd_tier1, gd_coarse,
#: gd_tier3; False: gd_scan, for A/B timing and tests)
TIERED = True
TIER_M = 2  # gated_delta_tier.cu's GD_TM: the two-tier form's low levels (its low period: 2^TIER_M chunks)
#: the two-tier form from this many chunks (H200, B H = 32, d = 64, C = 64, session 14: 32 chunks 2% (bf16 inputs) / 12%
#: (float32) faster than gd_scan, 128 22% / 28%, 512 39% / 39%; smaller calls not measured; benchmarks/NOTES.md
#: "Session 14 — s14a16"; the tests set 0)
TIER_MIN_CHUNKS = 32
#: the coarse slots' grouped form (gd_cgroup, gd_coarse_g, gd_cfill: levels >= 3 over groups of 4 periods) from more
#: periods than this; gd_coarse (every level over periods) up to it (H200, B H = 32, d = 64, C = 64, session 15: grouped
#: at 64 columns 0.507 / 0.677 ms against 0.570 / 0.862 at 128 periods (bf16 inputs / float32), 0.128 / 0.170 against
#: 0.116 / 0.159 at 32, 0.054 against 0.026 at 8; 64 not measured; benchmarks/NOTES.md "Session 15 — s15b16"; tests set 0)
COARSE_GROUP_PERIODS = 64
#: bfloat16 inputs: the grouped form from more than COARSE_GROUP_PERIODS // 2 periods (session 22, with T3FILL's fold,
#: bf16 scan: 64 periods (16K) 0.763 ms grouped against 0.777, 32 (8K) 0.399 against 0.388; benchmarks/NOTES.md
#: "Session 22 — s22a16"; False: COARSE_GROUP_PERIODS, for A/B timing)
COARSE_GROUP_BF16 = True
#: the grouped form's gd_cfill folded into gd_tier3 (a period inside a group reads its levels >= 3 from the group's first
#: period's slots with its queries carried on by P_k: gated_delta_coarse.cu's GD_T3FILL; False: gd_cfill, for A/B timing;
#: session 19, s19c16)
T3FILL = True
#: gd_tier1x on a second stream beside gd_tier1 from TIER_FORK_PERIODS periods (neither reads what the other writes:
#: their tails overlap; joined before the coarse slots; False: one after the other, for A/B timing). H200, B H = 32,
#: d = 64, bf16, session 22 (s22a16), off -> on: the scan 4K 0.205 -> 0.201 ms, 8K 0.391 -> 0.381, 16K 0.764 -> 0.747,
#: 32K 1.502 -> 1.485; the public forward's latency 4K 0.441 -> 0.431, 8K 0.760 -> 0.746, 32K 2.694 -> 2.666; at 2K
#: (8 periods) slower: scan 0.110 -> 0.123, latency 0.295 -> 0.317 (benchmarks/NOTES.md "Session 22 — s22a16")
TIER_FORK = True
TIER_FORK_PERIODS = 16


def popsum(p):
    """Sum of popcount(x) over ``0 <= x < p`` (gated_delta.cu's gd_popsum)."""
    return sum(((p >> (b + 1)) << b) + max(0, (p & ((2 << b) - 1)) - (1 << b)) for b in range(max(p - 1, 0).bit_length()))


@dataclasses.dataclass(frozen=True)
class Tier:
    """The two-tier scan of a call of ``n`` chunks of ``C`` tokens: nP low periods of 2^TM chunks, NCL coarse levels
    (the levels above TM that some chunk reads), NPR groups of TM coarse slots per period (the blocks of a timing
    build's gd_tier3 walks)."""

    nP: int
    NCL: int
    TM: int = TIER_M  # (a timing build's GD_TM_SET)
    n: int = 0
    C: int = 0
    grouped: bool = False  # the coarse slots' grouped form (COARSE_GROUP_PERIODS)

    @property
    def NPR(self):
        return -(-self.NCL // self.TM)

    @property
    def coarse_chains(self):
        """gd_coarse's blocks per sequence and column block: the periods of 2^cl periods of each coarse level cl
        with reads (base + 2^(cl-1) < nP)."""
        return sum(((self.nP - 1 - (1 << (cl - 1))) >> cl) + 1 for cl in range(1, self.NCL + 1))

    @property
    def nG(self):
        """Groups of 4 periods (gd_cgroup's; gated_delta_coarse.cu's GD_CG)."""
        return -(-self.nP // 4)

    def shapes(self, DK, DV):
        """Per sequence: the periods' transfers Z and keys Tot, the coarse slots at the periods' starts Sb, the
        queries carried to their period's start Qp, the groups' transfer prefixes Pc and keys Tg (gd_cgroup's; one
        group's size unless ``grouped``)."""
        nG = self.nG if self.grouped else 1
        return ((self.nP, DK, DK), (self.nP, DK, DV), (max(popsum(self.nP), 1), DK, DV), (self.n, self.C, DK),
                (nG, 3, DK, DK), (nG, DK, DV))

    @staticmethod
    def dtypes(dt, cfg, xp):
        """The dtypes of ``shapes``' arrays: the compute type ``dt``, Qp's bfloat16 patterns (uint16) where ``cfg.s16``."""
        return (dt, dt, dt, xp.uint16 if cfg.s16 else dt, dt, dt)


def tier_plan(cfg, F, n, n_old, keep, DK, DV, TM=TIER_M):
    """The ``Tier`` of gd_scan's call, or None where gd_scan runs (a call not from chunk 0, incoming slots, the
    returned state, fewer than TIER_MIN_CHUNKS chunks, gd_coarse past shared memory: float64 at d_k > 64)."""
    if not TIERED or F or n_old or keep or n < TIER_MIN_CHUNKS:
        return None
    nP = -(-n >> TM)
    NCL = (nP - 1).bit_length()
    group = COARSE_GROUP_PERIODS // 2 if COARSE_GROUP_BF16 and cfg.half == "bf16" else COARSE_GROUP_PERIODS
    tier = Tier(nP, NCL, TM, n, cfg.CH, NCL >= 3 and nP > group)
    return tier if cfg.gd_coarse_smem(max(GD_BW, cfg.coarse_group_bw)) <= SMEM_MAX else None


def compute(ops, q, k, v, a, beta, lam, chunk_size, p, old, want_state, half="", check=None):
    """Log-linear Gated DeltaNet over one call of ``T >= 1`` tokens at offset ``p``.

    q, k (..., T, d_k), v (..., T, d_v), a, beta (..., T), lam (..., T, L): float32 / float64 arrays
    of ``ops.xp``, or all 16-bit as ``half`` says ('f16', or 'bf16' as 16-bit patterns: read by
    ``gd_forms`` as they are, computed in float32); old (..., bit_length(p), d_k, d_v) or None.
    Returns (out (..., T, d_v), levels (..., bit_length(p + T), d_k, d_v) or None) in the compute type.
    check: a ``lsattn._nonfinite.KernelCheck`` answered by ``gd_forms`` (which reads every input entry), or None.
    """
    xp, ns = ops.xp, _ns(q)
    batch = tuple(q.shape[:-2])
    BH, T, DK, DV, L = math.prod(batch), q.shape[-2], q.shape[-1], v.shape[-1], lam.shape[-1]
    dt = xp.float32 if half else q.dtype  # the compute type: gd_forms' outputs, gd_scan, the state
    cfg = _config(ta_name(xp, dt), DK, chunk_size, half)
    C = cfg.CH
    lay = chunk_layout(p, T, C)
    F, n = lay.first_chunk, lay.n_chunks
    n_old = 0 if old is None else old.shape[-3]
    if _s16(half, tier_plan(cfg, F, n, n_old, want_state, DK, DV)):  # the two-tier scan on bfloat16 intermediates
        cfg = _config(cfg.ta, DK, chunk_size, half, True)

    def flat(x, tail):
        return xp.ascontiguousarray(xp.reshape(x, (BH,) + tail))

    q3, k3, v3 = (flat(x, (T, x.shape[-1])) for x in (q, k, v))
    a2, b2 = flat(a, (T,)), flat(beta, (T,))
    lam3 = flat(lam, (T, L))
    # gd_scan reads the level weights in the compute type: 16-bit ones copied by gd_forms
    lamw = xp.empty(lam3.shape, dtype=dt) if half else None
    bad = None if check is None else np.uint64(check.pointer())
    qe, ek, ph, H, g, out = forms(ops, cfg, q3, k3, v3, a2, b2, lam3, p, lamw, bad)
    if check is not None:  # the host waits for gd_forms only
        check.launched()
    if half:
        lam3 = lamw
    merge_last = (p + T) % C == 0
    NLC = chunk_slots(F, n, merge_last)
    # gd_scan reads no slot of lev (zeros in) and writes none without the returned state: no memset then
    lev = (xp.zeros if want_state else xp.empty)((BH, NLC, DK, DV), dtype=dt)
    # no incoming slot: gd_scan reads none (any array of the compute type stands in; no allocation, no memset)
    oldc = lev if n_old == 0 else xp.array(flat(old, (n_old, DK, DV)), copy=True)
    ops.gd_scan(cfg, qe, ek, ph, H, g, lam3, out, lev, oldc, T, DK, DV, L, p, F, n, n_old, NLC, merge_last, BH,
                want_state)
    out = xp.ascontiguousarray(xp.reshape(from_chunks(ns, out, lay, -2), batch + (T, DV)))  # compact (JAX: no strided DLPack)
    if not want_state:
        return out, None
    log2_C = C.bit_length() - 1
    chunk_levels = {log2_C + m: lev[:, m - 1] for m in range(1, NLC + 1)}
    lo = max(0, (F + n - 1) * C - p)  # the last chunk's first token of the call
    V_last = to_chunks(ns, v3[:, lo:], chunk_layout(p + lo, T - lo, C), -2)[:, -1]  # (BH, C, DV)
    if half:
        V_last = widen(xp, xp.ascontiguousarray(V_last), half)
    levels = assemble_levels(ns, ph[:, -1], V_last, chunk_levels, oldc if n_old else None, C, p, T)
    return out, xp.reshape(levels, batch + tuple(levels.shape[-3:]))


@functools.lru_cache(maxsize=None)
def _config(ta, DK, chunk_size, half, s16=False, o16=False):
    """The kernels' Config (16-bit inputs: gd_forms reads them (TI_BF16 / TI_F16); the chunk as asked; s16: the
    GD_S16 build, ``S16``; o16: and GD_O16's, ``O16``)."""
    cfg = make_config(ta, DK, 16, chunk_size)
    return dataclasses.replace(cfg, half=half, tc=False, s16=s16, o16=s16 and o16) if half else cfg


def _s16(half, tier):
    """Whether a call of 16-bit inputs ``half`` whose scan is ``tier`` (``tier_plan``'s) runs the GD_S16 build."""
    return S16 and half == "bf16" and tier is not None


def forms(ops, cfg, q, k, v, a, beta, lam, p, lamw=None, bad=None, xo=None):
    """``gd_forms`` on contiguous (BH, T, ..) inputs of ``ops.xp`` (the compute type) at offset ``p``: (qe, ek (BH, n, C, d_k), ph (BH, n, d_k, C),
    H (BH, n, d_k, d_v), g (BH, n), intra (BH, n, C, d_v)) in the compute type (``cfg.s16``: qe, ek, ph, H as bfloat16
    patterns, uint16), chunked as
    ``chunk_layout(p, T, cfg.CH)``; lamw (BH, T, L): filled with lam in the compute type; bad: an int32 (a (1,)
    array or its address) set to 1 when some input is not finite (``CupyOps.gd_forms``); both optional; xo (BH, n, C, C)
    compute type or None: each chunk's X = (I + N)^{-1} written there (``cfg.xs``: gd_forms' GF_XO build)."""
    xp = ops.xp
    (BH, T, DK), DV, L, C = q.shape, v.shape[-1], lam.shape[-1], cfg.CH
    lay = chunk_layout(p, T, C)
    F, n = lay.first_chunk, lay.n_chunks
    dt = xp.float64 if cfg.ta == "double" else xp.float32  # 16-bit inputs (cfg.half): float32 outputs
    et = xp.uint16 if cfg.s16 else dt  # (cfg.s16: qe, ek, ph, H as bfloat16 patterns, the two-tier scan's)
    qe, ek = xp.empty((BH, n, C, DK), dtype=et), xp.empty((BH, n, C, DK), dtype=et)
    ph, H = xp.empty((BH, n, DK, C), dtype=et), xp.empty((BH, n, DK, DV), dtype=et)
    g, out = xp.empty((BH, n), dtype=dt), xp.empty((BH, n, C, DV), dtype=dt)
    ops.gd_forms(cfg, q, k, v, a, beta, lam, qe, ek, ph, H, g, out, T, DK, DV, L, p, F, n, BH, lamw, bad, xo=xo)
    return qe, ek, ph, H, g, out


def forward(q, k, v, log_decay, beta, level_weights, chunk_size, state, return_state, check=None):
    """CuPy-kernel implementation of ``loglinear_gated_delta``; the signature of
    ``lsattn.gated_delta._forward`` (validated inputs of one dtype: float32 / float64, or 16-bit,
    whose states are float32; ``state`` may be None). Returns (out (..., T, d_v) in the inputs'
    dtype, float32 for 16-bit inputs (the registry casts it; the direct path's two-tier calls and the bfloat16
    training path's with ``gated_delta_bwd.TRAIN_OUT16``: in their dtype),
    State or None), the state as in the
    array-API twin. check: the prologue's ``KernelCheck`` (``checks_inputs``), answered by ``gd_forms``
    on the kernel path (left unanswered elsewhere: the prologue then checks for itself)."""
    T = q.shape[-2]
    p = 0 if state is None else state.offset
    if T > 0 and _tracks_grad((q, k, v, log_decay, beta, level_weights) + (() if state is None else tuple(state.tensors.values()))):
        # torch autograd: gd_forms / forms_backward, the scan through gd_scan / gd_scan_bwd
        # (gated_delta_bwd.py); a returned state (whose gradient the kernels do not compute): the
        # array-API formulation on the same device, differentiated by torch
        # (16-bit inputs: in float32, a cast torch differentiates; bfloat16 ones on the kernel path with
        # GRAD_BF16: as they are, gd_forms / gd_forms_bwd read them and write their gradients)
        import torch

        bf = GRAD_BF16 and q.dtype == torch.bfloat16 and not return_state
        args = [x if bf or x.dtype in (torch.float32, torch.float64) else x.float()
                for x in (q, k, v, log_decay, beta, level_weights)]
        if return_state:
            from ...gated_delta import _forward

            return _forward(*args, chunk_size, state, return_state)
        from .gated_delta_bwd import differentiable

        old = None if (state is None or p == 0) else state.tensors["levels"]
        return differentiable(*args, chunk_size, p, old, x1=q.dtype == torch.bfloat16, check=check), None
    if TORCH_DIRECT and T > 0 and state is None and not return_state and array_kind(q) == "torch":
        out = _torch_call(q, k, v, log_decay, beta, level_weights, chunk_size, check)
        if out is not None:
            return out, None
    batch, d_k, d_v = tuple(q.shape[:-2]), q.shape[-1], v.shape[-1]
    with on_gpu(q) as (to_cp, back, ops):
        xp = ops.xp
        args, half = inputs(to_cp, (q, k, v, log_decay, beta, level_weights))
        sdtype = xp.float32 if half else args[0].dtype
        if T == 0:
            out = back(xp.empty(batch + (0, d_v), dtype=args[0].dtype), half)
            if not return_state or state is not None:
                return out, state if return_state else None
            levels = back(xp.zeros(batch + (0, d_k, d_v), dtype=sdtype), "")
            return out, State(OP, 0, batch, d_k, d_v, levels.dtype, {"levels": levels})
        old = None if (state is None or p == 0) else to_cp(state.tensors["levels"])[0]
        out, levels = compute(ops, *args, chunk_size, p, old, return_state, half, check)
        out = back(out, "")  # float32 for 16-bit inputs: the registry rounds it to their dtype
        if not return_state:
            return out, None
        levels = back(levels, "")
        return out, State(OP, p + T, batch, d_k, d_v, levels.dtype, {"levels": levels})


# ---- CUDA torch tensors without state: the host path before gd_forms kept short (issue 16, session 12) ----


class _Plan:
    """What a call of ``_torch_call`` needs that depends only on its shapes, dtype, device and chunk:
    the kernels (CuPy ``RawKernel``), grids, shared bytes, their scalar arguments as the kernels take
    them, and the scratch's byte layout (qe, ek, ph, H, g, the float32 level weights of 16-bit inputs)."""

    def __init__(self, q, v, lam, chunk_size, dev):
        import torch

        batch, (T, DK), DV, L = tuple(q.shape[:-2]), q.shape[-2:], v.shape[-1], lam.shape[-1]
        BH = math.prod(batch)
        check_grid(BH)
        self.half = _half(q)
        self.dtype = torch.float32 if self.half else q.dtype  # the compute type
        cfg = _config("double" if self.dtype == torch.float64 else "float", DK, chunk_size, self.half)
        C = cfg.CH
        lay = chunk_layout(0, T, C)
        F, n = lay.first_chunk, lay.n_chunks
        merge_last = T % C == 0
        NLC = chunk_slots(F, n, merge_last)
        # gd_scan's two-tier form (bfloat16 inputs: on bfloat16 intermediates where S16, the GD_S16 build)
        self.tier = tier_plan(cfg, F, n, 0, False, DK, DV)
        # 16-bit inputs with gd_tier3: the output in their dtype, rounded by gd_tier3 (OUT16); the float32 sums scratch
        self.o16 = bool(OUT16 and self.half and self.tier is not None and self.tier.NCL > 0)
        if _s16(self.half, self.tier):  # (and with o16: the sums in bfloat16 where O16)
            cfg = _config(cfg.ta, DK, chunk_size, self.half, True, O16 and self.o16)
        es, te = cfg.itemsize, cfg.te  # (bytes: the compute type's, gd_forms' outputs qe, ek, ph, H)
        sizes = [(BH * n * C * DK, te), (BH * n * C * DK, te), (BH * n * DK * C, te), (BH * n * DK * DV, te), (BH * n, es)]
        sizes += [(BH * T * L, es)] if self.half else []
        # the two-tier form's scratch (Z, Tot, Sb, Qp, Pc, Tg) after gd_forms' outputs
        if self.tier:
            kinds = self.tier.dtypes(np.float64 if cfg.ta == "double" else np.float32, cfg, np)  # (Qp's: S16's 16 bits)
            sizes += [(BH * math.prod(shape), np.dtype(d).itemsize) for shape, d in zip(self.tier.shapes(DK, DV), kinds)]
        sizes += [(BH * n * C * DV, 2 if cfg.o16 else es)] if self.o16 else []
        self.cfg, self.dims = cfg, (T, DK, DV, L, n, BH)
        self.offsets, self.nbytes = _offsets([size * item for size, item in sizes])
        self.out_shape, self.view = (BH, n * C, DV), batch + (T, DV)
        self.out_dtype = q.dtype if self.o16 else self.dtype
        self.trim = T if T % C else None  # the chunk layout's padding rows (p = 0: at the end only)
        i32, i64 = np.int32, np.int64
        self.forms, self.forms_block, self.forms_smem = _launch("gated_delta", dev, cfg, "gd_forms")
        self.forms_grid = (n, BH)
        # gated_delta_forms.cu's trailing scalars: T, DK, DV, L, p, F, n
        self.forms_tail = (i32(T), i32(DK), i32(DV), i32(L), i64(0), i64(F), i32(n))
        self.scan, self.scan_block, self.scan_smem = _launch("gated_delta", dev, cfg, "gd_scan")
        G = scan_group(n)
        self.scan_grid = (scan_blocks(F, n, 0, NLC, G) * BH * -(-DV // GD_BW),)
        # gated_delta.cu's: T, DK, DV, L, p, F, n, n_old, NLC, merge_last, keep, BH, G (keep 0: lev and oldc
        # are neither read nor written, n_old 0: no incoming chain; null pointers stand for them)
        self.scan_tail = (i32(T), i32(DK), i32(DV), i32(L), i64(0), i64(F), i32(n), i32(0), i32(NLC),
                          i32(int(merge_last)), i32(0), i32(BH), i32(G))
        self.device = torch.device("cuda", dev) if dev >= 0 else q.device
        # the launches with their geometry and scalars in prebuilt argument blocks (None: through CuPy)
        self.raw_forms = self.raw_scan = None
        if RAW_LAUNCH:
            self.raw_forms = raw_launch(self.forms, self.forms_grid, self.forms_block, self.forms_smem, 14,
                                        self.forms_tail)
            self.raw_scan = raw_launch(self.scan, self.scan_grid, self.scan_block, self.scan_smem, 9, self.scan_tail)
            if self.raw_forms is None or self.raw_scan is None:
                self.raw_forms = self.raw_scan = None


class _Direct:
    """``CupyOps.gd_tiers``' kernel lookup for ``_torch_call`` (its arguments raw pointers, its scratch given)."""

    _i, _p = staticmethod(np.int32), staticmethod(CupyOps._p)

    def __init__(self, dev):
        self.dev = dev

    def _tk(self, op, cfg, name):
        return _launch(op, self.dev, cfg, name)


#: bfloat16 inputs under autograd reach gd_forms and gd_forms_bwd as they are (``gated_delta_bwd.differentiable``:
#: no float32 copies of the inputs made or saved, the input gradients written in bfloat16 by gd_forms_bwd, lam's
#: float32 copy for the scan from gd_forms); False: widened to float32 by torch casts (for A/B timing; s19g16)
GRAD_BF16 = True
#: CUDA torch tensors without state take ``_torch_call`` (False: the CuPy views, as every other call; for A/B timing)
TORCH_DIRECT = True
#: ``_torch_call`` launches through the driver with prebuilt argument blocks (``_rawlaunch``; False: CuPy's
#: RawKernel call in CuPy's current stream, for A/B timing; read when a plan is made)
RAW_LAUNCH = True
#: bfloat16 inputs on the two-tier path (``tier_plan``; no state in or out): gd_forms' outputs qeff, e^G K, phi, H and
#: gd_tier1x's Qp stored as bfloat16 (rounded once, to nearest even, where written; the GD_S16 build, ``Config.s16``),
#: read as such by gd_tier1, gd_tier1x, gd_tier3 (half their bytes; their 1xTF32 products' operands exact: bf16 values
#: are tf32 ones); their float32 output within S16 of the float64 reference (tests/test_cupy_gated_delta.py), under
#: the bf16 output's rounding. False: float32 storage (session 20's, for A/B timing; read when a config or plan is
#: made). Training (autograd): its own switch, ``gated_delta_bwd.S16_TRAIN`` (gd_scan_bwd_x1 reading them).
S16 = True
#: ... and where gd_tier3 rounds the output (``_torch_call`` with ``OUT16``, gd_tier3 run): the output's partial sums
#: (gd_forms' intra-chunk output, gd_tier1's low levels added with bf16x2 reductions) in bfloat16 too (the GD_O16 build,
#: ``Config.o16``): the bfloat16 output within BF16. False: those sums in float32 (for A/B timing; read when a plan is made)
O16 = True
#: ``_torch_call`` of 16-bit inputs with gd_tier3: the output in their dtype, rounded once by gd_tier3 from the float32
#: sums (False: the float32 output, which the registry rounds in a pass of its own; for A/B timing; read when a plan is
#: made; s17d16)
OUT16 = True
_TORCH_PLANS = {}
_TORCH_PLANS_MAX = 64
_RAW_STREAM = []  # torch's current raw stream getter, looked up once


def _torch_stream(torch, dev):
    """torch's current stream on device ``dev`` as a raw handle (its getter looked up once)."""
    if not _RAW_STREAM:
        _RAW_STREAM.append(getattr(torch._C, "_cuda_getCurrentRawStream", None))
    raw = _RAW_STREAM[0]
    return raw(dev) if raw is not None else torch.cuda.current_stream(dev).cuda_stream


def _offsets(nbytes):
    """Byte offsets of parts of ``nbytes`` each in one allocation, each 256-byte aligned (the kernels' 16-byte
    accesses, gd_scan's asynchronous copies) -> (offsets, total bytes)."""
    offsets, at = [], 0
    for size in nbytes:
        offsets.append(at)
        at += -(-size // 256) * 256
    return offsets, at


def _torch_call(q, k, v, a, beta, lam, chunk_size, check):
    """``forward`` of CUDA torch tensors without state or returned state: the kernels launched on the
    tensors' pointers on torch's current stream (no CuPy views, no DLPack), gd_forms' outputs in one torch
    allocation, everything that depends only on the shapes, dtype and device cached (``_Plan``).

    q, k (..., T, d_k), v (..., T, d_v), a, beta (..., T), lam (..., T, L): one dtype, ``T >= 1``.
    Returns out (..., T, d_v) in the compute type (16-bit inputs: in their dtype where gd_tier3 runs (``OUT16``), else
    float32, a view without the last chunk's padding rows, which the registry's rounding compacts), or None where the
    general path is needed: an input not contiguous, a misaligned bfloat16 one (``inputs``' rule), a device other
    than the current one."""
    import cupy
    import torch

    dev = q.get_device()
    if dev != cupy.cuda.runtime.getDevice():  # the kernels are launched in the current device's context
        return None
    key = (q.shape, v.shape[-1], lam.shape[-1], q.dtype, dev, chunk_size)
    plan = cached_plan(_TORCH_PLANS, _TORCH_PLANS_MAX, key, lambda: _Plan(q, v, lam, chunk_size, dev))
    if not (q.is_contiguous() and k.is_contiguous() and v.is_contiguous() and a.is_contiguous()
            and beta.is_contiguous() and lam.is_contiguous()):
        return None
    ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), a.data_ptr(), beta.data_ptr(), lam.data_ptr())
    if plan.half == "bf16" and (ptrs[0] | ptrs[1] | ptrs[2] | ptrs[3] | ptrs[4] | ptrs[5]) % 16:  # (one misaligned: a low bit set)
        return None
    stream = _torch_stream(torch, dev)
    scratch = torch.empty(plan.nbytes, dtype=torch.uint8, device=plan.device)
    base = scratch.data_ptr()
    qe, ek, ph, H, g, *rest = [base + o for o in plan.offsets]
    lamw = rest[0] if plan.half else 0
    # o16: gd_forms' intra output and the levels' float32 sums in the scratch, the 16-bit output from gd_tier3 (its
    # allocation after gd_forms' launch: the host's time before that launch is the call's latency from an idle GPU)
    out = None if plan.o16 else torch.empty(plan.out_shape, dtype=plan.out_dtype, device=plan.device)
    optr = rest[-1] if plan.o16 else out.data_ptr()
    bad = 0 if check is None else check.pointer()
    if plan.raw_forms is not None:  # the driver's launches on torch's stream
        plan.raw_forms(stream, *ptrs, qe, ek, ph, H, g, optr, lamw, bad)
        if check is not None:
            check.launched(stream)
        if plan.tier is None:
            plan.raw_scan(stream, qe, ek, ph, H, g, lamw or ptrs[5], optr, 0, 0)
    o16 = None
    if plan.o16:  # gd_tier3's output, allocated after gd_forms' launch
        out = torch.empty(plan.view, dtype=plan.out_dtype, device=plan.device)
        o16 = out.data_ptr()
    if plan.raw_forms is None or plan.tier is not None:
        with _external_stream(stream, dev):  # CuPy's current stream: the launches' and the check's event
            if plan.raw_forms is None:
                plan.forms(plan.forms_grid, plan.forms_block, (*ptrs, qe, ek, ph, H, g, optr, lamw, bad, *plan.forms_tail),
                           shared_mem=plan.forms_smem)
                if check is not None:
                    check.launched()
            if plan.tier is not None:  # the two-tier scan (three launches through CuPy)
                T, DK, DV, L, n, BH = plan.dims
                tiers = rest[bool(plan.half):][:6]  # (after lamw)
                CupyOps.gd_tiers(_Direct(dev), plan.cfg, plan.tier, qe, ek, ph, H, g, lamw or ptrs[5], optr, T, DK, DV,
                                 L, n, BH, scratch=tiers, o16=o16)
            else:
                plan.scan(plan.scan_grid, plan.scan_block,
                          (qe, ek, ph, H, g, lamw or ptrs[5], optr, 0, 0, *plan.scan_tail), shared_mem=plan.scan_smem)
    if plan.o16:
        return out
    if plan.trim is None:
        return out.view(plan.view)
    if plan.half:  # the registry's rounding to the inputs' dtype reads the rows in place: one pass, compact
        return out[:, :plan.trim].view(plan.view)
    return out[:, :plan.trim].contiguous().view(plan.view)  # compact: a copy without the last chunk's padding rows


# ---- the bfloat16 training forward's gd_forms on the inputs' pointers (issue 16, session 30) ----

#: the bfloat16 training step's forward (``_autograd.GatedDeltaS16``) launches gd_forms on its inputs' pointers into
#: torch allocations, its grid, shared bytes and scalars prebuilt (``_TrainForms``), before any CuPy view or allocation:
#: the step's latency from an idle GPU is the host's time to that launch (~0.4 ms of views, CuPy allocations and
#: CuPy's launch at 32K, benchmarks/NOTES.md "Session 29 — lead"). False: through CuPy as before (for A/B timing; read
#: at every call)
TRAIN_DIRECT = True
_TRAIN_PLANS = {}


class _TrainForms:
    """gd_forms of a bfloat16 training forward ``sc`` (``gated_delta_bwd.Scan``, its S16 build) on (BH, T, ..) inputs:
    the driver launch with its scalars prebuilt and the byte layout of its outputs: qe, ek, ph, H (bfloat16), g,
    lamw, xo (``sc.xs``) in one allocation (all of them saved for the backward) and intra in one of its own (not
    saved: its memory goes when the scan has read it)."""

    def __init__(self, sc, BH, DK, DV, L, dev):
        import torch

        cfg, C, n, T = sc.fcfg, sc.cfg.CH, sc.n, sc.T
        bf, f32 = torch.bfloat16, torch.float32
        self.parts = [((BH, n, C, DK), bf), ((BH, n, C, DK), bf), ((BH, n, DK, C), bf), ((BH, n, DK, DV), bf),
                      ((BH, n), f32), ((BH, T, L), f32)] + ([((BH, n, C, C), f32)] if cfg.xs else [])
        self.offsets, self.nbytes = _offsets([math.prod(shape) * dt.itemsize for shape, dt in self.parts])
        self.intra = (BH, n, C, DV)
        self.device = torch.device("cuda", dev)
        fn, block, smem = _launch("gated_delta", dev, cfg, "gd_forms")
        i32, i64 = np.int32, np.int64
        # gated_delta_forms.cu's: q .. lam, qe, ek, ph, H, g, out, lamw, bad; T, DK, DV, L, p, F, n; xo (GF_XO)
        self.launch = raw_launch(fn, (n, BH), block, smem, 14, (i32(T), i32(DK), i32(DV), i32(L), i64(sc.p),
                                                                 i64(sc.F), i32(n)), int(cfg.xs))


def train_forms(sc, xs, check):
    """gd_forms of the bfloat16 training forward ``sc`` launched on the (BH, T, ..) contiguous, 16-byte aligned
    bfloat16 torch tensors ``xs`` (q, k, v, a, beta, lam) on torch's current stream, its finiteness answer to ``check``
    (or None): -> [qe, ek, ph, H (bfloat16), g, intra, lamw (float32), xo (float32) or None] torch tensors, or None
    where the launch is not taken (``TRAIN_DIRECT`` off, another device than the current one, no driver launch):
    then the caller runs ``forms`` through CuPy."""
    import cupy
    import torch

    q, v, lam = xs[0], xs[2], xs[5]
    dev = q.get_device()
    if not TRAIN_DIRECT or dev != cupy.cuda.runtime.getDevice():
        return None
    (BH, _, DK), DV, L = q.shape, v.shape[-1], lam.shape[-1]
    plan = cached_plan(_TRAIN_PLANS, _TORCH_PLANS_MAX, (q.shape, DV, L, dev, sc),
                       lambda: _TrainForms(sc, BH, DK, DV, L, dev))
    if plan.launch is None:
        return None
    stream = _torch_stream(torch, dev)
    buf = torch.empty(plan.nbytes, dtype=torch.uint8, device=plan.device)
    intra = torch.empty(plan.intra, dtype=torch.float32, device=plan.device)
    base = buf.data_ptr()
    ptrs = [base + o for o in plan.offsets]
    qe, ek, ph, H, g, lamw = ptrs[:6]
    plan.launch(stream, *(x.data_ptr() for x in xs), qe, ek, ph, H, g, intra.data_ptr(), lamw,
                0 if check is None else check.pointer(), *ptrs[6:])
    if check is not None:
        check.launched(stream)
    outs = [buf[o:o + math.prod(shape) * dt.itemsize].view(dt).view(shape)
            for o, (shape, dt) in zip(plan.offsets, plan.parts)]
    return outs[:5] + [intra, outs[5], outs[6] if len(outs) > 6 else None]


#: the prologue passes ``check=`` (a ``KernelCheck``) instead of reading the inputs' extrema itself
forward.checks_inputs = True
#: ... under autograd too (the training path's gd_forms answers it; a path that does not, the array-API one of
#: ``return_state``, leaves it to the prologue's fallback); False: the prologue's own pass over the inputs under
#: autograd, for A/B timing (read at every call; s19g16)
forward.checks_grad_inputs = True
