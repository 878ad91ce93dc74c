"""Float64 quadratic-cost oracles, transcribed straight from the formulas of DESIGN.md.

Each function reads like its equation; none is fast or memory-frugal (they build ``(T, T)`` and
``(T, T, d)`` arrays). They accept arrays of any namespace and return float64 in that namespace,
or NumPy float64 when the namespace has no float64 (JAX without x64).

Shapes: ``q, k: (..., T, d_k)``, ``v, log_v: (..., T, d_v)``, ``log_decay, beta: (..., T)``,
``level_weights, log_level_weights: (..., T, L)`` with ``L >= num_levels(T)``.
"""
from __future__ import annotations

import math

import array_api_compat
import numpy as np

from ..fenwick import level_matrix

__all__ = [
    "log_attention",
    "exp_kernel_attention",
    "loglinear_attention",
    "loglinear_gated_delta",
    "loglinear_log_attention",
    "hierarchical_mask",
]


def _to_numpy(x):
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception:
        return np.from_dlpack(x)


def _float64(*arrays):
    """``(xp, arrays as float64)`` in the arrays' namespace, or NumPy if it lacks float64."""
    present = [a for a in arrays if a is not None]
    xp = array_api_compat.array_namespace(*present)
    try:
        out = [None if a is None else xp.astype(a, xp.float64) for a in arrays]
        if all(a is None or a.dtype == xp.float64 for a in out):
            return xp, out
    except Exception:
        pass
    return np, [None if a is None else _to_numpy(a).astype(np.float64) for a in arrays]


def _logsumexp(xp, x, axis):
    """log(sum(exp(x), axis)); -inf when every term is -inf."""
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    return xp.squeeze(m, axis=axis) + xp.log(xp.sum(xp.exp(x - m), axis=axis))


def _levels(xp, T, like):
    """(T, T) Fenwick levels on ``like``'s device, -1 where s > t."""
    return level_matrix(T, xp=xp, device=array_api_compat.device(like))


def _by_level(xp, weights, T, fill):
    """``W[..., t, s] = weights[..., t, level(t, s)]`` (``fill`` where s > t).

    weights: (..., T, L) -> (..., T, T)
    """
    lev = _levels(xp, T, weights)
    out = xp.full(weights.shape[:-1] + (T,), fill, dtype=weights.dtype, device=array_api_compat.device(weights))
    for l in range(weights.shape[-1]):
        out = xp.where(lev == l, weights[..., l : l + 1], out)
    return out


def _segsum(xp, log_decay):
    """``D[..., t, s] = a_{s+1} + ... + a_t`` for s <= t, -inf for s > t.  (..., T) -> (..., T, T)

    Summed over the stretch itself (not ``A_t - A_s``): exact for ``-inf`` decays and strong ones."""
    T = log_decay.shape[-1]
    lev = _levels(xp, T, log_decay)
    after = lev > 0  # [r, s]: s < r
    terms = xp.where(after, log_decay[..., :, None], xp.zeros_like(log_decay)[..., :, None])  # [r, s] = a_r, r > s
    return xp.where(lev >= 0, xp.cumulative_sum(terms, axis=-2), -math.inf)


def _causal_matmul(xp, W, v):
    """``out[..., t, :] = sum_{s <= t} W[..., t, s] v[..., s, :]``, never touching ``v[s > t]``:
    a NaN or infinity in a later value cannot reach an earlier output (``0 * NaN`` is NaN).

    W: (..., T, T), v: (..., T, d_v) -> (..., T, d_v)"""
    T = W.shape[-1]
    rows = [W[..., t : t + 1, : t + 1] @ v[..., : t + 1, :] for t in range(T)]
    if not rows:
        return W[..., :, :0] @ v
    return xp.concat(rows, axis=-2)


def _log_kernel(xp, q, k):
    """``log w(t, s) = log sum_i exp(q_ti + k_si)``: (..., Tq, d), (..., Tk, d) -> (..., Tq, Tk)"""
    return _logsumexp(xp, q[..., :, None, :] + k[..., None, :, :], axis=-1)


def _causal(xp, logw):
    T = logw.shape[-1]
    return xp.where(_levels(xp, T, logw) >= 0, logw, -math.inf)


def _log_normalised(xp, logw, log_v, causal):
    """``log y_t = logsumexp_s(log w_ts + log v_s) - logsumexp_s(log w_ts)``: (..., Tq, d_v);
    causal: only ``s <= t`` (a later ``log v`` never reaches an earlier row, even NaN)."""
    terms = logw[..., :, :, None] + log_v[..., None, :, :]
    if causal:
        visible = (_levels(xp, logw.shape[-1], logw) >= 0)[:, :, None]
        terms = xp.where(visible, terms, -math.inf)
    num = _logsumexp(xp, terms, axis=-2)
    return num - _logsumexp(xp, logw, axis=-1)[..., None]


