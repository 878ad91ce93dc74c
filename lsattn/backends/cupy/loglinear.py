"""Log-linear Mamba-2 (``loglinear_attention``) on the kernels of ``loglinear.cu``: the host logic
(chunk layout, the Fenwick up-sweep plan, the state bookkeeping) and the backend's implementation."""
from __future__ import annotations

from ...state import State
from ._arrays import batch_layout, flat, inputs, on_gpu, ta_name
from ._compile import DV_BLOCK, make_config

__all__ = ["forward", "compute", "upsweep_plan"]


def compute(ops, q, k, v, a, lam, chunk_size, p, old, want_state, half=""):
    """Log-linear Mamba-2 over one call at offset ``p``.

    q, k (..., T, d_k), v (..., T, d_v), a (..., T), lam (..., T, L): arrays of ``ops.xp``, float32
    / float64, float16 (``half="f16"``) or bfloat16 stored as 16-bit integers (``half="bf16"``);
    old: (..., n_old, d_k, d_v) float32 / float64, or None.
    Returns (out (..., T, d_v), levels (..., bit_length(p + T), d_k, d_v) or None).
    """
    xp, batch, BH, ta_dtype = batch_layout(ops, q, half)
    T, DK, DV, L = q.shape[-2], q.shape[-1], v.shape[-1], lam.shape[-1]
    if DV > DV_BLOCK:  # independent column blocks of v (and of the state)
        outs, levs = [], []
        for c0 in range(0, DV, DV_BLOCK):
            c1 = min(DV, c0 + DV_BLOCK)
            o, lv = compute(ops, q, k, xp.ascontiguousarray(v[..., c0:c1]), a, lam, chunk_size, p,
                                None if old is None else xp.ascontiguousarray(old[..., c0:c1]), want_state, half)
            outs.append(o)
            levs.append(lv)
        return xp.concatenate(outs, axis=-1), (xp.concatenate(levs, axis=-1) if want_state else None)

    cfg = make_config(ta_name(xp, ta_dtype), DK, DV, chunk_size, half)
    q3, k3 = flat(xp, q, (BH, T, DK)), flat(xp, k, (BH, T, DK))
    v3, a2, l3 = flat(xp, v, (BH, T, DV)), flat(xp, a, (BH, T)), flat(xp, lam, (BH, T, L))
    n_old = 0 if old is None else old.shape[-3]
    old4 = xp.zeros((1,), dtype=ta_dtype) if n_old == 0 else flat(xp, old, (BH, n_old, DK, DV))
    out = xp.empty((BH, T, DV), dtype=q.dtype)
    pn = p + T
    h, Lnew = (p ^ pn).bit_length(), pn.bit_length()
    if T == 1:  # decoding step
        newlev = xp.empty((BH, Lnew, DK, DV), dtype=ta_dtype)
        ops.ll_decode(cfg, q3, k3, v3, a2, l3, old4, newlev, out, DK, DV, L, p, n_old, h, Lnew, BH)
        levels = xp.reshape(newlev, batch + (Lnew, DK, DV)) if want_state else None
        return xp.reshape(out, batch + (T, DV)), levels

    CH = cfg.CH
    F = p // CH
    n = (p + T - 1) // CH - F + 1
    H = xp.empty((BH, n, DK, DV), dtype=ta_dtype)
    gsum = xp.empty((BH, n), dtype=ta_dtype)
    ops.ll_chunk_states(cfg, k3, v3, a2, H, gsum, T, DK, DV, p, F, n, BH)
    for stride, step, j0, count in upsweep_plan(F, n):
        ops.ll_upsweep(cfg, H, gsum, DK, DV, n, j0, step, stride, count, BH)
    ops.ll_output(cfg, q3, k3, v3, a2, l3, H, gsum, old4, out, T, DK, DV, L, p, F, n, n_old, BH)
    levels = None
    if want_state:
        newlev = xp.empty((BH, Lnew, DK, DV), dtype=ta_dtype)
        if Lnew:
            ops.ll_new_state(cfg, k3, v3, a2, H, gsum, old4, newlev, T, DK, DV, p, F, n, n_old, h, Lnew, BH)
        levels = xp.reshape(newlev, batch + (Lnew, DK, DV))
    return xp.reshape(out, batch + (T, DV)), levels


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


def forward(q, k, v, log_decay, level_weights, chunk_size, state, return_state):
    """CuPy-kernel implementation of ``loglinear_attention``; the signature of
    ``lsattn.loglinear._forward`` (validated inputs of one dtype: float32 / float64, or float16 /
    bfloat16 as the caller gave them; ``state`` may be None; its tensors float32 / float64).

    Returns
    -------
    (out (..., T, d_v) in the inputs' dtype, State or None); the state's ``tensors["levels"]`` as
    in the array-API twin.
    """
    batch, T, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], v.shape[-1]
    p = 0 if state is None else state.offset
    with on_gpu(q) as (to_cp, back, ops):
        xp = ops.xp
        args, half = inputs(to_cp, (q, k, v, log_decay, level_weights))
        sdtype = xp.float32 if half else args[0].dtype
        if T == 0:
            out = back(xp.empty(batch + (0, d_v), dtype=args[0].dtype), half)
            if not return_state or state is not None:
                return out, state if return_state else None
            levels = xp.zeros(batch + (0, d_k, d_v), dtype=sdtype)
            return out, State("loglinear_attention", 0, batch, d_k, d_v, sdtype, {"levels": back(levels, "")})
        old = None if (state is None or p == 0) else to_cp(state.tensors["levels"])[0]
        out, levels = compute(ops, *args, chunk_size, p, old, return_state, half)
        out = back(out, half)
        if not return_state:
            return out, None
        levels = back(levels, "")
        return out, State("loglinear_attention", p + T, batch, d_k, d_v, levels.dtype, {"levels": levels})
