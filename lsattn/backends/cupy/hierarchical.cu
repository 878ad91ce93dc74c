// Hierarchical exp-kernel attention (loglinear_log_attention) as CUDA kernels; compiled after
// common.cu (host: hierarchical.py). The inputs are read in their own dtype (ti, ld: float32,
// float64, bfloat16 or float16), computed in ta (float for 16-bit inputs), the output written in
// the inputs' dtype.
//
//   log w(t,s) = lam[t, level(t,s)] + (a_{s+1} + ... + a_t) + log sum_i exp(q_ti + k_si)
//   log y_tc   = log sum_{s<=t} w(t,s) exp(lv_sc) - log sum_{s<=t} w(t,s)
//
// Chunks of CH tokens aligned to absolute multiples of CH (positions p .. p + T - 1 of the call;
// rows outside the call are skipped). Clamps as the array-API path: lam and lv at the stand-in
// lo = -finfo.max / 8 (lo_v), decays at alo = lo / (4 (p + T)) (a host argument): every sum stays
// finite and exp of a stand-in minus a finite shift is 0, so -inf weights, decays and values are
// exact zeros.
//
// hi_intra  one block per (chunk, sequence): the pairs (t, s) inside the chunk, exactly in log
//           space. X_ts = log sum_i exp(q_ti + k_si) (shift max_i per pair) + lam[t, bit_length(t
//           XOR s)] + (a_{s+1} + ... + a_t) (summed over the stretch: rounding relative to it);
//           lden_t = log sum_{s<=t} exp(X_ts), lnum_tc = log sum_{s<=t} exp(X_ts + lv_sc), each
//           with its own maximum as shift (no underflow of a visible term that matters).
// hi_scan   one block per (sequence, HI_BV value columns): a sequential scan over the chunks
//           that keeps one exp-kernel summary (m, n, S, z) per chunk-level Fenwick slot and the
//           incoming state's slots (its own copies in the work buffers wm, wz (per block), wn, wS
//           (its columns)): S_ic = sum_s exp(k_si + d_s - m_i) exp(lv_sc - n_c), z_i = sum_s
//           exp(k_si + d_s - m_i), keys decayed (d_s) to the end of the last chunk read. Per chunk:
//   (a) start from hi_intra's (lnum, lden) as running (shift, sum) pairs; for every held slot
//       (incoming slot j: bit j of p, read at level max(j + 1, bit_length(p XOR t)); chunk-level
//       slot m: read at level log2 CH + m), r_t = max_i (q_ti + m_i), e = exp(q + m - r) <= 1,
//       den_t = e . z, num_tc = e . S_c, log weight x_t = r_t + lam[t, level] + (a_{t0} + ... + a_t)
//       (t0: the chunk's first token of the call); add den_t exp(x_t) and num_tc exp(x_t + n_c) to
//       the pairs (hi_lse_add: the larger exponent is the shift, zero terms skipped);
//       log y = U_tc + log Num_tc - (U_t + log Den_t), at the stand-in -inf (log_out);
//   (b) unless it is the call's last chunk: every held slot decays by the chunk's total (m += g),
//       then the chunk's summary (keys decayed to its end by suffix sums inside it) and the
//       chunk-level slots 1 .. z (z = trailing zeros of c + 1) become slot z + 1, with the larger
//       per-feature and per-column maxima as shifts (factors <= 1): the Fenwick merge at chunk
//       granularity of gated_delta.cu's gd_scan (see there why the slots are the chunk tree's
//       buckets). The incoming slots are never merged (they stay separate, decayed, as in gd_scan).
// The returned state is assembled on the host (hierarchical.py).
//
// Zeros: a weight involving a clamped decay or level weight, or a clamped value, has a log at or
// below alo (every other term is finite and far above it), so its exp is 0 beside any other term,
// and an output whose every visible term is such a zero comes out at or below alo: written as
// -inf (the threshold alo / 2 = lo / (8 (p + T)); log outputs of genuine inputs are far above it).
// A row whose every level is switched off has no defined output (0 / 0: lden at the stand-in).
// Costs per chunk: hi_intra CH^2 / 2 (d_k + d_v) exponentials; hi_scan per held slot CH d_k (e,
// once per column block) exponentials and 2 CH d_k HI_BV flops per column block, the merge
// CH d_k (exp) + 2 CH d_k d_v flops.
#define HI_BV 16  // value columns per block of hi_scan
#define HI_AV 64  // value columns per pass of hi_intra
constexpr int HI_RA = CH / (NT / HI_BV);  // rows per thread of hi_scan (16 row groups)
constexpr int HI_RB = DKP / (NT / HI_BV);  // features per thread of hi_scan's merge
constexpr int HI_P = NT / CH;  // threads per row of the row maxima
constexpr int HI_LOG2C = CH == 16 ? 4 : (CH == 32 ? 5 : 6);
constexpr int HI_KLD = DKP + 1;  // row stride of the q / k / e tiles (no bank conflicts)
constexpr int HI_XLD = CH + 1;
constexpr int HI_G = (sizeof(ta) == 8 && CH * DKP > 2048) ? 2 : 4;  // slots staged per pass of hi_scan
#define HI_LMAX 64  // level weights staged per row (levels used: < num_levels(p + T) <= 63)

