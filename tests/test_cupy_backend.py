"""The CuPy RawKernel backend against lsattn.reference.

Two layers:

* CPU (runs in CI): the backend's host logic (``_ll_compute`` / ``_ek_compute``: chunk layout,
  Fenwick up-sweep plan, state bookkeeping) driven by ``Twin``, a NumPy transcription of every
  CUDA kernel (block by block, same index arithmetic), against the float64 references.
* GPU (``@pytest.mark.gpu``; skipped cleanly without CuPy or a CUDA device): the public operators
  with ``backend="cupy"`` on CuPy arrays, torch CUDA tensors and JAX GPU arrays, streaming, state
  hand-over to and from the array-API backend, the exp-kernel's exact-row fallback, bfloat16.

Tolerances (max |out - ref| <= tol * max |ref|): float64 1e-12, float32 2e-5 (the bound the
array-API tests use for loglinear_attention), bfloat16 inputs 2e-2 against the reference on the
bf16-rounded inputs.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lsattn
from lsattn import reference as ref
import lsattn.backends.cupy as cb
from lsattn._chunktree import segsum, suffix_after
from lsattn.backends.cupy import exp_kernel as cek, loglinear as cll
from lsattn.backends.cupy._arrays import shared_inputs as cshared_inputs

from helpers import assert_close, to_numpy
from strategies import batch_shapes, head_dims, magnitudes, seeds, seq_lens, split_points

F64, F32, BF16 = 1e-12, 2e-5, 2e-2


# ---- the NumPy twin of the kernels ---------------------------------------------------------------

def _bitlen(x):
    x = np.asarray(x, dtype=np.int64)
    out = np.zeros(x.shape, dtype=np.int64)
    y = x.copy()
    while np.any(y > 0):
        out += y > 0
        y >>= 1
    return out


def _rows(x, g0, CH, T):
    """Rows g0 .. g0 + CH - 1 of x (BH, T, ...) with zeros outside [0, T); and the validity mask."""
    g = g0 + np.arange(CH)
    ok = (g >= 0) & (g < T)
    vals = x[:, np.clip(g, 0, max(T - 1, 0))]
    mask = ok.reshape((1, CH) + (1,) * (x.ndim - 2))
    return np.where(mask, vals, 0), ok


def _seq(rows, *inputs):
    """The kernels' ``seq_row``: inputs (index i, x (B_i, ...)) with one row per sequence."""
    return [x if rows is None else x[rows[i]] for i, x in inputs]


def _laid_out(tmap, Ts, *inputs):
    """The kernels' ``tok_row`` as copies: inputs (x (B, Ts, ...), is_log_decay) at the T_pad
    positions of the token map (zero tokens: 0; a segment start's log decay: -inf). None: as is."""
    if tmap is None:
        return [x for x, _ in inputs]
    rows = np.where(tmap >= -1, tmap, -2 - tmap)
    out = []
    for x, decay in inputs:
        y = np.where((rows >= 0).reshape((1, -1) + (1,) * (x.ndim - 2)), x[:, np.maximum(rows, 0)], 0)
        if decay:
            y = np.where(tmap <= -2, -np.inf, y)
        out.append(y)
    return out


def _lo(x):
    """The finite stand-in for -inf of x's dtype (-finfo.max / 8, as the kernels' lo_v)."""
    return -np.finfo(x.dtype).max / 8


def _log_out(x, lo):
    """log outputs at the stand-in (every visible value 0) are -inf (the kernels' log_out)."""
    return np.where(x > lo / 2, x, -np.inf)


