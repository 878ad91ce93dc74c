// Exp-kernel attention (lsattn.exp_kernel_attention) as CUDA kernels; compiled after cupy_common.cu.
//
//   w(t,s) = sum_i exp(q_ti + k_si),   y_t = sum_{s<=t} w(t,s) v_s / sum_{s<=t} w(t,s)
//
// Linear attention with feature map exp(k - m) and a per-key-feature shift m. A summary of a
// group of keys is (m, S, z): m_i its per-feature key maximum, S_ij = sum_s exp(k_si - m_i) v_sj,
// z_i = sum_s exp(k_si - m_i) (the streaming state of lsattn.exp_kernel has this layout).
//
//   ek_chunk   per chunk (parallel): its summary (mk, S_c, z_c)
//   ek_scan    per (sequence, element of S / z): the running summary over chunks, rescaled to the
//              larger maximum at each merge; writes the summary entering every chunk (m_in, S_in,
//              z_in) over the chunk's own, and the final state
//   ek_output  per chunk (parallel): with mm = max(m_in, mk) and one row shift
//              R_t = max_i (q_ti + mm_i), A = exp(q + mm - R) <= 1, B = exp(k - mm) <= 1:
//              num = (A B^T masked s <= t) V + A (exp(m_in - mm) S_in), den likewise with 1 and z.
//              Every term is a product of two factors <= 1, so terms that matter never underflow;
//              but mm includes keys later in the chunk, and if such a key dominates, a row's whole
//              denominator can sit far below exp(R_t). Rows whose den < DEN_FLOOR are recomputed
//              exactly (a warp per row) with the row's own shift max_i (q_ti + max_{s<=t} k_si).
//   ek_decode  one token for every sequence: merge, then read (den >= 1 exactly).
//
// Non-causal calls summarise all keys (ek_chunk + ek_scan) and read that summary with every
// query chunk (ek_output with causal = 0: no intra-chunk part, den >= 1).

namespace {
constexpr int QLD = CH + 4;
constexpr int HS = DKP < 32 ? DKP : 32;
}

__device__ __forceinline__ ta neg_big() { return sizeof(ta) == 4 ? (ta)-3.0e38f : (ta)-1.0e308; }

extern "C" __global__ void __launch_bounds__(NT) ek_chunk(
    const ti* __restrict__ k, const ti* __restrict__ v, ta* __restrict__ mk, ta* __restrict__ S,
    ta* __restrict__ z, int T, int DK, int DV, int n) {
    constexpr int RI = DKP / 16, RN = DVP / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Kf = reinterpret_cast<ta*>(smem_raw);  // CH x DKP
    ta* Vs = Kf + CH * DKP;                    // CH x DVP
    ta* mS = Vs + CH * DVP;                    // DKP
    check_smem((unsigned)((CH * DKP + CH * DVP + DKP) * sizeof(ta)));
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 r0 = (i64)j * CH;
    const int ns = (int)min((i64)CH, (i64)T - r0);
    const ti* kb = k + (bh * T + r0) * DK;
    const ti* vb = v + (bh * T + r0) * DV;
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        int r = idx / DKP, i = idx % DKP;
        Kf[idx] = (r < ns && i < DK) ? ld(kb + (i64)r * DK + i) : (ta)0;
    }
    for (int idx = tid; idx < CH * DVP; idx += NT) {
        int r = idx / DVP, c = idx % DVP;
        Vs[idx] = (r < ns && c < DV) ? ld(vb + (i64)r * DV + c) : (ta)0;
    }
    __syncthreads();
    if (tid < DKP) {
        ta m = (ta)0;
        if (tid < DK) {
            m = Kf[tid];
            for (int r = 1; r < ns; ++r) m = fmx(m, Kf[r * DKP + tid]);
            mk[(bh * n + j) * DK + tid] = m;
        }
        mS[tid] = m;
    }
    __syncthreads();
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        int r = idx / DKP, i = idx % DKP;
        Kf[idx] = (r < ns && i < DK) ? ex(Kf[idx] - mS[i]) : (ta)0;
    }
    __syncthreads();
    if (tid < DK) {
        ta s = (ta)0;
        for (int r = 0; r < ns; ++r) s += Kf[r * DKP + tid];
        z[(bh * n + j) * DK + tid] = s;
    }
    ta acc[RI][RN];
    zero_acc(acc);
    mm_acc<RI, RN, CH>(acc, Kf, DKP, Vs, DVP, ty, tx);
    ta* Sb = S + (bh * n + j) * (i64)DK * DV;
