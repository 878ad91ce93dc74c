"""Training path of ``loglinear_gated_delta`` on the CuPy backend: CUDA torch tensors that require grad.

Two ``torch.autograd.Function`` s (``_autograd.py``). The per-chunk WY / UT quantities
(``lsattn.gated_delta._chunk_forms``, ``_masked_intra``) come from the forward kernel ``gd_forms``
(``apply_gated_delta_forms``: nothing recorded); their backward, ``forms_backward``, is the kernel
``gd_forms_bwd`` (``gated_delta_forms_bwd.cu``: the formulas in its header), one block per chunk that
recomputes the chunk's decay table, ``(I + N)^{-1}`` and ``attn`` from the saved inputs in shared
memory. The scan over
chunks (``gd_scan``, ``gated_delta.cu``; ``apply_gated_delta_scan``) has the kernel ``gd_scan_bwd``
(``gated_delta_bwd.cu``: the formulas are in its header; the kernel in ``gated_delta_bwd_scan.cu``) as its
backward: a reverse scan over the chunks with adjoint level states, giving the gradients of ``qeff``, ``e^G K``,
``phi``, ``H``, the chunk log decays ``g``, the level weights the scan reads and the incoming state's levels, which
``forms_backward`` carries to ``q, k, v, log_decay, beta, level_weights``.

Memory: the backward recomputes the slot states before every chunk into a scratch of
``n x (n_old + NLC)`` states of ``d_k x d_v`` (``n = T / C`` chunks, ``NLC ~ log2(T / C)`` chunk
levels, ``n_old = bit_length(offset)`` incoming slots): ``(n_old + NLC) / C`` of one ``T d_k d_v``
tensor (C = 64, T = 32768: 10 / 64), freed when the backward returns; nothing of it is held
between forward and backward. The reductions over value columns (``d qeff``, ``d e^G K``, ``d phi``,
``d g``, ``d lam``) are added by the column blocks into zeroed outputs (atomicAdd: no per-block
copies, no host-side sum; the order of the adds, hence the last bits, varies from run to run). Saved between forward and backward: the inputs (forms) and the WY quantities the scan
reads (``O(T (C + d_k) + n d_k d_v)``); ``forms_backward`` allocates only its outputs (its ``C x C``
temporaries live in each block's shared memory). With ``FORMS_X_SAVED`` (on by default; R1 of benchmarks/NOTES.md
"Session 27 — s27p", measured in "Session 28 — lead") also each chunk's X = (I + N)^{-1} as gd_forms solved it:
(BH, n, C, C) float32, ``T / C * C * C * 4 = 4 C T`` bytes a sequence (C = 64: 256 T bytes, 8 MiB at T = 32768; 268 MB at
B H = 32), whatever d_k and d_v (nothing of size ``T d_k d_v``), which gd_forms_bwd reads instead of solving again.

The two-tier scan's backward (``TIER_BWD``; float32 compute type, calls from chunk 0 without state that take the
two-tier forward, ``gated_delta.tier_plan``): the forward runs gd_tiers on scratch of its own (``scan_tiers``) and
keeps three of its intermediates for the backward, **Qp** (BH, n, C, d_k) (bfloat16 patterns on the GD_S16 path, else
float32), **Z** (BH, nP, d_k, d_k) and **Sb** (BH, popsum(nP), d_k, d_v) float32 (nP = n / 4 periods, popsum(nP) ~
nP log2(nP) / 2 coarse slots); Tot, Pc, Tg are freed when the forward returns. At B H = 32, d = 64, C = 64, T = 32768
(nP = 128, 448 slots): Qp 134 MB (bf16; float32 268), Z 67 MB, Sb 235 MB: **436 MB** (float32 callers 570), ~1/6 of
gd_scan_bwd's scratch sv (2.68 GB), which this backward does not allocate. ``tier_backward`` runs the kernels K1-K4
(gd_tier3_bwd, gd_coarse_bwd, gd_tier1x_bwd, gd_tier1_bwd: benchmarks/NOTES.md "Session 24 — s24c") on buffers of its
own (at 32K float32: dQp 268 MB, dSb 235, dZ 67, dTot 67, beside the gradients gd_scan_bwd returns too), dropping each
scratch array once its last reader is launched; the saved three are the autograd Function's saved tensors
(``_autograd``): released after the backward, or kept for a second one where the graph is retained.
"""
from __future__ import annotations

import dataclasses
import functools
import math

