"""Numba CPU decoding steps (``lsattn.stepper(..., backend="numba")``, the automatic choice for NumPy).

One small ``@njit`` kernel per operator advances every batch element by one token, reading and
writing the state buffers in place (float32 or float64 buffers; sums of signed terms accumulate in
float64, as in :mod:`lsattn.backends.numba_cpu`; sums of positive terms, the numerators of log
values, and the hierarchical step's exps and logs run in the state's dtype). The step formulas are those of the
array-API twins in :mod:`lsattn._steps` (the module docstring there derives them), and the buffers
have the layout of the operators' State tensors with the batch axes flattened (log-linear: all
``bit_length(max_tokens)`` level slots up front). Kernels are compiled on first use and cached on
disk (``cache=True``); this module imports Numba when a stepper is made, never at registration.

Cost per token: ``O(d_k d_v)`` (exp-kernel), ``O(popcount(p) d_k d_v)`` reads plus the Fenwick merge
of ``h - 1`` levels (log-linear), per batch element; empty level slots are skipped.

Per call, the Python side only reshapes the token's inputs to (B, d) (views where the batch axes
merge: the kernels read any strides) and allocates the output; the kernels run the batch elements
serially on the calling thread (``nogil``): a thread pool woken for every token costs more than a
step on a shared machine (measured: ms per token under load), and callers decoding many independent
streams can run them in their own threads.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .._steps import level_slots
from ..exp_kernel import _minus_inf
from .numba_cpu import _flat

__all__ = ["log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta",
           "loglinear_log_attention"]


@functools.cache
def _kernels():
    """The kernels, compiled (or loaded from the disk cache) on first use."""
    import numba

    jit = numba.njit(cache=True, nogil=True)

    @jit
    def exp_kernel(q, k, vals, log_values, lo, m, n, S, z, out):
        """Key ``k`` joins the summary ``(m, n, S, z)``, then ``q`` reads it, in one pass over ``S``.
        q, k (B, d_k), vals (B, d_v), m/z (B, d_k), n (B, d_v) (unused for signed values), S (B, d_k, d_v)."""
        B, dk = q.shape
        dv = vals.shape[1]
        g = np.empty(dv)  # per-column value rescaling (log values)
        gv = np.empty(dv)  # the token's value, shifted
        num = np.empty(dv)
        pos = np.empty(dv, S.dtype)  # log values: sums of positive terms, in the state's dtype
        gs = np.empty(dv, S.dtype)  # g and gv in the state's dtype
        gvs = np.empty(dv, S.dtype)
        mm = np.empty(dk)
        fa = np.empty(dk)  # rescaling of the summary's row i to the new shift mm_i
        fb = np.empty(dk)  # the key's weight exp(k_i - mm_i); one of fa, fb is exactly 1
        # the S pass and the query's weights run in the state's dtype (float32: expf, twice the
        # speed of exp); the sums over d_k (num, den) accumulate in float64, except the numerators of
        # log values, sums of positive terms (relative error <= d_k eps), in the state's dtype (8-wide)
        sc = np.empty(3, S.dtype)
        for b in range(B):
            if log_values:
                for j in range(dv):
                    lv = max(float(vals[b, j]), lo)
                    nj = float(n[b, j])
                    nn = max(nj, lv)
                    g[j] = math.exp(nj - nn)
                    gv[j] = math.exp(lv - nn)
                    n[b, j] = nn
            else:
                for j in range(dv):
                    gv[j] = float(vals[b, j])
            for j in range(dv):
                gs[j] = g[j] if log_values else 1.0
                gvs[j] = gv[j]
            r = -np.inf
            live = False  # a feature live in the query and in some key so far (m above the stand-in)
            for i in range(dk):
                mi, ki = float(m[b, i]), float(k[b, i])
                if ki > mi:
                    mm[i], fa[i], fb[i] = ki, math.exp(mi - ki), 1.0
                else:
                    mm[i], fa[i], fb[i] = mi, 1.0, math.exp(ki - mi)
                r = max(r, float(q[b, i]) + mm[i])
                live = live or (float(q[b, i]) > -np.inf and mm[i] > lo)
            den = 0.0
            num[:] = 0.0
            pos[:] = 0.0
            for i in range(dk):
                sc[0] = float(q[b, i]) + mm[i] - r
                sc[0] = math.exp(sc[0])
                sc[1], sc[2] = fa[i], fb[i]
                A, fai, fbi = sc[0], sc[1], sc[2]
                zi = fa[i] * float(z[b, i]) + fb[i]
                z[b, i] = zi
                m[b, i] = mm[i]
                den += float(A) * zi
                row = S[b, i]
                if log_values:
                    for j in range(dv):
                        x = fai * gs[j] * row[j] + fbi * gvs[j]
                        row[j] = x
                        pos[j] += A * x
                else:
                    for j in range(dv):
                        x = fai * row[j] + fbi * gvs[j]
                        row[j] = x
                        num[j] += A * x
            for j in range(dv):
                if not live:  # no weight at all: 0/0, NaN as a plain call
                    out[b, j] = np.nan
                elif not log_values:
                    out[b, j] = num[j] / den
                elif pos[j] > 0.0:
                    o = math.log(float(pos[j])) + float(n[b, j]) - math.log(den)
                    out[b, j] = o if o > lo / 2 else -np.inf
                else:
                    out[b, j] = -np.inf

    @jit
    def levels(q, k, v, a, beta, lam, p, n, h, gated, S, out):
        """Log-linear Mamba-2 (``gated=False``) or Gated DeltaNet at position ``p`` (``n`` =
        bit_length(p), ``h`` = bit_length(p XOR (p + 1))), one pass over each occupied level (Gated
        DeltaNet: two, ``k^T S`` first). q, k (B, d_k), v (B, d_v), a/beta (B,), lam (B, L),
        S (B, slots, d_k, d_v)."""
        B, dk = q.shape
        dv = v.shape[1]
        o = np.empty(dv)
        kS = np.empty(dv)
        vv = np.empty(dv)
        for b in range(B):
            e = math.exp(float(a[b]))
            bt = float(beta[b]) if gated else 1.0
            qk = 0.0
            for i in range(dk):
                qk += float(q[b, i]) * float(k[b, i])
            own = float(lam[b, 0]) * bt * qk
            for j in range(dv):
                vv[j] = float(v[b, j])
                o[j] = own * vv[j]
            new = S[b, h - 1]  # empty (bit h-1 of p is clear): the token's write, then the folded levels
            for i in range(dk):
                c = bt * float(k[b, i])
                row = new[i]
                for j in range(dv):
                    row[j] = c * vv[j]
            for l in range(n):
                if not (p >> l) & 1:
                    continue
                Sl = S[b, l]
                if gated:  # kS = k^T S, then S <- e^{a} (S - beta k kS)
                    kS[:] = 0.0
                    for i in range(dk):
                        ki = float(k[b, i])
                        row = Sl[i]
                        for j in range(dv):
                            kS[j] += ki * float(row[j])
                w = float(lam[b, l + 1])
                fold = l < h - 1
                for i in range(dk):
                    row = Sl[i]
                    qi = w * float(q[b, i])
                    c = bt * float(k[b, i])
                    nrow = new[i]
                    for j in range(dv):
                        x = e * (float(row[j]) - c * kS[j]) if gated else e * float(row[j])
                        o[j] += qi * x
                        if fold:
                            nrow[j] += x
                            row[j] = 0.0
                        else:
                            row[j] = x
            for j in range(dv):
                out[b, j] = o[j]

    @jit
    def hierarchical(q, k, lv, lam, a, p, nl, h, lo, alo, m, n, S, z, out):
        """Hierarchical exp-kernel attention at position ``p`` (``nl``, ``h`` as in ``levels``), every
        batch element in turn. q, k (B, d_k), lv (B, d_v), lam (B, L), a (B,) (zeros: no decay),
        m/z (B, slots, d_k), n (B, slots, d_v), S (B, slots, d_k, d_v). Scratch is allocated once per
        call. Exps, logs and the sums of (positive) terms over d_k run in the state's dtype (float32:
        expf, 8-wide sums), the sums over levels and the shifts in float64."""
        B, dk = q.shape
        dv = lv.shape[1]
        r = np.empty(nl + 1)
        sh = np.empty(nl)
        vals = np.empty(dv)
        num = np.empty(dv, S.dtype)  # sums of positive terms: the state's dtype (relative error <= d_k eps)
        M = np.empty(dv)
        s = np.empty(dv)
        NUM = np.empty((nl, dv))  # each occupied level's numerators (relative to its shift)
        acc = np.empty(dv, S.dtype)
        A = np.empty(dk, S.dtype)  # a level's row weights exp(q_i + m_i - r)
        E = np.empty(dv, S.dtype)  # per-column rescalings
        G = np.empty((nl + 1, dv), S.dtype)  # the merge's per-column rescaling of each folded slot (and the key)
        for b in range(B):
            ab = max(float(a[b]), alo)
            for j in range(dv):
                vals[j] = max(float(lv[b, j]), lo)
            # the diagonal and every occupied level's row shift, then the common shift R
            rd = -np.inf
            for i in range(dk):
                rd = max(rd, float(q[b, i]) + float(k[b, i]))
            for i in range(dk):
                A[i] = float(q[b, i]) + float(k[b, i]) - rd
            den0 = 0.0
            for i in range(dk):
                den0 += float(math.exp(A[i]))
            r[0] = rd + max(float(lam[b, 0]), lo)
            R = r[0]
            undefined = float(lam[b, 0]) == -np.inf  # every level read switched off: 0/0, NaN
            for l in range(nl):
                if (p >> l) & 1:
                    undefined = undefined and float(lam[b, l + 1]) == -np.inf
                    rl = -np.inf
                    for i in range(dk):
                        rl = max(rl, float(q[b, i]) + float(m[b, l, i]))
                    r[l + 1] = rl
                    R = max(R, rl + max(float(lam[b, l + 1]), lo) + ab)
            den = math.exp(r[0] - R) * den0
            # numerators, column j: exp(diag_j) + sum_l exp(sh_l + n_lj) NUM_lj with NUM_lj <= den_l;
            # summed relative to the largest exponent among the non-zero terms: one exp per
            # (level, column), no logs
            diag = math.log(den0) + r[0] - R
            for j in range(dv):
                M[j] = diag + vals[j]
            for l in range(nl):
                if not (p >> l) & 1:
                    continue
                sh[l] = r[l + 1] + max(float(lam[b, l + 1]), lo) + ab - R
                for i in range(dk):
                    A[i] = float(q[b, i]) + float(m[b, l, i]) - r[l + 1]
                dl = 0.0
                for i in range(dk):
                    A[i] = math.exp(A[i])
                    dl += float(A[i]) * float(z[b, l, i])
                num[:] = 0.0
                for i in range(dk):
                    Ai = A[i]
                    row = S[b, l, i]
                    for j in range(dv):
                        num[j] += Ai * row[j]
                den += math.exp(sh[l]) * dl
                for j in range(dv):
                    NUM[l, j] = num[j]
                    if num[j] > 0.0:
                        M[j] = max(M[j], sh[l] + float(n[b, l, j]))
            for j in range(dv):
                E[j] = diag + vals[j] - M[j]
            for j in range(dv):
                s[j] = float(math.exp(E[j]))
            for l in range(nl):
                if (p >> l) & 1:
                    for j in range(dv):
                        E[j] = sh[l] + float(n[b, l, j]) - M[j]
                    for j in range(dv):
                        if NUM[l, j] > 0.0:
                            s[j] += float(math.exp(E[j])) * NUM[l, j]
            lden = math.log(den)
            for j in range(dv):
                E[j] = s[j]
            for j in range(dv):
                o = M[j] + float(math.log(E[j])) - lden
                out[b, j] = np.nan if undefined else (o if o > lo / 2 else -np.inf)
            # Fenwick merge: the key and levels 0 .. h-2 (decayed by ab) become slot h-1
            for j in range(dv):
                nn = vals[j]
                for l in range(h - 1):
                    nn = max(nn, float(n[b, l, j]))
                num[j] = nn
                for l in range(h - 1):
                    G[l, j] = float(n[b, l, j]) - nn
                G[nl, j] = vals[j] - nn
            for l in range(h - 1):
                for j in range(dv):
                    G[l, j] = math.exp(G[l, j])
            for j in range(dv):
                G[nl, j] = math.exp(G[nl, j])
            for i in range(dk):  # row i of the merged slot; folded rows emptied
                mk = float(k[b, i])
                for l in range(h - 1):
                    mk = max(mk, float(m[b, l, i]) + ab)
                A[0] = float(k[b, i]) - mk
                f = math.exp(A[0])
                zz = float(f)
                g = G[nl]
                for j in range(dv):
                    acc[j] = f * g[j]
                for l in range(h - 1):
                    A[0] = float(m[b, l, i]) + ab - mk
                    f = math.exp(A[0])
                    zz += float(f) * float(z[b, l, i])
                    src = S[b, l, i]
                    g = G[l]
                    for j in range(dv):
                        acc[j] += (f * g[j]) * src[j]
                    src[:] = 0.0
                    m[b, l, i] = lo
                    z[b, l, i] = 0.0
                dst = S[b, h - 1, i]
                for j in range(dv):
                    dst[j] = acc[j]
                z[b, h - 1, i] = zz
                m[b, h - 1, i] = max(mk, lo)
            for j in range(dv):
                n[b, h - 1, j] = num[j]
            for l in range(h - 1):
                for j in range(dv):
                    n[b, l, j] = lo
            for l in range(h, nl):
                for i in range(dk):
                    m[b, l, i] = max(float(m[b, l, i]) + ab, lo)

    return exp_kernel, levels, hierarchical


class _Step:
    """State buffers with the batch axes flattened; ``tensors`` gives them back in the State's layout.
    ``step`` allocates only the output (the caller keeps it) and calls the kernel."""

    def __init__(self, state, bufs, slots=None):
        self.batch, self.slots = tuple(state.batch_shape), slots
        self.B = math.prod(self.batch)
        self.buf = bufs
        self.lo = _minus_inf(np, state.dtype)
        self.kernels = _kernels()

    def tensors(self, p):
        n = p.bit_length()
        out = {}
        for name, b in self.buf.items():
            view = b if self.slots is None else b[:, :n]
            out[name] = view.reshape(self.batch + view.shape[1:])
        return out

    def _rows(self, x):
        """A token's input (..., 1, d) -> (B, d): a view wherever the batch axes merge (the kernels
        read any strides), else a copy."""
        return x.reshape(self.B, x.shape[-1])

    def _out(self, like):
        """An empty output (..., 1, d_v) of ``like``'s dtype, and its (B, d_v) view for the kernel."""
        out = np.empty(self.batch + (1, like.shape[-1]), like.dtype)
        return out, out.reshape(self.B, like.shape[-1])