class Twin:
    """NumPy transcription of the kernels in lsattn/backends/cupy_*.cu (same arguments as _CupyOps)."""

    xp = np

    def token_map(self, tm):
        return tm.array()

    # log-linear
    def ll_chunk_states(self, cfg, k, v, a, H, gsum, T, DK, DV, p, F, n, BH, rows=None, tmap=None, Ts=None):
        k, v, a = _seq(rows, (1, k), (2, v), (3, a))
        k, v, a = _laid_out(tmap, Ts, (k, False), (v, False), (a, True))
        CH = cfg.CH
        for j in range(n):
            g0 = (F + j) * CH - p
            K, _ = _rows(k, g0, CH, T)
            V, _ = _rows(v, g0, CH, T)
            a_c = _rows(a, g0, CH, T)[0]
            Kw = K * np.exp(suffix_after(np, a_c))[..., None]
            H[:, j] = np.swapaxes(Kw, -1, -2) @ V
            gsum[:, j] = np.sum(a_c, axis=-1)

    def ll_upsweep(self, cfg, H, gsum, DK, DV, n, j0, step, stride, count, BH):
        for x in range(count):
            j = j0 + x * step
            gr = gsum[:, j].copy()
            H[:, j] = np.exp(gr)[:, None, None] * H[:, j - stride] + H[:, j]
            gsum[:, j] = gsum[:, j - stride] + gr

    def ll_output(self, cfg, q, k, v, a, lam, H, gsum, old, out, T, DK, DV, L, p, F, n, n_old, BH, X=None, Y=None, dl=None,
                  rows=None, tmap=None, Ts=None):
        q, k, v, a, lam = _seq(rows, (0, q), (1, k), (2, v), (3, a), (4, lam))
        if tmap is not None:  # outputs of the laid-out positions, then those of the input rows
            q, k, v, a, lam = _laid_out(tmap, Ts, (q, False), (k, False), (v, False), (a, True), (lam, False))
            full = np.zeros((BH, T, DV), dtype=out.dtype)
            self.ll_output(cfg, q, k, v, a, lam, H, gsum, old, full, T, DK, DV, L, p, F, n, n_old, BH)
            rows_ = np.where(tmap >= -1, tmap, -2 - tmap)
            out[:, rows_[rows_ >= 0]] = full[:, rows_ >= 0]
            return
        CH = cfg.CH
        logc = int(np.log2(CH))
        t_ = np.arange(CH)[:, None]
        s_ = np.arange(CH)[None, :]
        lev_ts = np.where(s_ == t_, 0, _bitlen(t_ ^ s_))
        for j in range(n):
            cabs = F + j
            g0 = cabs * CH - p
            g = g0 + np.arange(CH)
            Q, ok = _rows(q, g0, CH, T)
            K, _ = _rows(k, g0, CH, T)
            V, _ = _rows(v, g0, CH, T)
            a_c = _rows(a, g0, CH, T)[0]
            A = np.cumsum(a_c, axis=-1)
            LAM, _ = _rows(lam, g0, CH, T)  # (BH, CH, L)
            dl_c = np.zeros(LAM.shape, dtype=q.dtype)  # the DL variant's level dots of this chunk

            def lam_at(level):  # (BH, CH) weights of per-row levels (int or (CH,) array)
                level = np.broadcast_to(np.asarray(level), (CH,))
                w = np.take_along_axis(LAM, np.minimum(level, L - 1)[None, :, None].repeat(LAM.shape[0], 0), axis=-1)[..., 0]
                return np.where(level[None, :] < L, w, 0.0)

            def level_dots(level, wd, tmp):  # dl[t, level] += wd (tmp . X_t)
                if dl is None:
                    return
                level = np.broadcast_to(np.asarray(level), (CH,))
                d = wd * np.sum(tmp * _rows(X, g0, CH, T)[0], axis=-1)
                for r in range(CH):
                    if level[r] < L:
                        dl_c[:, r, level[r]] += d[:, r]

            lam_ts = np.take_along_axis(LAM, np.minimum(lev_ts, L - 1)[None].repeat(LAM.shape[0], 0), axis=-1)
            lam_ts = np.where((lev_ts < L)[None], lam_ts, 0.0)
            dec_ts = np.where(s_ <= t_, np.exp(segsum(np, a_c)), 0.0)
            S = Q @ np.swapaxes(K, -1, -2)
            acc = (lam_ts * dec_ts * S) @ V
            if dl is not None:
                vals = dec_ts * S * (_rows(X, g0, CH, T)[0] @ np.swapaxes(_rows(Y, g0, CH, T)[0], -1, -2))
                for lev in range(min(logc + 1, L)):
                    dl_c[:, :, lev] += np.sum(np.where(lev_ts == lev, vals, 0.0), axis=-1)
            dec = np.zeros(q.shape[0], dtype=q.dtype)
            for lp in range(1, 63):
                hi = cabs >> (lp - 1)
                if hi == 0:
                    break
                if not hi & 1:
                    continue
                e = (hi << (lp - 1)) - 1
                if e < F:
                    break
                slot = e - F
                wd = np.exp(A + dec[:, None])
                tmp = Q @ H[:, slot]
                acc = acc + (lam_at(logc + lp) * wd)[..., None] * tmp
                level_dots(logc + lp, wd, tmp)
                dec = dec + gsum[:, slot]
            for jl in range(n_old):
                if not (p >> jl) & 1:
                    continue
                level = np.maximum(jl + 1, _bitlen((cabs * CH + np.arange(CH)) ^ p))
                wd = np.exp(A + dec[:, None])
                tmp = Q @ old[:, jl]
                acc = acc + (lam_at(level) * wd)[..., None] * tmp
                level_dots(level, wd, tmp)
            out[:, g[ok]] = acc[:, ok]
            if dl is not None:
                dl[:, g[ok]] = dl_c[:, ok]

    def ll_output_dl(self, cfg, q, k, v, a, lam, H, gsum, old, out, T, DK, DV, L, p, F, n, n_old, X, Y, dl, BH):
        self.ll_output(cfg, q, k, v, a, lam, H, gsum, old, out, T, DK, DV, L, p, F, n, n_old, BH, X, Y, dl)

    def ll_bw_blocks(self, cfg, q, do, a, lam, G, gtot, T, DK, DV, L, p, F, n, BH):
        CH = cfg.CH
        logc = int(np.log2(CH))
        for x in range(n - 1):
            r0 = F + 1 + x
            lp = (r0 & -r0).bit_length()
            lev = logc + lp
            last = min(r0 + (1 << (lp - 1)), F + n) - 1
            acc = np.zeros((BH, DK, DV), dtype=G.dtype)
            gt = np.zeros(BH, dtype=G.dtype)
            for j in range(last, r0 - 1, -1):
                g0 = j * CH - p
                Q, _ = _rows(q, g0, CH, T)
                O, _ = _rows(do, g0, CH, T)
                a_c = _rows(a, g0, CH, T)[0]
                LAM, _ = _rows(lam, g0, CH, T)
                w = (LAM[..., lev] if lev < L else 0.0) * np.exp(np.cumsum(a_c, axis=-1))
                tot = np.sum(a_c, axis=-1)
                acc = np.exp(tot)[:, None, None] * acc + np.swapaxes(Q * w[..., None], -1, -2) @ O
                gt = gt + tot
            G[:, r0 - F] = acc
            gtot[:, r0 - F] = gt

    def ll_bw_dkdv(self, cfg, q, k, v, do, a, lam, G, gtot, dk, dv, T, DK, DV, L, p, F, n, BH):
        CH = cfg.CH
        t_ = np.arange(CH)[:, None]
        s_ = np.arange(CH)[None, :]
        lev_ts = np.where(s_ == t_, 0, _bitlen(t_ ^ s_))
        for j in range(n):
            c = F + j
            g0 = c * CH - p
            Q, ok = _rows(q, g0, CH, T)
            K, _ = _rows(k, g0, CH, T)
            V, _ = _rows(v, g0, CH, T)
            O, _ = _rows(do, g0, CH, T)
            a_c = _rows(a, g0, CH, T)[0]
            LAM, _ = _rows(lam, g0, CH, T)
            lam_ts = np.take_along_axis(LAM, np.minimum(lev_ts, L - 1)[None].repeat(LAM.shape[0], 0), axis=-1)
            W = np.where((s_ <= t_)[None] & (lev_ts < L)[None], lam_ts * np.exp(segsum(np, a_c)), 0.0)
            P1 = W * (Q @ np.swapaxes(K, -1, -2))
            P2 = W * (O @ np.swapaxes(V, -1, -2))
            dS = np.zeros((BH, DK, DV), dtype=dk.dtype)
            gap = np.zeros(BH, dtype=dk.dtype)
            for lp in range(1, 63):
                hi = c >> (lp - 1)
                if hi & 1:
                    continue
                r0 = (hi | 1) << (lp - 1)
                if r0 >= F + n:
                    break
                dS = dS + np.exp(gap)[:, None, None] * G[:, r0 - F]
                gap = gap + gtot[:, r0 - F]
            e = np.exp(suffix_after(np, a_c))[..., None]
            dvc = e * (K @ dS) + np.swapaxes(P1, -1, -2) @ O
            dkc = e * (V @ np.swapaxes(dS, -1, -2)) + np.swapaxes(P2, -1, -2) @ Q
            g = g0 + np.arange(CH)
            dv[:, g[ok]] = dvc[:, ok]
            dk[:, g[ok]] = dkc[:, ok]

    def ll_new_state(self, cfg, k, v, a, H, gsum, old, newlev, T, DK, DV, p, F, n, n_old, h, Lnew, BH, rows=None):
        k, v, a = _seq(rows, (1, k), (2, v), (3, a))
        CH = cfg.CH
        logc = int(np.log2(CH))
        pn = p + T
        cs = pn // CH
        rend = pn - cs * CH - 1
        apart = np.zeros(BH, dtype=newlev.dtype)
        for r in range(rend + 1):
            g = cs * CH + r - p
            if g >= 0:
                apart = apart + a[:, g]
        dec = np.zeros(BH, dtype=newlev.dtype)
        decs = {}
        for lp in range(1, 63):
            hi = cs >> (lp - 1)
            if hi == 0:
                break
            decs[lp] = dec.copy()
            if hi & 1:
                e = (hi << (lp - 1)) - 1
                if e < F:
                    break
                dec = dec + gsum[:, e - F]
        total = (dec + apart)[:, None, None]
        for l in range(1, Lnew + 1):
            if not (pn >> (l - 1)) & 1:
                newlev[:, l - 1] = 0
                continue
            if l > h:
                newlev[:, l - 1] = np.exp(total) * old[:, l - 1]
                continue
            if l - 1 >= logc:
                lp = l - logc
                e = ((cs >> (lp - 1)) << (lp - 1)) - 1
                val = np.exp(decs[lp] + apart)[:, None, None] * H[:, e - F]
            else:
                cc = (pn >> (l - 1)) << (l - 1)
                r0, r1 = cc - (1 << (l - 1)) - cs * CH, cc - cs * CH
                val = np.zeros((BH, DK, DV), dtype=newlev.dtype)
                for r in range(r0, r1):
                    g = cs * CH + r - p
                    if g < 0:
                        continue
                    s = np.zeros(BH, dtype=newlev.dtype)
                    for u in range(r + 1, rend + 1):
                        s = s + a[:, cs * CH + u - p]
                    val = val + (k[:, g, :] * np.exp(s)[:, None])[:, :, None] * v[:, g, None, :]
            if l == h:
                for jl in range(min(h - 1, n_old)):
                    val = val + np.exp(total) * old[:, jl]
            newlev[:, l - 1] = val

    def ll_decode(self, cfg, q, k, v, a, lam, old, newlev, out, DK, DV, L, p, n_old, h, Lnew, BH, rows=None):
        q, k, v, a, lam = _seq(rows, (0, q), (1, k), (2, v), (3, a), (4, lam))
        ea = np.exp(a[:, 0])[:, None]
        qk = np.sum(q[:, 0] * k[:, 0], axis=-1)
        rd = np.zeros((BH, DV), dtype=newlev.dtype)
        fold = np.zeros((BH, DK, DV), dtype=newlev.dtype)
        for jl in range(n_old):
            if (p >> jl) & 1:
                rd = rd + lam[:, 0, jl + 1][:, None] * (q[:, 0, None, :] @ old[:, jl])[:, 0]
            if jl < h - 1:
                fold = fold + old[:, jl]
        out[:, 0] = ea * rd + (lam[:, 0, 0] * qk)[:, None] * v[:, 0]
        kv = k[:, 0, :, None] * v[:, 0, None, :]
        for lv in range(1, Lnew + 1):
            if lv < h:
                newlev[:, lv - 1] = 0
            elif lv == h:
                newlev[:, lv - 1] = ea[:, :, None] * fold + kv
            else:
                newlev[:, lv - 1] = ea[:, :, None] * old[:, lv - 1] if lv - 1 < n_old else 0

    # exp-kernel
    # exp-kernel (cfg.logv: log_attention's LOGV mode, log values clamped to the stand-in lo; tok: packed
    # segments, (2, T) the first token of every token's segment, then its segment)
    def seg_tokens(self, off, like):
        lens = np.diff(off)
        seg = np.repeat(np.arange(lens.shape[0]), lens)
        return np.stack([off[:-1][seg], seg]).astype(np.int32).reshape(2, int(off[-1]))

    @staticmethod
    def gather_rows(x, src, t_out, fill=0):
        """``CupyOps.gather_rows``: row ``src[t]`` of every sequence, or the bit pattern ``fill``."""
        y = np.ascontiguousarray(x[:, np.maximum(src, 0)])  # (the kernels' emulations read C order)
        y[:, src < 0] = np.array([fill], dtype=f"u{x.dtype.itemsize}").view(x.dtype)[0]
        return y

    @staticmethod
    def _reset(tok, j, CH, T):
        """exp_kernel.cu's chunk_reset: the segment starting in chunk j that holds its last token, or -1."""
        if tok is None:
            return -1
        last = min((j + 1) * CH, T) - 1
        return int(tok[1, last]) if tok[0, last] >= j * CH else -1

    def ek_chunk(self, cfg, k, v, mk, S, z, T, DK, DV, n, BH, nc=None, rows=None, tok=None):
        CH = cfg.CH
        k, v = _seq(rows, (1, k), (2, v))
        for j in range(n):
            K, ok = _rows(k, j * CH, CH, T)
            V, _ = _rows(v, j * CH, CH, T)
            if tok is not None:  # the chunk's last segment only
                ok = ok & (j * CH + np.arange(CH) >= tok[0, min((j + 1) * CH, T) - 1])
            m = np.max(K[:, ok], axis=1)
            E = np.where(ok[None, :, None], np.exp(K - m[:, None, :]), 0.0)
            if cfg.logv:  # the chunk's column shift
                V = np.maximum(V, _lo(v))
                nc[:, j] = np.max(V[:, ok], axis=1)
                V = np.where(ok[None, :, None], np.exp(np.where(ok[None, :, None], V, nc[:, j][:, None, :]) - nc[:, j][:, None, :]), 0.0)
            mk[:, j], z[:, j], S[:, j] = m, E.sum(axis=1), np.swapaxes(E, -1, -2) @ V

    def ek_scan(self, cfg, mk, S, z, m0, S0, z0, m_in, m_out, S_out, z_out, DK, DV, n, BH, vshift=None, segs=None):
        tok, T, N = (None, 0, 1) if segs is None else segs
        logv, dt = vshift is not None, mk.dtype
        if logv:
            nc, n0, n_in, n_out = vshift

        def start(g):  # a stream's summary before its first key: the incoming state (rows g; None: all) or none
            if m0 is None or g == -1:
                return (np.full((BH, DK), _lo(mk), dt), np.zeros((BH, DK, DV), dt), np.zeros((BH, DK), dt),
                        np.full((BH, DV), _lo(mk), dt))
            r = slice(None) if g is None else np.arange(BH) * N + g
            nv = n0[r].copy() if logv and n0 is not None else np.full((BH, DV), _lo(mk), dt)
            return m0[r].copy(), S0[r].copy(), z0[r].copy(), nv

        m, s, zz, nv = start(None if tok is None else -1)
        for j in range(n):
            Sc, zc = S[:, j].copy(), z[:, j].copy()
            S[:, j], z[:, j], m_in[:, j] = s, zz, m  # entering chunk j (before a reset)
            if logv:
                n_in[:, j] = nv
            g = self._reset(tok, j, cfg.CH, T)
            if g >= 0:  # a segment starts in chunk j and holds its last token
                m, s, zz, nv = start(g)
            mn = np.maximum(m, mk[:, j])
            al, be = np.exp(m - mn), np.exp(mk[:, j] - mn)
            fa, fb = al[..., None], be[..., None]
            if logv:
                nn = np.maximum(nv, nc[:, j])
                fa, fb = fa * np.exp(nv - nn)[:, None, :], fb * np.exp(nc[:, j] - nn)[:, None, :]
                nv = nn
            s = fa * s + fb * Sc
            zz = al * zz + be * zc
            m = mn
        m_out[...], S_out[...], z_out[...] = m, s, zz
        if logv:
            n_out[...] = nv

    def ek_output(self, cfg, q, k, v, m_in, S_in, z_in, out, Tq, Tk, DK, DV, n_state, causal, BH, n_in=None, rows=None,
                  tok=None, init=None, nseg=1):
        CH = cfg.CH
        q, k, v = _seq(rows, (0, q), (1, k), (2, v))
        floor = 1e-20
        lo = _lo(q)
        for j in range(-(-Tq // CH)):
            sj = j if causal else 0
            Q, ok = _rows(q, j * CH, CH, Tq)
            g = j * CH + np.arange(CH)
            # packed segments: each row's first token of its segment - j CH (-1: one stream); the
            # entering summary is read only by rows whose segment started before the chunk
            segl = np.where(ok, tok[0, np.clip(g, 0, Tq - 1)] - j * CH, -1) if tok is not None else np.full(CH, -1)
            reads = segl[0] < 0
            mi, Si, zi = m_in[:, sj], S_in[:, sj], z_in[:, sj]
            mr0 = mi if reads else np.full_like(mi, -1e308)
            mm = mr0.copy()
            if causal:
                K, _ = _rows(k, j * CH, CH, Tk)
                V, _ = _rows(v, j * CH, CH, Tk)
                mm = np.maximum(mm, np.max(K[:, ok], axis=1))
            sc = np.exp(mr0 - mm)
            if cfg.logv:  # the column shift nn over the state and the chunk; V = exp(log v - nn)
                ni = n_in[:, sj]
                nn = ni.copy() if reads else np.full_like(ni, lo)
                ni0 = nn.copy()
                if causal:
                    V = np.maximum(V, lo)
                    nn = np.maximum(nn, np.max(V[:, ok], axis=1))
                    Vl, V = V, np.where(ok[None, :, None], np.exp(np.where(ok[None, :, None], V, nn[:, None, :]) - nn[:, None, :]), 0.0)
                Si = Si * np.exp(ni0 - nn)[:, None, :]
            R = np.max(Q + mm[:, None, :], axis=-1)  # (BH, CH)
            A = np.where(ok[None, :, None], np.exp(Q + mm[:, None, :] - R[..., None]), 0.0)
            own = (segl >= 0)[None, :]  # rows that do not read the entering summary
            num = np.where(own[..., None], 0.0, A @ (sc[..., None] * Si))
            den = np.where(own, 0.0, (A @ (sc * zi)[..., None])[..., 0])
            if causal:
                B = np.where(ok[None, :, None], np.exp(K - mm[:, None, :]), 0.0)
                sidx = np.arange(CH)
                pair = (sidx[None, :] <= sidx[:, None]) & (sidx[None, :] >= segl[:, None])  # its segment's keys
                P = np.where(pair, A @ np.swapaxes(B, -1, -2), 0.0)
                num = num + P @ V
                den = den + P.sum(-1)
            bad = ~(den >= floor) | (own & (init is not None))
            with np.errstate(divide="ignore", invalid="ignore"):
                if cfg.logv:
                    bad |= np.any(~(num >= floor), axis=-1)
                    y = _log_out(np.log(num) - np.log(den)[..., None] + nn[:, None, :], lo)
                else:
                    y = num / den[..., None]
            for b in range(q.shape[0]):  # exact recomputation of the rows the kernel flags
                for t in np.nonzero(ok & bad[b])[0]:
                    s0 = max(segl[t], 0)
                    if segl[t] >= 0:  # its segment starts here: its incoming state, or none
                        r = b * nseg + tok[1, j * CH + t]
                        st_ = None if init is None else (init[0][r], init[2][r], init[1][r],
                                                         init[3][r] if cfg.logv else None)
                    else:
                        st_ = (mi[b], zi[b], S_in[b, sj], n_in[b, sj] if cfg.logv else None)
                    mrow = st_[0] if st_ is not None else np.full(DK, -1e308)
                    mr = mrow.copy()
                    if causal:
                        mr = np.maximum(mr, K[b, s0: t + 1].max(axis=0))
                    Rt = np.max(Q[b, t] + mr)
                    d, nm = 0.0, np.zeros(DV)
                    if st_ is not None:
                        fe = np.exp(Q[b, t] + st_[0] - Rt)
                        d, nm = fe @ st_[1], fe @ st_[2]
                    fw = np.exp(Q[b, t][None, :] + K[b, s0: t + 1] - Rt).sum(-1) if causal else None
                    if causal:
                        d = d + fw.sum()
                    if cfg.logv:  # the visible column shift
                        nrow = st_[3] if st_ is not None else np.full(DV, lo)
                        npr = nrow if not causal else np.maximum(nrow, Vl[b, s0: t + 1].max(axis=0))
                        nm = nm * np.exp(nrow - npr)
                        if causal:
                            nm = nm + fw @ np.exp(Vl[b, s0: t + 1] - npr)
                        with np.errstate(divide="ignore"):
                            y[b, t] = _log_out(np.log(nm) - np.log(d) + npr, lo)
                    else:
                        if causal:
                            nm = nm + fw @ V[b, s0: t + 1]
                        y[b, t] = nm / d
            out[:, g[ok]] = y[:, ok]

    def ek_decode(self, cfg, q, k, v, m, S, z, m2, S2, z2, out, DK, DV, BH, rows=None):
        q, k, v = _seq(rows, (0, q), (1, k), (2, v))
        kk, vv, qq = k[:, 0], v[:, 0], q[:, 0]
        mn = np.maximum(m, kk)
        a, b = np.exp(m - mn), np.exp(kk - mn)
        m2[...], z2[...] = mn, a * z + b
        S2[...] = a[..., None] * S + b[..., None] * vv[:, None, :]
        x = qq + mn
        e = np.exp(x - x.max(-1, keepdims=True))
        out[:, 0] = (e[:, None, :] @ S2)[:, 0] / (e * z2[...]).sum(-1)[:, None]

    # exp-kernel backward (exp_kernel_bwd.cu), per chunk as the kernels (cfg.logv: log_attention's mode)
    def _ekb_chunk(self, CH, c, T, q, k, v, do, lden=None):
        """Rows of chunk c, the mask of pairs s <= t inside it, and X[t, s, i] = q_ti + k_si."""
        (Q, ok), (K, _), (V, _), (O, _) = (_rows(x, c * CH, CH, T) for x in (q, k, v, do))
        mask = np.tril(np.ones((CH, CH), bool)) & ok[:, None] & ok[None, :]
        return Q, K, V, O, ok, mask, Q[:, :, None, :] + K[:, None, :, :]

    @staticmethod
    def _ekb_logv(V, O, Yo, ok, lo):
        """LOGV: lv clamped to the stand-in, g over -inf outputs (and rows past T) 0, those outputs +big
        (the kernels' logv_mask)."""
        good = ok[None, :, None] & (Yo > lo / 2)
        return np.maximum(V, lo), np.where(good, O, 0.0), np.where(good, Yo, -lo)

    @staticmethod
    def _ex_cap(x, cap=None):
        """exp_kernel_bwd.cu's ex_capr (cap: the rows' caps, cek.row_caps) / ex_cap."""
        return np.exp(np.minimum(x, cek.ex_capv(x.dtype) if cap is None else cap))

    @staticmethod
    def _ekb_GE(O, V, Yo, ok, lo):
        """LOGV: the factorised pair factors (exp_kernel_bwd.cu's logv_GE): the rows' flags (BH, t) (some
        g_tj != 0 with nn_j - o_tj > min(FX_LIM, the row's cap): computed per pair), G = g e^(nn - o) (0 on
        flagged rows) and E = e^(lv - nn) (0 for -inf log values and rows past T), nn the chunk's column maxima."""
        nn = np.max(np.where(ok[None, :, None], V, lo), axis=1)[:, None, :]  # (BH, 1, DV)
        x = nn - Yo
        flag = np.any((O != 0) & (x > np.minimum(cek.FX_LIM, cek.row_caps(np, O))), axis=-1)
        with np.errstate(over="ignore", invalid="ignore"):
            G = np.where(flag[..., None] | (O == 0), 0.0, O * np.exp(np.where(flag[..., None], 0.0, x)))
        E = np.where(ok[None, :, None] & (V > lo / 2), np.exp(V - nn), 0.0)
        return flag, G, E

    def _ekb_D(self, cfg, O, V, Yo, delta, mask, ok=None):
        """D[t, s] for s <= t: dO_t . v_s - delta_t (LOGV: sum_j g_tj exp(lv_sj - o_tj) - delta_t, each
        exponent capped at its row's cap: G_t . E_s on the rows _ekb_GE leaves unflagged, per pair on the others)."""
        if cfg.logv:
            flag, G, E = self._ekb_GE(O, V, Yo, ok, _lo(O))
            caps = cek.row_caps(np, O)[:, :, None, :]  # (BH, t, 1, 1)
            exact = np.einsum("btj,btsj->bts", O, self._ex_cap(V[:, None, :, :] - Yo[:, :, None, :], caps))
            G = np.where(flag[..., None], exact, G @ np.swapaxes(E, -1, -2))
        else:
            G = O @ np.swapaxes(V, -1, -2)
        return np.where(mask, G - delta[:, :, None], 0.0)

    def ekb_dq(self, cfg, q, k, v, y, do, m_in, S, z, dq, lden, dl, T, DK, DV, n, BH, n_in=None, Wc=None):
        CH = cfg.CH
        for c in range(n):
            Q, K, V, O, ok, mask, X = self._ekb_chunk(CH, c, T, q, k, v, do)
            Y, _ = _rows(y, c * CH, CH, T)
            if cfg.logv:
                V, O, Y = self._ekb_logv(V, O, Y, ok, _lo(q))
                delta = np.sum(O, axis=-1)
            else:
                delta = np.sum(Y * O, axis=-1)  # (BH, CH)
            mi, zi, Si = m_in[:, c], z[:, c].copy(), S[:, c].copy()
            inter = Q + mi[:, None, :]  # (BH, t, i), weight z_in
            with np.errstate(divide="ignore"):  # log z_in = -inf before any key; rows past T: -inf
                terms = np.concatenate([np.where(mask[None, :, :, None], X, -np.inf).reshape(BH, CH, -1),
                                        inter + np.log(zi)[:, None, :]], axis=-1)
                mx = np.max(terms, axis=-1, keepdims=True)
                mx = np.where(np.isfinite(mx), mx, 0.0)
                L = np.where(ok, (mx + np.log(np.sum(np.exp(terms - mx), axis=-1, keepdims=True)))[..., 0], 0.0)
            D = self._ekb_D(cfg, O, V, Y, delta, mask, ok)
            P = np.where(mask[None, :, :, None], np.exp(X - L[:, :, None, None]), 0.0)  # (BH, t, s, i)
            A = np.where(ok[None, :, None], np.exp(inter - L[:, :, None]), 0.0)
            G = G2 = O
            if cfg.logv:  # the state read with n_in (S_in's columns scaled); U^c with the chunk's column shift W^c
                W = np.max(np.where(ok[None, :, None], -Y, _lo(q)), axis=1, initial=_lo(q))  # (BH, DV)
                Wc[:, c] = W
                sg = cek.col_scale(np, Si)  # (BH, 1, DV)
                Si = Si * np.exp(-sg)
                G = O * self._ex_cap(n_in[:, c][:, None, :] - Y + sg, cek.row_caps(np, O))
                G2 = O * np.exp(-Y - W[:, None, :])
            g = np.einsum("btsi,bts->bti", P, D) + A * (G @ np.swapaxes(Si, -1, -2) - zi[:, None, :] * delta[:, :, None])
            rows = c * CH + np.arange(CH)
            dq[:, rows[ok]], lden[:, rows[ok]], dl[:, rows[ok]] = g[:, ok], L[:, ok], delta[:, ok]
            S[:, c], z[:, c] = np.swapaxes(A, -1, -2) @ G2, np.einsum("bti,bt->bi", A, delta)

    def ekb_rscan(self, cfg, U, Z, m_in, m_next, R0, DK, DV, n, BH, Wc=None, Wn=None, W0=None):
        RU, RZ = np.zeros((BH, DK, DV), U.dtype), np.zeros((BH, DK), U.dtype)
        Wr = np.full((BH, DV), _lo(U), U.dtype)
        for c in range(n - 1, -1, -1):
            f = np.exp(m_in[:, c] - m_next[:, c])
            u, zz = U[:, c].copy(), Z[:, c].copy()
            U[:, c], Z[:, c] = RU, RZ
            cut = m_next[:, c, :1] >= -_lo(m_next)  # (BH, 1): a packed segment ends in chunk c (m_next at +big)
            RU, RZ = np.where(cut[..., None], 0.0, RU), np.where(cut, 0.0, RZ)
            if cfg.logv:  # merge the column shifts: W(b_c) = max(W^c, W(b_{c+1}))
                Wn[:, c] = Wr
                Wr = np.where(cut, _lo(U), Wr)
                wn = np.maximum(Wr, Wc[:, c])
                RU = u * np.exp(Wc[:, c] - wn)[:, None, :] + np.exp(m_in[:, c] - m_next[:, c])[..., None] * np.exp(Wr - wn)[:, None, :] * RU
                Wr = wn
            else:
                RU = u + f[..., None] * RU
            RZ = zz + f * RZ
        R0[:, : DK * DV], R0[:, DK * DV:] = RU.reshape(BH, -1), RZ
        if cfg.logv:
            W0[...] = Wr

    def ekb_dkdv(self, cfg, q, k, v, do, lden, dl, U, Z, m_next, dk, dv, T, DK, DV, n, BH, y=None, Wn=None):
        CH = cfg.CH
        for c in range(n):
            Q, K, V, O, ok, mask, X = self._ekb_chunk(CH, c, T, q, k, v, do)
            L, _ = _rows(lden, c * CH, CH, T)
            delta, _ = _rows(dl, c * CH, CH, T)
            if cfg.logv:
                Y, _ = _rows(y, c * CH, CH, T)
                V, O, Y = self._ekb_logv(V, O, Y, ok, _lo(q))
            D = self._ekb_D(cfg, O, V, Y if cfg.logv else None, delta, mask, ok)
            P = np.where(mask[None, :, :, None], np.exp(X - L[:, :, None, None]), 0.0)  # (BH, t, s, i)
            B = np.where(ok[None, :, None], np.exp(K - m_next[:, c][:, None, :]), 0.0)  # (BH, s, i)
            Uc, Zc = U[:, c], Z[:, c]
            Pts = P.sum(-1)  # (BH, t, s)
            if cfg.logv:  # intra: sum_t P(t,s) g_tj exp(lv_sj - o_tj) (E o P^T G, flagged rows per pair); later
                # queries: V' = exp(lv + W(b_{c+1}) + tau), U'
                flag, G, E = self._ekb_GE(O, V, Y, ok, _lo(q))
                caps = cek.row_caps(np, O)[:, :, None, :]
                intra = E * (np.swapaxes(Pts, -1, -2) @ G) + np.einsum(
                    "bts,btj,btsj->bsj", Pts * flag[..., None], O, self._ex_cap(V[:, None, :, :] - Y[:, :, None, :], caps))
                tau = cek.col_scale(np, Uc)  # (BH, 1, DV)
                Uc = Uc * np.exp(-tau)
                Vp = np.where(ok[None, :, None], self._ex_cap(V + Wn[:, c][:, None, :] + tau), 0.0)
                gk = np.einsum("btsi,bts->bsi", P, D) + B * (Vp @ np.swapaxes(Uc, -1, -2) - Zc[:, None, :])
                gv = intra + Vp * (B @ Uc)
            else:
                gk = np.einsum("btsi,bts->bsi", P, D) + B * (V @ np.swapaxes(Uc, -1, -2) - Zc[:, None, :])
                gv = np.swapaxes(Pts, -1, -2) @ O + B @ Uc
            rows = c * CH + np.arange(CH)
            dk[:, rows[ok]], dv[:, rows[ok]] = gk[:, ok], gv[:, ok]


# ---- inputs ----------------------------------------------------------------------------------

def ll_inputs(seed, batch, T, dk, dv, *, scale=1.0, decay="moderate", offset=0, extra=0):
    rng = np.random.default_rng(seed)
    q, k = (rng.standard_normal(batch + (T, dk)) * scale for _ in range(2))
    v = rng.standard_normal(batch + (T, dv))
    a = {"moderate": -rng.random(batch + (T,)), "strong": -30.0 * rng.random(batch + (T,)) - 1.0,
         "zero": np.zeros(batch + (T,)), "spiky": -0.05 * rng.random(batch + (T,))}[decay]
    if decay == "spiky":  # a few of -1e3 .. -1e6 and hard resets (-inf) among weak decays
        for _ in range(rng.integers(1, 4)):
            a[..., rng.integers(T)] = rng.choice([-1e3, -1e4, -1e6, -np.inf])
    lam = rng.standard_normal(batch + (T, lsattn.num_levels(offset + T) + extra))
    return q, k, v, a, lam


def ek_inputs(seed, batch, T, dk, dv, scale=1.0, Tk=None):
    rng = np.random.default_rng(seed)
    Tk = T if Tk is None else Tk
    return (rng.standard_normal(batch + (T, dk)) * scale, rng.standard_normal(batch + (Tk, dk)) * scale,
            rng.standard_normal(batch + (Tk, dv)))


def twin_ll_stream(arrays, cuts, chunk_size):
    """Run the twin-driven host logic over a stream cut at ``cuts``; (outputs, final levels)."""
    q, k, v, a, lam = arrays
    T = q.shape[-2]
    bounds = [0] + list(cuts) + [T]
    outs, old, p = [], None, 0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        sl = lambda x, ax: x[..., lo:hi, :] if ax == -2 else x[..., lo:hi]  # noqa: E731  (views: broadcasts stay)
        o, levels = cll.compute(Twin(), sl(q, -2), sl(k, -2), sl(v, -2), sl(a, -1), sl(lam, -2), chunk_size,
                                   p, old if p > 0 else None, True)
        outs.append(o)
        old, p = levels, hi
    return np.concatenate(outs, axis=-2), old


# ---- CPU: the host logic with the twin -----------------------------------------------------------

chunks = st.sampled_from([16, 32, 64])


@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunks, scale=magnitudes,
       decay=st.sampled_from(["moderate", "strong", "zero", "spiky"]), seed=seeds)
def test_twin_loglinear_matches_reference(batch, T, dk, dv, C, scale, decay, seed):
    arrays = ll_inputs(seed, batch, T, dk, dv, scale=scale, decay=decay)
    out, _ = cll.compute(Twin(), *arrays, C, 0, None, False)
    assert_close(out, ref.loglinear_attention(*arrays), F64, what=f"T={T} C={C}")


@given(T=st.integers(2, 300), C=chunks, seed=seeds, data=st.data())
@settings(max_examples=12)
def test_twin_loglinear_stream_and_state(T, C, seed, data):
    """Streams cut anywhere (decode steps included) equal one call; the state equals the array-API
    state (same tensors, so streams can move between backends)."""
    arrays = ll_inputs(seed, (2,), T, 3, 2)
    cuts = data.draw(split_points(T, max_splits=5))
    out, levels = twin_ll_stream(arrays, cuts, C)
    assert_close(out, ref.loglinear_attention(*arrays), F64, what=f"cuts={cuts}")
    _, st_api = lsattn.loglinear_attention(*arrays, chunk_size=C, return_state=True, backend="array_api")
    assert_close(levels, st_api.tensors["levels"], F64, what="levels")


@given(lens=st.lists(st.integers(0, 70), min_size=1, max_size=5).filter(sum), C=chunks, seed=seeds)
@settings(max_examples=10)
def test_twin_loglinear_packed_segments(lens, C, seed):
    """``cu_seqlens`` on this backend: the prologue's packed rewrite (``lsattn._varlen.pack``: aligned
    segments, ``-inf`` decays at their starts) through the host logic and the twin equals the
    reference on each segment (segments of length 0 and 1 included); so does the same layout read
    through the token map (``LAYOUT_OPS``: the inputs as they are, outputs on the packed rows), with
    level weights only as wide as the longest segment needs."""
    from lsattn import _varlen
    from lsattn.loglinear import SPEC

    off = np.array([0, *np.cumsum(lens)])
    arrays = ll_inputs(seed, (2,), int(off[-1]), 8, 8)
    run_op, args, finish, _, kw = _varlen.pack(SPEC, np, list(arrays), off, (2,))
    assert run_op is SPEC and not kw
    out = finish(cll.compute(Twin(), *args, C, 0, None, False)[0])
    L = lsattn.num_levels(int(np.diff(off).max()))
    narrow = list(arrays[:4]) + [np.ascontiguousarray(arrays[4][..., :L])]
    run_op, args, finish, _, kw = _varlen.pack(SPEC, np, narrow, off, (2,), mapped=True)
    assert run_op is SPEC and finish is None and args[0] is narrow[0]
    mapped = cll.compute(Twin(), *args, C, 0, None, False, tmap=kw["token_map"])[0]
    for s0, s1 in zip(off[:-1], off[1:]):
        if s1 > s0:
            seg = [x[..., s0:s1] if x.ndim == 2 else x[..., s0:s1, :] for x in narrow]
            assert_close(mapped[..., s0:s1, :], ref.loglinear_attention(*seg), F64, what=f"mapped {lens} C={C}")
    for s0, s1 in zip(off[:-1], off[1:]):
        if s1 > s0:
            seg = [x[..., s0:s1] if x.ndim == 2 else x[..., s0:s1, :] for x in arrays]
            assert_close(out[..., s0:s1, :], ref.loglinear_attention(*seg), F64, what=f"{lens} C={C}")


@given(T=st.integers(1, 150), C=chunks, seed=seeds, shared=st.sets(st.sampled_from("qkval"), min_size=1), data=st.data())
@settings(max_examples=12)
def test_twin_loglinear_broadcast_rows(T, C, seed, shared, data):
    """Grouped-query heads: inputs broadcast over a batch axis (stride-0 views, e.g. q, k
    (2, 3, 1, T, d) for 4 value heads) are read through the row map (``seq_row``), never copied,
    through the chunk kernels, the new state and decoding steps; equal to the reference on the
    materialised inputs."""
    q, k, v, a, lam = full = ll_inputs(seed, (2, 3, 4), T, 5, 3)
    views = []
    for name, x in zip("qkval", full):
        if name in shared:  # one row per group, stretched over the 4 heads
            x = np.broadcast_to(x[:, :, :1], x.shape)
            assert x.strides[2] == 0
        views.append(x)
    expected = ref.loglinear_attention(*[np.ascontiguousarray(x) for x in views])
    bases, rows = cshared_inputs(np, views, (2, 2, 2, 1, 2))
    assert rows is not None and all(b.shape[0] == (6 if n in shared else 24) for b, n in zip(bases, "qkval"))
    cuts = data.draw(split_points(T, max_splits=3))
    out, levels = twin_ll_stream(views, cuts, C)
    assert_close(out, expected, F64, what=f"shared={shared} cuts={cuts}")
    _, st_api = lsattn.loglinear_attention(*[np.ascontiguousarray(x) for x in views], return_state=True,
                                           backend="array_api")
    assert_close(levels, st_api.tensors["levels"], F64, what="levels")


def test_twin_loglinear_long_offsets():
    """Offsets far from zero (many Fenwick levels in the state, chunk levels beyond the call)."""
    T = 700
    arrays = ll_inputs(3, (1,), T, 4, 3, decay="zero")
    arrays = arrays[:4] + (np.abs(arrays[4]) * 0.1,)
    out, levels = twin_ll_stream(arrays, [1, 2, 3, 97, 98, 355, 512, 513, 699], 16)
    assert_close(out, ref.loglinear_attention(*arrays), F64)


def test_twin_loglinear_wide_values(monkeypatch):
    monkeypatch.setattr(cll, "DV_BLOCK", 2)
    arrays = ll_inputs(5, (2,), 40, 3, 5)
    out, levels = twin_ll_stream(arrays, [17, 18], 16)
    assert_close(out, ref.loglinear_attention(*arrays), F64)
    _, st_api = lsattn.loglinear_attention(*arrays, return_state=True, backend="array_api")
    assert_close(levels, st_api.tensors["levels"], F64)


@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunks, scale=magnitudes, seed=seeds)
def test_twin_exp_kernel_matches_reference(batch, T, dk, dv, C, scale, seed):
    q, k, v = ek_inputs(seed, batch, T, dk, dv, scale)
    out, _ = cek.compute(Twin(), q, k, v, True, None, False, C)
    assert_close(out, ref.exp_kernel_attention(q, k, v), F64, what=f"T={T} C={C}")


