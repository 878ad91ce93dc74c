"""Backward of hierarchical exp-kernel attention (``loglinear_log_attention``) on the kernels of
``hierarchical_bwd.cu`` (the mathematics and the shifts are at its top) and ``hierarchical_bwd_{chunk,dq,dkdv}.cu``,
and its torch autograd Function.

The backward reads the forward's ``hierarchical.slots`` (``hi_intra``, ``hi_merge`` and ``hi_snap``: the chunks'
own log-normalisers and the Fenwick slots held before every chunk; the autograd forward runs at the backward's
chunk and keeps them, :func:`keep`; recomputed from the saved inputs otherwise), then ``hib_dq`` (the full log-normalisers, dq and the level-weight
gradient; the chunks' pairs as products with per-chunk shifts, rows whose factors would pass e^40
(float32) per pair), ``hib_blocks`` (one ``d_k x d_v`` query summary per right block of the chunk tree; blocks of more than
``PMIN`` chunks in parallel pieces, merged by ``hib_bmerge``) and
``hib_dkdv`` (dk and d log_v, reading the chunks' pair weights and D terms ``hib_dq`` stored); the
decay's gradient is a reverse cumulative sum on the host. Memory: the forward's slots (one ``d_k x
d_v`` summary per chunk), one per right block, and ``O(T (C + d_k + d_v + L))`` (the pairs: two ``T x
C``); never ``T d_k d_v`` or ``T x T``.

16-bit inputs run the forward's 16-bit tensor-core kernels on the inputs as given, writing log y in
float32 (the backward needs it to float32 accuracy, as ``log_attention``'s: ``_autograd``), and the
backward on them as given too (read as 16-bit patterns, computed in float32, dq, dk, dlv written in
their dtype; the output masks and delta in the kernels); bfloat16 ones take the backward's products on bf16 tensor cores
(``config(tc=True)``: the operands rounded to bf16, fp32 accumulation). The incoming state's tensors get no
gradient here: calls whose state requires grad, or that return a state, take the array-API path
(``hierarchical.forward``). torch is imported only when a CUDA tensor that requires grad arrives.
"""
from __future__ import annotations

import functools
import types

from . import hierarchical as _hi, hierarchical_direct as _direct
from ._arrays import batch_layout, flat, inputs, on_gpu, ta_name, widen
from ._compile import SMEM_MAX, Config

__all__ = ["backward", "config", "fits", "apply"]

_KERNELS = ("hib_dq", "hib_blocks", "hib_dkdv")

#: hib_blocks' split of a right block (HIB_PMIN, HIB_NPC of hierarchical_bwd.cu): blocks of more than
#: PMIN chunks in min(size / PMIN, NPC) pieces
PMIN, NPC = 8, 8
#: level weights per row whose gradient hib_dq writes (HI_LMAX of hierarchical.cu; further levels' is 0)
LMAX = 64


def pieces(F, n):
    """hib_blocks' work for chunks ``F .. F + n - 1`` (the kernel's ``hib_piece``): ``(items, split,
    slots)``: its grid (a block per piece, unsplit right blocks one piece), the split blocks (hib_bmerge's
    grid) and their pieces (the scratch summaries)."""
    return _pieces(F, n, PMIN, NPC)