from ..._chunktree import chunk_layout, from_chunks
from ...loglinear import _ns
from ._compile import make_config
from .gated_delta import chunk_slots, tier_plan

__all__ = ["Scan", "scan", "scan_backward", "differentiable", "forms_backward", "S16_TRAIN", "TIER_BWD", "scan_tier",
           "scan_tiers", "tier_backward", "FORMS_X_SAVED", "forms_x", "TRAIN_OUT16", "train_o16"]

#: bfloat16 callers' training steps on the two-tier path (``gated_delta.tier_plan``: from chunk 0, no state in or out,
#: at the chunk of 64) run the inference forward's GD_S16 build (``Config.s16``: gd_forms' qeff, e^G K, phi, H stored as
#: bfloat16, the two-tier scan on them in 1xTF32) and keep those bfloat16 intermediates for the backward, whose
#: gd_scan_bwd_x1 reads them (its GD_S16 build: staged 16-bit tiles widened in shared memory); one autograd Function
#: for forms and scan (``_autograd.apply_gated_delta_s16``). False: the forward on float32 intermediates (3xTF32 scan),
#: session 23's, for A/B timing (read at every call)
S16_TRAIN = True
#: training steps whose scan takes the two-tier forward in a float32 compute type (float32 and bfloat16 callers, from
#: chunk 0, no incoming state: ``scan_tier``) keep its Qp, Z, Sb and run the scan's backward as the two-tier kernels'
#: backwards K1-K4 (``tier_backward``, parallel over periods; benchmarks/NOTES.md "Session 24 — s24c"). False:
#: gd_scan_bwd (its serial walk over the chunks; nothing kept), for A/B timing (read at every forward call)
TIER_BWD = True
#: training steps in the float32 compute type (float32 callers, bfloat16 callers: their S16 path or not) keep each chunk's
#: X = (I + N)^{-1} as gd_forms solved it (its GF_XO build: ``Config.xs``) and gd_forms_bwd reads it instead of solving
#: again (its FB_XIN build): R1 of benchmarks/NOTES.md "Session 27 — s27p". Memory: one C x C float32 matrix a chunk,
#: (BH, n, C, C) = 4 C T bytes a sequence (C = 64: 256 T bytes; T = 32768: 8 MiB a sequence, 268 MB at B H = 32),
#: independent of d_k and d_v; held from the forward to the backward as one more saved tensor. H200, bf16, B=2, H=16,
#: d=64 (session 28): the fwd+bwd step 0.93-0.94x at 8K-32K for +7% peak memory. False: nothing kept, gd_forms_bwd
#: solves again (read at every forward call)
FORMS_X_SAVED = True
#: the bfloat16 training step on the S16 path (``S16_TRAIN``) whose forward runs gd_tier3 with the kept tiers
#: (``scan_tier`` planned, ``tier.NCL > 0``: the public calls from 2048 tokens) gets its output in bfloat16 from gd_tier3
#: itself (the inference path's OUT16 argument of ``CupyOps.gd_tiers``; the float32 sums as before, rounded once: the
#: float32 output's bfloat16 rounding, bit for bit), (BH, T, d_v) without the padding rows: the autograd Function
#: returns it, so the registry records no cast; its backward takes the bfloat16 output gradient as it arrives and K1,
#: K4 and gd_forms_bwd_x1 read it as such (``Config.do16``: their GD_DO16 build, widened exactly at the load). Saves per
#: step the forward's cast and the backward's widening (each a pass over the output) and half of three float32 reads of
#: dout (benchmarks/NOTES.md "Session 29 — s29b"). False: the float32 output, cast by the registry (for A/B timing;
#: read at every forward call)
TRAIN_OUT16 = True


@dataclasses.dataclass(frozen=True)
class Scan:
    """The static arguments of one scan: the compiled variant, the call's length and offset, its
    first absolute chunk, chunk count, chunk-level slots and whether the last chunk merges; x1: the
    backward's float32 products in 1xTF32 (``gd_forms_bwd_x1``, ``gd_scan_bwd_x1``: bfloat16 callers, whose
    gradients keep 8 bits); half 'bf16': the forms' inputs are bfloat16 as they are (``gd_forms`` and
    ``gd_forms_bwd`` read them, the input gradients written in bfloat16; the scan in float32 as ever)."""

    cfg: object
    T: int
    p: int
    F: int
    n: int
    NLC: int
    merge_last: bool
    x1: bool = False
    half: str = ""
    xs: bool = False  # FORMS_X_SAVED: the forward's X kept for the forms' backward (fcfg's xs builds)

    @property
    def fcfg(self):
        """The forms' variant (gd_forms, gd_forms_bwd): ``cfg`` reading 16-bit inputs where ``half`` says
        (``gated_delta._config``'s, the inference path's: the same compiled gd_forms); ``xs``: their GF_XO / FB_XIN
        builds (``Config.xs``: X written by gd_forms, read by gd_forms_bwd)."""
        cfg = dataclasses.replace(self.cfg, half=self.half, tc=False) if self.half else self.cfg
        return dataclasses.replace(cfg, xs=True) if self.xs else cfg