@given(Tq=st.integers(1, 70), Tk=st.integers(1, 70), C=chunks, seed=seeds)
def test_twin_exp_kernel_noncausal(Tq, Tk, C, seed):
    q, k, v = ek_inputs(seed, (2,), Tq, 3, 4, 2.0, Tk=Tk)
    out, _ = cek.compute(Twin(), q, k, v, False, None, False, C)
    assert_close(out, ref.exp_kernel_attention(q, k, v, causal=False), F64)


@given(T=st.integers(2, 200), C=chunks, seed=seeds, data=st.data())
@settings(max_examples=12)
def test_twin_exp_kernel_stream_and_state(T, C, seed, data):
    q, k, v = ek_inputs(seed, (2,), T, 3, 2, 3.0)
    cuts = data.draw(split_points(T, max_splits=5))
    bounds = [0] + cuts + [T]
    outs, state = [], None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        o, state = cek.compute(Twin(), q[..., lo:hi, :], k[..., lo:hi, :], v[..., lo:hi, :], True, state, True, C)
        outs.append(o)
    assert_close(np.concatenate(outs, axis=-2), ref.exp_kernel_attention(q, k, v), F64, what=f"cuts={cuts}")
    _, st_api = lsattn.exp_kernel_attention(q, k, v, return_state=True, backend="array_api")
    for name, mine in zip("mSz", state):
        assert_close(mine, st_api.tensors[name], F64, what=name)


