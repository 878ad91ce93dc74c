"""Exp-kernel attention (``exp_kernel_attention``, and ``log_attention`` through the kernels' LOGV
mode) on the kernels of ``exp_kernel.cu``: the host logic (chunk summaries, the two-pass scan, the
output read; decoding steps), the backward's (``exp_kernel_bwd.cu``) and the backend's
implementations."""
from __future__ import annotations

import numpy as np

from ...state import State
from ..._upload import to_device
from ...exp_kernel import merge
from ._arrays import batch_layout, flat, inputs, narrow, on_gpu, shared_inputs, ta_name, widen
from ._compile import DV_BLOCK, grad_fits, make_config

__all__ = ["forward", "log_forward", "compute", "backward", "backward_noncausal"]


def ex_capv(dtype):
    """The cap of the ``log_attention`` backward's exponents ``lv - o`` (``exp_kernel_bwd.cu``'s
    ``ex_capv``, the tensor-core kernels' too): 640 in float64, 80 in float32, where pair factors
    ``e^(lv_s - o_t) <= 1 / P(t,s)`` are exact for weights ``P >= e^-80`` and 128 terms of ``e^80`` stay
    below ``FLT_MAX = e^88.7``."""
    return 640.0 if np.dtype(dtype) == np.float64 else 80.0


#: ``exp_kernel_bwd.cu``'s ``FX_LIM``: the float32 / float64 LOGV backward takes the pair factors
#: ``e^(lv_s - o_t)`` as ``e^(lv_s - nn) e^(nn - o_t)`` (nn the chunk's column maximum of the log values) on the
#: rows where every ``nn - o_t`` with ``g_t != 0`` is at most ``min(FX_LIM, row cap)``; the other rows per pair.
FX_LIM = 40.0


def row_caps(xp, g):
    """Each row's cap of the terms ``g_tj e^x`` (``exp_kernel_bwd.cu``'s ``logv_row_caps``):
    ``ex_capv - max(0, log max_j |g_tj|)``, so that each term is at most ``e^ex_capv``. g (..., T, d_v)
    -> (..., T, 1)."""
    return ex_capv(g.dtype) - xp.log(xp.maximum(xp.max(xp.abs(g), axis=-1, keepdims=True), 1.0))


def col_scale(xp, x):
    """``log max_i |x_ij|`` over the d_k axis (-2) of summaries x (..., d_k, d_v) -> (..., 1, d_v), 0 for a
    zero column (``exp_kernel_bwd.cu``'s ``logv_cols``): ``x e^-scale`` is at most 1, and the scale
    joins a capped exponent, where it is exact up to the cap."""
    m = xp.max(xp.abs(x), axis=-2, keepdims=True)
    return xp.where(m > 0, xp.log(xp.where(m > 0, m, 1.0)), 0.0)