def forms_x(ops, sc, BH):
    """The buffer gd_forms writes X into for ``sc`` (``sc.xs``: (BH, n, C, C) float32, 4 C T bytes a sequence, nothing
    of d_k or d_v), else None."""
    if not sc.xs:
        return None
    C = sc.cfg.CH
    return ops.xp.empty((BH, sc.n, C, C), dtype=ops.xp.float32)


def scan(ops, sc, qe, ek, ph, H, g, lam, intra, old, in_place=False):
    """The forward scan on arrays of ``ops.xp`` (inputs unchanged; ``in_place``: the reads added into ``intra``
    itself, which is returned).

    qe, ek (BH, n, C, d_k), ph (BH, n, d_k, C), H (BH, n, d_k, d_v), g (BH, n), lam (BH, T, L),
    intra (BH, n, C, d_v) the intra-chunk output, old (BH, n_old, d_k, d_v) or None
    -> (BH, n, C, d_v): intra + the reads of the chunk-level and incoming slots."""
    xp = ops.xp
    BH, DK, DV = qe.shape[0], qe.shape[-1], intra.shape[-1]
    out = intra if in_place else xp.array(intra, copy=True)
    lev = xp.zeros((BH, sc.NLC, DK, DV), dtype=intra.dtype)  # (the compute type: qe may be bfloat16 patterns)
    n_old = 0 if old is None else old.shape[1]
    oldc = xp.zeros((1,), dtype=intra.dtype) if old is None else xp.array(old, copy=True)
    ops.gd_scan(sc.cfg, qe, ek, ph, H, g, lam, out, lev, oldc, sc.T, DK, DV, lam.shape[-1], sc.p, sc.F, sc.n, n_old,
                sc.NLC, sc.merge_last, BH, False)
    return out


def scan_tier(sc, old, DK, DV):
    """The ``gated_delta.Tier`` of the scan ``sc`` where its backward is ``tier_backward`` (``TIER_BWD``, the float32
    compute type, no incoming state ``old``, ``tier_plan``'s call), else None (gd_scan_bwd)."""
    if not TIER_BWD or sc.cfg.ta != "float" or old is not None:
        return None
    return tier_plan(sc.cfg, sc.F, sc.n, 0, False, DK, DV)


def train_o16(sc, tier):
    """Whether the S16 training forward of ``sc`` whose scan is ``tier`` (``scan_tier``'s) returns gd_tier3's bfloat16
    output (``TRAIN_OUT16``: gd_tier3 runs, ``tier.NCL > 0``)."""
    return TRAIN_OUT16 and sc.cfg.s16 and tier is not None and tier.NCL > 0


def scan_tiers(ops, sc, tier, qe, ek, ph, H, g, lam, intra, in_place=False, o16=False):
    """``scan`` of a call ``scan_tier`` plans as ``tier``: gd_tiers on scratch allocated here, its coarse fill as a
    kernel of its own (gd_cfill where ``tier.grouped``: every coarse slot of Sb written, the backward reads them all).
    Arguments as ``scan``'s (no incoming state) -> (out (BH, n, C, d_v), [Qp, Z, Sb]): the saved intermediates
    (``gated_delta.Tier.shapes``; Qp's dtype ``Tier.dtypes``'), Tot, Pc, Tg dropped. o16 (bfloat16 inputs,
    ``tier.NCL > 0``: ``train_o16``): out is (BH, T, d_v) bfloat16 patterns (uint16), rounded by gd_tier3 from the
    float32 sums (``intra`` then holds the levels <= TM's only)."""
    xp = ops.xp
    BH, DK, DV = qe.shape[0], qe.shape[-1], intra.shape[-1]
    out = intra if in_place else xp.array(intra, copy=True)
    Z, _, Sb, Qp, _, _ = scratch = [xp.empty((BH,) + shape, dtype=dt) for shape, dt in
                                    zip(tier.shapes(DK, DV), tier.dtypes(intra.dtype, sc.cfg, xp))]
    o = xp.empty((BH, sc.T, DV), dtype=xp.uint16) if o16 else None
    ops.gd_tiers(sc.cfg, tier, qe, ek, ph, H, g, lam, out, sc.T, DK, DV, lam.shape[-1], sc.n, BH, scratch=scratch,
                 t3fill=False, o16=o)
    return (out if o is None else o), [Qp, Z, Sb]