def test_twin_exp_kernel_late_spike():
    """A key much larger than the earlier ones of its chunk: the chunk shift would underflow every
    earlier row (0/0); those rows take the exact path and stay exact."""
    q, k, v = ek_inputs(7, (1,), 64, 4, 3)
    k[..., 50, :] = 400.0
    q[..., 50:, :] += 0.0
    out, _ = cek.compute(Twin(), q, k, v, True, None, False, 64)
    assert_close(out, ref.exp_kernel_attention(q, k, v), F64)


class _RowsTwin(Twin):
    """The twin, recording the batch rows of the q / k / v every chunk, output and decoding launch reads."""

    def __init__(self):
        self.seen = []

    def ek_chunk(self, cfg, k, v, *args, rows=None, **kw):
        self.seen.append(("chunk", rows is not None, k.shape[0], v.shape[0]))
        return super().ek_chunk(cfg, k, v, *args, rows=rows, **kw)

    def ek_output(self, cfg, q, k, v, *args, rows=None, **kw):
        self.seen.append(("output", rows is not None, q.shape[0], k.shape[0]))
        return super().ek_output(cfg, q, k, v, *args, rows=rows, **kw)

    def ek_decode(self, cfg, q, k, v, *args, rows=None, **kw):
        self.seen.append(("decode", rows is not None, q.shape[0], k.shape[0]))
        return super().ek_decode(cfg, q, k, v, *args, rows=rows, **kw)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # the reference takes log 0
