"""Numba CUDA kernels: the causal scans of ``numba_cuda`` (and the non-causal exp-kernel read).

Imported only when the ``numba_cuda`` backend computes something, so ``import lsattn`` never
imports Numba. ``kernels(dtype_name)`` compiles (lazily, per argument types) one set of kernels
per compute dtype; every constant and accumulator inside has that dtype (float32 kernels do no
float64 arithmetic).

Arrays have one flattened batch axis ``B`` and any strides. The scans run one block of ``NT``
threads per (batch element, block of ``CB`` value columns): thread ``tid = g * CB + jl`` owns
column ``c = c0 + jl`` and the key rows ``g, g + RG, g + 2 RG, ...`` (``RG = NT / CB`` row
groups). Every column of the exp-kernel state ``S`` and of the log-linear level states evolves on
its own, so blocks never talk to each other; the per-row quantities (key maxima, row shifts) are
recomputed by every column block. Reductions over rows are shared-memory trees with
``syncthreads`` (no warp shuffles, so the CUDA simulator runs exactly these kernels). Each thread
only ever touches its own elements of the state, so the state needs no barrier. The block's state
columns live in shared memory (``ll_scan``: or in global memory, the returned levels, when they do
not fit), and the next token's inputs are loaded into registers while the current one is computed.

State layouts are those of the array-API twins (see ``numba_cuda``), so a stream may move
between backends.
"""
from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda

__all__ = ["kernels"]


