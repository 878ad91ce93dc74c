"""Log-linear Mamba-2 (``loglinear_attention``) on the kernels of ``loglinear.cu``: the host logic
(chunk layout, the Fenwick up-sweep plan, the state bookkeeping) and the backend's implementation."""
from __future__ import annotations

import math

import numpy as np

from ..._upload import to_device
from ...state import State
from ._arrays import batch_layout, check_grid, flat, inputs, on_gpu, shared_inputs, ta_name, widen
from ._compile import DV_BLOCK, grad_fits, make_config

__all__ = ["forward", "compute", "compute_dkdv", "backward", "upsweep_plan", "packed_streams", "run_streams", "packed_hier", "run_hier"]


def compute(ops, q, k, v, a, lam, chunk_size, p, old, want_state, half="", dots=None, tmap=None):
    """Log-linear Mamba-2 over one call at offset ``p``.

    q, k (..., T, d_k), v (..., T, d_v), a (..., T), lam (..., T, L): arrays of ``ops.xp``, float32
    / float64, float16 (``half="f16"``) or bfloat16 stored as 16-bit integers (``half="bf16"``);
    old: (..., n_old, d_k, d_v) float32 / float64, or None.
    Returns (out (..., T, d_v), levels (..., bit_length(p + T), d_k, d_v) or None).

    dots: the backward's dq pass (FFMA kernels, any input kind, ``d_v <= 128``): ``(X, Y)``, both (..., T, d_v);
    then ``levels`` is replaced by ``dl`` (..., T, L): ``dl[t, l] = sum over s at level l of
    exp(a_{s+1} + ... + a_t) (q_t . k_s) (X_t . Y_s)`` (see ``loglinear_bwd.cu``).

    tmap: packed segments (``p = 0``, no state): the ``lsattn._varlen.TokenMap`` of the layout
    (``T_pad = tmap.size`` positions); the kernels run over its T_pad positions, reading the inputs'
    rows through it (segment starts with a -inf log decay), and write the outputs of the packed rows.
    """
    xp, batch, BH, ta_dtype = batch_layout(ops, q, half)
    T, DK, DV, L = q.shape[-2], q.shape[-1], v.shape[-1], lam.shape[-1]
    if dots is not None:
        return _dq_pass(ops, xp, batch, BH, ta_dtype, q, k, v, a, lam, chunk_size, p, old, dots, half)
    if DV > DV_BLOCK:  # independent column blocks of v (and of the state)
        outs, levs = [], []
        for c0 in range(0, DV, DV_BLOCK):
            c1 = min(DV, c0 + DV_BLOCK)
            o, lv = compute(ops, q, k, v[..., c0:c1], a, lam, chunk_size, p,
                                None if old is None else xp.ascontiguousarray(old[..., c0:c1]), want_state, half, tmap=tmap)
            outs.append(o)
            levs.append(lv)
        return xp.concatenate(outs, axis=-1), (xp.concatenate(levs, axis=-1) if want_state else None)

    cfg = make_config(ta_name(xp, ta_dtype), DK, DV, chunk_size, half)
    # broadcast inputs (grouped-query heads) are read through a row map, never copied
    (q3, k3, v3, a2, l3), rows = shared_inputs(xp, (q, k, v, a, lam), (2, 2, 2, 1, 2))
    n_old = 0 if old is None else old.shape[-3]
    old4 = xp.zeros((1,), dtype=ta_dtype) if n_old == 0 else flat(xp, old, (BH, n_old, DK, DV))
    out = xp.empty((BH, T, DV), dtype=q.dtype)
    pn = p + T
    h, Lnew = (p ^ pn).bit_length(), pn.bit_length()
    if tmap is not None:  # packed segments: the kernels run over the laid-out positions
        Tc, tm = tmap.size, ops.token_map(tmap)
        F, n, H, gsum = _fenwick_blocks(ops, cfg, xp, ta_dtype, k3, v3, a2, Tc, DK, DV, 0, BH, rows=rows, tmap=tm, Ts=T)
        ops.ll_output(cfg, q3, k3, v3, a2, l3, H, gsum, old4, out, Tc, DK, DV, L, 0, F, n, 0, BH, rows=rows, tmap=tm, Ts=T)
        return xp.reshape(out, batch + (T, DV)), None
    if T == 1:  # decoding step
        newlev = xp.empty((BH, Lnew, DK, DV), dtype=ta_dtype)
        ops.ll_decode(cfg, q3, k3, v3, a2, l3, old4, newlev, out, DK, DV, L, p, n_old, h, Lnew, BH, rows=rows)
        levels = xp.reshape(newlev, batch + (Lnew, DK, DV)) if want_state else None
        return xp.reshape(out, batch + (T, DV)), levels

    F, n, H, gsum = _fenwick_blocks(ops, cfg, xp, ta_dtype, k3, v3, a2, T, DK, DV, p, BH, rows=rows)
    ops.ll_output(cfg, q3, k3, v3, a2, l3, H, gsum, old4, out, T, DK, DV, L, p, F, n, n_old, BH, rows=rows)
    levels = None
    if want_state:
        newlev = xp.empty((BH, Lnew, DK, DV), dtype=ta_dtype)
        if Lnew:
            ops.ll_new_state(cfg, k3, v3, a2, H, gsum, old4, newlev, T, DK, DV, p, F, n, n_old, h, Lnew, BH, rows=rows)
        levels = xp.reshape(newlev, batch + (Lnew, DK, DV))
    return xp.reshape(out, batch + (T, DV)), levels