def compute(ops, q, k, v, causal, init, want_state, chunk_size=None, half="", logv=False, out_f32=False, segs=None):
    """Exp-kernel attention. q (..., Tq, d_k), k (..., Tk, d_k), v (..., Tk, d_v) (16-bit inputs as
    in :func:`lsattn.backends.cupy.loglinear.compute`; non-causal calls take none; broadcast batch views
    are read through the kernels' row map, not copied); init: (m, S, z) of the incoming state or None.
    ``logv``: ``log_attention`` (v holds log values, the output is log y; the kernels' LOGV mode),
    whose states are (m, S, z, n) with n (..., d_v) the per-column value shift. ``out_f32`` (bf16 causal
    calls on the tensor-core kernels): the output in float32 (``ek_output_tc5f``; the log output that
    ``log_attention``'s backward reads).
    ``segs``: None, or packed segments (causal; ``(starts, tok)``: the offsets (N + 1,) int64 on the
    host and :meth:`~lsattn.backends.cupy._compile.CupyOps.seg_tokens` of them): each its own stream,
    init and the returned state with an N axis after the batch axes (``exp_kernel.cu``'s segment masks,
    the states by :func:`_segment_states`).
    Returns (out (..., Tq, d_v), (m, S, z) / (m, S, z, n) or None)."""
    xp, batch, BH, ta_dtype = batch_layout(ops, q, half)
    Tq, Tk, DK, DV = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    if DV > DV_BLOCK:  # independent column blocks: m, z shared, S (and n) split by columns
        cols = lambda x, c0, c1: x[..., c0:c1]  # noqa: E731  (views: flattened below, broadcasts stay shared)
        outs, parts, st = [], [], None
        for c0 in range(0, DV, DV_BLOCK):
            c1 = min(DV, c0 + DV_BLOCK)
            sub = None if init is None else (init[0], cols(init[1], c0, c1), init[2]) + tuple(cols(x, c0, c1) for x in init[3:])
            o, st = compute(ops, q, k, cols(v, c0, c1), causal, sub, want_state, chunk_size, half, logv, out_f32, segs)
            outs.append(o)
            parts.append(st)
        if want_state:
            split = [xp.concatenate([p[i] for p in parts], axis=-1) for i in range(1, len(st), 2)]  # S (, n)
            st = (st[0], split[0], st[2]) + tuple(split[1:])
        return xp.concatenate(outs, axis=-1), st if want_state else None

    cfg = make_config(ta_name(xp, ta_dtype), DK, DV, chunk_size, half, logv=logv)
    # broadcast inputs (grouped-query heads) are read through a row map, never copied
    (q3, k3, v3), rows = shared_inputs(xp, (q, k, v), (2, 2, 2))
    N = 1 if segs is None else segs[0].shape[0] - 1
    R = BH * N  # rows of the incoming state (packed: one per segment)
    tok = None if segs is None else segs[1]
    decode = causal and Tq == 1 and not logv and segs is None
    n0 = None if init is None or not logv else flat(xp, init[3], (R, DV))
    if init is None:
        if decode:  # the decoding kernel reads a state: the one before any token
            lo = -float(np.finfo(np.float64 if cfg.ta == "double" else np.float32).max) / 8
            m0 = xp.full((BH, DK), lo, dtype=ta_dtype)
            S0 = xp.zeros((BH, DK, DV), dtype=ta_dtype)
            z0 = xp.zeros((BH, DK), dtype=ta_dtype)
        else:
            m0 = S0 = z0 = None
    else:
        m0, S0, z0 = flat(xp, init[0], (R, DK)), flat(xp, init[1], (R, DK, DV)), flat(xp, init[2], (R, DK))
    out_f32 = out_f32 and causal and logv and cfg.kernel("ek_output_f32")[0] != "ek_output_f32"
    out = xp.empty((BH, Tq, DV), dtype=xp.float32 if out_f32 else q.dtype)
    m_out = xp.empty((BH, DK), dtype=ta_dtype)
    S_out = xp.empty((BH, DK, DV), dtype=ta_dtype)
    z_out = xp.empty((BH, DK), dtype=ta_dtype)

    n_out = xp.empty((BH, DV), dtype=ta_dtype) if logv else None

    if decode:  # decoding step (log_attention: one token is one chunk)
        ops.ek_decode(cfg, q3, k3, v3, m0, S0, z0, m_out, S_out, z_out, out, DK, DV, BH, rows=rows)
    else:
        n = -(-Tk // cfg.CH)
        mk = xp.empty((BH, n, DK), dtype=ta_dtype)
        # per-chunk summaries: compute dtype, or bf16 (uint16 storage) in the v5 bf16 path
        S = xp.empty((BH, n, DK, DV), dtype=xp.uint16 if cfg.kernel("ek_chunk")[0].endswith("tc5") else ta_dtype)
        z = xp.empty((BH, n, DK), dtype=ta_dtype)
        m_in = xp.empty((BH, n, DK), dtype=ta_dtype)
        nc = n_in = vshift = None
        if logv:  # the chunks' column maxima of log v, then the column shift entering every chunk
            nc, n_in = xp.empty((BH, n, DV), dtype=ta_dtype), xp.empty((BH, n, DV), dtype=ta_dtype)
            vshift = (nc, n0, n_in, n_out)
        ops.ek_chunk(cfg, k3, v3, mk, S, z, Tk, DK, DV, n, BH, nc, rows=rows, tok=tok)
        ops.ek_scan(cfg, mk, S, z, m0, S0, z0, m_in, m_out, S_out, z_out, DK, DV, n, BH, vshift,
                    segs=None if tok is None else (tok, Tk, N))
        if causal:
            f32 = {"name": "ek_output_f32"} if out_f32 else {}
            if tok is not None:  # packed segments: each row's own stream; incoming states read by the exact rows
                f32.update(tok=tok, nseg=N, init=None if m0 is None else (m0, S0, z0) + ((n0,) if logv else ()))
            ops.ek_output(cfg, q3, k3, v3, m_in, S, z, out, Tq, Tk, DK, DV, n, True, BH, n_in, rows=rows, **f32)
            if want_state and tok is not None:
                st = _segment_states(xp, cfg, k3, v3, rows, half, (m_in, n_in, S, z),
                                     None if m0 is None else (m0, n0, S0, z0), segs[0], BH)
                return xp.reshape(out, batch + (Tq, DV)), tuple(xp.reshape(x, batch + (N,) + x.shape[2:]) for x in st)
        elif Tq > 0:
            if half:
                raise NotImplementedError("non-causal calls take float32 / float64 inputs")
            one = lambda x: None if x is None else xp.reshape(x, (BH, 1) + x.shape[1:])  # noqa: E731  the final summary as 1 'chunk'
            ops.ek_output(cfg, q3, k3, v3, one(m_out), one(S_out), one(z_out), out, Tq, Tk, DK, DV, 1, False, BH,
                          one(n_out), rows=rows)
    state = None
    if want_state:
        state = (xp.reshape(m_out, batch + (DK,)), xp.reshape(S_out, batch + (DK, DV)), xp.reshape(z_out, batch + (DK,)))
        if logv:
            state += (xp.reshape(n_out, batch + (DV,)),)
    return xp.reshape(out, batch + (Tq, DV)), state


def _segment_states(xp, cfg, k3, v3, rows, half, entering, init, starts, BH):
    """The state of every packed segment after its last token (``compute``'s ``segs``): the summary
    entering that token's chunk (when the segment started before it; else the segment's incoming
    state ``init`` or none) merged with the segment's keys in that chunk (at most ``CH``), gathered
    as (BH, segments, rows) with a mask, in the compute dtype.

    k3, v3 (B', T, d) as the kernels read them (``rows``: their row of every sequence, or None);
    entering: (m_in, n_in or None, S, z) after ``ek_scan`` (BH, n, ...) (S possibly bf16 patterns);
    init: (m0, n0 or None, S0, z0) (BH N, ...) or None. Returns (m, S, z[, n]) (BH, N, ...)."""
    ta = xp.float32 if half else k3.dtype
    lo = -float(np.finfo(np.dtype(ta)).max) / 8
    logv = entering[1] is not None
    lens = np.diff(starts)
    N, CH = lens.shape[0], cfg.CH
    DK, DV = k3.shape[-1], v3.shape[-1]
    m = xp.full((BH, N, DK), lo, dtype=ta)  # segments of length 0: their incoming state, or no keys
    S, z = xp.zeros((BH, N, DK, DV), dtype=ta), xp.zeros((BH, N, DK), dtype=ta)
    nv = xp.full((BH, N, DV), lo, dtype=ta) if logv else None
    if init is not None:
        m, S, z = (xp.reshape(x, y.shape).astype(ta) for x, y in zip((init[0], init[2], init[3]), (m, S, z)))
        nv = xp.reshape(init[1], nv.shape).astype(ta) if logv else None
    g = np.nonzero(lens > 0)[0]
    if g.size == 0:
        return (m, S, z) + ((nv,) if logv else ())
    last = starts[1:][g] - 1
    c = last // CH
    first = np.maximum(starts[:-1][g], c * CH)  # the segment's keys in its last chunk: first .. last
    W = int((last - first).max()) + 1
    pos = first[:, None] + np.arange(W)[None, :]  # (M, W)
    keep = pos <= last[:, None]
    idx = to_device(xp, np.minimum(pos, last[:, None]).reshape(-1), k3)
    wide = lambda x: (widen(xp, x, half) if half else x.astype(ta))  # noqa: E731

    def rows_of(x, i):  # (B', T, d) -> (BH, M, W, d) at the positions
        y = xp.take(x, idx, axis=1)
        y = y if rows is None else y[rows[i]]
        return wide(xp.reshape(y, (BH, g.size, W, x.shape[-1])))

    keep_d = to_device(xp, keep, k3)[None, :, :, None]
    kt = xp.where(keep_d, rows_of(k3, 1), lo)
    mt = kt.max(axis=2)  # (BH, M, DK)
    E = xp.where(keep_d, xp.exp(kt - mt[:, :, None, :]), 0)
    vt = rows_of(v3, 2)
    nt = None
    if logv:  # the column shift of the segment's values in the chunk (-inf at the stand-in)
        vt = xp.where(keep_d, xp.maximum(vt, lo), lo)
        nt = vt.max(axis=2)
        vt = xp.exp(vt - nt[:, :, None, :])
    St, zt = xp.swapaxes(E, -1, -2) @ vt, E.sum(axis=2)
    # the head: the summary entering the chunk where the segment started before it
    before = to_device(xp, starts[:-1][g] < c * CH, k3)[None, :, None]
    cd = to_device(xp, c, k3)
    gd = to_device(xp, g, k3)
    m_in, n_in, S_in, z_in = entering
    Sh = xp.take(S_in, cd, axis=1)
    Sh = widen(xp, Sh, "bf16") if Sh.dtype == xp.uint16 else Sh
    pick = lambda a, b: xp.where(before if a.ndim == 3 else before[..., None], a, b)  # noqa: E731
    mh = pick(xp.take(m_in, cd, axis=1), xp.take(m, gd, axis=1))
    zh = pick(xp.take(z_in, cd, axis=1), xp.take(z, gd, axis=1))
    Sh = pick(Sh, xp.take(S, gd, axis=1))
    nh = pick(xp.take(n_in, cd, axis=1), xp.take(nv, gd, axis=1)) if logv else None
    m[:, gd], nn, S[:, gd], z[:, gd] = merge(xp, (mh, nh, Sh, zh), (mt, nt, St, zt))  # the array-API merge
    if logv:
        nv[:, gd] = nn
    return (m, S, z) + ((nv,) if logv else ())


def backward(ops, q, k, v, init, out, do, want_state, half="", logv=False, starts=None):
    """Gradients of a causal call for the output gradient ``do`` (``exp_kernel_bwd.cu``).

    q, k (..., T, d_k), v, out (the forward's output), do (..., T, d_v), in one kind (``half`` as in
    :func:`compute`; ``d_k, d_v <= 128``); init: (m, S, z) of the incoming state or None.
    ``logv``: ``log_attention`` (v holds log values, out the log output; the kernels' LOGV mode), init
    (m, S, z, n); the gradient of ``v`` is then that of the log values.
    Returns (dq, dk, dv in the inputs' kind, (dm, dS, dz) / (dm, dS, dz, dn) of the incoming state in
    the compute dtype, or None unless ``want_state``). The forward's chunk summaries are recomputed
    (chunk of the backward's tiles); temporaries: one d_k x d_v matrix per chunk and two numbers per
    token (LOGV: and 2 d_v per chunk).
    ``starts``: None, or the offsets (N + 1,) int64 (host) of packed segments (no ``init``): the
    tokens are laid out with every segment starting on a chunk of the backward's kernels (at most
    ``CH - 1`` zero tokens after each, :func:`_chunk_layout`), the forward's scan resets where a
    segment starts and the reverse scan is cut where one ends (its chunk's ``m_next`` at ``+big``: no
    weight from a later segment), then the gradients are taken back to the packed rows."""
    xp, batch, BH, ta_dtype = batch_layout(ops, q, half)
    T, DK, DV = q.shape[-2], q.shape[-1], v.shape[-1]
    cfg = make_config(ta_name(xp, ta_dtype), DK, DV, 32, half, grad="exp_kernel", logv=logv)
    q3, k3 = flat(xp, q, (BH, T, DK)), flat(xp, k, (BH, T, DK))
    v3, y3, do3 = (flat(xp, x, (BH, T, DV)) for x in (v, out, do))
    tok = cut = back_dev = None
    T_packed = T
    if starts is not None:
        tok, cut, back_dev, q3, k3, v3, y3, do3 = _chunk_layout(ops, cfg.CH, starts, (q3, k3, v3, y3, do3), half, logv)
        T = q3.shape[1]
    dq, dk, dv = xp.empty_like(q3), xp.empty_like(k3), xp.empty_like(v3)
    n = -(-T // cfg.CH)
    mk, z, m_in = (xp.empty((BH, n, DK), dtype=ta_dtype) for _ in range(3))
    S = xp.empty((BH, n, DK, DV), dtype=ta_dtype)
    m_out, z_out = xp.empty((BH, DK), dtype=ta_dtype), xp.empty((BH, DK), dtype=ta_dtype)
    S_out = xp.empty((BH, DK, DV), dtype=ta_dtype)
    m0 = S0 = z0 = n0 = None
    if init is not None:
        m0, S0, z0 = flat(xp, init[0], (BH, DK)), flat(xp, init[1], (BH, DK, DV)), flat(xp, init[2], (BH, DK))
        n0 = flat(xp, init[3], (BH, DV)) if logv else None
    nc = n_in = Wc = Wn = W0 = vshift = None
    if logv:  # the value column shifts: forward (entering every chunk), backward (of U^c, of U entering from the right)
        nc, n_in, Wc, Wn = (xp.empty((BH, n, DV), dtype=ta_dtype) for _ in range(4))
        W0 = xp.empty((BH, DV), dtype=ta_dtype)
        vshift = (nc, n0, n_in, xp.empty((BH, DV), dtype=ta_dtype))
    ops.ek_chunk(cfg, k3, v3, mk, S, z, T, DK, DV, n, BH, nc, tok=tok)
    ops.ek_scan(cfg, mk, S, z, m0, S0, z0, m_in, m_out, S_out, z_out, DK, DV, n, BH, vshift,
                segs=None if tok is None else (tok, T, starts.shape[0] - 1))  # S, z: entering each chunk
    big = float(np.finfo(np.dtype(ta_dtype)).max) / 8
    if cut is not None:  # a segment's first chunk reads no summary (the scan wrote the previous segment's)
        first = cut[1]
        m_in[:, first], S[:, first], z[:, first] = -big, 0, 0
        if logv:
            n_in[:, first] = -big
    lden, dl = xp.empty((BH, T), dtype=ta_dtype), xp.empty((BH, T), dtype=ta_dtype)
    ops.ekb_dq(cfg, q3, k3, v3, y3, do3, m_in, S, z, dq, lden, dl, T, DK, DV, n, BH, n_in, Wc)  # S, z: U^c, Z^c
    m_next = xp.ascontiguousarray(xp.concatenate([m_in[:, 1:], m_out[:, None]], axis=1))
    if cut is not None:  # the last chunk of every segment reads nothing from later chunks
        m_next[:, cut[0]] = big
    R0 = xp.empty((BH, DK * DV + DK), dtype=ta_dtype)
    ops.ekb_rscan(cfg, S, z, m_in, m_next, R0, DK, DV, n, BH, Wc, Wn, W0)  # S, z: U, Z entering from the right
    ops.ekb_dkdv(cfg, q3, k3, v3, do3, lden, dl, S, z, m_next, dk, dv, T, DK, DV, n, BH, y3 if logv else None, Wn)
    if back_dev is not None:  # the packed rows of the laid-out gradients
        dq, dk, dv = (ops.gather_rows(g, back_dev, T_packed) for g in (dq, dk, dv))
    grads = tuple(xp.reshape(g, batch + (T_packed, g.shape[-1])) for g in (dq, dk, dv))
    if not want_state:
        return grads + (None,)
    dS0 = xp.reshape(R0[:, : DK * DV], (BH, DK, DV))
    if logv:  # U(b_0) carries the column shift W(b_0); the state's S the shift n0: dS0 = U e^(n0 + W0)
        e = (n0 + W0)[:, None, :]
        if cfg.ta == "double":
            dS0 = dS0 * xp.exp(xp.minimum(e, ex_capv(np.float64)))
        else:  # |dS0| capped at e^80 (exp_kernel_bwd_tc.cu's U''): behind a key spike e passes 64 with U ~ e^-e
            tiny = float(np.finfo(np.float32).smallest_subnormal)
            mag = xp.exp(xp.minimum(xp.log(xp.maximum(xp.abs(dS0), tiny)) + e, ex_capv(np.float32)))
            dS0 = xp.where(dS0 == 0, 0.0, xp.sign(dS0) * mag)
    dz0 = -R0[:, DK * DV:]
    dm0 = xp.sum(S0 * dS0, axis=-1) + z0 * dz0  # m scales S and z by exp(m)
    dst = (dm0, dS0, dz0)
    if logv:
        dst += (xp.sum(S0 * dS0, axis=-2),)  # n scales the columns of S by exp(n)
    return grads + (tuple(xp.reshape(g, batch + g.shape[1:]) for g in dst),)


def _chunk_layout(ops, CH, starts, arrays, half, logv):
    """Packed tokens laid out for the backward kernels with every segment starting on a chunk of
    ``CH``: arrays (q, k, v, y, do) (BH, T, d) -> ``(tok, cut, back, *laid-out arrays (BH, T', d))``
    with ``T' = sum ceil(n_i / CH) CH``, the gaps' tokens neutral (q 0, k and log values at the
    stand-in ``-finfo.max / 8`` of their dtype: no weight; v, y, do 0: no gradient); ``tok`` (2, T')
    the layout's token table (``exp_kernel.cu``), ``cut`` the last and the first chunk of every
    non-empty segment, ``back`` (T,) int32 each packed token's laid-out row (device arrays, one
    upload). Each laid-out array is one row gather (``CupyOps.gather_rows``: the packed row of every
    laid-out one, or the fill)."""
    xp = ops.xp
    lens = np.diff(starts)
    padded = -(-lens // CH) * CH
    lstart = np.concatenate([[0], np.cumsum(padded)])
    T, T_pad = int(starts[-1]), int(lstart[-1])
    seg = np.repeat(np.arange(lens.shape[0]), lens)
    back = np.arange(T, dtype=np.int64) + (lstart[:-1] - starts[:-1])[seg]
    src = np.full(T_pad, -1, dtype=np.int64)
    src[back] = np.arange(T)
    seg_l = np.repeat(np.arange(lens.shape[0]), padded)
    cut = (lstart[1:][lens > 0] // CH - 1, lstart[:-1][lens > 0] // CH)  # the segments' last and first chunks
    like = arrays[0]
    parts = (lstart[:-1][seg_l], seg_l, src, back) + cut  # tok (2, T'), src, back, cut: one upload
    dev = to_device(xp, np.concatenate(parts).astype(np.int32), like)
    ends = np.cumsum([p.shape[0] for p in parts])
    tok_dev, src_dev, back_dev, last_dev, first_dev = (dev[:ends[1]].reshape(2, T_pad),) + tuple(
        dev[a:b] for a, b in zip(ends[1:-1], ends[2:]))
    dt = np.float32 if half else np.dtype(like.dtype)
    lo = np.array([-float(np.finfo(np.float16 if half == "f16" else dt).max) / 8], np.float32 if half else dt)
    out = []
    for i, x in enumerate(arrays):
        fill = 0.0
        if i == 1 or (i == 2 and logv):  # keys, log values: no weight
            fill = np.asarray(narrow(np, lo, half)).view(np.dtype(x.dtype))[0] if half else lo[0]
        if i == 3 and logv:  # log outputs at +big: no part in the column shifts of U (W = max -o)
            fill = float(np.finfo(np.dtype(x.dtype)).max) / 8
        bits = int(np.asarray(fill, dtype=x.dtype).reshape(1).view(f"u{np.dtype(x.dtype).itemsize}")[0])
        out.append(ops.gather_rows(x, src_dev, T_pad, bits))
    return (tok_dev, (last_dev, first_dev), back_dev) + tuple(out)


def backward_noncausal(xp, q, k, v, out, do, logv=False):
    """Gradients of a non-causal call: every query reads the one summary of every key, so the
    backward is that of linear attention with feature maps ``A = exp(q + m - lden) <= 1`` (queries)
    and ``E = exp(k - m) <= 1`` (keys), in array operations of ``xp`` (CuPy here; NumPy in the tests),
    with the causal kernels' shifts (``exp_kernel_bwd.cu``): ``logv``, the keys' column shift
    ``n = max_s log_v`` on the queries' read, the queries' ``W = max_t (-o)`` on the keys' read, and
    their exponents capped as the kernels' (each summary's columns scaled to at most 1, their scales
    in the capped exponents; the rows' caps :func:`row_caps`); ``-inf`` outputs get no gradient,
    ``-inf`` log values exactly zero.

    q (..., Tq, d_k), k (..., Tk, d_k), v (..., Tk, d_v) (log values when ``logv``), out, do
    (..., Tq, d_v), in the compute dtype (float32 / float64). Returns (dq, dk, dv). Memory
    ``O((Tq + Tk)(d_k + d_v) + d_k d_v)``."""
    mT = lambda x: xp.swapaxes(x, -1, -2)  # noqa: E731
    m = xp.max(k, axis=-2, keepdims=True)  # (..., 1, d_k)
    E = xp.exp(k - m)
    z = xp.sum(E, axis=-2, keepdims=True)  # >= 1
    qm = q + m
    r = xp.max(qm, axis=-1, keepdims=True)
    A = xp.exp(qm - (r + xp.log(xp.sum(xp.exp(qm - r) * z, axis=-1, keepdims=True))))  # exp(q + m - lden)
    if not logv:
        H = mT(E) @ v  # (..., d_k, d_v)
        dq = A * (do @ mT(H) - xp.sum(do * out, axis=-1, keepdims=True) * z)
        U, Z = mT(A) @ do, mT(A) @ xp.sum(do * out, axis=-1, keepdims=True)  # (..., d_k, d_v), (..., d_k, 1)
        return dq, E * (v @ mT(U) - mT(Z)), E @ U
    lo = -float(xp.finfo(q.dtype).max) / 8
    lv = xp.maximum(v, lo)
    ok = out > lo / 2
    g, o = xp.where(ok, do, 0.0), xp.where(ok, out, -lo)
    n = xp.max(lv, axis=-2, keepdims=True)  # (..., 1, d_v)
    W = xp.max(-o, axis=-2, keepdims=True)
    H = mT(E) @ xp.exp(lv - n)  # the keys' summary, columns scaled by sg (<= 1 after)
    sg = col_scale(xp, H)
    G = g * xp.exp(xp.minimum(n - o + sg, row_caps(xp, g)))  # the queries' read of it
    delta = xp.sum(g, axis=-1, keepdims=True)
    dq = A * (G @ mT(H * xp.exp(-sg)) - delta * z)
    U, Z = mT(A) @ (g * xp.exp(-o - W)), mT(A) @ delta  # the queries' summary, columns scaled by tau
    tau = col_scale(xp, U)
    U = U * xp.exp(-tau)
    Vp = xp.exp(xp.minimum(lv + W + tau, ex_capv(q.dtype)))  # the keys' read of it
    return dq, E * (Vp @ mT(U) - mT(Z)), Vp * (E @ U)


def _tracks_grad(arrays):
    """True for torch tensors when autograd records and some of ``arrays`` requires grad."""
    if not any(getattr(x, "requires_grad", False) for x in arrays):
        return False
    import torch

    return torch.is_grad_enabled()


def forward(q, k, v, causal, state, return_state, *, chunk_size=None, segments=None):
    """CuPy-kernel implementation of ``exp_kernel_attention``; the signature of
    ``lsattn.exp_kernel._exp_forward`` (inputs as in :func:`loglinear_forward`; non-causal calls
    with 16-bit inputs compute from float32 copies).

    Returns
    -------
    (y (..., Tq, d_v) in the inputs' dtype, State or None); state tensors ``m (..., d_k)``,
    ``S (..., d_k, d_v)``, ``z (..., d_k)`` as in the array-API twin (before any token
    ``m = -finfo.max / 8``), float32 / float64.

    segments: None, or packed segments (``lsattn._varlen.Streams``; ``RESET_OPS``): each its own
    stream (the kernels' segment masks, ``exp_kernel.cu``), continuing the packed ``state`` (batch
    axes then N; None: fresh streams); the returned state is packed too. Calls that record a
    gradient: the backward kernels on a chunk-aligned layout (:func:`backward`); with an incoming
    state too, or a returned one: the array-API formulation on the same device.
    """
    return _forward(q, k, v, causal, state, return_state, chunk_size, False, segments)


def log_forward(q, k, log_v, causal, state, return_state, *, chunk_size=None, segments=None):
    """CuPy-kernel implementation of ``log_attention`` (the kernels' LOGV mode); the signature of
    ``lsattn.exp_kernel._log_forward``, arguments as :func:`forward` with ``log_v (..., Tk, d_v)``
    (``-inf`` allowed).

    Returns
    -------
    (log_y (..., Tq, d_v) in the inputs' dtype, State or None); state tensors as :func:`forward`'s
    plus ``n (..., d_v)``, the running per-column maximum of ``log_v`` (before any token
    ``m = n = -finfo.max / 8``), as in the array-API twin. Calls on CUDA torch tensors that
    require grad record the backward (``_autograd``; causal: ``exp_kernel_bwd.cu`` in LOGV mode,
    non-causal: :func:`backward_noncausal`); those returning a state run the array-API formulation
    on the same device. ``segments``: as :func:`forward`.
    """
    return _forward(q, k, log_v, causal, state, return_state, chunk_size, True, segments)


def _forward(q, k, v, causal, state, return_state, chunk_size, logv, segments=None):
    op, names = ("log_attention", ("m", "S", "z", "n")) if logv else ("exp_kernel_attention", ("m", "S", "z"))
    batch, Tq, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], v.shape[-1]
    offset = 0 if state is None else state.offset
    init_t = None if state is None else tuple(state.tensors[n] for n in names)
    if Tq > 0 and _tracks_grad((q, k, v) + (init_t or ())):
        import torch

        f64 = q.dtype == torch.float64
        if not return_state and (segments is None or state is None) and (
                not causal or grad_fits("double" if f64 else "float", d_k, d_v, "exp_kernel", logv)):
            from ._autograd import apply_exp_kernel

            starts = None if segments is None else segments.starts  # packed: the backward on a chunk-aligned layout
            return apply_exp_kernel(q, k, v, init_t, chunk_size, logv, causal, starts), None
        # a returned state (whose gradient the kernels do not compute), head dims beyond the
        # backward's tiles, packed segments with an incoming state: the array-API formulation on the
        # same device, differentiated by torch
        from ...exp_kernel import _exp_forward, _log_forward

        args = [x if f64 else x.float() for x in (q, k, v)]  # half: in float32
        return (_log_forward if logv else _exp_forward)(*args, causal, state, return_state, chunk_size=chunk_size,
                                                        segments=segments)
    with on_gpu(q) as (to_cp, back, ops):
        xp = ops.xp
        (qc, kc, vc), half = inputs(to_cp, (q, k, v))
        if half and not causal:  # no 16-bit entry for the one-summary read: compute from float32 copies
            qc, kc, vc = (widen(xp, x, half) for x in (qc, kc, vc))
            out, _ = compute(ops, qc, kc, vc, False, None, False, chunk_size, logv=logv)
            return back(narrow(xp, out, half), half), None
        sdtype = xp.float32 if half else qc.dtype
        init = None if state is None else tuple(to_cp(state.tensors[n])[0] for n in names)
        lead = batch if segments is None else batch + (segments.starts.shape[0] - 1,)  # the state's batch axes
        if Tq == 0 and causal:
            out = back(xp.empty(batch + (0, d_v), dtype=qc.dtype), half)
            if not return_state or state is not None:
                return out, state if return_state else None
            lo = -float(np.finfo(np.dtype(sdtype)).max) / 8
            init = (xp.full(lead + (d_k,), lo, dtype=sdtype), xp.zeros(lead + (d_k, d_v), dtype=sdtype),
                    xp.zeros(lead + (d_k,), dtype=sdtype))
            if logv:
                init += (xp.full(lead + (d_v,), lo, dtype=sdtype),)
            tensors = dict(zip(names, (back(t, "") for t in init)))
            return out, State(op, 0 if segments is None else segments.offsets.copy(), lead, d_k, d_v,
                              tensors["S"].dtype, tensors)
        segs = None if segments is None else (segments.starts, ops.seg_tokens(segments.starts, qc))
        out, st = compute(ops, qc, kc, vc, causal, init, return_state, chunk_size, half, logv, segs=segs)
        out = back(out, half)
        if not return_state:
            return out, None
        tensors = dict(zip(names, (back(t, "") for t in st)))
        ends = offset + Tq if segments is None else segments.offsets + np.diff(segments.starts)
        return out, State(op, ends, lead, d_k, d_v, tensors["S"].dtype, tensors)