#pragma unroll
    for (int ii = 0; ii < RI; ++ii) {
        int i = ty * RI + ii;
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            int c = tx * RN + jj;
            if (i < DK && c < DV) Sb[(i64)i * DV + c] = acc[ii][jj];
        }
    }
}

// Thread per (sequence, i, column c of [S | z]); sequential over chunks, loads 8 chunks ahead.
extern "C" __global__ void __launch_bounds__(NT) ek_scan(
    const ta* __restrict__ mk, ta* __restrict__ S, ta* __restrict__ z, const ta* __restrict__ m0,
    const ta* __restrict__ S0, const ta* __restrict__ z0, ta* __restrict__ m_in, ta* __restrict__ m_out,
    ta* __restrict__ S_out, ta* __restrict__ z_out, int DK, int DV, int n) {
    const i64 bh = blockIdx.y;
    const int W = DV + 1;
    const int e = blockIdx.x * NT + threadIdx.x;
    if (e >= DK * W) return;
    const int i = e / W, c = e % W;
    const bool isz = (c == DV);
    ta m = m0[bh * DK + i];
    ta s = isz ? z0[bh * DK + i] : S0[(bh * DK + i) * DV + c];
    ta* buf = isz ? z + bh * (i64)n * DK + i : S + bh * (i64)n * DK * DV + (i64)i * DV + c;
    const i64 bstride = isz ? DK : (i64)DK * DV;
    const ta* mkp = mk + bh * (i64)n * DK + i;
    ta* mip = m_in + bh * (i64)n * DK + i;
    for (int j0 = 0; j0 < n; j0 += 8) {
        ta mv[8], sv[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            if (j0 + u < n) {
                mv[u] = mkp[(i64)(j0 + u) * DK];
                sv[u] = buf[(i64)(j0 + u) * bstride];
            }
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            if (j0 + u < n) {
                const i64 jj = j0 + u;
                ta mn = fmx(m, mv[u]);
                ta al = ex(m - mn), be = ex(mv[u] - mn);
                buf[jj * bstride] = s;  // the summary entering chunk jj (shift m)
                if (c == 0) mip[jj * DK] = m;
                s = fma(al, s, be * sv[u]);
                m = mn;
            }
        }
    }
    if (isz) z_out[bh * DK + i] = s;
    else S_out[(bh * DK + i) * DV + c] = s;
    if (c == 0) m_out[bh * DK + i] = m;
}

