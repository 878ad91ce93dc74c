"""Backward of hierarchical exp-kernel attention (``loglinear_log_attention``) on the kernels of
``hierarchical_bwd.cu`` (the mathematics and the shifts are at its top), and its torch autograd
Function.

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
backward on float32 copies; bfloat16 ones take the backward's products on bf16 tensor cores
(``config(tc=True)``: the operands rounded to bf16, fp32 accumulation). The incoming state's tensors get no
gradient here: calls whose state requires grad, or that return a state, take the array-API path
(``hierarchical.forward``). torch is imported only when a CUDA tensor that requires grad arrives.
"""
from __future__ import annotations

import functools
import types

import numpy as np

from . import hierarchical as _hi
from ._arrays import batch_layout, flat, inputs, on_gpu, ta_name
from ._compile import SMEM_MAX, Config

__all__ = ["backward", "config", "fits", "apply"]

_KERNELS = ("hib_dq", "hib_blocks", "hib_dkdv")

#: hib_blocks' split of a right block (HIB_PMIN, HIB_NPC of hierarchical_bwd.cu): blocks of more than
#: PMIN chunks in min(size / PMIN, NPC) pieces
PMIN, NPC = 8, 8


def pieces(F, n):
    """hib_blocks' work for chunks ``F .. F + n - 1`` (the kernel's ``hib_piece``): ``(items, split,
    slots)``: its grid (a block per piece, unsplit right blocks one piece), the split blocks (hib_bmerge's
    grid) and their pieces (the scratch summaries)."""
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


