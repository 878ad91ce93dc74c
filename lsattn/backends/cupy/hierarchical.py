"""Hierarchical exp-kernel attention (``loglinear_log_attention``) on the kernels of
``hierarchical.cu``: ``hi_intra`` (the pairs inside every aligned chunk, in log space, and every
chunk's summary, parallel over chunks), ``hi_merge`` (the chunk tree's merges into one exp-kernel
summary per chunk-level Fenwick slot, each stored once: one launch per depth, parallel over that
depth's chunks, sequences and 16 value columns), ``hi_snap`` (the held slots' shifts decayed to
every chunk's start) and ``hi_read`` (the reads of those slots and of the incoming state's,
parallel over (chunk, sequence, 16 value columns)).

Inputs reach the kernels in their own dtype (float32 / float64, bfloat16 / float16 read as 16-bit
patterns, computed in float32; bfloat16's ``hi_read`` products on tensor cores with split factors)
and the output is written in it. The returned state is assembled on
the host from the call's inputs with the array-API twin's own ``_advance_state`` (CuPy arrays; the
array-API layout, so a stream moves between backends). CUDA torch tensors that require grad run
the backward kernels (``hierarchical_bwd``), unless they return a state or their incoming state
requires grad (then the array-API formulation on the same device, differentiated by torch).
"""
from __future__ import annotations

import functools
import types

import array_api_compat
import numpy as np

from ..._chunktree import chunk_layout
from ...hierarchical import OP, _advance_state, _make_state
from ..._nonfinite import launch_pending
from ...state import State
from ._arrays import batch_layout, flat, inputs, on_gpu, ta_name, widen
from ._compile import SMEM_MAX, Config, _pad_dim
from .exp_kernel import _tracks_grad
from .gated_delta import chunk_slots

__all__ = ["forward", "compute", "config", "merge_levels", "BV"]

#: value columns per block of hi_merge and hi_read (HI_BV of hierarchical.cu)
BV = 16