extern "C" __global__ void __launch_bounds__(NT) ek_output(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ta* __restrict__ m_in,
    const ta* __restrict__ S_in, const ta* __restrict__ z_in, ti* __restrict__ out,
    int Tq, int Tk, int DK, int DV, int n_state, int causal) {
    constexpr int RM = CH / 16, RN = DVP / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Qt = reinterpret_cast<ta*>(smem_raw);  // DKP x QLD: q, then A = exp(q + mm - R)
    ta* Kt = Qt + DKP * QLD;                   // DKP x QLD: k, then B = exp(k - mm)
    ta* Vs = Kt + DKP * QLD;                   // CH x DVP
    ta* Pt = Vs + CH * DVP;                    // CH x QLD: masked A B^T, transposed
    ta* Hs = Pt + CH * QLD;                    // HS x DVP staging of the scaled S_in
    ta* mmS = Hs + HS * DVP;                   // DKP
    ta* scS = mmS + DKP;                       // DKP: exp(m_in - mm)
    ta* zS = scS + DKP;                        // DKP: exp(m_in - mm) z_in
    ta* RS = zS + DKP;                         // CH: row shifts
    ta* DS = RS + CH;                          // CH: state part of the denominators
    ta* fb = DS + CH;                          // (NT/32) x (DKP + CH): fallback scratch per warp
    int* flag = reinterpret_cast<int*>(fb + (NT / 32) * (DKP + CH));  // CH
    check_smem((unsigned)((2 * DKP * QLD + CH * DVP + CH * QLD + HS * DVP + 3 * DKP + 2 * CH + (NT / 32) * (DKP + CH)) * sizeof(ta) + CH * sizeof(int)));
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 r0 = (i64)j * CH;
    const int ns = (int)min((i64)CH, (i64)Tq - r0);
    const i64 sidx = bh * n_state + (causal ? j : 0);
    const ta* mi_p = m_in + sidx * DK;
    const ta* zi_p = z_in + sidx * DK;
    const ta* Si_p = S_in + sidx * (i64)DK * DV;
    const ti* qb = q + (bh * Tq + r0) * DK;
    const ti* kb = k + (bh * Tk + r0) * DK;  // causal only (Tk == Tq)
    const ti* vb = v + (bh * Tk + r0) * DV;
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        int r = idx / DKP, i = idx % DKP;
        bool ok = r < ns && i < DK;
        Qt[i * QLD + r] = ok ? ld(qb + (i64)r * DK + i) : (ta)0;
        if (causal) Kt[i * QLD + r] = ok ? ld(kb + (i64)r * DK + i) : (ta)0;
    }
    if (causal) {
        for (int idx = tid; idx < CH * DVP; idx += NT) {
            int r = idx / DVP, c = idx % DVP;
            Vs[idx] = (r < ns && c < DV) ? ld(vb + (i64)r * DV + c) : (ta)0;
        }
    }
    if (tid < CH) flag[tid] = 0;
    __syncthreads();
    if (tid < DKP) {
        const int i = tid;
        ta mm = (ta)0, sc = (ta)0, zz = (ta)0;
        if (i < DK) {
            ta mi = mi_p[i];
            mm = mi;
            if (causal)
                for (int r = 0; r < ns; ++r) mm = fmx(mm, Kt[i * QLD + r]);
            sc = ex(mi - mm);
            zz = sc * zi_p[i];
        }
        mmS[i] = mm;
        scS[i] = sc;
        zS[i] = zz;
    }
    __syncthreads();
    if (tid < CH) {
        ta R = neg_big();
        for (int i = 0; i < DK; ++i) R = fmx(R, Qt[i * QLD + tid] + mmS[i]);
        RS[tid] = R;
    }
    __syncthreads();
    for (int idx = tid; idx < CH * DKP; idx += NT) {
        int i = idx / CH, r = idx % CH;
        bool ok = r < ns && i < DK;
        Qt[i * QLD + r] = ok ? ex((Qt[i * QLD + r] + mmS[i]) - RS[r]) : (ta)0;
        if (causal) Kt[i * QLD + r] = ok ? ex(Kt[i * QLD + r] - mmS[i]) : (ta)0;
    }
    __syncthreads();
    if (tid < CH) {
        ta d = (ta)0;
        for (int i = 0; i < DK; ++i) d = fma(Qt[i * QLD + tid], zS[i], d);
        DS[tid] = d;
    }
    ta acc[RM][RN];
    zero_acc(acc);
    ta rows[RM];
#pragma unroll
    for (int ii = 0; ii < RM; ++ii) rows[ii] = (ta)0;
    if (causal) {
        ta P[RM][RM];
        zero_acc(P);
        mm_acc<RM, RM, DKP>(P, Qt, QLD, Kt, QLD, ty, tx);
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            int t = ty * RM + ii;
#pragma unroll
            for (int jj = 0; jj < RM; ++jj) {
                int s = tx * RM + jj;
                ta x = (s <= t) ? P[ii][jj] : (ta)0;
                rows[ii] += x;
                Pt[s * QLD + t] = x;
            }
        }
#pragma unroll
        for (int ii = 0; ii < RM; ++ii)
#pragma unroll
            for (int o = 8; o > 0; o >>= 1) rows[ii] += __shfl_xor_sync(0xffffffffu, rows[ii], o);  // over tx
        __syncthreads();
        mm_acc<RM, RN, CH>(acc, Pt, QLD, Vs, DVP, ty, tx);
    }
    for (int k0 = 0; k0 < DKP; k0 += HS) {
        __syncthreads();
        for (int idx = tid; idx < HS * DVP; idx += NT) {
            int kk = idx / DVP, c = idx % DVP, i = k0 + kk;
            Hs[idx] = (i < DK && c < DV) ? scS[i] * Si_p[(i64)i * DV + c] : (ta)0;
        }
        __syncthreads();
        mm_acc<RM, RN, HS>(acc, Qt + k0 * QLD, QLD, Hs, DVP, ty, tx);
    }
    ti* ob = out + (bh * Tq + r0) * DV;