@given(T=st.integers(1, 150), C=chunks, seed=seeds, logv=st.booleans(), causal=st.booleans(),
       shared=st.sets(st.sampled_from("qkv"), min_size=1), data=st.data())
@settings(max_examples=16)
def test_twin_exp_kernel_broadcast_rows(T, C, seed, logv, causal, shared, data):
    """Grouped-query heads on the exp-kernel kernels (``exp_kernel_attention``; ``log_attention``,
    the LOGV mode): inputs broadcast over a batch axis (q, k (2, 3, 1, T, d) for 4 value heads) reach
    the chunk, output and decoding kernels as their distinct rows only, read through the row map
    (``seq_row``; no broadcast copy), in streams cut anywhere (decoding steps included), and equal the
    reference on the materialised inputs; the state equals the array-API state."""
    q, k, v = ek_inputs(seed, (2, 3, 4), T, 5, 3, 2.0)
    if logv:
        v = np.where(np.random.default_rng(seed).random(v.shape) < 0.2, -np.inf, v * 30.0)
    views = [np.broadcast_to(x[:, :, :1], x.shape) if n in shared else x for n, x in zip("qkv", (q, k, v))]
    full = [np.ascontiguousarray(x) for x in views]
    op = lsattn.log_attention if logv else lsattn.exp_kernel_attention
    refop = ref.log_attention if logv else ref.exp_kernel_attention
    twin = _RowsTwin()
    if not causal:
        out, _ = cek.compute(twin, *views, False, None, False, C, logv=logv)
        assert_close(out, refop(*full, causal=False), F64, what=f"non-causal shared={shared}")
    else:
        cuts = data.draw(split_points(T, max_splits=3))
        bounds = [0] + cuts + [T]
        outs, state = [], None
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            o, state = cek.compute(twin, *(x[..., lo:hi, :] for x in views), True, state, True, C, logv=logv)
            outs.append(o)
        assert_close(np.concatenate(outs, axis=-2), refop(*full), F64, what=f"shared={shared} cuts={cuts}")
        _, st_api = op(*full, return_state=True, backend="array_api")
        for name, mine in zip("mSzn", state):
            assert_close(mine, st_api.tensors[name], F64, what=name)
    assert twin.seen
    for kind, mapped, n_first, n_second in twin.seen:
        assert mapped, kind
        first, second = ("k", "v") if kind == "chunk" else ("q", "k")
        assert (n_first, n_second) == (6 if first in shared else 24, 6 if second in shared else 24), (kind, shared)


def test_cupy_broadcast_ops():
    """The exp-kernel operators read broadcast batch axes through the row map (no copies)."""
    assert set(cb.BROADCAST_OPS) == {"loglinear_attention", "exp_kernel_attention", "log_attention"}


def test_upsweep_plan_builds_fenwick_nodes():
    """After the plan, local slot j covers the absolute Fenwick node ending at F + j (2^tz(F+j+1)
    chunks), clipped to the call's chunks."""
    for F in range(0, 70):
        for n in range(1, 70):
            cover = {j: {j} for j in range(n)}
            for stride, step, j0, count in cll.upsweep_plan(F, n):
                for x in range(count):
                    j = j0 + x * step
                    assert (F + j + 1) % step == 0 and stride <= j < n
                    cover[j] = cover[j - stride] | cover[j]
            for j in range(n):
                size = (F + j + 1) & -(F + j + 1)
                assert cover[j] == set(range(max(0, j + 1 - size), j + 1)), (F, n, j)


def test_serves_and_probe_without_gpu():
    """The registry hooks work whatever is installed: NumPy arrays are declined with a reason."""
    assert "not a GPU array" in cb.serves(np, np.zeros((2, 3)))
    reason = cb.probe()
    assert reason is None or isinstance(reason, str)


# ---- GPU: the kernels ------------------------------------------------------------------------------

def _cupy():
    return pytest.importorskip("cupy")


def _cp(x, dtype="float64"):
    cp = _cupy()
    return cp.asarray(np.asarray(x, dtype=dtype))


def _gpu_ready():
    if cb.probe() is not None:
        pytest.skip(f"cupy backend unavailable: {cb.probe()}")


gpu_dtypes = st.sampled_from(["float32", "float64"])


@pytest.mark.gpu
@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunks, dtype=gpu_dtypes,
       decay=st.sampled_from(["moderate", "strong", "zero", "spiky"]), seed=seeds)