def _fenwick_blocks(ops, cfg, xp, ta_dtype, k3, v3, a2, T, DK, DV, p, BH, rows=None, tmap=None, Ts=None):
    """Chunk summaries of one call of ``T`` positions, up-swept into Fenwick blocks: (F, n,
    H (BH, n, DK, DV), gsum (BH, n)). rows: the inputs' row map (``shared_inputs``) or None; tmap,
    Ts: the token map (device) and the inputs' rows per sequence, or None."""
    F = p // cfg.CH
    n = (p + T - 1) // cfg.CH - F + 1
    H = xp.empty((BH, n, DK, DV), dtype=ta_dtype)
    gsum = xp.empty((BH, n), dtype=ta_dtype)
    ops.ll_chunk_states(cfg, k3, v3, a2, H, gsum, T, DK, DV, p, F, n, BH, rows=rows, tmap=tmap, Ts=Ts)
    for stride, step, j0, count in upsweep_plan(F, n):
        ops.ll_upsweep(cfg, H, gsum, DK, DV, n, j0, step, stride, count, BH)
    return F, n, H, gsum


def _dq_pass(ops, xp, batch, BH, ta_dtype, q, k, v, a, lam, chunk_size, p, old, dots, half):
    T, DK, DV, L = q.shape[-2], q.shape[-1], v.shape[-1], lam.shape[-1]
    cfg = make_config(ta_name(xp, ta_dtype), DK, DV, chunk_size, half, grad="loglinear")
    q3, k3, v3 = flat(xp, q, (BH, T, DK)), flat(xp, k, (BH, T, DK)), flat(xp, v, (BH, T, DV))
    a2, l3 = flat(xp, a, (BH, T)), flat(xp, lam, (BH, T, L))
    X3, Y3 = (flat(xp, x, (BH, T, DV)) for x in dots)
    n_old = 0 if old is None else old.shape[-3]
    old4 = xp.zeros((1,), dtype=ta_dtype) if n_old == 0 else flat(xp, old, (BH, n_old, DK, DV))
    out = xp.empty((BH, T, DV), dtype=q.dtype)
    dl = xp.empty((BH, T, L), dtype=ta_dtype)
    F, n, H, gsum = _fenwick_blocks(ops, cfg, xp, ta_dtype, k3, v3, a2, T, DK, DV, p, BH)
    ops.ll_output_dl(cfg, q3, k3, v3, a2, l3, H, gsum, old4, out, T, DK, DV, L, p, F, n, n_old, X3, Y3, dl, BH)
    return xp.reshape(out, batch + (T, DV)), xp.reshape(dl, batch + (T, L))


