"""The float64 oracles a sweep compares against: ``lsattn.reference`` up to
:data:`FULL_REFERENCE_T`, and row oracles (a fixed set of query rows, :func:`audit_rows`) beyond
it and for :data:`SUFFIX_SUM_OPS`; :func:`oracle` picks between them.
"""
from __future__ import annotations

import numpy as np

from .. import reference
from ..fenwick import fenwick_level
from ._compare import to_float64
from ._formulations import _np_logsumexp


#: Up to this length the whole output is compared with ``lsattn.reference`` (quadratic memory);
#: beyond, a fixed set of query rows (:func:`audit_rows`) with the row oracles below. Read from the
#: package (``lsattn.audit.FULL_REFERENCE_T``) at each call, so setting it there takes effect.
FULL_REFERENCE_T = 512


def audit_rows(T):
    """Query rows compared at length ``T`` (None: all): the first and last rows, Fenwick
    boundaries ``2^j - 1`` and ``2^j``, and evenly spaced rows."""
    from . import FULL_REFERENCE_T as full  # the package's value, read per call: it may be set there

    if T <= full:
        return None
    rows = set(range(4)) | set(range(T - 16, T)) | set(np.linspace(0, T - 1, 17).astype(int).tolist())
    rows |= {p for j in range(T.bit_length()) for p in (2**j - 1, 2**j) if p < T}
    return np.array(sorted(rows))


def _rows_exp_kernel(op):
    def rows_oracle(x, rows):
        vname = "log_v" if op == "log_attention" else "v"
        ref = getattr(reference, op)
        out = [ref(x["q"][..., t : t + 1, :], x["k"][..., : t + 1, :], x[vname][..., : t + 1, :], causal=False) for t in rows]
        return np.concatenate([to_float64(o) for o in out], axis=-2)

    return rows_oracle


def _take_levels(w, t, lev):
    """``w[..., t, lev]``: (..., T, L), int, (n,) -> (..., n)"""
    return np.take(w[..., t, :], lev, axis=-1)


def _suffix_decay(a, t):
    """``D[..., s] = a_{s+1} + ... + a_t`` for ``s = 0..t``, summed from ``t`` backwards.

    Not ``A_t - A_s`` of global cumulative sums: those carry an absolute error ``~|A_t| eps`` in
    the exponent (``1e-12`` relative once ``|A_t| ~ 1e4`` in float64); a suffix sum is exact to
    ``~|D| eps``, and only ``|D| < 745`` matters in float64."""
    tail = np.cumsum(a[..., t:0:-1], axis=-1)[..., ::-1]  # sums a_{s+1..t} for s = 0..t-1
    return np.concatenate([tail, np.zeros(a.shape[:-1] + (1,))], axis=-1)


def _rows_loglinear(x, rows):
    out = []
    for t in rows:
        s = np.arange(t + 1)
        coef = _take_levels(x["level_weights"], t, fenwick_level(np.int64(t), s)) * np.exp(_suffix_decay(x["log_decay"], t))
        qk = np.einsum("...d,...sd->...s", x["q"][..., t, :], x["k"][..., : t + 1, :])
        out.append(np.einsum("...s,...sd->...d", coef * qk, x["v"][..., : t + 1, :]))
    return np.stack(out, axis=-2)


def _rows_hierarchical(x, rows):
    a = x.get("log_decay")
    out = []
    for t in rows:
        s = np.arange(t + 1)
        logw = _np_logsumexp(x["q"][..., t, None, :] + x["k"][..., : t + 1, :], axis=-1)
        logw = logw + _take_levels(x["log_level_weights"], t, fenwick_level(np.int64(t), s))
        if a is not None:
            logw = logw + _suffix_decay(a, t)
        num = _np_logsumexp(logw[..., :, None] + x["log_v"][..., : t + 1, :], axis=-2)
        out.append(num - _np_logsumexp(logw, axis=-1)[..., None])
    return np.stack(out, axis=-2)


def _rows_gated_delta(x, rows):
    """Rows of the gated delta rule by one backward sweep over keys shared by all rows:
    ``r_t = A_{s+1} ... A_t q_t`` (each ``A`` symmetric), ``o_t += lambda beta_s (r_t . k_s) v_s``."""
    q, k, v, a, beta, lam = (x[n] for n in ("q", "k", "v", "log_decay", "beta", "level_weights"))
    rows = np.sort(np.asarray(rows))
    S = int(rows[-1]) + 1
    # W[..., n, s] = lambda[rows[n], level(rows[n], s)] for s <= rows[n], else 0
    lev = _bit_length(np.bitwise_xor(rows[:, None], np.arange(S)[None, :]))
    W = np.take_along_axis(lam[..., rows, :], np.broadcast_to(lev, lam.shape[:-2] + lev.shape), axis=-1)
    W = np.where(rows[:, None] >= np.arange(S)[None, :], W, 0.0)
    r = q[..., rows, :].copy()  # (..., n, d_k)
    G = np.zeros(q.shape[:-2] + (len(rows), S))  # G[..., n, s] = beta_s r . k_s
    ea = np.exp(a)
    for s in range(S - 1, -1, -1):
        i = int(np.searchsorted(rows, s))  # rows[i:] >= s are active
        ra, ks = r[..., i:, :], k[..., s, None, :]
        g = beta[..., s, None] * (ra @ k[..., s, :, None])[..., 0]
        G[..., i:, s] = g
        r[..., i:, :] = ea[..., s, None, None] * (ra - g[..., None] * ks)
    return (W * G) @ v[..., :S, :]


def _bit_length(x):
    """Elementwise ``int.bit_length`` of non-negative integers below 2^53 (exact: frexp)."""
    return np.frexp(x.astype(np.float64))[1]


ROW_ORACLES = {
    "log_attention": _rows_exp_kernel("log_attention"),
    "exp_kernel_attention": _rows_exp_kernel("exp_kernel_attention"),
    "loglinear_attention": _rows_loglinear,
    "loglinear_gated_delta": _rows_gated_delta,
    "loglinear_log_attention": _rows_hierarchical,
}


#: Operators whose ``lsattn.reference`` takes ``exp(A_t - A_s)`` from global cumulative sums, which
#: is off by ``~|A_t| eps`` relative: the audit uses its suffix-sum row oracles at every length.
SUFFIX_SUM_OPS = ("loglinear_attention", "loglinear_log_attention")


def oracle(op, inputs64, rows=None):
    """float64 NumPy output of ``op`` on float64 NumPy inputs, the listed query rows only (ascending;
    causal: row ``t`` reads keys ``0..t``) or all rows when ``rows`` is None: ``lsattn.reference``,
    except for :data:`SUFFIX_SUM_OPS` (row oracles, for every row)."""
    if rows is not None and np.any(np.diff(rows) <= 0):
        raise ValueError("rows must be strictly ascending")
    if rows is None and op in SUFFIX_SUM_OPS:
        return ROW_ORACLES[op](inputs64, np.arange(inputs64["q"].shape[-2]))
    if rows is None:
        return to_float64(getattr(reference, op)(**inputs64))
    return ROW_ORACLES[op](inputs64, rows)