#pragma unroll
    for (int ii = 0; ii < RM; ++ii) {
        int t = ty * RM + ii;
        if (t >= ns) continue;
        ta den = rows[ii] + DS[t];
        if (!(den >= DEN_FLOOR)) {
            if (tx == 0) flag[t] = 1;
            continue;
        }
        ta inv = (ta)1 / den;
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            int c = tx * RN + jj;
            if (c < DV) st(ob + (i64)t * DV + c, acc[ii][jj] * inv);
        }
    }
    if (!__syncthreads_or(tid < CH ? flag[tid] : 0)) return;

    // exact recomputation of flagged rows, one warp per row
    const int w = tid >> 5, lane = tid & 31;
    ta* fe = fb + w * (DKP + CH);  // exp(q_ti + m_in_i - R')
    ta* fw = fe + DKP;             // w(t, s) exp(-R'), s <= t
    for (int t = w; t < ns; t += NT / 32) {
        if (!flag[t]) continue;
        const ti* qr = qb + (i64)t * DK;
        ta xm = neg_big();
        for (int i = lane; i < DK; i += 32) {
            ta mr = mi_p[i];
            if (causal)
                for (int s = 0; s <= t; ++s) mr = fmx(mr, ld(kb + (i64)s * DK + i));
            xm = fmx(xm, ld(qr + i) + mr);
        }
        const ta R = warp_max(xm);
        ta dst = (ta)0;
        for (int i = lane; i < DK; i += 32) {
            ta e = ex((ld(qr + i) + mi_p[i]) - R);
            fe[i] = e;
            dst = fma(e, zi_p[i], dst);
        }
        ta den = warp_sum(dst);
        if (causal) {
            for (int s = 0; s <= t; ++s) {
                ta ws = (ta)0;
                for (int i = lane; i < DK; i += 32) ws += ex((ld(qr + i) + ld(kb + (i64)s * DK + i)) - R);
                ws = warp_sum(ws);
                if (lane == 0) fw[s] = ws;
                den += ws;
            }
        }
        __syncwarp();
        const ta inv = (ta)1 / den;
        for (int c = lane; c < DV; c += 32) {
            ta num = (ta)0;
            if (causal)
                for (int s = 0; s <= t; ++s) num = fma(fw[s], Vs[s * DVP + c], num);
            for (int i = 0; i < DK; ++i) num = fma(fe[i], Si_p[(i64)i * DV + c], num);
            st(ob + (i64)t * DV + c, num * inv);
        }
        __syncwarp();
    }
}

// One decoding step for every sequence: merge the token into (m, S, z), then read it.
extern "C" __global__ void __launch_bounds__(NT) ek_decode(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ta* __restrict__ m,
    const ta* __restrict__ S, const ta* __restrict__ z, ta* __restrict__ m2, ta* __restrict__ S2,
    ta* __restrict__ z2, ti* __restrict__ out, int DK, int DV) {
    __shared__ ta so[DKP], sn[DKP], es[DKP], zn[DKP], vs[DVP], outs[DVP], red[NT / 32];
    const int tid = threadIdx.x;
    const i64 bh = blockIdx.x;
    ta x = neg_big();
    for (int i = tid; i < DK; i += NT) {
        ta mi = m[bh * DK + i], ki = ld(k + bh * DK + i);
        ta mn = fmx(mi, ki);
        ta a = ex(mi - mn), b = ex(ki - mn);
        so[i] = a;
        sn[i] = b;
        ta zi = fma(a, z[bh * DK + i], b);
        zn[i] = zi;
        z2[bh * DK + i] = zi;
        m2[bh * DK + i] = mn;
        ta xi = ld(q + bh * DK + i) + mn;
        es[i] = xi;
        x = fmx(x, xi);
    }
    for (int c = tid; c < DV; c += NT) {
        vs[c] = ld(v + bh * DV + c);
        outs[c] = (ta)0;
    }
    const ta R = block_max(x, red);
    ta dp = (ta)0;
    for (int i = tid; i < DK; i += NT) {
        ta e = ex(es[i] - R);
        es[i] = e;
        dp = fma(e, zn[i], dp);
    }
    const ta den = block_sum(dp, red);  // synchronises: es visible
    const int mm = DK * DV;
    const ta* Sb = S + bh * (i64)mm;
    ta* S2b = S2 + bh * (i64)mm;
    for (int e = tid; e < mm; e += NT) {
        int i = e / DV, c = e % DV;
        ta s2 = fma(so[i], Sb[e], sn[i] * vs[c]);
        S2b[e] = s2;
        atomicAdd(&outs[c], es[i] * s2);
    }
    __syncthreads();
    for (int c = tid; c < DV; c += NT) st(out + bh * DV + c, outs[c] / den);
}