@functools.lru_cache(maxsize=None)
def kernels(dtype_name):
    """The kernels computing in ``dtype_name`` ("float32" or "float64")."""
    nbt = numba.from_dtype(np.dtype(dtype_name))

    @cuda.jit(device=True)
    def tree_sum(x, tid, CB, RG):
        """x[jl] <- sum_g x[g*CB + jl]; called after a barrier that follows the writes; ends with one."""
        s = RG // 2
        while s > 0:
            if tid < s * CB:
                x[tid] += x[tid + s * CB]
            cuda.syncthreads()
            s //= 2

    @cuda.jit(device=True)
    def tree_sum2(x, y, tid, CB, RG):
        """tree_sum of x and y at once (one barrier per step)."""
        s = RG // 2
        while s > 0:
            if tid < s * CB:
                x[tid] += x[tid + s * CB]
                y[tid] += y[tid + s * CB]
            cuda.syncthreads()
            s //= 2

    @cuda.jit(device=True)
    def finish(num, den, nj, log_values, lo):
        """y = num / den, or log y = log num + n_j - log den (-inf where nothing visible is non-zero)."""
        if not log_values:
            return num / den
        y = (math.log(num) if num > 0 else lo) + nj - math.log(den)
        return y if y > lo / 2 else nbt(-math.inf)

    # ---- exp-kernel attention, causal scan --------------------------------------------------------
    #
    # The summary after keys s < t, as in the array-API path and the Numba CPU kernel:
    #   m_i = max_s k_si, n_j = max_s log_v_sj (log values only),
    #   S_ij = sum_s exp(k_si - m_i) v'_sj (v' = v, or exp(log_v - n) for log values),
    #   z_i = sum_s exp(k_si - m_i);
    # token t joins it (a new maximum rescales its row / column by exp(old - new) <= 1), then its
    # query reads it with the row shift r = max_i (q_i + m_i): a_i = exp(q_i + m_i - r) <= 1,
    # y_j = sum_i a_i S_ij / sum_i a_i z_i.

    @cuda.jit
    def ek_causal(q, k, vals, m0, n0, S0, z0, has_state, log_values, lo, CB, want_state, out, m1, n1, S1, z1):
        """q, k (B, T, d_k); vals (B, T, d_v); initial state m0, z0 (B, d_k), n0 (B, d_v),
        S0 (B, d_k, d_v) (read only if has_state; n0 only for log values); writes out (B, T, d_v)
        and, if want_state, the final m1, z1 (B, d_k), n1 (B, d_v), S1 (B, d_k, d_v).
        Grid (B, ceil(d_v / CB)); dynamic shared memory (5 d_k + 3 NT + 3 CB + d_k CB) items: the
        block's columns of S live in shared memory; token t + 1's inputs are loaded into registers
        while token t is computed (every row / column is read by the thread that loads it)."""
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        NT = cuda.blockDim.x
        RG = NT // CB
        g = tid // CB
        jl = tid - g * CB
        c = cuda.blockIdx.y * CB + jl
        T, dk = q.shape[1], q.shape[2]
        dv = vals.shape[2]
        colok = c < dv
        zero, one, neg = nbt(0), nbt(1), nbt(-math.inf)
        sh = cuda.shared.array(0, nbt)
        m = sh[0:dk]
        z = sh[dk:2 * dk]
        f = sh[2 * dk:3 * dk]  # row factors exp(m_old - m_new)
        e = sh[3 * dk:4 * dk]  # row weights of the new key exp(k - m_new)
        a = sh[4 * dk:5 * dk]  # q + m, then the query weights exp(q + m - r)
        o = 5 * dk
        red = sh[o:o + NT]
        rn = sh[o + NT:o + 2 * NT]
        rd = sh[o + 2 * NT:o + 3 * NT]
        o += 3 * NT
        n = sh[o:o + CB]
        gv = sh[o + CB:o + 2 * CB]  # column factors exp(n_old - n_new)
        ev = sh[o + 2 * CB:o + 3 * CB]  # the new value, shifted
        o += 3 * CB
        St = sh[o:o + dk * CB]  # St[i * CB + jl] = S[i, c]
        RS = 1  # the r tree spans the rows' threads only
        while RS < dk and RS < NT:
            RS *= 2

        for i in range(tid, dk, NT):
            if has_state:
                m[i] = m0[b, i]
                z[i] = z0[b, i]
            else:
                m[i] = lo
                z[i] = zero
        if tid < CB:
            n[tid] = n0[b, c] if (has_state and log_values and colok) else lo
        if colok:
            for i in range(g, dk, RG):
                St[i * CB + jl] = S0[b, i, c] if has_state else zero
        # registers: rows tid and tid + NT of q_t, k_t; value column tid (threads < CB)
        i1 = tid + NT
        nk0 = nk1 = nq0 = nq1 = nv = zero
        if T > 0:
            if tid < dk:
                nk0 = k[b, 0, tid]
                nq0 = q[b, 0, tid]
            if i1 < dk:
                nk1 = k[b, 0, i1]
                nq1 = q[b, 0, i1]
            if tid < CB and colok:
                nv = vals[b, 0, c]
        cuda.syncthreads()

        for t in range(T):
            k0, k1, q0, q1, x = nk0, nk1, nq0, nq1, nv
            if t + 1 < T:  # prefetch token t + 1; first used next iteration
                if tid < dk:
                    nk0 = k[b, t + 1, tid]
                    nq0 = q[b, t + 1, tid]
                if i1 < dk:
                    nk1 = k[b, t + 1, i1]
                    nq1 = q[b, t + 1, i1]
                if tid < CB and colok:
                    nv = vals[b, t + 1, c]
            # key t joins the rows; each row's thread also forms q + m
            pr = neg
            for i in range(tid, dk, NT):
                if i == tid:
                    ki, qi = k0, q0
                elif i == i1:
                    ki, qi = k1, q1
                else:
                    ki, qi = k[b, t, i], q[b, t, i]
                mi = m[i]
                if ki > mi:
                    fi = math.exp(mi - ki)
                    ei = one
                    mi = ki
                    m[i] = ki
                else:
                    fi = one
                    ei = math.exp(ki - mi)
                f[i] = fi
                e[i] = ei
                z[i] = z[i] * fi + ei
                qm = qi + mi
                a[i] = qm
                pr = max(pr, qm)
            red[tid] = pr
            if tid < CB:  # value t joins the columns
                if colok:
                    if log_values:
                        lv = max(x, lo)  # log v = -inf: the finite stand-in
                        nj = n[tid]
                        if lv > nj:
                            gv[tid] = math.exp(nj - lv)
                            ev[tid] = one
                            n[tid] = lv
                        else:
                            gv[tid] = one
                            ev[tid] = math.exp(lv - nj)
                    else:
                        gv[tid] = one
                        ev[tid] = x
                else:
                    gv[tid] = one
                    ev[tid] = zero
            cuda.syncthreads()
            s = RS // 2
            while s > 0:  # r = max_i (q_i + m_i)
                if tid < s:
                    red[tid] = max(red[tid], red[tid + s])
                cuda.syncthreads()
                s //= 2
            r = red[0]
            for i in range(tid, dk, NT):
                a[i] = math.exp(a[i] - r)
            cuda.syncthreads()
            # update this thread's rows of column c and read them
            pn = zero
            pd = zero
            if colok:
                gj = gv[jl]
                ej = ev[jl]
                for i in range(g, dk, RG):
                    if log_values:
                        sv = St[i * CB + jl] * f[i] * gj + e[i] * ej
                    else:
                        sv = St[i * CB + jl] * f[i] + e[i] * ej
                    St[i * CB + jl] = sv
                    ai = a[i]
                    pn += ai * sv
                    pd += ai * z[i]
            rn[tid] = pn
            rd[tid] = pd
            cuda.syncthreads()
            tree_sum2(rn, rd, tid, CB, RG)
            if g == 0 and colok:
                out[b, t, c] = finish(rn[jl], rd[jl], n[jl], log_values, lo)

        if want_state:
            if cuda.blockIdx.y == 0:
                for i in range(tid, dk, NT):
                    m1[b, i] = m[i]
                    z1[b, i] = z[i]
            if colok:
                if log_values and tid < CB:
                    n1[b, c] = n[tid]
                for i in range(g, dk, RG):
                    S1[b, i, c] = St[i * CB + jl]

    # ---- exp-kernel attention, non-causal: summarise all keys, then every query reads ------------

    @cuda.jit
    def ek_summary(k, vals, log_values, lo, m, n, S, z):
        """k (B, Tk, d_k), vals (B, Tk, d_v) -> m, z (B, d_k), n (B, d_v), S (B, d_k, d_v).
        One thread per (b, i, c), flattened on a 1-D grid; O(Tk) each."""
        B, Tk, dk = k.shape
        dv = vals.shape[2]
        idx = cuda.grid(1)
        if idx >= B * dk * dv:
            return
        b = idx // (dk * dv)
        rest = idx - b * dk * dv
        i = rest // dv
        c = rest - i * dv
        zero = nbt(0)
        mi = k[b, 0, i]
        for s in range(1, Tk):
            mi = max(mi, k[b, s, i])
        nj = zero
        if log_values:
            nj = max(vals[b, 0, c], lo)
            for s in range(1, Tk):
                nj = max(nj, vals[b, s, c])
        acc = zero
        zi = zero
        for s in range(Tk):
            w = math.exp(k[b, s, i] - mi)
            x = math.exp(max(vals[b, s, c], lo) - nj) if log_values else vals[b, s, c]
            acc += w * x
            zi += w
        S[b, i, c] = acc
        if c == 0:
            m[b, i] = mi
            z[b, i] = zi
        if i == 0 and log_values:
            n[b, c] = nj

    @cuda.jit
    def ek_read(q, m, n, S, z, log_values, lo, out):
        """q (B, Tq, d_k) reads the summary -> out (B, Tq, d_v); one thread per (b, t, c)."""
        B, Tq, dk = q.shape
        dv = out.shape[2]
        idx = cuda.grid(1)
        if idx >= B * Tq * dv:
            return
        b = idx // (Tq * dv)
        rest = idx - b * Tq * dv
        t = rest // dv
        c = rest - t * dv
        r = q[b, t, 0] + m[b, 0]
        for i in range(1, dk):
            r = max(r, q[b, t, i] + m[b, i])
        num = nbt(0)
        den = nbt(0)
        for i in range(dk):
            ai = math.exp(q[b, t, i] + m[b, i] - r)
            num += ai * S[b, i, c]
            den += ai * z[b, i]
        out[b, t, c] = finish(num, den, n[b, c] if log_values else nbt(0), log_values, lo)

    # ---- log-linear Mamba-2 and Gated DeltaNet ------------------------------------------------------
    #
    # Level slot j (Fenwick level j + 1) holds, before token t, the bucket B_t^{j+1} (non-empty iff
    # bit j of t is set) carried through A_{s+1} ... A_{t-1}. Token t applies A_t to every occupied
    # slot fused with the level-weighted read o_t = lambda[t,0] beta_t (q_t.k_t) v_t +
    # sum_j lambda[t,j+1] S_j^T q_t, then merges: with zt the trailing zeros of t + 1, its write
    # beta_t k_t v_t^T and slots 0 .. zt-1 become slot zt (empty before: bit zt of t is clear).

    @cuda.jit
    def ll_scan(q, k, v, log_decay, beta, lam, p, levels0, n_old, gated, CB, Lw, use_shared, write_state, out, S):
        """q, k (B, T, d_k); v (B, T, d_v); log_decay, beta (B, T) (beta read only if gated);
        lam (B, T, L); levels0 (B, n_old, d_k, d_v) at offset p (n_old = bit_length(p));
        Lw = bit_length(p + T) level slots. The working levels are the block's columns in shared
        memory (use_shared; written to S at the end if write_state) or S itself;
        S is (B, Lw d_k d_v), slot-major like the returned levels (B, Lw, d_k, d_v).
        Writes out (B, T, d_v). Grid (B, ceil(d_v / CB)); dynamic shared memory
        (2 d_k + nl + 2 NT [+ Lw d_k CB]) items, nl = min(L, Lw + 1)."""
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        NT = cuda.blockDim.x
        RG = NT // CB
        g = tid // CB
        jl = tid - g * CB
        c = cuda.blockIdx.y * CB + jl
        T, dk = q.shape[1], q.shape[2]
        dv = v.shape[2]
        nl = min(lam.shape[2], Lw + 1)
        colok = c < dv
        zero, one = nbt(0), nbt(1)
        sh = cuda.shared.array(0, nbt)
        qs = sh[0:dk]
        ks = sh[dk:2 * dk]
        ls = sh[2 * dk:2 * dk + nl]  # this token's level weights
        o = 2 * dk + nl
        rk = sh[o:o + NT]
        ro = sh[o + NT:o + 2 * NT]
        o += 2 * NT
        if use_shared:  # level j, row a of column c at W[(j * d_k + a) * Wd + cc]
            W = sh[o:o + Lw * dk * CB]
            Wd = CB
            cc = jl
        else:
            W = S[b]
            Wd = dv
            cc = c

        if colok:
            for j in range(Lw):
                for a in range(g, dk, RG):
                    W[(j * dk + a) * Wd + cc] = levels0[b, j, a, c] if j < n_old else zero
        # registers: rows tid and tid + NT of q_i, k_i, level weight tid, decay, beta, v[i, c]
        i1 = tid + NT
        nq0 = nq1 = nk0 = nk1 = nlw = ndec = nbt_ = nv = zero
        if T > 0:
            if tid < dk:
                nq0 = q[b, 0, tid]
                nk0 = k[b, 0, tid]
            if i1 < dk:
                nq1 = q[b, 0, i1]
                nk1 = k[b, 0, i1]
            if tid < nl:
                nlw = lam[b, 0, tid]
            ndec = log_decay[b, 0]
            nbt_ = beta[b, 0] if gated else one
            if colok:
                nv = v[b, 0, c]
            if tid < dk:
                qs[tid] = nq0
                ks[tid] = nk0
            if i1 < dk:
                qs[i1] = nq1
                ks[i1] = nk1
            for aa in range(tid + 2 * NT, dk, NT):
                qs[aa] = q[b, 0, aa]
                ks[aa] = k[b, 0, aa]
            if tid < nl:
                ls[tid] = nlw
            for ee in range(tid + NT, nl, NT):
                ls[ee] = lam[b, 0, ee]
        cuda.syncthreads()

        for i in range(T):
            t = p + i
            dec = math.exp(ndec)
            bt = nbt_
            vc = nv
            if i + 1 < T:  # prefetch token i + 1; stored to shared at the end of this token
                if tid < dk:
                    nq0 = q[b, i + 1, tid]
                    nk0 = k[b, i + 1, tid]
                if i1 < dk:
                    nq1 = q[b, i + 1, i1]
                    nk1 = k[b, i + 1, i1]
                if tid < nl:
                    nlw = lam[b, i + 1, tid]
                ndec = log_decay[b, i + 1]
                nbt_ = beta[b, i + 1] if gated else one
                if colok:
                    nv = v[b, i + 1, c]
            pqk = zero
            for a in range(g, dk, RG):
                pqk += qs[a] * ks[a]
            po = ls[0] * bt * pqk * vc
            j = 0
            while (t >> j) > 0:  # occupied slots: the set bits of t
                if (t >> j) & 1:
                    w = ls[j + 1]
                    base = j * dk
                    if gated:  # S <- e^a (S - beta k (k^T S)), read fused
                        pk = zero
                        if colok:
                            for a in range(g, dk, RG):
                                pk += ks[a] * W[(base + a) * Wd + cc]
                        rk[tid] = pk
                        cuda.syncthreads()
                        tree_sum(rk, tid, CB, RG)
                        kS = rk[jl]
                        cuda.syncthreads()  # everyone has read kS before rk is reused
                        if colok:
                            for a in range(g, dk, RG):
                                idx = (base + a) * Wd + cc
                                sv = dec * (W[idx] - bt * ks[a] * kS)
                                W[idx] = sv
                                po += w * qs[a] * sv
                    elif colok:  # S <- e^a S, read fused
                        for a in range(g, dk, RG):
                            idx = (base + a) * Wd + cc
                            sv = dec * W[idx]
                            W[idx] = sv
                            po += w * qs[a] * sv
                j += 1
            ro[tid] = po
            cuda.syncthreads()
            tree_sum(ro, tid, CB, RG)
            if g == 0 and colok:
                out[b, i, c] = ro[jl]
            # Fenwick merge into slot zt
            u = t + 1
            zt = 0
            while (u & 1) == 0:
                u >>= 1
                zt += 1
            if colok:
                for a in range(g, dk, RG):
                    acc = bt * ks[a] * vc
                    for jj in range(zt):
                        idx = (jj * dk + a) * Wd + cc
                        acc += W[idx]
                        W[idx] = zero
                    W[(zt * dk + a) * Wd + cc] = acc
            cuda.syncthreads()  # this token's readers of qs, ks, ls are done
            if i + 1 < T:
                if tid < dk:
                    qs[tid] = nq0
                    ks[tid] = nk0
                if i1 < dk:
                    qs[i1] = nq1
                    ks[i1] = nk1
                for aa in range(tid + 2 * NT, dk, NT):
                    qs[aa] = q[b, i + 1, aa]
                    ks[aa] = k[b, i + 1, aa]
                if tid < nl:
                    ls[tid] = nlw
                for ee in range(tid + NT, nl, NT):
                    ls[ee] = lam[b, i + 1, ee]
            cuda.syncthreads()

        if use_shared and write_state and colok:
            for j in range(Lw):
                for a in range(g, dk, RG):
                    S[b, (j * dk + a) * dv + c] = W[(j * dk + a) * Wd + cc]

    return SimpleNamespace(ek_causal=ek_causal, ek_summary=ek_summary, ek_read=ek_read, ll_scan=ll_scan)