def test_gpu_loglinear_matches_reference(batch, T, dk, dv, C, dtype, decay, seed):
    _gpu_ready()
    arrays = [x.astype(dtype) for x in ll_inputs(seed, batch, T, dk, dv, decay=decay)]
    out = lsattn.loglinear_attention(*[_cp(x, dtype) for x in arrays], chunk_size=C, backend="cupy")
    assert str(out.dtype) == dtype and tuple(out.shape) == batch + (T, dv)
    assert_close(out.get(), ref.loglinear_attention(*arrays), F64 if dtype == "float64" else F32, what=f"T={T} C={C}")


@pytest.mark.gpu
@given(T=st.integers(2, 400), C=chunks, dtype=gpu_dtypes, seed=seeds, data=st.data())
@settings(max_examples=12)
def test_gpu_loglinear_stream_decode_and_handover(T, C, dtype, seed, data):
    """Random cuts (decode steps included); the state moves between cupy and array_api mid-stream."""
    _gpu_ready()
    arrays = [x.astype(dtype) for x in ll_inputs(seed, (2,), T, 5, 3)]
    cuts = data.draw(split_points(T, max_splits=6))
    bounds = [0] + cuts + [T]
    outs, state = [], None
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        q, k, v, a, lam = arrays
        part = [q[..., lo:hi, :], k[..., lo:hi, :], v[..., lo:hi, :], a[..., lo:hi], lam[..., lo:hi, :]]
        backend = "cupy" if i % 3 != 2 else "array_api"
        o, state = lsattn.loglinear_attention(*[_cp(x, dtype) for x in part], chunk_size=C, state=state,
                                              return_state=True, backend=backend)
        outs.append(o.get())
    tol = F64 if dtype == "float64" else F32
    assert_close(np.concatenate(outs, axis=-2), ref.loglinear_attention(*arrays), tol, what=f"cuts={cuts}")
    _, st_api = lsattn.loglinear_attention(*arrays, return_state=True, backend="array_api")
    assert_close(state.tensors["levels"].get(), st_api.tensors["levels"], tol, what="levels")


@pytest.mark.gpu
@given(T=st.integers(40, 600), C=chunks, dtype=st.sampled_from(["float32", "float64", "bfloat16"]), seed=seeds,
       data=st.data())
@settings(max_examples=16)
def test_gpu_loglinear_strong_decays_and_resets(T, C, dtype, seed, data):
    """Decays of -1e3 .. -1e6 and hard resets (-inf) among weak ones, anywhere in a chunk, streamed or
    not: the bound docs/api.md promises (float32 1e-5, float64 1e-12; bfloat16 inputs 2e-2 against the
    reference on the rounded inputs), no NaN. Each decay is summed over its own stretch in the kernels."""
    _gpu_ready()
    torch = pytest.importorskip("torch")
    arrays = ll_inputs(seed, (2,), T, 8, 8, decay="spiky")
    td = getattr(torch, dtype)
    dev = [torch.as_tensor(x, device="cuda").to(td) for x in arrays]
    seen = [x.double().cpu().numpy() for x in dev]  # what the kernels see (bf16-rounded)
    expected = ref.loglinear_attention(*seen)
    cuts = data.draw(split_points(T, max_splits=2))
    bounds, outs, state = [0] + cuts + [T], [], None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        part = [x[..., lo:hi, :] if x.ndim == 3 else x[..., lo:hi] for x in dev]
        o, state = lsattn.loglinear_attention(*part, chunk_size=C, state=state, return_state=True)
        outs.append(o.double().cpu().numpy())
    out = np.concatenate(outs, axis=-2)
    assert np.isfinite(out).all()
    assert_close(out, expected, {"float32": 1e-5, "float64": F64, "bfloat16": BF16}[dtype], what=f"T={T} C={C} cuts={cuts}")


@pytest.mark.gpu
@given(lens=st.lists(st.integers(0, 3000), min_size=1, max_size=40))
@settings(max_examples=20, deadline=None)
def test_gpu_token_map_kernel(lens):
    """The token map built on the device (one kernel over the positions, reading the segment table) equals its
    NumPy definition (``TokenMap.array``), empty segments and an all-empty batch included."""
    _gpu_ready()
    from lsattn import _varlen
    from lsattn.backends.cupy._compile import CupyOps

    tm = _varlen.TokenMap(np.array([0, *np.cumsum(lens)], dtype=np.int64))
    np.testing.assert_array_equal(CupyOps(0).token_map(tm).get(), tm.array())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gpu_loglinear_packed_segments(dtype):
    """``cu_seqlens`` on CUDA torch tensors: the automatic choice is this backend, and the packed call
    equals the reference on each segment (bfloat16: on the rounded inputs); exp_kernel_attention is
    refused when forced (its rewrite needs loglinear_log_attention)."""
    _gpu_ready()
    torch = pytest.importorskip("torch")
    lens = [100, 0, 1, 257, 64, 3]
    off = np.array([0, *np.cumsum(lens)])
    arrays = ll_inputs(0, (2,), int(off[-1]), 16, 16)
    dev = [torch.as_tensor(x, device="cuda").to(getattr(torch, dtype)) for x in arrays]
    seen = [x.double().cpu().numpy() for x in dev]
    import array_api_compat

    xp = array_api_compat.array_namespace(dev[0])
    assert lsattn.backends.resolve("loglinear_attention", xp, dev[0], varlen=True).name == "cupy"
    out = lsattn.loglinear_attention(*dev, cu_seqlens=torch.as_tensor(off, device="cuda"))
    assert out.dtype == dev[0].dtype
    out = out.double().cpu().numpy()
    for s0, s1 in zip(off[:-1], off[1:]):
        if s1 > s0:
            seg = [x[..., s0:s1] if x.ndim == 2 else x[..., s0:s1, :] for x in seen]
            assert_close(out[..., s0:s1, :], ref.loglinear_attention(*seg), {"float32": 1e-5, "bfloat16": BF16}[dtype])
    # the exp-kernel operators compute packed segments in their kernels too (tests/test_cupy_packed_ek.py)
    y = lsattn.exp_kernel_attention(*dev[:3], cu_seqlens=off.tolist(), backend="cupy").double().cpu().numpy()
    for s0, s1 in zip(off[:-1].tolist(), off[1:].tolist()):
        if s1 > s0:
            one = lsattn.exp_kernel_attention(*(x[..., s0:s1, :] for x in dev[:3]), backend="cupy")
            assert_close(y[..., s0:s1, :], one.double().cpu().numpy(), {"float32": 1e-5, "bfloat16": BF16}[dtype])
    if dtype != "float32":
        return
    # the token map (no state, no gradient): level weights as wide as the longest segment needs,
    # a NaN key inside one segment poisons that segment's rows from it on, nothing else
    L = lsattn.num_levels(max(lens))
    narrow = [x.clone() for x in dev[:4]] + [dev[4][..., :L].contiguous()]
    bad = int(off[3]) + 100
    narrow[1][1, bad, 3] = float("nan")  # a key: every later row of its own segment reads it
    out = lsattn.loglinear_attention(*narrow, cu_seqlens=off.tolist()).double().cpu().numpy()
    for i, (s0, s1) in enumerate(zip(off[:-1], off[1:])):
        if s1 > s0:
            seg = [x[..., s0:s1] if x.ndim == 2 else x[..., s0:s1, :] for x in seen[:4]] + [seen[4][..., s0:s1, :L]]
            want = ref.loglinear_attention(*seg)
            if i == 3:
                assert np.isnan(out[1, bad:s1]).all() and np.isfinite(out[0, s0:s1]).all()
                assert_close(out[0, s0:s1], want[0], 1e-5)
                assert_close(out[1, s0:bad], want[1, : bad - s0], 1e-5)
                continue
            assert_close(out[..., s0:s1, :], want, 1e-5, what=f"segment {i}")
    # with gradients: the gathered layout through the backward kernels; equal to per-segment calls
    t = [x.detach().clone().requires_grad_(True) for x in dev]
    w = torch.cos(torch.arange(dev[2].numel(), device="cuda", dtype=torch.float32)).reshape(dev[2].shape)
    (lsattn.loglinear_attention(*t, cu_seqlens=off.tolist()) * w).sum().backward()
    u = [x.detach().clone().requires_grad_(True) for x in dev]
    for s0, s1 in zip(off[:-1].tolist(), off[1:].tolist()):
        if s1 > s0:
            seg = [x[..., s0:s1] if x.ndim == 2 else x[..., s0:s1, :] for x in u]
            (lsattn.loglinear_attention(*seg) * w[..., s0:s1, :]).sum().backward()
    for name, x, y in zip("qkval", t, u):
        assert_close(x.grad.double().cpu().numpy(), y.grad.double().cpu().numpy(), 1e-4, what=f"d{name}")


def _grown(fn):
    """(fn(), bytes the call grew the GPU memory by: CuPy's pool, plus torch's peak when torch is loaded)."""
    import sys

    cp = _cupy()
    pool = cp.get_default_memory_pool()
    torch = sys.modules.get("torch")
    cp.cuda.runtime.deviceSynchronize()
    pool.free_all_blocks()
    before, t0 = pool.total_bytes(), None
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = torch.cuda.memory_allocated()
    out = fn()
    cp.cuda.runtime.deviceSynchronize()
    extra = 0 if t0 is None else torch.cuda.max_memory_allocated() - t0
    return out, pool.total_bytes() - before + extra