@functools.lru_cache(maxsize=256)
def _pieces(F, n, PMIN, NPC):
    items = split = slots = 0
    lp, hi = 1, F + n - 1
    while (h := 1 << (lp - 1)) <= hi:
        count = max(0, (hi - h) // (2 * h) - max(0, -(-(F + 1 - h) // (2 * h))) + 1)
        np_ = min(NPC, max(1, h // PMIN))
        items += count * np_
        if np_ > 1:
            split += count
            slots += count * np_
        lp += 1
    return items, split, slots


@functools.lru_cache(maxsize=256)  # on every call's path (forward and backward)
def config(ta, DK, DV, chunk_size=None, tc=False, half=""):
    """The forward's variant (``hierarchical.config``), its chunk halved while the backward's tiles
    exceed shared memory (at least 16; :func:`fits` says whether 16 fits); ``tc`` (float32 only, for
    bfloat16 callers): the products on bf16 tensor cores (``-DHIB_TC=1``; operands rounded to bf16);
    ``half``: 16-bit inputs read (and dq, dk, dlv written) as they are."""
    cfg = _hi.config(ta, DK, DV, chunk_size)
    while cfg.CH > 16 and max(cfg.smem(k) for k in _KERNELS) > SMEM_MAX:
        cfg = Config(ta, "", cfg.CH // 2, cfg.DKP, cfg.DVP, tc=False)
    return Config(ta, half, cfg.CH, cfg.DKP, cfg.DVP, tc=bool(tc) and ta == "float")


@functools.lru_cache(maxsize=256)
def fits(ta, DK, DV):
    """True when the backward kernels take these head dims (``d_k, d_v <= 128``, tiles in shared memory)."""
    if max(DK, DV) > 128:
        return False
    return max(config(ta, DK, DV, 16).smem(k) for k in _KERNELS) <= SMEM_MAX


def backward(ops, q, k, lv, lam, a, p, old, out, do, chunk_size=None, tc=False, kept=None, half="", da=True):
    """Gradients of a call for the output gradient ``do``.

    q, k (..., T, d_k), lv, do (..., T, d_v), lam (..., T, L), a (..., T) or None: arrays of ``ops.xp``
    in one dtype, float32 / float64 or the 16-bit patterns of ``half`` ('bf16', 'f16'; computed in
    float32); out (..., T, d_v): the forward's log output in the compute dtype (float32 for 16-bit
    inputs); ``T >= 1``; old: the incoming state's ``(m, n, S, z)`` (as ``hierarchical.compute``) or
    None, read but not differentiated. Outputs ``-inf`` (every visible value 0) or NaN (every level off)
    take no gradient (masked in the kernels). ``tc``: the products on bf16 tensor cores (float32
    compute of bfloat16 callers: the gradients within the bfloat16 bound, not float32's). kept: the
    forward's slots at this variant's chunk (:func:`keep`), or None: recomputed (16-bit inputs on the
    forward's 16-bit kernels). da: False when the decay's gradient is not wanted (None, and not summed
    in the kernels). Returns (dq, dk, dlv in the inputs' dtype; dlam, da or None in the compute dtype),
    shaped as the inputs."""
    xp, batch, BH, ta_dtype = batch_layout(ops, q, half)
    cfg = config(ta_name(xp, ta_dtype), q.shape[-1], lv.shape[-1], chunk_size, tc, half)
    if kept is not None and kept.CH == cfg.CH:  # the forward's, with the inputs' views the kernels read
        w = types.SimpleNamespace(**vars(kept))
        w.q3, w.k3, w.lv3, w.lam3, w.a2 = _hi.flats(xp, BH, q, k, lv, lam, a)
    else:  # the forward's pieces on its kernels (float32: 3xTF32 tensor cores, the float32 bound; 16-bit: the forward's)
        w = _hi.slots(ops, _hi.config(cfg.ta, q.shape[-1], lv.shape[-1], cfg.CH, half) if half else
                      Config(cfg.ta, "", cfg.CH, cfg.DKP, cfg.DVP, tc=cfg.ta == "float"), q, k, lv, lam, a, p, old)
    T, DK, DV, L, n = w.T, w.DK, w.DV, w.L, w.n
    om, gm = flat(xp, out, (BH, T, DV)), flat(xp, do, (BH, T, DV))  # (masked in the kernels: hib_go)
    delta = xp.empty((BH, T), dtype=ta_dtype)  # hib_dq's sum_j g_tj
    lden = xp.empty((BH, T), dtype=ta_dtype)
    dq = xp.empty((BH, T, DK), dtype=q.dtype)
    dlam = (xp.zeros if L > LMAX else xp.empty)((BH, T, L), dtype=ta_dtype)  # (hib_dq writes levels < LMAX)
    Pg, Dg = xp.empty((BH, T, cfg.CH), dtype=ta_dtype), xp.empty((BH, T, cfg.CH), dtype=ta_dtype)  # the chunks' pairs
    Fg = xp.empty((BH, T), dtype=ta_dtype)  # 1 on the rows whose pairs took the exact path
    want_da, da = a is not None and da, None
    dsum = xp.empty((BH, T), dtype=ta_dtype) if want_da else None  # sum_i dq_ti - sum_i dk_ti (hib_dq, hib_dkdv)
    ops.hib_dq(cfg, w.q3, w.k3, w.lv3, w.lam3, w.a2, gm, om, delta, w.lden, w.msnap, w.wz, w.wn, w.wS, lden, dq, dlam,
               Pg, Dg, Fg, dsum, T, DK, DV, L, p, w.F, n, w.n_old, w.NLC, w.alo, BH)
    # right block r0 at r0 - F: every r0 of (F, F + n) is one (hib_blocks or hib_bmerge writes it), 0 unused
    U = xp.empty((BH, n, DK, DV), dtype=ta_dtype)
    Z, M = xp.empty((BH, n, DK), dtype=ta_dtype), xp.empty((BH, n, DK), dtype=ta_dtype)
    W, gt = xp.empty((BH, n, DV), dtype=ta_dtype), xp.empty((BH, n), dtype=ta_dtype)
    if n > 1:
        items, split, slots = pieces(w.F, n)
        Up = xp.empty((BH, slots, DK, DV), dtype=ta_dtype)  # the split blocks' pieces
        Zp, Mp = xp.empty((BH, slots, DK), dtype=ta_dtype), xp.empty((BH, slots, DK), dtype=ta_dtype)
        Wp, gp = xp.empty((BH, slots, DV), dtype=ta_dtype), xp.empty((BH, slots), dtype=ta_dtype)
        ops.hib_blocks(cfg, w.q3, w.lam3, w.a2, gm, om, delta, lden, w.gch, U, Z, M, W, gt, Up, Zp, Mp, Wp, gp, T, DK,
                       DV, L, p, w.F, n, w.alo, items, slots, BH)
        if split:
            ops.hib_bmerge(cfg, Up, Zp, Mp, Wp, gp, U, Z, M, W, gt, DK, DV, w.F, n, split, slots, BH)
        del Up, Zp, Mp, Wp, gp
    dk = xp.empty((BH, T, DK), dtype=q.dtype)
    dlv = xp.empty((BH, T, DV), dtype=q.dtype)
    ops.hib_dkdv(cfg, w.q3, w.k3, w.lv3, w.lam3, w.a2, gm, om, delta, lden, U, Z, M, W, gt, Pg, Dg, Fg, dk, dlv, dsum, T,
                 DK, DV, L, p, w.F, n, w.alo, BH)
    if want_da:  # a_r enters every pair (t, s) with s < r <= t: rows t >= r minus columns s >= r
        da = xp.flip(xp.cumsum(xp.flip(dsum, axis=-1), axis=-1), axis=-1)
        a2 = widen(xp, w.a2, half) if half else w.a2
        da = xp.where(a2 > w.alo, da, 0.0)  # a clamped decay (-inf) has none
    shape = lambda x: xp.reshape(x, batch + x.shape[1:])  # noqa: E731
    return tuple(None if x is None else shape(x) for x in (dq, dk, dlv, dlam, da))


def keep(w):
    """What the backward reads of the forward's slots ``w`` (``hierarchical.compute(keep=True)``):
    ``w`` without the inputs' views, hi_intra's ``lnum`` and the slots' ``wm`` (``O(T d_v)`` less)."""
    return types.SimpleNamespace(**dict(vars(w), q3=None, k3=None, lv3=None, lam3=None, a2=None, lnum=None, wm=None,
                                        narrow=None))


@functools.lru_cache(maxsize=None)
def _function():
    import torch

    class Hierarchical(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, lv, lam, a, old, chunk_size, p):
            # the forward at the backward's chunk, its slots kept for the backward (no recomputation there)
            ta = "double" if q.dtype == torch.float64 else "float"
            CH = config(ta, q.shape[-1], lv.shape[-1], chunk_size).CH
            # hi_intra first, from the tensors' pointers (the GPU waits for it: each step starts on an empty queue)
            pre = _direct.intra(q, k, lv, lam, a, CH) if old is None and p == 0 else None
            with on_gpu(q) as (to_cp, back, ops):
                if q.dtype in (torch.bfloat16, torch.float16):  # the 16-bit tensor-core forward, float32 log y
                    xs, half = inputs(to_cp, list((q, k, lv, lam) + (() if a is None else (a,))))
                    oldc = None if old is None else tuple(to_cp(x.detach().float().contiguous())[0] for x in old)
                    y, w = _hi.compute(ops, *xs[:4], xs[4] if a is not None else None, p, oldc, CH, half, wide=True,
                                       keep=True, pre=pre)
                else:
                    (qc, kc, lvc, lamc), ac, oldc = _compute_inputs(to_cp, q, k, lv, lam, a, old)
                    y, w = _hi.compute(ops, qc, kc, lvc, lamc, ac, p, oldc, CH, keep=True, pre=pre)
                out = back(y, "")
                # 16-bit: the caller's output as hi_read stored it beside log y (rounded as a cast would: no cast)
                res = out if w.narrow is None else back(w.narrow, half)
            ctx.save_for_backward(q, k, lv, lam, a, out)
            ctx.old, ctx.chunk_size, ctx.p, ctx.kept = old, chunk_size, p, keep(w)
            return res

        @staticmethod
        def backward(ctx, do):
            q, k, lv, lam, a, out = ctx.saved_tensors
            with on_gpu(q) as (to_cp, back, ops):
                half = q.dtype in (torch.bfloat16, torch.float16)
                if half:  # the 16-bit tensors as they are (no float32 copies)
                    xs, half = inputs(to_cp, list((q, k, lv, lam) + (() if a is None else (a,))))
                    (qc, kc, lvc, lamc), ac = xs[:4], xs[4] if a is not None else None
                    oldc = None if ctx.old is None else tuple(to_cp(x.detach().float().contiguous())[0] for x in ctx.old)
                    doc = to_cp(do.detach().to(q.dtype).contiguous())[0]
                else:
                    half = ""
                    (qc, kc, lvc, lamc), ac, oldc = _compute_inputs(to_cp, q, k, lv, lam, a, ctx.old)
                    doc = to_cp(do.detach().to(out.dtype).contiguous())[0]
                need = ctx.needs_input_grad[:5]  # (the table's calls: q, k, lv; no decay sums, no dlam cast)
                grads = backward(ops, qc, kc, lvc, lamc, ac, ctx.p, oldc, to_cp(out)[0], doc, ctx.chunk_size,
                                 q.dtype == torch.bfloat16, ctx.kept, half, da=need[4])
                ctx.kept = None  # freed (a second backward of a retained graph recomputes them)
                grads = [None if g is None or not need[i] else back(ops.xp.ascontiguousarray(g), half if i < 3 else "")
                         for i, g in enumerate(grads)]
            cast = lambda g, x: None if g is None or x is None else g.to(x.dtype)  # noqa: E731
            return tuple(cast(g, x) for g, x in zip(grads, (q, k, lv, lam, a))) + (None, None, None)

    return Hierarchical


def _compute_inputs(to_cp, q, k, lv, lam, a, old):
    """CuPy float32 / float64 views (copies where not contiguous) of float32 / float64 inputs and the state's levels
    (views of the tensors as given: the pointer, shape and strides only; no ``detach`` per call)."""
    f = lambda x: x if x.is_contiguous() else x.detach().contiguous()  # noqa: E731
    args, _ = inputs(to_cp, [f(x) for x in (q, k, lv, lam)])
    ac = None if a is None else to_cp(f(a))[0]
    oldc = None if old is None else tuple(to_cp(f(x).to(q.dtype))[0] for x in old)
    return args, ac, oldc


def apply(q, k, lv, lam, a, old, chunk_size, p):
    """``loglinear_log_attention``'s output on CUDA torch tensors (``T >= 1``), differentiable through
    the kernels with respect to q, k, lv, lam and a (old: the incoming state's ``(m, n, S, z)``
    tensors, which must not require grad, or None)."""
    return _function().apply(q, k, lv, lam, a, old, chunk_size, p)