def log_attention(q, k, log_v, causal=True):
    """``log y`` of exp-kernel attention ``y_t = sum_s w(t,s) v_s / sum_s w(t,s)``, from ``log v``.

    q: (..., Tq, d_k), k: (..., Tk, d_k), log_v: (..., Tk, d_v) -> (..., Tq, d_v) float64
    """
    xp, (q, k, log_v) = _float64(q, k, log_v)
    logw = _log_kernel(xp, q, k)
    if causal:
        logw = _causal(xp, logw)
    return _log_normalised(xp, logw, log_v, causal)


def exp_kernel_attention(q, k, v, causal=True):
    """Exp-kernel attention ``y_t = sum_s w(t,s) v_s / sum_s w(t,s)``, ``w = <exp q_t, exp k_s>``.

    q: (..., Tq, d_k), k: (..., Tk, d_k), v: (..., Tk, d_v) of any sign -> (..., Tq, d_v) float64
    """
    xp, (q, k, v) = _float64(q, k, v)
    logw = _log_kernel(xp, q, k)
    if causal:
        logw = _causal(xp, logw)
    w = xp.exp(logw - xp.max(logw, axis=-1, keepdims=True))  # the row shift cancels in the ratio
    return (_causal_matmul(xp, w, v) if causal else w @ v) / xp.sum(w, axis=-1, keepdims=True)


def hierarchical_mask(log_decay, level_weights):
    """``M[..., t, s] = lambda[t, level(t,s)] * exp(a_{s+1} + ... + a_t)`` for s <= t, else 0.

    log_decay: (..., T), level_weights: (..., T, L) -> (..., T, T) float64
    """
    xp, (a, lam) = _float64(log_decay, level_weights)
    return _mask(xp, a, lam)


def _mask(xp, a, lam):
    return _by_level(xp, lam, a.shape[-1], 0.0) * xp.exp(_segsum(xp, a))


def loglinear_attention(q, k, v, log_decay, level_weights):
    """Log-linear Mamba-2: ``o_t = sum_{s<=t} M[t,s] (q_t . k_s) v_s``, M from ``hierarchical_mask``.

    q, k: (..., T, d_k), v: (..., T, d_v), log_decay: (..., T), level_weights: (..., T, L)
    -> (..., T, d_v) float64
    """
    xp, (q, k, v, a, lam) = _float64(q, k, v, log_decay, level_weights)
    return _causal_matmul(xp, _mask(xp, a, lam) * (q @ xp.matrix_transpose(k)), v)


def loglinear_gated_delta(q, k, v, log_decay, beta, level_weights):
    """Log-linear Gated DeltaNet.

    ``o_t = sum_{s<=t} lambda[t, level(t,s)] beta_s (q_t^T A_t A_{t-1} ... A_{s+1} k_s) v_s`` with
    ``A_r = exp(a_r) (I - beta_r k_r k_r^T)`` (symmetric).

    q, k: (..., T, d_k), v: (..., T, d_v), log_decay, beta: (..., T), level_weights: (..., T, L)
    -> (..., T, d_v) float64
    """
    xp, (q, k, v, a, beta, lam) = _float64(q, k, v, log_decay, beta, level_weights)
    T = q.shape[-2]
    t_idx = xp.arange(T, device=array_api_compat.device(q))[:, None]  # (T, 1)
    # Sweep s from T-1 down to 0 keeping R[t] = (A_t ... A_{s+1})^T q_t for every t >= s, so that
    # G[t, s] = beta_s R[t] . k_s.  Moving to s-1 applies A_s to every row and resets row s-1.
    R = q
    columns = []
    for s in range(T - 1, -1, -1):
        if s < T - 1:
            A_rows = R - (R @ k[..., s + 1, :, None]) * beta[..., s + 1, None, None] * k[..., s + 1, None, :]
            R = xp.where(t_idx > s, xp.exp(a[..., s + 1, None, None]) * A_rows, q)
        columns.append(beta[..., s, None] * xp.squeeze(R @ k[..., s, :, None], axis=-1))
    G = xp.stack(columns[::-1], axis=-1)  # (..., T, T): G[t, s]
    W = _by_level(xp, lam, T, 0.0)  # zero where s > t
    return _causal_matmul(xp, W * G, v)


def loglinear_log_attention(q, k, log_v, log_level_weights, log_decay=None):
    """Hierarchical exp-kernel attention, ``log y`` from ``log v``.

    ``log w(t,s) = log_level_weights[t, level(t,s)] + (a_{s+1} + ... + a_t) + log <exp q_t, exp k_s>``
    and ``y_t = sum_{s<=t} w(t,s) v_s / sum_{s<=t} w(t,s)``.

    q, k: (..., T, d_k), log_v: (..., T, d_v), log_level_weights: (..., T, L),
    log_decay: (..., T) or None (no decay) -> (..., T, d_v) float64
    """
    xp, (q, k, log_v, loglam, a) = _float64(q, k, log_v, log_level_weights, log_decay)
    T = q.shape[-2]
    logw = _log_kernel(xp, q, k) + _by_level(xp, loglam, T, -math.inf)
    if a is not None:
        logw = logw + _segsum(xp, a)
    return _log_normalised(xp, _causal(xp, logw), log_v, True)