def _dout_cfg(cfg, dout):
    """``cfg``, or its GD_DO16 build (``Config.do16``) where the output gradient ``dout`` is bfloat16 patterns
    (``TRAIN_OUT16``)."""
    return _do16(cfg) if dout.dtype.itemsize == 2 else cfg


@functools.lru_cache(maxsize=None)
def _do16(cfg):
    return dataclasses.replace(cfg, do16=True)


def bf16_dout(xp, d, T, n, C):
    """The S16 Function's bfloat16 output gradient ``d`` (BH, T, d_v) (16-bit patterns, contiguous) as the backward
    kernels read dout: (BH, n, C, d_v), the chunks' padding rows past T zero (a copy only where T % C)."""
    BH, _, DV = d.shape
    if n * C != T:
        z = xp.zeros((BH, n * C, DV), dtype=d.dtype)
        z[:, :T] = d
        d = z
    return xp.reshape(d, (BH, n, C, DV))


def tier_backward(ops, sc, tier, saved, qe, ek, ph, H, g, lam, dout):
    """Gradients of ``scan_tiers`` for the output gradient ``dout`` (BH, n, C, d_v) float32 (or bfloat16 patterns:
    ``TRAIN_OUT16``, the kernels' GD_DO16 build) from its ``saved`` [Qp, Z,
    Sb] (the list emptied: each array dropped once its last reader is launched): K1 gd_tier3_bwd -> K2 gd_coarse_bwd
    -> K3 gd_tier1x_bwd, K4 gd_tier1_bwd (one period, ``tier.NCL == 0``: K4 alone). Arguments as ``scan_backward``'s (no
    incoming state) -> (d qe, d ek, d ph, d H, d g, d lam) float32, shaped as the inputs."""
    xp = ops.xp
    BH, n, C, DK = qe.shape
    DV, L, dt = dout.shape[-1], lam.shape[-1], lam.dtype  # (lam: the compute type)
    Qp, Z, Sb = saved
    saved.clear()
    args = (_dout_cfg(sc.cfg, dout), tier)
    # zeroed: the buffers the kernels add into (atomicAdd); the others written whole
    dqe, dek = xp.zeros((BH, n, C, DK), dtype=dt), xp.zeros((BH, n, C, DK), dtype=dt)
    dph, dg = xp.zeros((BH, n, DK, C), dtype=dt), xp.zeros((BH, n), dtype=dt)
    dlam, dTot = xp.zeros((BH, sc.T, L), dtype=dt), xp.zeros((BH, tier.nP, DK, DV), dtype=dt)
    if tier.NCL:  # the coarse slots' reads (K1), their chains (K2), the transfers (K3); one period: none
        dQp, dSb = xp.zeros((BH, n, C, DK), dtype=dt), xp.empty(Sb.shape, dtype=dt)
        ops.gd_tier3_bwd(*args, qe, Qp, Sb, lam, dout, dQp, dSb, dlam, sc.T, DK, DV, L, n, BH, sc.x1)
        del Qp
        dZ = xp.zeros(Z.shape, dtype=dt)
        ops.gd_coarse_bwd(*args, Z, Sb, dSb, dZ, dTot, DK, DV, BH, sc.x1)
        del Z, Sb, dSb
        ops.gd_tier1x_bwd(*args, qe, ek, ph, g, dQp, dZ, dqe, dek, dph, dg, sc.T, DK, n, BH, sc.x1)
        del dQp, dZ
    dH = xp.empty((BH, n, DK, DV), dtype=dt)
    ops.gd_tier1_bwd(*args, qe, ek, ph, H, g, lam, dout, dTot, dqe, dek, dph, dH, dg, dlam, sc.T, DK, DV, L, n, BH,
                     sc.x1)
    return dqe, dek, dph, dH, dg, dlam