def config(ta, DK, DV, chunk_size=None, tc=False):
    """The forward's variant (``hierarchical.config``), its chunk halved while the backward's tiles
    exceed shared memory (at least 16; :func:`fits` says whether 16 fits); ``tc`` (float32 only, for
    bfloat16 callers): the products on bf16 tensor cores (``-DHIB_TC=1``; operands rounded to bf16)."""
    cfg = _hi.config(ta, DK, DV, chunk_size)
    while cfg.CH > 16 and max(cfg.smem(k) for k in _KERNELS) > SMEM_MAX:
        cfg = Config(ta, "", cfg.CH // 2, cfg.DKP, cfg.DVP, tc=False)
    return Config(ta, "", cfg.CH, cfg.DKP, cfg.DVP, tc=bool(tc) and ta == "float")


def fits(ta, DK, DV):
    """True when the backward kernels take these head dims (``d_k, d_v <= 128``, tiles in shared memory)."""
    if max(DK, DV) > 128:
        return False
    return max(config(ta, DK, DV, 16).smem(k) for k in _KERNELS) <= SMEM_MAX


def backward(ops, q, k, lv, lam, a, p, old, out, do, chunk_size=None, tc=False, kept=None):
    """Gradients of a call for the output gradient ``do``.

    q, k (..., T, d_k), lv, out (the forward's log output), do (..., T, d_v), lam (..., T, L), a
    (..., T) or None: arrays of ``ops.xp`` in one compute dtype (float32 / float64), ``T >= 1``;
    old: the incoming state's ``(m, n, S, z)`` (as ``hierarchical.compute``) or None, read but not
    differentiated. Outputs ``-inf`` (every visible value 0) or NaN (every level off) take no
    gradient. ``tc``: the products on bf16 tensor cores (float32 arrays of bfloat16 callers: the
    gradients within the bfloat16 bound, not float32's). kept: the forward's slots at this variant's
    chunk (:func:`keep`), or None: recomputed. Returns (dq, dk, dlv, dlam, da or None), shaped as the
    inputs."""
    xp, batch, BH, ta_dtype = batch_layout(ops, q, "")
    cfg = config(ta_name(xp, ta_dtype), q.shape[-1], lv.shape[-1], chunk_size, tc)
    if kept is not None and kept.CH == cfg.CH:  # the forward's, with the float32 inputs the kernels read
        w = types.SimpleNamespace(**vars(kept))
        w.q3, w.k3, w.lv3, w.lam3, w.a2 = _hi.flats(xp, BH, q, k, lv, lam, a)
    else:  # the forward's pieces on the forward's float32 kernels (3xTF32 tensor cores: the float32 bound)
        w = _hi.slots(ops, Config(cfg.ta, "", cfg.CH, cfg.DKP, cfg.DVP, tc=cfg.ta == "float"), q, k, lv, lam, a, p, old)
    T, DK, DV, L, n = w.T, w.DK, w.DV, w.L, w.n
    lo = -float(np.finfo(np.dtype(ta_dtype)).max) / 8
    o3, g3 = flat(xp, out, (BH, T, DV)), flat(xp, do, (BH, T, DV))
    ok = o3 > lo / 2  # False for -inf and NaN outputs
    gm = xp.ascontiguousarray(xp.where(ok, g3, 0.0).astype(ta_dtype, copy=False))  # (no second copy)
    om = xp.ascontiguousarray(xp.where(ok, o3, -lo).astype(ta_dtype, copy=False))
    delta = xp.ascontiguousarray(xp.sum(gm, axis=-1))
    lden = xp.empty((BH, T), dtype=ta_dtype)
    dq = xp.empty((BH, T, DK), dtype=ta_dtype)
    dlam = xp.zeros((BH, T, L), dtype=ta_dtype)
    Pg, Dg = xp.empty((BH, T, cfg.CH), dtype=ta_dtype), xp.empty((BH, T, cfg.CH), dtype=ta_dtype)  # the chunks' pairs
    Fg = xp.empty((BH, T), dtype=ta_dtype)  # 1 on the rows whose pairs took the exact path
    ops.hib_dq(cfg, w.q3, w.k3, w.lv3, w.lam3, w.a2, gm, om, delta, w.lden, w.msnap, w.wz, w.wn, w.wS, lden, dq, dlam,
               Pg, Dg, Fg, T, DK, DV, L, p, w.F, n, w.n_old, w.NLC, w.alo, BH)
    U = xp.zeros((BH, n, DK, DV), dtype=ta_dtype)  # right block r0 at r0 - F (0 unused)
    Z, M = xp.zeros((BH, n, DK), dtype=ta_dtype), xp.zeros((BH, n, DK), dtype=ta_dtype)
    W, gt = xp.zeros((BH, n, DV), dtype=ta_dtype), xp.zeros((BH, n), dtype=ta_dtype)
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
    dk = xp.empty((BH, T, DK), dtype=ta_dtype)
    dlv = xp.empty((BH, T, DV), dtype=ta_dtype)
    ops.hib_dkdv(cfg, w.q3, w.k3, w.lv3, w.lam3, w.a2, gm, om, delta, lden, U, Z, M, W, gt, Pg, Dg, Fg, dk, dlv, T, DK,
                 DV, L, p, w.F, n, w.alo, BH)
    da = None
    if a is not None:  # a_r enters every pair (t, s) with s < r <= t: rows t >= r minus columns s >= r
        d = xp.sum(dq, axis=-1) - xp.sum(dk, axis=-1)
        da = xp.flip(xp.cumsum(xp.flip(d, axis=-1), axis=-1), axis=-1)
        da = xp.where(w.a2 > w.alo, da, 0.0)  # a clamped decay (-inf) has none
    shape = lambda x: xp.reshape(x, batch + x.shape[1:])  # noqa: E731
    return tuple(None if x is None else shape(x) for x in (dq, dk, dlv, dlam, da))


def keep(w):
    """What the backward reads of the forward's slots ``w`` (``hierarchical.compute(keep=True)``):
    ``w`` without the inputs' views, hi_intra's ``lnum`` and the slots' ``wm`` (``O(T d_v)`` less)."""
    return types.SimpleNamespace(**dict(vars(w), q3=None, k3=None, lv3=None, lam3=None, a2=None, lnum=None, wm=None))


@functools.lru_cache(maxsize=None)
def _function():
    import torch

    class Hierarchical(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, lv, lam, a, old, chunk_size, p):
            # the forward at the backward's chunk, its slots kept for the backward (no recomputation there)
            ta = "double" if q.dtype == torch.float64 else "float"
            CH = config(ta, q.shape[-1], lv.shape[-1], chunk_size).CH
            with on_gpu(q) as (to_cp, back, ops):
                if q.dtype in (torch.bfloat16, torch.float16):  # the 16-bit tensor-core forward, float32 log y
                    xs, half = inputs(to_cp, [x.detach() for x in (q, k, lv, lam) + (() if a is None else (a,))])
                    oldc = None if old is None else tuple(to_cp(x.detach().float().contiguous())[0] for x in old)
                    y, w = _hi.compute(ops, *xs[:4], xs[4] if a is not None else None, p, oldc, CH, half, wide=True,
                                       keep=True)
                else:
                    (qc, kc, lvc, lamc), ac, oldc = _compute_inputs(to_cp, q, k, lv, lam, a, old)
                    y, w = _hi.compute(ops, qc, kc, lvc, lamc, ac, p, oldc, CH, keep=True)
                out = back(y, "")
            ctx.save_for_backward(q, k, lv, lam, a, out)
            ctx.old, ctx.chunk_size, ctx.p, ctx.kept = old, chunk_size, p, keep(w)
            return out.to(q.dtype)

        @staticmethod
        def backward(ctx, do):
            q, k, lv, lam, a, out = ctx.saved_tensors
            with on_gpu(q) as (to_cp, back, ops):
                (qc, kc, lvc, lamc), ac, oldc = _compute_inputs(to_cp, q, k, lv, lam, a, ctx.old)
                doc = to_cp(do.detach().to(out.dtype).contiguous())[0]
                grads = backward(ops, qc, kc, lvc, lamc, ac, ctx.p, oldc, to_cp(out)[0], doc, ctx.chunk_size,
                                 q.dtype == torch.bfloat16, ctx.kept)
                ctx.kept = None  # freed (a second backward of a retained graph recomputes them)
                grads = [None if g is None else back(ops.xp.ascontiguousarray(g), "") for g in grads]
            cast = lambda g, x: None if g is None or x is None else g.to(x.dtype)  # noqa: E731
            return tuple(cast(g, x) for g, x in zip(grads, (q, k, lv, lam, a))) + (None, None, None)

    return Hierarchical


def _compute_inputs(to_cp, q, k, lv, lam, a, old):
    """CuPy float32 / float64 copies or views of the inputs (16-bit ones widened) and the state's levels."""
    import torch

    f = (lambda x: x.detach().contiguous()) if q.dtype == torch.float64 else (lambda x: x.detach().float().contiguous())  # noqa: E731
    args, _ = inputs(to_cp, [f(x) for x in (q, k, lv, lam)])
    ac = None if a is None else to_cp(f(a))[0]
    oldc = None if old is None else tuple(to_cp(f(x))[0] for x in old)
    return args, ac, oldc


def apply(q, k, lv, lam, a, old, chunk_size, p):
    """``loglinear_log_attention``'s output on CUDA torch tensors (``T >= 1``), differentiable through
    the kernels with respect to q, k, lv, lam and a (old: the incoming state's ``(m, n, S, z)``
    tensors, which must not require grad, or None)."""
    return _function().apply(q, k, lv, lam, a, old, chunk_size, p)