@pytest.mark.gpu
def test_gpu_loglinear_grouped_heads_share_rows():
    """Grouped-query heads on the GPU: q, k (B, G, 1, T, d) with 16 value heads per group. The
    automatic call reads the shared rows (no 16-fold copy of q and k: the pool grows by less than
    the materialised call's plus 1 MiB, where the copies alone are 64 MiB), its output is bitwise
    the materialised call's, it equals the reference with streams (chunk kernels, new state,
    decoding steps), and torch gradients through it equal the materialised call's."""
    _gpu_ready()
    cp = _cupy()
    grown = _grown
    B, G, r, T, d = 1, 1, 16, 8192, 64
    rng = np.random.default_rng(0)
    q, k = (cp.asarray(rng.standard_normal((B, G, 1, T, d)) / 8, dtype=cp.float32) for _ in range(2))
    v = cp.asarray(rng.standard_normal((B, G, r, T, d)), dtype=cp.float32)
    a = cp.asarray(-rng.random((B, G, r, T)), dtype=cp.float32)
    lam = cp.asarray(rng.random((B, G, r, T, lsattn.num_levels(T))), dtype=cp.float32)
    out_b, mem_b = grown(lambda: lsattn.loglinear_attention(q, k, v, a, lam))
    qf, kf = (cp.ascontiguousarray(cp.broadcast_to(x, v.shape)) for x in (q, k))
    out_m, mem_m = grown(lambda: lsattn.loglinear_attention(qf, kf, v, a, lam))
    assert bool(cp.all(out_b == out_m))
    assert mem_b <= mem_m + 2**20, f"{mem_b / 2**20:.1f} MiB vs {mem_m / 2**20:.1f} MiB materialised"

    q, k, v, a, lam = ll_inputs(4, (2, 2, 3), 300, 8, 8)
    q, k = q[:, :, :1], k[:, :, :1]  # (2, 2, 1, T, d): shared by the 3 heads of a group
    full = [np.broadcast_to(x, v.shape) for x in (q, k)] + [v, a, lam]
    expected = ref.loglinear_attention(*full)
    dev = [_cp(x) for x in (q, k, v, a, lam)]
    outs, state = [], None
    for lo, hi in zip([0, 1, 2, 150], [1, 2, 150, 300]):
        part = [x[..., lo:hi, :] if x.ndim == 5 else x[..., lo:hi] for x in dev]
        o, state = lsattn.loglinear_attention(*part, chunk_size=32, state=state, return_state=True)
        outs.append(o.get())
    assert_close(np.concatenate(outs, axis=-2), expected, F64)

    torch = pytest.importorskip("torch")
    grads = []
    for materialise in (False, True):
        t = [torch.tensor(x, device="cuda", requires_grad=True) for x in (q, k, v, a, lam)]
        qk = [x.expand(v.shape) for x in t[:2]]
        if materialise:
            qk = [x.contiguous() for x in qk]
        out = lsattn.loglinear_attention(*qk, *t[2:])
        (out * torch.cos(out)).sum().backward()
        grads.append([x.grad.cpu().numpy() for x in t])
    for gb, gm, name in zip(*grads, "qkval"):
        assert_close(gb, gm, F64, what=f"d{name}")


@pytest.mark.gpu
@pytest.mark.parametrize("op", ["exp_kernel_attention", "log_attention"])
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # the reference takes log 0
def test_gpu_exp_kernel_grouped_heads_share_rows(op):
    """Grouped-query heads on the exp-kernel kernels (FFMA, LOGV, bf16 tensor-core): q, k
    (B, G, 1, T, d) with 16 value heads per group. The automatic call reads the shared rows: the
    memory it grows by (CuPy's pool, torch's peak) stays within 1 MiB of the materialised call's,
    where the q, k copies alone are 64 MiB (float32; 32 MiB bf16); its output is bitwise the
    materialised call's; with streams (chunk, output, decoding kernels) and non-causal it equals
    the reference on the materialised inputs."""
    _gpu_ready()
    cp = _cupy()
    fn, refop = getattr(lsattn, op), getattr(ref, op)
    B, G, r, T, d = 1, 1, 16, 8192, 64
    rng = np.random.default_rng(1)
    q, k = (rng.standard_normal((B, G, 1, T, d)) / 8 for _ in range(2))
    v = rng.uniform(-3, 3, (B, G, r, T, d))
    torch = pytest.importorskip("torch")
    for kind in ("cupy", "bfloat16"):
        if kind == "cupy":
            dev = [cp.asarray(x, dtype=cp.float32) for x in (q, k, v)]
            wide = lambda x: cp.broadcast_to(x, v.shape)  # noqa: E731
            mat = cp.ascontiguousarray
        else:
            dev = [torch.tensor(x, device="cuda").to(torch.bfloat16) for x in (q, k, v)]
            wide = lambda x: x.expand(v.shape)  # noqa: E731
            mat = lambda x: x.contiguous()  # noqa: E731
        out_b, mem_b = _grown(lambda: fn(*dev))
        qf, kf = (mat(wide(x)) for x in dev[:2])
        out_m, mem_m = _grown(lambda qf=qf, kf=kf: fn(qf, kf, dev[2]))
        assert bool((out_b == out_m).all()), kind
        assert mem_b <= mem_m + 2**20, f"{kind}: {mem_b / 2**20:.1f} MiB vs {mem_m / 2**20:.1f} MiB materialised"
        del qf, kf, out_m
        if kind == "bfloat16":  # the tensor-core kernels against the reference on the rounded inputs
            part = [x[..., :512, :] for x in dev]
            back = [np.broadcast_to(x.double().cpu().numpy(), part[2].shape) for x in part]
            assert_close(fn(*part).double().cpu().numpy(), refop(*back), BF16, what=f"{op} bf16")

    q, k, v = ek_inputs(4, (2, 2, 3), 300, 8, 8)
    if op == "log_attention":
        v = np.where(rng.random(v.shape) < 0.2, -np.inf, v * 30.0)
    q, k = q[:, :, :1], k[:, :, :1]  # (2, 2, 1, T, d): shared by the 3 heads of a group
    full = [np.broadcast_to(x, v.shape) for x in (q, k)] + [v]
    dev = [_cp(x) for x in (q, k, v)]
    outs, state = [], None
    for lo, hi in zip([0, 1, 2, 150], [1, 2, 150, 300]):
        o, state = fn(*(x[..., lo:hi, :] for x in dev), state=state, return_state=True)
        outs.append(o.get())
    assert_close(np.concatenate(outs, axis=-2), refop(*full), F64, what=op)
    assert_close(fn(*dev, causal=False).get(), refop(*full, causal=False), F64, what=f"{op} non-causal")


@pytest.mark.gpu
def test_gpu_loglinear_decode_many_steps():
    """300 single-token steps (every Fenwick carry pattern up to 2^8) equal one call."""
    _gpu_ready()
    arrays = ll_inputs(11, (2, 3), 300, 8, 8)
    dev = [_cp(x, "float64") for x in arrays]
    state, outs = None, []
    for t in range(300):
        step = [x[..., t : t + 1, :] if x.ndim == 4 else x[..., t : t + 1] for x in dev]
        o, state = lsattn.loglinear_attention(*step, state=state, return_state=True, backend="cupy")
        outs.append(o.get())
    assert_close(np.concatenate(outs, axis=-2), ref.loglinear_attention(*arrays), F64)


@pytest.mark.gpu
@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunks, dtype=gpu_dtypes, scale=magnitudes,
       seed=seeds)
def test_gpu_exp_kernel_matches_reference(batch, T, dk, dv, C, dtype, scale, seed):
    _gpu_ready()
    q, k, v = (x.astype(dtype) for x in ek_inputs(seed, batch, T, dk, dv, scale))
    out = cek.forward(_cp(q, dtype), _cp(k, dtype), _cp(v, dtype), True, None, False, chunk_size=C)[0]
    assert_close(out.get(), ref.exp_kernel_attention(q, k, v), F64 if dtype == "float64" else F32)
    out2 = lsattn.exp_kernel_attention(_cp(q, dtype), _cp(k, dtype), _cp(v, dtype), backend="cupy")
    assert_close(out2.get(), ref.exp_kernel_attention(q, k, v), F64 if dtype == "float64" else F32)


@pytest.mark.gpu
@given(Tq=st.integers(1, 150), Tk=st.integers(1, 150), dtype=gpu_dtypes, seed=seeds)
def test_gpu_exp_kernel_noncausal(Tq, Tk, dtype, seed):
    _gpu_ready()
    q, k, v = (x.astype(dtype) for x in ek_inputs(seed, (2,), Tq, 6, 5, 2.0, Tk=Tk))
    out = lsattn.exp_kernel_attention(_cp(q, dtype), _cp(k, dtype), _cp(v, dtype), causal=False, backend="cupy")
    assert_close(out.get(), ref.exp_kernel_attention(q, k, v, causal=False), F64 if dtype == "float64" else F32)