def _slotted(state, max_tokens, tails, fill):
    """Flat buffers (B, slots, *tail) holding the state's levels, the rest at ``fill``."""
    slots = level_slots(state, max_tokens)
    n = state.offset.bit_length()
    B = math.prod(state.batch_shape)
    bufs = {}
    for name, x in state.tensors.items():
        tail = tuple(x.shape[x.ndim - tails[name]:])
        buf = np.full((B, slots) + tail, fill[name], dtype=x.dtype)
        buf[:, :n] = np.asarray(x).reshape((B, n) + tail)
        bufs[name] = buf
    return bufs, slots


class _ExpKernel(_Step):
    def __init__(self, state, log_values):
        tails = {"m": 1, "n": 1, "S": 2, "z": 1}
        bufs = {name: np.array(_flat(np.asarray(x), tails[name]), copy=True) for name, x in state.tensors.items()}
        super().__init__(state, bufs)
        self.log_values = log_values
        # m, n (unused placeholder for signed values), S, z
        self.state_args = (bufs["m"], bufs.get("n", bufs["m"]), bufs["S"], bufs["z"])

    def step(self, p, q, k, vals):
        out, flat = self._out(vals)
        self.kernels[0](self._rows(q), self._rows(k), self._rows(vals), self.log_values, self.lo, *self.state_args,
                        flat)
        return out