def scan_backward(ops, sc, qe, ek, ph, H, g, lam, old, dout):
    """Gradients of ``scan`` for the output gradient ``dout`` (BH, n, C, d_v) (arrays of ``ops.xp``,
    contiguous, of one float dtype; ``sc.cfg.s16``: qe, ek, ph, H as bfloat16 patterns): (d qe, d ek, d ph, d H, d g,
    d lam, d old or None), shaped as the inputs, in the compute type; ``d intra`` is ``dout`` itself."""
    xp = ops.xp
    BH, n, C, DK = qe.shape
    DV, L = dout.shape[-1], lam.shape[-1]
    n_old = 0 if old is None else old.shape[1]
    NS, dt = n_old + sc.NLC, dout.dtype
    sv = xp.empty((BH, n, NS, DK, DV), dtype=dt)
    dS = xp.zeros((BH, NS, DK, DV), dtype=dt)
    # the reductions over value columns: every column block adds its share (atomicAdd) into zeros
    dqe, dek = xp.zeros((BH, n, C, DK), dtype=dt), xp.zeros((BH, n, C, DK), dtype=dt)
    dph = xp.zeros((BH, n, DK, C), dtype=dt)
    dH = xp.zeros((BH, n, DK, DV), dtype=dt)
    dg = xp.zeros((BH, n), dtype=dt)
    dlam = xp.zeros((BH, sc.T, L), dtype=dt)
    oldc = xp.zeros((1,), dtype=dt) if old is None else old
    ops.gd_scan_bwd(sc.cfg, qe, ek, ph, H, g, lam, dout, oldc, sv, dS, dqe, dek, dph, dH, dg, dlam, sc.T, DK, DV, L,
                    sc.p, sc.F, n, n_old, sc.NLC, sc.merge_last, BH, x1=sc.x1)
    del sv
    return dqe, dek, dph, dH, dg, dlam, dS[:, :n_old] if n_old else None


def differentiable(q, k, v, a, beta, lam, chunk_size, p, old, context=None, x1=False, check=None):
    """``loglinear_gated_delta``'s output on torch tensors, differentiable through the kernels.

    q, k (..., T, d_k), v (..., T, d_v), a, beta (..., T), lam (..., T, L): float32 / float64 torch
    tensors (CUDA), or all bfloat16 (read as they are by gd_forms / gd_forms_bwd, their gradients
    bfloat16; the output float32, or bfloat16 where ``train_o16``), ``T >= 1``; old (..., n_old, d_k, d_v) the
    incoming state's levels (float32 for bfloat16 inputs) or None. context: ``_arrays.on_gpu`` (default), or the tests' NumPy
    twin context; x1: ``gd_forms_bwd_x1`` for the forms' backward (1xTF32 products at C = d_k = 64: the
    inputs were bfloat16); check: a ``lsattn._nonfinite.KernelCheck`` answered by gd_forms, or None.
    -> (..., T, d_v) in the compute type

    The WY forms come from ``gd_forms`` (``_autograd.apply_gated_delta_forms``; nothing of them is
    recorded), their backward is ``forms_backward`` (the kernel ``gd_forms_bwd`` recomputing from the
    saved inputs); the scan is ``apply_gated_delta_scan`` (bfloat16 inputs: on gd_forms' float32 copy
    of the level weights, whose gradient gd_forms_bwd adds into the level weights')."""
    from ._autograd import apply_gated_delta_forms, apply_gated_delta_s16, apply_gated_delta_scan

    ns = _ns(q)
    batch = tuple(q.shape[:-2])
    BH, T, DK, DV, L = math.prod(batch), q.shape[-2], q.shape[-1], v.shape[-1], lam.shape[-1]
    half = "bf16" if str(q.dtype).endswith("bfloat16") else ""
    cfg = make_config("double" if q.dtype == ns.float64 else "float", DK, 16, chunk_size)
    lay = chunk_layout(p, T, cfg.CH)
    merge_last = (p + T) % cfg.CH == 0
    F, n = lay.first_chunk, lay.n_chunks
    s16 = S16_TRAIN and half == "bf16" and x1 and old is None and cfg.CH == 64
    if s16:  # the inference forward's GD_S16 build where its two-tier scan runs (gd_scan reads float32 intermediates)
        from .gated_delta import _config, tier_plan

        cfg16 = _config(cfg.ta, DK, chunk_size, half, True)
        s16 = tier_plan(cfg16, F, n, 0, False, DK, DV) is not None
        cfg = cfg16 if s16 else cfg
    xs = FORMS_X_SAVED and cfg.ta == "float"  # (float64: solved in the backward as ever)
    sc = Scan(cfg, T, p, F, n, chunk_slots(F, n, merge_last), merge_last, x1, half, xs)
    q3, k3, v3 = (ns.reshape(x, (BH, T, x.shape[-1])) for x in (q, k, v))
    a2, b2 = (ns.reshape(x, (BH, T)) for x in (a, beta))
    lam3 = ns.reshape(lam, (BH, T, L))
    if s16:  # forms and scan in one Function: the bfloat16 intermediates saved between them, no gradient of theirs in torch
        out = apply_gated_delta_s16(sc, q3, k3, v3, a2, b2, lam3, context, check)
        if out.ndim == 3:  # (TRAIN_OUT16: gd_tier3's bfloat16 (BH, T, d_v))
            return ns.reshape(out, batch + (T, DV))
        return ns.reshape(from_chunks(ns, out, lay, -2), batch + (T, DV))
    qe, ek, ph, H, g, intra, *lamw = apply_gated_delta_forms(sc, q3, k3, v3, a2, b2, lam3, context, check)
    if half:  # the scan reads gd_forms' float32 copy of the level weights
        lam3 = lamw[0]
    old3 = None if old is None else ns.reshape(old, (BH,) + tuple(old.shape[-3:]))
    out = apply_gated_delta_scan(sc, qe, ek, ph, H, g, lam3, intra, old3, context)
    return ns.reshape(from_chunks(ns, out, lay, -2), batch + (T, DV))