// (U, S) standing for S exp(U), plus w exp(x) (w > 0): the larger exponent becomes the shift.
__device__ __forceinline__ void hi_lse_add(ta& U, ta& S, ta x, ta w) {
    if (x > U) {
        S = fma(S, ex(U - x), w);
        U = x;
    } else {
        S = fma(w, ex(x - U), S);
    }
}

// Rows g0 .. g0 + CH - 1 of one sequence's (T, D) input into X (row stride ldx, DKP columns);
// rows outside [0, T) and columns >= D are 0.
__device__ __forceinline__ void hi_rows(ta* X, const ti* src, i64 g0, int T, int D) {
    for (int idx = threadIdx.x; idx < CH * DKP; idx += NT) {
        const int t = idx / DKP, i = idx % DKP;
        const i64 g = g0 + t;
        X[t * HI_KLD + i] = (i < D && g >= 0 && g < T) ? ld(src + g * D + i) : (ta)0;
    }
}

// The clamped decay of row g of a sequence (0 outside the call and without decays).
__device__ __forceinline__ ta hi_decay(const ti* a, i64 g, int T, ta alo) {
    return (a && g >= 0 && g < T) ? fmx(ld(a + g), alo) : (ta)0;
}

extern "C" __global__ void __launch_bounds__(NT) hi_intra(
    const ti* __restrict__ q,    // (BH, T, DK)
    const ti* __restrict__ k,    // (BH, T, DK)
    const ti* __restrict__ lv,   // (BH, T, DV)
    const ti* __restrict__ lam,  // (BH, T, L)
    const ti* __restrict__ a,    // (BH, T) or null (no decay)
    ta* __restrict__ lden,       // (BH, T)      out
    ta* __restrict__ lnum,       // (BH, T, DV)  out
    int T, int DK, int DV, int L, i64 p, i64 F, ta alo) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Qs = reinterpret_cast<ta*>(smem_raw);  // CH x HI_KLD
    ta* Ks = Qs + CH * HI_KLD;                 // CH x HI_KLD
    ta* X = Ks + CH * HI_KLD;                  // CH x HI_XLD: log weights of the pairs
    ta* LVs = X + CH * HI_XLD;                 // CH x (HI_AV + 1)
    ta* ac = LVs + CH * (HI_AV + 1);           // CH
    check_smem((2 * CH * HI_KLD + CH * HI_XLD + CH * (HI_AV + 1) + CH) * sizeof(ta));
    const int tid = threadIdx.x;
    const i64 bh = blockIdx.y, c = F + blockIdx.x, g0 = c * CH - p;
    const int t0 = (int)max((i64)0, -g0), t1 = (int)min((i64)CH, (i64)T - g0);  // rows of the call
    hi_rows(Qs, q + bh * T * DK, g0, T, DK);
    hi_rows(Ks, k + bh * T * DK, g0, T, DK);
    for (int s = tid; s < CH; s += NT) ac[s] = hi_decay(a ? a + bh * T : nullptr, g0 + s, T, alo);
    __syncthreads();
    for (int idx = tid; idx < CH * CH; idx += NT) {  // X_ts = log sum_i exp(q_ti + k_si)
        const int t = idx / CH, s = idx % CH;
        if (s > t || s < t0 || t >= t1) continue;
        const ta* qt = Qs + t * HI_KLD;
        const ta* ks = Ks + s * HI_KLD;
        ta mx = neg_big();
        for (int i = 0; i < DK; ++i) mx = fmx(mx, qt[i] + ks[i]);
        ta sum = (ta)0;
        for (int i = 0; i < DK; ++i) sum += ex(qt[i] + ks[i] - mx);
        X[t * HI_XLD + s] = mx + lg(sum);
    }
    __syncthreads();
    for (int t = t0 + tid; t < t1; t += NT) {  // + level weight + decay over the stretch; lden
        const ti* lt = lam + (bh * T + g0 + t) * L;
        ta seg = (ta)0, mx = neg_big();
        for (int s = t; s >= t0; --s) {
            const ta x = X[t * HI_XLD + s] + fmx(ld(lt + bitlen64(t ^ s)), lo_v()) + seg;
            X[t * HI_XLD + s] = x;
            mx = fmx(mx, x);
            seg += ac[s];
        }
        ta den = (ta)0;
        for (int s = t0; s <= t; ++s) den += ex(X[t * HI_XLD + s] - mx);
        lden[bh * T + g0 + t] = mx + lg(den);
    }
    for (int c0 = 0; c0 < DV; c0 += HI_AV) {  // lnum, HI_AV columns at a time
        __syncthreads();
        for (int idx = tid; idx < CH * HI_AV; idx += NT) {
            const int s = idx / HI_AV, cc = idx % HI_AV;
            const bool ok = s >= t0 && s < t1 && c0 + cc < DV;
            LVs[s * (HI_AV + 1) + cc] = ok ? fmx(ld(lv + (bh * T + g0 + s) * DV + c0 + cc), lo_v()) : lo_v();
        }
        __syncthreads();
        for (int idx = tid; idx < CH * HI_AV; idx += NT) {
            const int t = idx / HI_AV, cc = idx % HI_AV;
            if (t < t0 || t >= t1 || c0 + cc >= DV) continue;
            const ta* xt = X + t * HI_XLD;
            ta U = neg_big();
            for (int s = t0; s <= t; ++s) U = fmx(U, xt[s] + LVs[s * (HI_AV + 1) + cc]);
            ta sum = (ta)0;
            for (int s = t0; s <= t; ++s) sum += ex(xt[s] + LVs[s * (HI_AV + 1) + cc] - U);
            lnum[(bh * T + g0 + t) * DV + c0 + cc] = U + lg(sum);
        }
    }
}