def compute_dkdv(ops, q, k, v, do, a, lam, chunk_size, p, half=""):
    """dk (..., T, d_k) and dv (..., T, d_v) of one call at offset ``p`` for the output gradient
    ``do`` (..., T, d_v): the keys' part of the backward (``loglinear_bwd.cu``), in the inputs' kind
    (``half`` as in ``compute``)."""
    xp, batch, BH, ta_dtype = batch_layout(ops, q, half)
    T, DK, DV, L = q.shape[-2], q.shape[-1], v.shape[-1], lam.shape[-1]
    cfg = make_config(ta_name(xp, ta_dtype), DK, DV, chunk_size, half, grad="loglinear")
    q3, k3, v3, do3 = (flat(xp, x, (BH, T, x.shape[-1])) for x in (q, k, v, do))
    a2, l3 = flat(xp, a, (BH, T)), flat(xp, lam, (BH, T, L))
    CH = cfg.CH
    F = p // CH
    n = (p + T - 1) // CH - F + 1
    G = xp.empty((BH, n, DK, DV), dtype=ta_dtype)  # slot j: the right block starting at chunk F + j (j >= 1)
    gtot = xp.empty((BH, n), dtype=ta_dtype)
    if n > 1:
        ops.ll_bw_blocks(cfg, q3, do3, a2, l3, G, gtot, T, DK, DV, L, p, F, n, BH)
    dk = xp.empty((BH, T, DK), dtype=q.dtype)
    dv = xp.empty((BH, T, DV), dtype=q.dtype)
    ops.ll_bw_dkdv(cfg, q3, k3, v3, do3, a2, l3, G, gtot, dk, dv, T, DK, DV, L, p, F, n, BH)
    return xp.reshape(dk, batch + (T, DK)), xp.reshape(dv, batch + (T, DV))


def _torch():
    import torch

    return torch


def _tracks_grad(q, k, v, a, lam, state):
    """True for torch tensors when autograd records and some input (or state tensor) requires grad."""
    xs = [q, k, v, a, lam] + ([] if state is None else list(state.tensors.values()))
    if not any(getattr(x, "requires_grad", False) for x in xs):
        return False
    return _torch().is_grad_enabled()


def backward(ops, q, k, v, a, lam, old, out, do, chunk_size, p, want_old, half=""):
    """Gradients of one call at offset ``p`` (host logic of the backward; ``_autograd.py`` wraps it).

    Arrays of ``ops.xp``: the call's inputs, its output ``out`` and the output gradient ``do``
    (..., T, d_v), all of one kind (float32 / float64, or 16-bit as ``half`` says, read as such by
    the kernels, which compute in float32); ``old`` (..., n_old, d_k, d_v) float32 / float64 or
    None. Returns (dq, dk, dv in the inputs' kind; da, dl, dold in the compute type), dold None
    unless ``want_old``:

    - dq and dl: the forward's kernels on (dO, v, k), the old levels transposed (``compute(dots=)``);
    - dk, dv: ``compute_dkdv``;
    - ``da_r = sum_{t >= r} (dO_t . o_t - k_t . dk_t)``: every weight with ``s < r <= t`` holds
      ``a_r``; row sums of ``dO_t . (dW o v)`` are ``dO_t . o_t``, column sums ``k_s . dk_s``;
    - ``dOld_l = sum_t lambda[t, max(l, bit_length((p + t) XOR p))] exp(a_p + ... + a_t) q_t dO_t^T``.
    """
    xp = ops.xp
    w = (lambda x: widen(xp, x, half)) if half else (lambda x: x)  # noqa: E731  (16-bit: float32 copies, one at a time)
    oldt = None if old is None else xp.ascontiguousarray(xp.swapaxes(old, -1, -2))
    dq, dl = compute(ops, do, v, k, a, lam, chunk_size, p, oldt, False, half, dots=(q, k))
    dk, dv = compute_dkdv(ops, q, k, v, do, a, lam, chunk_size, p, half)
    r = xp.sum(w(do) * w(out), axis=-1) - xp.sum(w(k) * w(dk), axis=-1)
    da = xp.flip(xp.cumsum(xp.flip(r, axis=-1), axis=-1), axis=-1)
    dold = None
    if old is not None and want_old:
        dold = _state_grad(xp, w(q), w(a), w(lam), w(do), p, old.shape[-3])
    return dq, dk, dv, da, dl, dold