def forms_backward(ops, sc, q, k, v, a, beta, lam, grads, dlw=None, xin=None):
    """Gradients of the WY forms (``gated_delta._chunk_forms`` + ``_masked_intra``, as ``gd_forms``
    computes them) by the kernel ``gd_forms_bwd`` (``gated_delta_forms_bwd.cu``, the formulas in its
    header), one block per (chunk, sequence) recomputing the decay table, ``(I + N)^{-1}`` and ``attn``
    from the inputs in shared memory (no (BH, n, C, C) array in global memory).

    q, k (BH, T, d_k), v (BH, T, d_v), a, beta (BH, T), lam (BH, T, L): contiguous arrays of ``ops.xp`` in
    the compute type (``sc.half`` 'bf16': bfloat16 patterns, 16-byte aligned); grads: those of (qeff, eGK, phi,
    H, g, intra), chunked as ``forms`` returns them (None: zero), in the compute type (intra's also bfloat16 patterns:
    ``TRAIN_OUT16``'s output gradient, read by gd_forms_bwd's GD_DO16 build); dlw (BH, T, L) in the
    compute type or None: a gradient of lam added into dlam (the scan's, of gd_forms' float32 copy); xin (BH, n, C, C)
    float32 or None: X as the forward's gd_forms wrote it (``sc.xs``, ``forms_x``), read by gd_forms_bwd's FB_XIN build
    instead of solved (None: solved, the default build)
    -> (dq, dk, dv, da, dbeta, dlam) shaped and typed as the inputs."""
    xp = ops.xp
    (BH, T, DK), DV, L, C, n = q.shape, v.shape[-1], lam.shape[-1], sc.cfg.CH, sc.n
    dt = xp.float64 if sc.cfg.ta == "double" else xp.float32
    shapes = [(BH, n, C, DK), (BH, n, C, DK), (BH, n, DK, C), (BH, n, DK, DV), (BH, n), (BH, n, C, DV)]
    gs = [xp.zeros(s, dtype=dt) if g is None else xp.ascontiguousarray(g) for g, s in zip(grads, shapes)]
    outs = [xp.empty(x.shape, dtype=q.dtype) for x in (q, k, v, a, beta, lam)]  # every entry written
    dlw = None if dlw is None else xp.ascontiguousarray(dlw)
    fcfg = _dout_cfg(sc.fcfg, gs[5])
    if xin is None:  # (fb_solve: the build without FB_XIN)
        cfg = dataclasses.replace(fcfg, xs=False)
        ops.gd_forms_bwd(cfg, q, k, v, a, beta, lam, *gs, *outs, T, DK, DV, L, sc.p, sc.F, n, BH, x1=sc.x1, dlw=dlw)
    else:
        assert sc.xs and xin.shape == (BH, n, C, C), "xin: the forward's X (sc.xs)"
        ops.gd_forms_bwd(fcfg, q, k, v, a, beta, lam, *gs, *outs, T, DK, DV, L, sc.p, sc.F, n, BH, x1=sc.x1, dlw=dlw,
                         xin=xp.ascontiguousarray(xin))
    return tuple(outs)