// The shared tiles of hi_scan.
struct HiTiles {
    ta *Qs, *Ks;            // CH x HI_KLD: the chunk's queries, keys
    ta *E;                  // HI_G x CH x HI_KLD: exp(q + m - r) per staged slot; the merge's exp(k + suf - M)
    ta *LVs;                // CH x HI_BV: clamped log values, then exp(lv - N)
    ta *Lam;                // CH x HI_LMAX: the rows' level weights (clamped)
    ta *Ss, *Ms, *Zs, *Ns;  // the staged slots: HI_G x (DKP x HI_BV, DKP, DKP, HI_BV)
    ta *Rp, *Rr, *Xw;       // HI_G x NT partial row maxima, HI_G x CH row shifts and row log weights
    ta *ac, *pre, *suf;     // CH decays, prefix sums from the chunk's first token, suffix sums after
    ta *Ld;                 // CH: log den of the rows
    ta *Mn, *Nn;            // DKP, HI_BV: the merge's shifts
};

extern "C" __global__ void __launch_bounds__(NT) hi_scan(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ lv, const ti* __restrict__ lam,
    const ti* __restrict__ a,       // as hi_intra
    const ta* __restrict__ lden,    // (BH, T)      hi_intra's
    const ta* __restrict__ lnum,    // (BH, T, DV)  hi_intra's
    ta* __restrict__ wm,            // (BH, ncb, NS, DK) slots 0 .. n_old - 1: the incoming m (every column block)
    ta* __restrict__ wz,            // (BH, ncb, NS, DK) ... z
    ta* __restrict__ wn,            // (BH, NS, DV)
    ta* __restrict__ wS,            // (BH, NS, DK, DV)
    ti* __restrict__ out,           // (BH, T, DV)
    int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old, int NS, ta alo) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    HiTiles sm;
    ta* b = reinterpret_cast<ta*>(smem_raw);
    sm.Qs = b; b += CH * HI_KLD;
    sm.Ks = b; b += CH * HI_KLD;
    sm.E = b; b += HI_G * CH * HI_KLD;
    sm.LVs = b; b += CH * HI_BV;
    sm.Lam = b; b += CH * HI_LMAX;
    sm.Ss = b; b += HI_G * DKP * HI_BV;
    sm.Ms = b; b += HI_G * DKP;
    sm.Zs = b; b += HI_G * DKP;
    sm.Ns = b; b += HI_G * HI_BV;
    sm.Rp = b; b += HI_G * NT;
    sm.Rr = b; b += HI_G * CH;
    sm.Xw = b; b += HI_G * CH;
    sm.ac = b; b += CH;
    sm.pre = b; b += CH;
    sm.suf = b; b += CH;
    sm.Ld = b; b += CH;
    sm.Mn = b; b += DKP;
    sm.Nn = b; b += HI_BV;
    check_smem((unsigned)((b - reinterpret_cast<ta*>(smem_raw)) * sizeof(ta)));
    const int tid = threadIdx.x, cc = tid % HI_BV, rg = tid / HI_BV;
    const i64 bh = blockIdx.x;
    const int cb = blockIdx.y, ncb = gridDim.y;
    const int vc = cb * HI_BV + cc;  // this thread's value column
    const bool cok = vc < DV;
    const int LL = min(L, HI_LMAX);  // levels read (< num_levels(p + T) <= 63)
    ta* mb = wm + (bh * ncb + cb) * NS * DK;
    ta* zb = wz + (bh * ncb + cb) * NS * DK;
    ta* nb = wn + bh * NS * DV;
    ta* Sb = wS + bh * NS * (i64)DK * DV;
    const ti* qb = q + bh * T * DK;
    const ti* kb = k + bh * T * DK;
    const ti* ab = a ? a + bh * T : nullptr;
    unsigned long long occ = 0;  // chunk-level slots holding keys (bit m - 1: slot m, index n_old + m - 1)
    for (int j = 0; j < n; ++j) {
        const i64 c = F + j, g0 = c * CH - p;
        const int t0 = (int)max((i64)0, -g0), t1 = (int)min((i64)CH, (i64)T - g0);
        hi_rows(sm.Qs, qb, g0, T, DK);
        for (int idx = tid; idx < CH * HI_BV; idx += NT) {
            const int s = idx / HI_BV, c2 = idx % HI_BV, v2 = cb * HI_BV + c2;
            const bool ok = s >= t0 && s < t1 && v2 < DV;
            sm.LVs[idx] = ok ? fmx(ld(lv + (bh * T + g0 + s) * DV + v2), lo_v()) : lo_v();
        }
        for (int idx = tid; idx < CH * HI_LMAX; idx += NT) {
            const int t = idx / HI_LMAX, l = idx % HI_LMAX;
            const bool ok = t >= t0 && t < t1 && l < LL;
            sm.Lam[idx] = ok ? fmx(ld(lam + (bh * T + g0 + t) * L + l), lo_v()) : lo_v();
        }
        for (int s = tid; s < CH; s += NT) sm.ac[s] = hi_decay(ab, g0 + s, T, alo);
        ta U[HI_RA], Nm[HI_RA], Ud[HI_RA], Dd[HI_RA];  // running (shift, sum) of num (column vc) and den
#pragma unroll
        for (int i = 0; i < HI_RA; ++i) {
            const int t = rg * HI_RA + i;
            const bool ok = t >= t0 && t < t1;
            U[i] = ok && cok ? lnum[(bh * T + g0 + t) * DV + vc] : neg_big();
            Nm[i] = (ta)1;
            Ud[i] = ok ? lden[bh * T + g0 + t] : neg_big();
            Dd[i] = (ta)1;
        }
        __syncthreads();
        if (tid == 0) {  // prefix sums of the decays from t0 (padding rows hold 0)
            ta run = (ta)0;
            for (int s = 0; s < CH; ++s) sm.pre[s] = run += sm.ac[s];
        } else if (tid == 32) {  // suffix sums after each token (another warp)
            ta sf = (ta)0;
            for (int s = CH - 1; s >= 0; --s) {
                sm.suf[s] = sf;
                sf += sm.ac[s];
            }
        }
        __syncthreads();
        // (a) the reads of the held slots, HI_G at a time
        for (int s = 0;;) {
            int sl[HI_G], cnt = 0;
            for (; s < NS && cnt < HI_G; ++s)
                if (s < n_old ? ((p >> s) & 1) : ((occ >> (s - n_old)) & 1ull)) sl[cnt++] = s;
            if (cnt == 0) break;  // uniform over the block
            for (int idx = tid; idx < cnt * DKP; idx += NT) {
                const int g = idx / DKP, i = idx % DKP;
                sm.Ms[idx] = i < DK ? mb[sl[g] * DK + i] : neg_big();
                sm.Zs[idx] = i < DK ? zb[sl[g] * DK + i] : (ta)0;
            }
            for (int idx = tid; idx < cnt * DKP * HI_BV; idx += NT) {
                const int g = idx / (DKP * HI_BV), i = (idx / HI_BV) % DKP, v2 = cb * HI_BV + idx % HI_BV;
                sm.Ss[idx] = (i < DK && v2 < DV) ? Sb[((i64)sl[g] * DK + i) * DV + v2] : (ta)0;
            }
            for (int idx = tid; idx < cnt * HI_BV; idx += NT) {
                const int g = idx / HI_BV, v2 = cb * HI_BV + idx % HI_BV;
                sm.Ns[idx] = v2 < DV ? nb[sl[g] * DV + v2] : lo_v();
            }
            __syncthreads();
            for (int idx = tid; idx < cnt * NT; idx += NT) {  // partial row maxima of q + m
                const int g = idx / NT, t = (idx % NT) / HI_P, part = idx % HI_P;
                const ta* mg = sm.Ms + g * DKP;
                ta mx = neg_big();
                for (int i = part; i < DK; i += HI_P) mx = fmx(mx, sm.Qs[t * HI_KLD + i] + mg[i]);
                sm.Rp[idx] = mx;
            }
            __syncthreads();
            for (int idx = tid; idx < cnt * CH; idx += NT) {  // row shifts and row log weights
                const int g = idx / CH, t = idx % CH, s2 = sl[g];
                ta r = sm.Rp[idx * HI_P];
                for (int u = 1; u < HI_P; ++u) r = fmx(r, sm.Rp[idx * HI_P + u]);
                sm.Rr[idx] = r;
                const int level = s2 < n_old ? max(s2 + 1, bitlen64(p ^ (c * CH + t))) : HI_LOG2C + (s2 - n_old + 1);
                sm.Xw[idx] = (t >= t0 && t < t1) ? r + sm.Lam[t * HI_LMAX + level] + sm.pre[t] : neg_big();
            }
            __syncthreads();
            for (int idx = tid; idx < cnt * CH * DKP; idx += NT) {
                const int g = idx / (CH * DKP), t = (idx / DKP) % CH, i = idx % DKP;
                sm.E[(g * CH + t) * HI_KLD + i] = i < DK ? ex(sm.Qs[t * HI_KLD + i] + sm.Ms[g * DKP + i] - sm.Rr[g * CH + t]) : (ta)0;
            }
            __syncthreads();
#pragma unroll
            for (int i = 0; i < HI_RA; ++i) {
                const int t = rg * HI_RA + i;
                if (t < t0 || t >= t1) continue;
                for (int g = 0; g < cnt; ++g) {
                    const ta* et = sm.E + (g * CH + t) * HI_KLD;
                    const ta* Sg = sm.Ss + g * DKP * HI_BV + cc;
                    ta num = (ta)0;
                    for (int kk = 0; kk < DK; ++kk) num = fma(et[kk], Sg[kk * HI_BV], num);
                    const ta x = sm.Xw[g * CH + t];
                    if (cok && num > (ta)0) hi_lse_add(U[i], Nm[i], x + sm.Ns[g * HI_BV + cc], num);
                    if (cc == 0) {
                        const ta* zg = sm.Zs + g * DKP;
                        ta den = (ta)0;
                        for (int kk = 0; kk < DK; ++kk) den = fma(et[kk], zg[kk], den);
                        if (den > (ta)0) hi_lse_add(Ud[i], Dd[i], x, den);
                    }
                }
            }
            __syncthreads();
        }
        if (cc == 0) {
#pragma unroll
            for (int i = 0; i < HI_RA; ++i) sm.Ld[rg * HI_RA + i] = Ud[i] + lg(Dd[i]);
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < HI_RA; ++i) {
            const int t = rg * HI_RA + i;
            if (t >= t0 && t < t1 && cok) {
                const ta y = U[i] + lg(Nm[i]) - sm.Ld[t];
                st(out + (bh * T + g0 + t) * DV + vc, y > alo / 2 ? y : minus_inf());  // see "Zeros" above
            }
        }
        if (j == n - 1) break;  // the call's last chunk: no merge (the state is assembled on the host)
        // (b) decay the held slots by the chunk's total, then merge the chunk and slots 1 .. z into z + 1
        hi_rows(sm.Ks, kb, g0, T, DK);
        const ta G = sm.pre[CH - 1];  // the chunk's total decay
        const int z = __ffsll((long long)(c + 1)) - 1;  // trailing zeros of c + 1
        for (int i = tid; i < DK; i += NT)
            for (int s = 0; s < NS; ++s)
                if (s < n_old ? ((p >> s) & 1) : ((occ >> (s - n_old)) & 1ull)) mb[s * DK + i] += G;
        __syncthreads();
        if (tid < DKP) {  // per-feature shift: the chunk's decayed keys and the merged slots
            const int i = tid;
            ta M = neg_big();
            if (i < DK) {
                for (int s = t0; s < t1; ++s) M = fmx(M, sm.Ks[s * HI_KLD + i] + sm.suf[s]);
                for (int m = 1; m <= z; ++m)
                    if ((occ >> (m - 1)) & 1ull) M = fmx(M, mb[(n_old + m - 1) * DK + i]);
            }
            sm.Mn[i] = M;
        }
        if (tid >= NT - HI_BV) {  // per-column shift
            const int c2 = tid - (NT - HI_BV), v2 = cb * HI_BV + c2;
            ta N = lo_v();
            for (int s = t0; s < t1; ++s) N = fmx(N, sm.LVs[s * HI_BV + c2]);
            if (v2 < DV)
                for (int m = 1; m <= z; ++m)
                    if ((occ >> (m - 1)) & 1ull) N = fmx(N, nb[(n_old + m - 1) * DV + v2]);
            sm.Nn[c2] = N;
        }
        __syncthreads();
        for (int idx = tid; idx < CH * DKP; idx += NT) {
            const int s = idx / DKP, i = idx % DKP;
            sm.E[s * HI_KLD + i] = (i < DK && s >= t0 && s < t1) ? ex(sm.Ks[s * HI_KLD + i] + sm.suf[s] - sm.Mn[i]) : (ta)0;
        }
        for (int idx = tid; idx < CH * HI_BV; idx += NT) {
            const int s = idx / HI_BV;
            sm.LVs[idx] = (s >= t0 && s < t1) ? ex(sm.LVs[idx] - sm.Nn[idx % HI_BV]) : (ta)0;
        }
        __syncthreads();
        const i64 dst = n_old + z;  // the new slot z + 1
#pragma unroll
        for (int i = 0; i < HI_RB; ++i) {
            const int kk = rg * HI_RB + i;
            if (kk >= DK) continue;
            const ta M = sm.Mn[kk];
            if (cok) {
                ta x = (ta)0;
                for (int s = 0; s < CH; ++s) x = fma(sm.E[s * HI_KLD + kk], sm.LVs[s * HI_BV + cc], x);
                for (int m = 1; m <= z; ++m)
                    if ((occ >> (m - 1)) & 1ull) {
                        const i64 sl = n_old + m - 1;
                        x = fma(ex(mb[sl * DK + kk] - M) * ex(nb[sl * DV + vc] - sm.Nn[cc]), Sb[(sl * DK + kk) * DV + vc], x);
                    }
                Sb[(dst * DK + kk) * DV + vc] = x;
            }
            if (cc == 0) {
                ta x = (ta)0;
                for (int s = 0; s < CH; ++s) x += sm.E[s * HI_KLD + kk];
                for (int m = 1; m <= z; ++m)
                    if ((occ >> (m - 1)) & 1ull) {
                        const i64 sl = n_old + m - 1;
                        x = fma(ex(mb[sl * DK + kk] - M), zb[sl * DK + kk], x);
                    }
                zb[dst * DK + kk] = x;
            }
        }
        __syncthreads();  // the merged slots' shifts are read: now the new ones
        for (int i = tid; i < DK; i += NT) mb[dst * DK + i] = sm.Mn[i];
        if (tid < HI_BV && cb * HI_BV + tid < DV) nb[dst * DV + cb * HI_BV + tid] = sm.Nn[tid];
        occ = (occ & ~((1ull << z) - 1ull)) | (1ull << z);
        __syncthreads();
    }
}