def _state_grad(xp, q, a, lam, do, p, n_old):
    """dOld (..., n_old, d_k, d_v): old level l (occupied where bit l-1 of p is set) is read by row
    t at level max(l, bit_length((p + t) XOR p)), decayed by a_p + ... + a_t (a prefix of the call:
    summed over its own stretch)."""
    T, L = q.shape[-2], lam.shape[-1]
    x = xp.arange(p, p + T, dtype=xp.int64) ^ p
    blen = xp.zeros_like(x)
    for b in range((p + T).bit_length() + 1):
        blen = xp.where((x >> b) > 0, b + 1, blen)
    decay = xp.exp(xp.cumsum(a, axis=-1))
    out = xp.zeros(q.shape[:-2] + (n_old, q.shape[-1], do.shape[-1]), dtype=q.dtype)
    for jl in range(n_old):
        if (p >> jl) & 1:
            lev = xp.maximum(blen, jl + 1)
            idx = xp.broadcast_to(xp.minimum(lev, L - 1), lam.shape[:-1])[..., None]
            w = xp.where(lev < L, xp.take_along_axis(lam, idx, axis=-1)[..., 0], 0.0) * decay
            out[..., jl, :, :] = xp.swapaxes(q * w[..., None], -1, -2) @ do
    return out