@functools.lru_cache(maxsize=256)  # on every call's path
def config(ta, DK, DV, chunk_size=None, half=""):
    """The compiled variant: ``CH = clip(chunk_size, 16, 64)`` (default 32; a power of two), halved
    while hi_read's tiles exceed shared memory, 16-bit inputs read as they are. Products on tensor
    cores (``Config.hi_tc``) for bfloat16 (bf16 halves) and for float32 / float16 (``tc``: 3xTF32, the
    float32 bound); float64 on FFMA. A speed knob only: results do not depend on it beyond rounding."""
    CH = min(max(int(chunk_size or 32), 16), 64)
    tc = ta == "float" and half != "bf16"  # (bf16: HI_TC by its inputs' type)
    cfg = Config(ta, half, 1 << (CH.bit_length() - 1), _pad_dim(DK), _pad_dim(min(DV, 128)), tc=tc)
    while cfg.CH > 16 and max(cfg.smem(x) for x in ("hi_intra", "hi_merge", "hi_read")) > SMEM_MAX:
        cfg = Config(ta, half, cfg.CH // 2, cfg.DKP, cfg.DVP, tc=tc)
    return cfg


def compute(ops, q, k, lv, lam, a, p, old, chunk_size=None, half="", ltot=None, wide=False, keep=False, pre=None):
    """Log outputs of one call of ``T >= 1`` tokens at offset ``p``.

    q, k (..., T, d_k), lv (..., T, d_v), lam (..., T, L), a (..., T) or None: arrays of ``ops.xp``
    of one dtype (``half``: their 16-bit kind); old: the incoming state's ``(m, n, S, z)``
    (``(..., n_old, d_k)``, ``(..., n_old, d_v)``, ``(..., n_old, d_k, d_v)``, ``(..., n_old, d_k)``,
    compute dtype) or None; ltot: None, or (..., T) compute dtype, C-contiguous, given the rows' log
    den (the partials of packed streams). Returns log y (..., T, d_v) in the inputs' dtype, or with
    ``wide`` in float32 (16-bit inputs under autograd: the backward needs log y to float32 accuracy);
    ``keep``: ``(log y, slots)``, the call's :func:`slots` with its chunk ``CH`` (kept for the backward),
    and with ``wide`` log y in the inputs' dtype too, ``slots.narrow`` (the same kernel's stores: no cast).
    pre: ``hi_intra`` already launched (``hierarchical_direct.intra``, at this call's variant), or None.
    """
    xp = ops.xp
    cfg = config(ta_name(xp, xp.float32 if half else q.dtype), q.shape[-1], lv.shape[-1],
                 chunk_size or default_chunk(q.shape[-2]), half)
    w = slots(ops, cfg, q, k, lv, lam, a, p, old, pre)
    wide = bool(wide and half)
    out = xp.empty((w.BH, w.T, w.DV), dtype=xp.float32 if wide else q.dtype)
    narrow = xp.empty((w.BH, w.T, w.DV), dtype=q.dtype) if wide and keep else None
    ops.hi_read(cfg, w.q3, w.lam3, w.a2, w.lden, w.lnum, w.msnap, w.wz, w.wn, w.wS, out, w.T, w.DK, w.DV, w.L, p, w.F,
                w.n, w.n_old, w.NLC, w.alo, w.BH, ltot=None if ltot is None else xp.reshape(ltot, (w.BH, w.T)),
                wide=wide, narrow=narrow)
    out = xp.reshape(out, w.batch + (w.T, w.DV))
    if keep:
        w.CH = cfg.CH
        w.narrow = None if narrow is None else xp.reshape(narrow, w.batch + (w.T, w.DV))
        return out, w
    return out


def default_chunk(T):
    """The forward's chunk when the caller gives none: 64 from 8K tokens on (hi_intra's work per token
    grows with the chunk, hi_merge's and hi_read's shrink; H200, B=2, H=16, d=64 fp32, run i2: 1.89
    against 1.98 ms at 8K, 7.78 against 8.40 ms at 32K), 32 below (unmeasured there: the session-7
    default)."""
    return 64 if T >= 8192 else 32


def slots(ops, cfg, q, k, lv, lam, a, p, old, pre=None):
    """hi_intra, hi_merge and hi_snap of one call (arguments as :func:`compute`, ``cfg`` its variant): the
    flattened inputs (``q3, k3, lv3, lam3, a2``), the chunks' own partials (``lden (BH, T)``,
    ``lnum (BH, T, DV)``), their total decays ``gch (BH, n)``, the slots by id (``wm, wz, wn, wS``)
    and the held slots' shifts before every chunk (``msnap``), with the call's sizes, as attributes. ``pre``:
    ``hi_intra`` launched already on its buffers (``hierarchical_direct.intra``; p = 0, no incoming state), or None."""
    xp, batch, BH, ta_dtype = batch_layout(ops, q, cfg.half)
    T, DK, DV, L = q.shape[-2], q.shape[-1], lv.shape[-1], lam.shape[-1]
    lay = _layout(p, T, cfg.CH)
    F, n = lay.first_chunk, lay.n_chunks
    q3, k3, lv3, lam3, a2 = flats(xp, BH, q, k, lv, lam, a)
    alo = -_fmax(ta_dtype) / 8 / (4 * (p + T))  # hierarchical._forward's clamp
    n_old = 0 if old is None else old[0].shape[-2]
    NS, NLC = n_old + n, chunk_slots(F, n, False)
    ncb = -(-DV // BV)
    if pre is not None:
        if pre.plan.cfg != cfg or p or old is not None:
            raise AssertionError("hi_intra was launched for another variant")
        wm, wz, wn, wS, lden, lnum, gch = pre.views(xp)
    else:
        wm = xp.empty((BH, ncb, NS, DK), dtype=ta_dtype)  # slots by id: the incoming ones, then one per chunk
        wz = xp.empty((BH, ncb, NS, DK), dtype=ta_dtype)
        wn = xp.empty((BH, NS, DV), dtype=ta_dtype)
        wS = xp.empty((BH, NS, DK, DV), dtype=ta_dtype)
        if n_old:
            m0, n0, S0, z0 = (flat(xp, x, (BH,) + tuple(x.shape[len(batch):])) for x in old)
            wm[:, :, :n_old] = m0[:, None]
            wz[:, :, :n_old] = z0[:, None]
            wn[:, :n_old] = n0
            wS[:, :n_old] = S0
        lden = xp.empty((BH, T), dtype=ta_dtype)
        lnum = xp.empty((BH, T, DV), dtype=ta_dtype)
        gch = xp.empty((BH, n), dtype=ta_dtype)  # the chunks' total decays
        ops.hi_intra(cfg, q3, k3, lv3, lam3, a2, lden, lnum, wm, wz, wn, wS, gch, T, DK, DV, L, p, F, n, n_old, alo,
                     BH)
    launch_pending()  # the prologue's deferred checks, their host work beside hi_intra (the call's longest launch chain)
    gnode = xp.array(gch, copy=True)  # the slots' total decays (a chunk's own until a merge makes it more)
    for d, c0, count in merge_levels(F, n):
        ops.hi_merge(cfg, wm, wz, wn, wS, gch, gnode, DK, DV, F, n, n_old, c0, d, count, BH)
    msnap = xp.empty((BH, n, n_old + NLC, DK), dtype=ta_dtype)  # the held slots' m at every chunk's start
    ops.hi_snap(cfg, wm, gnode, msnap, DK, p, F, n, n_old, NLC, BH)
    return types.SimpleNamespace(batch=batch, BH=BH, T=T, DK=DK, DV=DV, L=L, F=F, n=n, n_old=n_old, NLC=NLC, alo=alo,
                                 q3=q3, k3=k3, lv3=lv3, lam3=lam3, a2=a2, lden=lden, lnum=lnum, gch=gch, wm=wm, wz=wz,
                                 wn=wn, wS=wS, msnap=msnap)


#: (the host's per-call work of a repeated call: looked up, not computed)
_layout = functools.lru_cache(maxsize=256)(chunk_layout)


@functools.lru_cache(maxsize=16)
def _fmax(dtype):
    return float(np.finfo(np.dtype(dtype)).max)


def flats(xp, BH, q, k, lv, lam, a):
    """The inputs as C-contiguous ``(BH, T, ..)`` arrays (``(BH, T)`` for a; None stays None)."""
    T, DK, DV, L = q.shape[-2], q.shape[-1], lv.shape[-1], lam.shape[-1]
    return (flat(xp, q, (BH, T, DK)), flat(xp, k, (BH, T, DK)), flat(xp, lv, (BH, T, DV)), flat(xp, lam, (BH, T, L)),
            None if a is None else flat(xp, a, (BH, T)))


@functools.lru_cache(maxsize=256)
def merge_levels(F, n):
    """The launches of ``hi_merge`` for chunks ``F .. F + n - 1``: ``(d, c0, count)`` per depth d >= 1
    with work, the chunks ``c = c0 + x 2^(d+1)`` (``x < count``) whose ``c + 1`` has exactly d trailing
    zeros, all but the last chunk (whose summary no chunk of the call reads); a tuple (cached)."""
    out, last = [], F + n - 2
    d = 1
    while (1 << d) - 1 <= last:
        step = 1 << (d + 1)
        c0 = (1 << d) - 1 + step * max(0, -(-(F + 1 - (1 << d)) // step))  # the first such c >= F
        if c0 <= last:
            out.append((d, c0, (last - c0) // step + 1))
        d += 1
    return tuple(out)


def forward(q, k, log_v, log_level_weights, log_decay, state, return_state, *, chunk_size=None, partial=False):
    """CuPy-kernel implementation of ``loglinear_log_attention``; the signature of
    ``lsattn.hierarchical._forward`` (validated inputs of one dtype: float32 / float64, or float16 /
    bfloat16 as the caller gave them; ``state`` may be None, its tensors float32 / float64).
    partial: the unfinished partial ``(r, den, y)`` (packed streams with states, ``lsattn._ll_packed``,
    which calls it without state): float32 / float64 inputs outside autograd on the kernels, as
    ``(log den, 1, log y)`` (``hi_read``'s ``ltot``); 16-bit inputs (whose kernels round the output to
    16 bits) and gradients through the array-API twin (in float32 for 16-bit inputs).

    Returns
    -------
    (log_y (..., T, d_v) in the inputs' dtype, State or None); the state as the array-API twin's.
    """
    if partial and state is None and not return_state and q.shape[-2] and not _tracks_grad(
            (q, k, log_v, log_level_weights, log_decay)):
        with on_gpu(q) as (to_cp, back, ops):
            xp = ops.xp
            args, half = inputs(to_cp, (q, k, log_v, log_level_weights) + (() if log_decay is None else (log_decay,)))
            if not half:
                ltot = xp.empty(tuple(q.shape[:-1]), dtype=args[0].dtype)
                out = compute(ops, *args[:4], args[4] if log_decay is not None else None, 0, None, chunk_size, "", ltot)
                return (back(ltot, ""), back(xp.ones_like(ltot), ""), back(out, "")), None
    if partial:
        from ...hierarchical import _forward

        xp = array_api_compat.array_namespace(q)
        dt = xp.float64 if q.dtype == xp.float64 else xp.float32
        args = [None if x is None else xp.astype(x, dt, copy=False) for x in (q, k, log_v, log_level_weights, log_decay)]
        return _forward(*args, state, return_state, chunk_size=chunk_size, partial=True)
    batch, T, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], log_v.shape[-1]
    p = 0 if state is None else state.offset
    names = ("m", "n", "S", "z")
    old_t = None if (state is None or p == 0) else tuple(state.tensors[x] for x in names)
    if T > 0 and _tracks_grad((q, k, log_v, log_level_weights, log_decay) + (old_t or ())):
        import torch

        from . import hierarchical_bwd

        f64 = q.dtype == torch.float64
        kernels = hierarchical_bwd.fits("double" if f64 else "float", d_k, d_v)
        if kernels and not return_state and not _tracks_grad(old_t or ()):
            return hierarchical_bwd.apply(q, k, log_v, log_level_weights, log_decay, old_t, chunk_size, p), None
        # a returned state or an incoming one that requires grad (whose gradients the kernels do not
        # compute), head dims beyond the backward's tiles: the array-API formulation on the same
        # device, differentiated by torch
        from ...hierarchical import _forward

        args = [x if (x is None or x.dtype == torch.float64) else x.float() for x in (q, k, log_v, log_level_weights, log_decay)]
        return _forward(*args, state, return_state, chunk_size=chunk_size)
    with on_gpu(q) as (to_cp, back, ops):
        xp = ops.xp
        args, half = inputs(to_cp, (q, k, log_v, log_level_weights) + (() if log_decay is None else (log_decay,)))
        a = args[4] if log_decay is not None else None
        sdtype = xp.float32 if half else args[0].dtype
        old = None if old_t is None else tuple(to_cp(x)[0] for x in old_t)
        if T == 0:
            out = back(xp.empty(batch + (0, d_v), dtype=args[0].dtype), half)
            if not return_state or state is not None:
                return out, state if return_state else None
            st = _make_state(array_api_compat.array_namespace(args[0]), 0, batch, d_k, d_v, sdtype, None, args[0])
            return out, _back_state(st, back)
        out = back(compute(ops, *args[:4], a, p, old, chunk_size, half), half)
        if not return_state:
            return out, None
        return out, _back_state(new_state(xp, args[1], args[2], a, old, p, half), back)


#: the prologue's finiteness checks made after this call's launches (``lsattn._nonfinite.Deferred``): its host work
#: no longer delays ``hi_intra`` (each timed call starts on an empty queue)
forward.defer_checks = True


def new_state(xp, k, lv, a, old, p, half=""):
    """The state after a call (``lsattn.hierarchical._advance_state`` on the CuPy arrays, 16-bit
    inputs widened to float32): k (..., T, d_k), lv (..., T, d_v), a (..., T) or None."""
    ns = array_api_compat.array_namespace(k)
    if half:
        k, lv, a = (None if x is None else widen(xp, x, half) for x in (k, lv, a))
    batch, T, d_k, d_v = tuple(k.shape[:-2]), k.shape[-2], k.shape[-1], lv.shape[-1]
    lo = -float(np.finfo(np.dtype(k.dtype)).max) / 8
    lv = xp.maximum(lv, lo)  # hierarchical._forward's clamps
    a = xp.zeros(batch + (T,), dtype=k.dtype) if a is None else xp.maximum(a, lo / (4 * (p + T)))
    levels = _advance_state(ns, k, lv, a, old, p)
    return _make_state(ns, p + T, batch, d_k, d_v, k.dtype, levels, k)


def _back_state(st, back):
    tensors = {name: back(x, "") for name, x in st.tensors.items()}
    return State(OP, st.offset, st.batch_shape, st.d_k, st.d_v, tensors["S"].dtype, tensors)