def log_attention(state, max_tokens):
    return _ExpKernel(state, True)


def exp_kernel_attention(state, max_tokens):
    return _ExpKernel(state, False)


class _Levels(_Step):
    def __init__(self, state, max_tokens, gated):
        bufs, slots = _slotted(state, max_tokens, {"levels": 2}, {"levels": 0.0})
        super().__init__(state, bufs, slots)
        self.gated = gated

    def step(self, p, q, k, v, log_decay, *rest):
        out, flat = self._out(v)
        a = log_decay.reshape(self.B)
        beta = rest[0].reshape(self.B) if self.gated else a
        self.kernels[1](self._rows(q), self._rows(k), self._rows(v), a, beta, self._rows(rest[-1]), p, p.bit_length(),
                        (p ^ (p + 1)).bit_length(), self.gated, self.buf["levels"], flat)
        return out


def loglinear_attention(state, max_tokens):
    return _Levels(state, max_tokens, False)


def loglinear_gated_delta(state, max_tokens):
    return _Levels(state, max_tokens, True)


class _Hierarchical(_Step):
    TAILS = {"m": 1, "n": 1, "S": 2, "z": 1}

    def __init__(self, state, max_tokens):
        lo = _minus_inf(np, state.dtype)
        bufs, slots = _slotted(state, max_tokens, self.TAILS, {"m": lo, "n": lo, "S": 0.0, "z": 0.0})
        super().__init__(state, bufs, slots)
        self.zeros = np.zeros(self.B, dtype=state.dtype)
        self.state_args = (bufs["m"], bufs["n"], bufs["S"], bufs["z"])

    def step(self, p, q, k, log_v, lam, log_decay):
        out, flat = self._out(log_v)
        a = self.zeros if log_decay is None else log_decay.reshape(self.B)
        alo = 0.0 if log_decay is None else self.lo / (4 * (p + 1))
        rows = self._rows
        self.kernels[2](rows(q), rows(k), rows(log_v), rows(lam), a, p, p.bit_length(), (p ^ (p + 1)).bit_length(),
                        self.lo, alo, *self.state_args, flat)
        return out


def loglinear_log_attention(state, max_tokens):
    return _Hierarchical(state, max_tokens)