@pytest.mark.gpu
@given(T=st.integers(2, 300), dtype=gpu_dtypes, seed=seeds, data=st.data())
@settings(max_examples=12)
def test_gpu_exp_kernel_stream_decode_and_handover(T, dtype, seed, data):
    _gpu_ready()
    q, k, v = (x.astype(dtype) for x in ek_inputs(seed, (3,), T, 4, 3, 3.0))
    cuts = data.draw(split_points(T, max_splits=6))
    bounds = [0] + cuts + [T]
    outs, state = [], None
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        backend = "cupy" if i % 3 != 2 else "array_api"
        o, state = lsattn.exp_kernel_attention(_cp(q[..., lo:hi, :], dtype), _cp(k[..., lo:hi, :], dtype),
                                               _cp(v[..., lo:hi, :], dtype), state=state, return_state=True,
                                               backend=backend)
        outs.append(o.get())
    tol = F64 if dtype == "float64" else F32
    assert_close(np.concatenate(outs, axis=-2), ref.exp_kernel_attention(q, k, v), tol, what=f"cuts={cuts}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_exp_kernel_extreme_magnitudes(dtype):
    """Late spikes inside chunks and huge magnitudes: exact, no NaN (the fallback rows)."""
    _gpu_ready()
    q, k, v = ek_inputs(13, (2,), 200, 8, 6, 1.0)
    k[..., 50, :] = 300.0
    k[..., 130, 3] = 1e4
    q[..., 100:, :] *= 50.0
    q, k, v = (x.astype(dtype) for x in (q, k, v))
    out = lsattn.exp_kernel_attention(_cp(q, dtype), _cp(k, dtype), _cp(v, dtype), backend="cupy")
    # float32 inputs of magnitude 1e4 carry their own rounding (relative 6e-8 * 1e4 in the exponent)
    assert_close(out.get(), ref.exp_kernel_attention(q, k, v), 1e-12 if dtype == "float64" else 2e-3)


@pytest.mark.gpu
def test_gpu_large_heads_and_wide_values():
    _gpu_ready()
    arrays = ll_inputs(17, (2,), 150, 128, 200)
    out = lsattn.loglinear_attention(*[_cp(x, "float32") for x in arrays], backend="cupy")
    assert_close(out.get(), ref.loglinear_attention(*arrays), F32)
    q, k, v = ek_inputs(17, (2,), 150, 128, 200)
    out = lsattn.exp_kernel_attention(*[_cp(x, "float64") for x in (q, k, v)], backend="cupy")
    assert_close(out.get(), ref.exp_kernel_attention(q, k, v), F64)


@pytest.mark.gpu
def test_gpu_torch_and_jax_interop():
    _gpu_ready()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    arrays = ll_inputs(19, (2,), 90, 4, 4)
    ts = [torch.tensor(x, dtype=torch.float32, device="cuda") for x in arrays]
    out, state = lsattn.loglinear_attention(*ts, return_state=True, backend="cupy")
    assert isinstance(out, torch.Tensor) and out.is_cuda and out.dtype == torch.float32
    assert isinstance(state.tensors["levels"], torch.Tensor)
    assert_close(out, ref.loglinear_attention(*arrays), F32)
    q, k, v = ek_inputs(19, (2,), 90, 4, 4)
    tq = [torch.tensor(x, dtype=torch.float32, device="cuda") for x in (q, k, v)]
    y = lsattn.exp_kernel_attention(*tq, backend="cupy")
    assert isinstance(y, torch.Tensor) and y.is_cuda
    assert_close(y, ref.exp_kernel_attention(q, k, v), F32)
    tg = torch.tensor(q, dtype=torch.float32, device="cuda", requires_grad=True)
    from array_api_compat import torch as xt

    # grad-aware dispatch: the exp-kernel backward kernels take a tensor that requires grad
    assert lsattn.backends.resolve("exp_kernel_attention", xt, tg, grad=True).name == "cupy"
    jax = pytest.importorskip("jax")
    if not any(d.platform == "gpu" for d in jax.devices()):
        return
    import jax.numpy as jnp

    js = [jnp.asarray(x, dtype=jnp.float32) for x in (q, k, v)]
    y = lsattn.exp_kernel_attention(*js, backend="cupy")
    assert_close(np.asarray(y), ref.exp_kernel_attention(q, k, v), F32)


def _bf16(torch, arrays):
    """bfloat16 CUDA tensors of ``arrays`` and the float64 NumPy arrays they round to."""
    tb = [torch.tensor(x, device="cuda").to(torch.bfloat16) for x in arrays]
    return tb, [t.double().cpu().numpy() for t in tb]


@pytest.mark.gpu
def test_gpu_bfloat16_public_calls():
    """bfloat16 tensors reach the tensor-core kernels through the public operators (no backend=)."""
    _gpu_ready()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    tb, back = _bf16(torch, ll_inputs(23, (2, 2), 300, 64, 64))
    out = lsattn.loglinear_attention(*tb)
    assert out.dtype == torch.bfloat16
    assert_close(out.double().cpu().numpy(), ref.loglinear_attention(*back), BF16)
    tb, back = _bf16(torch, ek_inputs(23, (2, 2), 300, 64, 64))
    y = lsattn.exp_kernel_attention(*tb)
    assert y.dtype == torch.bfloat16
    assert_close(y.double().cpu().numpy(), ref.exp_kernel_attention(*back), BF16)


@pytest.mark.gpu
@given(batch=batch_shapes, T=seq_lens, dk=st.sampled_from([1, 3, 16, 33, 64, 100]), dv=st.sampled_from([2, 5, 16, 64, 128]),
       seed=seeds)
@settings(max_examples=16)
def test_gpu_bfloat16_tensor_core_kernels(batch, T, dk, dv, seed):
    """The mma.sync kernels of the bf16 path, over head dims that pad to every tile width."""
    _gpu_ready()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    batch = batch or (1,)
    tb, back = _bf16(torch, ll_inputs(seed, batch, T, dk, dv))
    assert_close(lsattn.loglinear_attention(*tb).double().cpu().numpy(), ref.loglinear_attention(*back), BF16,
                 what=f"loglinear T={T} dk={dk} dv={dv}")
    tb, back = _bf16(torch, ek_inputs(seed, batch, T, dk, dv, 2.0))
    assert_close(lsattn.exp_kernel_attention(*tb).double().cpu().numpy(), ref.exp_kernel_attention(*back), BF16,
                 what=f"exp-kernel T={T} dk={dk} dv={dv}")


@pytest.mark.gpu
def test_gpu_bfloat16_exp_kernel_spike():
    """bf16 path with a late key spike inside a chunk: the flagged rows take the exact fp32 path."""
    _gpu_ready()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    q, k, v = ek_inputs(29, (2, 3), 200, 64, 64, 1.0)
    k[..., 40, :] = 120.0
    k[..., 170, 5] = 300.0
    tb, back = _bf16(torch, (q, k, v))
    assert_close(lsattn.exp_kernel_attention(*tb).double().cpu().numpy(), ref.exp_kernel_attention(*back), BF16)


# ---- the backward (loglinear_attention): host logic with the twin, then the GPU ------------------

#: gradient bounds, max |grad - ref| <= tol * max |ref| per input (docs/backends.md)
GRAD_TOL = {"float64": 1e-10, "float32": 1e-4, "bfloat16": 5e-2}


def _autograd(fn, arrays, do, torch, device="cpu", dtype=None):
    """Gradients of sum(fn(*arrays) * do) by torch autograd (float64 unless ``dtype``)."""
    ts = [torch.tensor(x, dtype=torch.float64, device=device) for x in arrays]
    if dtype is not None:
        ts = [t.to(dtype) for t in ts]
    for t in ts:
        t.requires_grad_(True)
    out = fn(*ts)
    (out.double() * torch.tensor(do, device=device)).sum().backward()
    return [t.grad.double().cpu().numpy() for t in ts], out


def _prefix_state(seed, batch, P, dk, dv, xp_name="numpy"):
    """A log-linear state after P tokens (array-API backend), NumPy float64."""
    prefix = ll_inputs(seed + 1, batch, P, dk, dv)
    _, st = lsattn.loglinear_attention(*prefix, return_state=True, backend="array_api")
    return st


@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunks,
       decay=st.sampled_from(["moderate", "strong", "zero", "spiky"]), P=st.sampled_from([0, 0, 1, 5, 64, 77]),
       seed=seeds)
@settings(max_examples=10)
def test_twin_loglinear_backward(batch, T, dk, dv, C, decay, P, seed):
    """The backward's host logic driven by the twin equals float64 torch autograd: of
    ``lsattn.reference`` (no state), of the array-API path with the state's levels as an input
    (incoming state at offset P)."""
    torch = pytest.importorskip("torch")
    from lsattn.state import State

    arrays = ll_inputs(seed, batch, T, dk, dv, decay=decay, offset=P, extra=1)
    do = np.random.default_rng(seed + 2).standard_normal(batch + (T, dv))
    old = None
    if P:
        st0 = _prefix_state(seed, batch, P, dk, dv)
        old = st0.tensors["levels"]

        def fn(q, k, v, a, lam, lv):
            state = State("loglinear_attention", P, batch, dk, dv, torch.float64, {"levels": lv})
            return lsattn.loglinear_attention(q, k, v, a, lam, state=state, backend="array_api")

        want, _ = _autograd(fn, list(arrays) + [old], do, torch)
    else:
        want, _ = _autograd(ref.loglinear_attention, arrays, do, torch)
    q, k, v, a, lam = arrays
    out, _ = cll.compute(Twin(), q, k, v, a, lam, C, P, old, False)
    got = cll.backward(Twin(), q, k, v, a, lam, old, out, do, C, P, P > 0)
    check_grads(got, want, out, do, GRAD_TOL["float64"], f"T={T} C={C} P={P}", P)


@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, scale=magnitudes,
       P=st.sampled_from([0, 0, 1, 40]), seed=seeds)
@settings(max_examples=10)
def test_twin_exp_kernel_backward(batch, T, dk, dv, scale, P, seed):
    """The exp-kernel backward's host logic driven by the twin equals float64 torch autograd: of
    ``lsattn.reference`` (no state), of the array-API path with the incoming state's tensors
    (m, S, z after P tokens) as inputs."""
    torch = pytest.importorskip("torch")
    from lsattn.state import State

    q, k, v = ek_inputs(seed, batch, T, dk, dv, scale)
    do = np.random.default_rng(seed + 2).standard_normal(batch + (T, dv))
    init = None
    if P:
        pre = ek_inputs(seed + 1, batch, P, dk, dv, scale)
        _, st0 = lsattn.exp_kernel_attention(*pre, return_state=True, backend="array_api")
        init = tuple(np.asarray(st0.tensors[n], np.float64) for n in ("m", "S", "z"))

        def fn(q, k, v, m, S, z):
            state = State("exp_kernel_attention", P, batch, dk, dv, torch.float64, {"m": m, "S": S, "z": z})
            return lsattn.exp_kernel_attention(q, k, v, state=state, backend="array_api")

        want, _ = _autograd(fn, [q, k, v, *init], do, torch)
    else:
        want, _ = _autograd(ref.exp_kernel_attention, [q, k, v], do, torch)
    out, _ = cek.compute(Twin(), q, k, v, True, init, False)
    dq, dk_, dv_, dst = cek.backward(Twin(), q, k, v, init, out, do, P > 0)
    check_ek_grads([dq, dk_, dv_] + (list(dst) if P else []), want, out, do, v, GRAD_TOL["float64"], f"T={T} P={P} scale={scale}")


def check_ek_grads(got, want, out, do, v, tol, what):
    """Each exp-kernel gradient within ``tol * (max |ref| + max |dO| (max |v| + max |y|))``: every
    gradient is a sum of attention weights (<= 1) times ``dO_t . v_s - dO_t . y_t`` or ``dO_t``, so
    the second term is the scale of one term; it matters where a gradient cancels to 0 (with
    ``d_k = 1`` the output does not depend on ``q``)."""
    mx = lambda x: float(np.max(np.abs(to_numpy(x)), initial=0.0))  # noqa: E731
    atol = tol * mx(do) * (mx(v) + mx(out))
    for name, g, w in zip(["dq", "dk", "dv", "dm", "dS", "dz"], got, want):
        assert_close(g, w, tol, atol=atol, what=f"{name} {what}")


def check_grads(got, want, out, do, tol, what, P=0):
    """Each gradient within ``tol * max |ref|``; the log-decay gradient, a difference of row and
    column sums, within ``tol * (max |ref| + sum_t |dO_t . o_t|)`` (zero where nothing decays); the
    incoming state's on its occupied levels (bits of the offset P: the others are zero in every
    state, never read by the kernels, and get zero gradient)."""
    rows = np.sum(np.abs(np.sum(np.asarray(do, np.float64) * np.asarray(out, np.float64), axis=-1)), axis=-1)
    for name, g, w in zip(["dq", "dk", "dv", "da", "dl", "dold"], got, want):
        atol = tol * float(np.max(rows, initial=0.0)) if name == "da" else 0.0
        if name == "dold":
            occupied = [jl for jl in range(P.bit_length()) if (P >> jl) & 1]
            assert not np.any(np.delete(to_numpy(g), occupied, axis=-3)), "unoccupied levels get zero gradient"
            g, w = np.take(to_numpy(g), occupied, axis=-3), np.take(to_numpy(w), occupied, axis=-3)
        assert_close(g, w, tol, atol=atol, what=f"{name} {what}")