def upsweep_plan(F, n):
    """Per chunk level: (stride, step, first slot, slot count) of the in-place Fenwick up-sweep over
    the absolute chunk indices F .. F + n - 1: slots j with (F + j + 1) % step == 0 and j >= stride."""
    plan = []
    stride = 1
    while stride < n:
        step = 2 * stride
        j0 = (-(F + 1)) % step
        while j0 < stride:
            j0 += step
        if j0 < n:
            plan.append((stride, step, j0, (n - 1 - j0) // step + 1))
        stride = step
    return plan


def forward(q, k, v, log_decay, level_weights, chunk_size, state, return_state, *, token_map=None):
    """CuPy-kernel implementation of ``loglinear_attention``; the signature of
    ``lsattn.loglinear._forward`` (validated inputs of one dtype: float32 / float64, or float16 /
    bfloat16 as the caller gave them; ``state`` may be None; its tensors float32 / float64).

    token_map: packed segments (``LAYOUT_OPS``; no state, no gradient): the ``lsattn._varlen.TokenMap``
    of the layout, built on the device and read by the kernels instead of gathered copies of the inputs.

    Returns
    -------
    (out (..., T, d_v) in the inputs' dtype, State or None); the state's ``tensors["levels"]`` as
    in the array-API twin.
    """
    batch, T, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], v.shape[-1]
    p = 0 if state is None else state.offset
    if token_map is not None and (state is not None or return_state or _tracks_grad(q, k, v, log_decay, level_weights, None)):
        raise ValueError("token_map= is for packed calls without state and without gradients")
    if T > 0 and _tracks_grad(q, k, v, log_decay, level_weights, state):
        # the backward kernels cover the output and the incoming state; a returned state (whose
        # gradient they do not compute) or head dims beyond their tiles: the array-API
        # formulation on the same device, differentiated by torch
        f64 = q.dtype == _torch().float64
        if return_state or not grad_fits("double" if f64 else "float", d_k, d_v):
            from ...loglinear import _forward

            args = [x if f64 else x.float() for x in (q, k, v, log_decay, level_weights)]  # half: in float32
            return _forward(*args, chunk_size, state, return_state)
        from ._autograd import apply_loglinear

        old = None if (state is None or p == 0) else state.tensors["levels"]
        return apply_loglinear(q, k, v, log_decay, level_weights, old, chunk_size, p), None
    with on_gpu(q) as (to_cp, back, ops):
        xp = ops.xp
        args, half = inputs(to_cp, (q, k, v, log_decay, level_weights))
        sdtype = xp.float32 if half else args[0].dtype
        if T == 0:
            out = back(xp.empty(batch + (0, d_v), dtype=args[0].dtype), half)
            if not return_state or state is not None:
                return out, state if return_state else None
            levels = back(xp.zeros(batch + (0, d_k, d_v), dtype=sdtype), "")  # the caller's dtype object
            return out, State("loglinear_attention", 0, batch, d_k, d_v, levels.dtype, {"levels": levels})
        old = None if (state is None or p == 0) else to_cp(state.tensors["levels"])[0]
        out, levels = compute(ops, *args, chunk_size, p, old, return_state, half, tmap=token_map)
        out = back(out, half)
        if not return_state:
            return out, None
        levels = back(levels, "")
        return out, State("loglinear_attention", p + T, batch, d_k, d_v, levels.dtype, {"levels": levels})


#: tokens per block of ``ll_pk_read`` (loglinear_streams.cu's PK_TILE)
PK_TILE = 64


def packed_streams(out, x, a, lam, old, y, v, tot, seg, rng, L_new, want_state):
    """Parts 2 and 3 of ``lsattn._ll_packed`` (packed streams with states of ``loglinear_attention``
    and ``loglinear_gated_delta``) in two launches of ``loglinear_streams.cu``.

    Arrays of the caller (CuPy, CUDA torch), the compute dtype, batch axes ``(...)`` of BH sequences:
    out (..., T, d_v) the new tokens among themselves, to which the reads of the old slots are added
    IN PLACE (``_ll_packed``'s own array); x (..., T, d_k) the queries; a (..., T) the log decays
    (``loglinear_attention``: the kernels take the segments' decay sums) or None (Gated DeltaNet: x,
    y, tot carry the transitions); lam (..., T, L); old (..., N, L_old, d_k, d_v) or None; y (..., T,
    d_k) the keys; v (..., T, d_v); tot (..., N, d_k, d_k) or None (with ``a``). seg: host int64 (4, N)
    per stream its first packed token, new tokens, offset and ``h``; rng: host int64 (2, N L_new) the
    first packed token and the count of each new slot's new tokens (``loglinear_streams.cu``).
    Returns ``(out, levels (..., N, L_new, d_k, d_v) or None)``."""
    with on_gpu(out) as (to_cp, back, ops):
        cp = ops.xp
        o, *rest = (None if z is None else to_cp(z)[0] for z in (out, x, a, lam, old, y, v, tot))
        res, lev = run_streams(ops, cp, o, *rest, seg, rng, L_new, want_state, lambda h: to_device(cp, h, o))
        res = out if res.data.ptr == o.data.ptr else back(res, "")  # out was contiguous: updated in place
        return res, (None if lev is None else back(lev, ""))


def _tables(seg, rng, streams, upload):
    """The tiles of ``PK_TILE`` new tokens of the streams where ``streams`` (bool (N,)) holds, (2, ntiles)
    host; and ``seg``, the tiles, ``rng`` on the device in one upload."""
    idx = np.flatnonzero(streams)
    per = -(-seg[1][idx] // PK_TILE)
    which = np.repeat(idx, per)
    tiles = np.stack([which, seg[0][which] + PK_TILE * (np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per))])
    dev = upload(np.concatenate([seg.reshape(-1), tiles.reshape(-1), rng.reshape(-1)]).astype(np.int64))
    return tiles, (dev[:seg.size], dev[seg.size:seg.size + tiles.size], dev[seg.size + tiles.size:])


def run_streams(ops, xp, out, x, a, lam, old, y, v, tot, seg, rng, L_new, want_state, upload):
    """:func:`packed_streams` on arrays of ``xp`` (CuPy; the CPU emulation's tests: NumPy) launched
    by ``ops``; ``upload``: host int64 -> ``xp`` on the arrays' device. Returns ``(out, levels)``."""
    batch, T, DV = tuple(out.shape[:-2]), out.shape[-2], out.shape[-1]
    BH, DK, N = math.prod(batch), x.shape[-1] if x is not None else y.shape[-1], seg.shape[1]
    check_grid(BH)
    cfg = make_config(ta_name(xp, out.dtype), DK, min(DV, DV_BLOCK))
    tiles, (sg, tl, rg) = _tables(seg, rng, (seg[2] > 0) & (seg[1] > 0), upload)  # tiles: streams that read a state

    def c(z, shape):  # C-contiguous (a copy only where the caller's is not)
        return None if z is None else flat(xp, z, shape)

    L_old = 0 if old is None else old.shape[-3]
    o3, a2 = c(out, (BH, T, DV)), c(a, (BH, T))
    if tiles.shape[1] and L_old:
        ops.ll_pk_read(cfg, c(x, (BH, T, DK)), a2, c(lam, (BH, T, lam.shape[-1])), c(old, (BH, N, L_old, DK, DV)), o3, sg,
                       tl, T, DK, DV, lam.shape[-1], N, L_old, tiles.shape[1], BH)
    lev = None
    if want_state:
        lev = xp.empty((BH, N, L_new, DK, DV), dtype=out.dtype)
        if N * L_new:
            ops.ll_pk_state(cfg, c(y, (BH, T, DK)), c(v, (BH, T, DV)), a2, c(tot, (BH, N, DK, DK)),
                            c(old, (BH, N, L_old, DK, DV)) if L_old else None, lev, sg, rg, T, DK, DV, N, L_old, L_new, BH)
        lev = xp.reshape(lev, batch + (N, L_new, DK, DV))
    return xp.reshape(o3, batch + (T, DV)), lev


def packed_hier(part, q, k, lv, lam, a, old, seg, rng, L_new, want_state):
    """Parts 2 and 3 of ``lsattn._ll_packed`` for ``loglinear_log_attention`` (two launches of
    ``loglinear_streams.cu``): arrays of the caller (CuPy, CUDA torch), the compute dtype. part: the
    partial ``(r (..., T), den (..., T), y (..., T, d_v))`` of the new tokens among themselves; q, k
    (..., T, d_k), lv (..., T, d_v) log values, lam (..., T, L) log level weights, a (..., T) log decays
    or None; old: the incoming slots ``(m, n, S, z)`` (..., N, L_old, ...) or None; seg, rng as in
    :func:`packed_streams`. Returns ``(log_y (..., T, d_v), (m, n, S, z) (..., N, L_new, ...) or None)``."""
    with on_gpu(q) as (to_cp, back, ops):
        cp = ops.xp
        cv = lambda z: None if z is None else to_cp(z)[0]  # noqa: E731
        q = cv(q)
        out, new = run_hier(ops, cp, tuple(cv(x) for x in part), q, *(cv(x) for x in (k, lv, lam, a)),
                            None if old is None else tuple(cv(x) for x in old), seg, rng, L_new, want_state,
                            lambda h: to_device(cp, h, q))
        return back(out, ""), (None if new is None else tuple(back(x, "") for x in new))


def run_hier(ops, xp, part, q, k, lv, lam, a, old, seg, rng, L_new, want_state, upload):
    """:func:`packed_hier` on arrays of ``xp`` (as :func:`run_streams`)."""
    batch, T, DK, DV = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], lv.shape[-1]
    BH, N, L = math.prod(batch), seg.shape[1], lam.shape[-1]
    check_grid(BH)
    dt = part[2].dtype
    cfg = make_config(ta_name(xp, dt), DK, min(DV, DV_BLOCK))
    tiles, (sg, tl, rg) = _tables(seg, rng, seg[1] > 0, upload)  # every stream with new tokens: its outputs
    L_old = 0 if old is None else old[0].shape[-2]
    tails = ((DK,), (DV,), (DK, DV), (DK,))
    olds = None if not L_old else tuple(flat(xp, x, (BH, N, L_old) + t) for x, t in zip(old, tails))
    r, den, y = part
    out = xp.empty((BH, T, DV), dtype=dt)
    ops.hi_pk_read(cfg, flat(xp, q, (BH, T, DK)), None if a is None else flat(xp, a, (BH, T)), flat(xp, lam, (BH, T, L)),
                   olds, (flat(xp, r, (BH, T)), flat(xp, den, (BH, T)), flat(xp, y, (BH, T, DV))), out, sg, tl, T, DK, DV,
                   L, N, L_old, tiles.shape[1], BH)
    out = xp.reshape(out, batch + (T, DV))
    if not want_state:
        return out, None
    new = tuple(xp.empty((BH, N, L_new) + t, dtype=dt) for t in tails)
    if N * L_new:
        ops.hi_pk_state(cfg, flat(xp, k, (BH, T, DK)), flat(xp, lv, (BH, T, DV)), None if a is None else flat(xp, a, (BH, T)),
                        olds, new, sg, rg, T, DK, DV, N, L_old, L_new, BH)
    return out, tuple(xp.reshape(x, batch + (N, L_new) + t) for x, t in zip(new, tails))
