// Log-linear Mamba-2 (lsattn.loglinear_attention) as CUDA kernels; compiled after cupy_common.cu.
//
//   o_t = sum_{s<=t} lambda[t, level(t,s)] exp(a_{s+1} + ... + a_t) (q_t . k_s) v_s
//
// One call covers absolute positions [p, p + T). Chunks of CH tokens are aligned to absolute
// multiples of CH: local chunk j is absolute chunk F + j (F = p / CH), and rows outside the call
// (before p in the first chunk, after p + T - 1 in the last) are zero (they add nothing).
//
//   ll_chunk_states  per chunk: H_j = sum_s exp(a_{s+1} + ... + a_end) k_s v_s^T, g_j = the chunk's
//                    total log decay, in parallel over chunks
//   ll_upsweep       one launch per chunk level: the in-place Fenwick up-sweep over absolute chunk
//                    indices. After it, slot e holds the block of 2^tz(e+1) chunks ending at e
//                    (clipped to the call), decayed to its end, and its total log decay; chunk c
//                    reads, at chunk level l' with bit l'-1 of c set, the block ending at
//                    (c >> (l'-1) << (l'-1)) - 1: exactly that slot.
//   ll_output        per chunk, in parallel: masked C x C product with level weights
//                    lambda[t, level(t mod C, s mod C)] exp(a_{s+1} + ... + a_t), plus one (C x d_k)(d_k x d_v)
//                    read per occupied chunk level, plus the incoming state's levels.
//   ll_new_state     the state at p + T: one block per new Fenwick level.
//   ll_decode        T = 1: output and new state from the old levels in one kernel.
//
// Every decay is summed over its own stretch: within a chunk (chunk_sums, decay_table), and
// between a bucket and a query as sums of block totals along the Fenwick path. Never a difference
// of cumulative sums, so exponents carry only the rounding of their own terms, and a hard reset
// (a = -inf) is an exact zero weight rather than -inf - -inf = NaN.

namespace {
constexpr int LOGC = (CH == 16) ? 4 : (CH == 32) ? 5 : 6;
constexpr int NLC = LOGC + 1;  // intra-chunk levels 0 .. log2 CH
constexpr int QLD = CH + 4;    // row stride of transposed (k-major) C-wide tiles
constexpr int HS = DKP < 32 ? DKP : 32;  // rows of a d_k x d_v matrix staged per pass
}

// Fenwick level of rows s <= t of one chunk (chunk-aligned: the level of the absolute positions).
__device__ __forceinline__ int intra_level(int t, int s) { return s == t ? 0 : 32 - __clz(t ^ s); }

// The log decays of one chunk, each summed over its own stretch, never as a difference of
// cumulative sums (that carries the rounding of every decay before the stretch: one decay of
// -1e6 costs float32 0.06 on every later pair; and a hard reset gives -inf - -inf = NaN).
// Rows outside the call count as 0. Warp 0 writes As[r] = a_0 + ... + a_r (from the chunk start)
// and, if Ar, Ar[r] = a_r; warp 1 writes Bs[r] = a_{r+1} + ... + a_{CH-1} (to the chunk end), if
// Bs. Needs >= 64 threads; the others return at once.
__device__ __forceinline__ void chunk_sums(const ti* ab, i64 g0, int T, ta* As, ta* Bs, ta* Ar, const int* tmap = nullptr) {
    const int w = threadIdx.x >> 5;
    const bool rev = w == 1;  // warp 1 scans from the chunk end
    if (w > 1 || (rev && !Bs)) return;
    constexpr int E = CH >= 32 ? CH / 32 : 1;
    const int lane = threadIdx.x & 31;
    ta loc[E];
    ta s = (ta)0;
#pragma unroll
    for (int e = 0; e < E; ++e) {
        int i = lane * E + e, r = rev ? CH - 1 - i : i;
        const i64 g = g0 + r, row = i < CH ? tok_row(tmap, g, T) : -1;
        ta x = row < 0 ? (ta)0 : (tok_reset(tmap, g, T) ? minus_inf() : ld(ab + row));
        if (rev) {  // exclusive: rows after r
            loc[e] = s;
            s += x;
        } else {
            s += x;
            loc[e] = s;
            if (Ar && i < CH) Ar[r] = x;
        }
    }
    ta incl = s;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        ta y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += y;
    }
    ta before = __shfl_up_sync(0xffffffffu, incl, 1);
    if (lane == 0) before = (ta)0;
#pragma unroll
    for (int e = 0; e < E; ++e) {
        int i = lane * E + e;
        if (i < CH) (rev ? Bs : As)[rev ? CH - 1 - i : i] = before + loc[e];
    }
}

// D[s * lds + t * ldt] = exp(a_{s+1} + ... + a_t) for s <= t (the intra-chunk decays), each summed
// from t down to s + 1 by the thread of row t; entries with s > t are left alone. Ar: a_r per row.
template <typename DT>
__device__ __forceinline__ void decay_table(const DT* Ar, DT* D, int lds, int ldt) {
    const int t = threadIdx.x;
    if (t >= CH) return;
    DT acc = (DT)0;
    D[t * lds + t * ldt] = (DT)1;
    for (int s = t - 1; s >= 0; --s) {
        acc += Ar[s + 1];
        D[s * lds + t * ldt] = ex(acc);
    }
}

// tmp[i][j] = (Q^T M)[t_i][c_j] for one d_k x d_v matrix M (row-major, DK x DV, global), Q held
// transposed in shared memory (Qt, DKP x QLD). Uses Hs (HS x DVP) as staging; every thread of the
// block must call it (it synchronises).
template <int RM, int RN>
__device__ __forceinline__ void read_matrix(ta (&tmp)[RM][RN], const ta* Qt, ta* Hs, const ta* M, int DK, int DV,
                                            int ty, int tx) {
    zero_acc(tmp);
    for (int k0 = 0; k0 < DKP; k0 += HS) {
        __syncthreads();
        staged<HS * DVP, NT>(
            [&](int idx) {
                int c = idx % DVP, i = k0 + idx / DVP;
                return (i < DK && c < DV) ? M[(i64)i * DV + c] : (ta)0;
            },
            [&](int idx, ta x) { Hs[idx] = x; });
        __syncthreads();
        mm_acc<RM, RN, HS>(tmp, Qt + k0 * QLD, QLD, Hs, DVP, ty, tx);
    }
}

template <int RM, int RN>
__device__ __forceinline__ void add_weighted(ta (&acc)[RM][RN], const ta (&w)[RM], const ta (&tmp)[RM][RN]) {
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) acc[i][j] = fma(w[i], tmp[i][j], acc[i][j]);
}

// Gradient pass (DL): the output kernel run on (q, k, v) = (dO, v, k) gives dq; with the original
// q, k as X, Y it also gives the level-weight gradient
//   dl[t, l] = sum_{s: level(t,s) = l} exp(a_{s+1} + ... + a_t) (X_t . Y_s) (q_t . k_s)
// (the unweighted level-l read of row t, dotted with X_t). Row t's sum over the 16 threads of a row
// group (tx = lane % 16) by shuffles; one thread per row adds it to dl (rows of this chunk only).
template <int RM, int RN>
__device__ __forceinline__ void add_level_dots(ta* dl, const ta (&tmp)[RM][RN], const ta (&wd)[RM], const int (&lev)[RM],
                                               const ta* Xt, i64 g0, int T, int L, int ty, int tx) {
#pragma unroll
    for (int ii = 0; ii < RM; ++ii) {
        int t = ty * RM + ii;
        ta d = (ta)0;
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) d = fma(tmp[ii][jj], Xt[(tx * RN + jj) * QLD + t], d);
#pragma unroll
        for (int o = 1; o < 16; o <<= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        i64 g = g0 + t;
        if (tx == 0 && g >= 0 && g < T && lev[ii] < L) dl[g * L + lev[ii]] += wd[ii] * d;
    }
}

extern "C" __global__ void __launch_bounds__(NT) ll_chunk_states(
    const ti* __restrict__ k, const ti* __restrict__ v, const ti* __restrict__ a,
    ta* __restrict__ H, ta* __restrict__ gsum, int T, int DK, int DV, i64 p, i64 F, int n,
    const int* __restrict__ rows, const int* __restrict__ tmap, int Ts) {
    constexpr int RI = DKP / 16, RN = DVP / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Kw = reinterpret_cast<ta*>(smem_raw);  // CH x DKP: k_s * exp(A_end - A_s)
    ta* Vs = Kw + CH * DKP;                    // CH x DVP
    ta* As = Vs + CH * DVP;                    // CH: decay from the chunk start (As[CH - 1]: all of it)
    ta* Bs = As + CH;                          // CH: decay from a row to the chunk end
    check_smem((unsigned)((CH * DKP + CH * DVP + 2 * CH) * sizeof(ta)));
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 g0 = (F + j) * CH - p;
    const i64 nseq = gridDim.y;
    const ti* kb = k + seq_row(rows, 1, bh, nseq) * Ts * DK;
    const ti* vb = v + seq_row(rows, 2, bh, nseq) * Ts * DV;
    staged<CH * DKP, NT>(tile_loader<DKP>(kb, g0, T, DK, tmap), [&](int idx, ta x) { Kw[idx] = x; });
    staged<CH * DVP, NT>(tile_loader<DVP>(vb, g0, T, DV, tmap), [&](int idx, ta x) { Vs[idx] = x; });
    chunk_sums(a + seq_row(rows, 3, bh, nseq) * Ts, g0, T, As, Bs, nullptr, tmap);
    __syncthreads();
    const ta gend = As[CH - 1];
    for (int idx = tid; idx < CH * DKP; idx += NT) Kw[idx] *= ex(Bs[idx / DKP]);
    __syncthreads();
    ta acc[RI][RN];
    zero_acc(acc);
    mm_acc<RI, RN, CH>(acc, Kw, DKP, Vs, DVP, ty, tx);
    store_tile(H + (bh * n + j) * (i64)DK * DV, acc, DK, DV, ty, tx);
    if (tid == 0) gsum[bh * n + j] = gend;
}

// One chunk level of the up-sweep: slot j (local) with (F + j + 1) % 2^lev == 0 absorbs slot
// j - stride (stride = 2^(lev-1)): H_j = exp(g_j) H_{j-stride} + H_j, g_j += g_{j-stride}.
// Block x handles slot j0 + x * step; one block per slot, so g_j is read before it is written.
extern "C" __global__ void __launch_bounds__(NT) ll_upsweep(
    ta* __restrict__ H, ta* __restrict__ gsum, int DK, int DV, int n, i64 j0, i64 step, i64 stride) {
    const i64 j = j0 + (i64)blockIdx.x * step;
    const i64 bh = blockIdx.y;
    const ta gr = gsum[bh * n + j], gl = gsum[bh * n + j - stride];
    const ta f = ex(gr);
    ta* Hr = H + (bh * n + j) * (i64)DK * DV;
    const ta* Hl = H + (bh * n + j - stride) * (i64)DK * DV;
    const int m = DK * DV;
    constexpr int VEC = 16 / sizeof(ta);
    if (m % VEC == 0) {  // 16-byte accesses (every matrix starts 16-byte aligned then)
        typedef Pack<VEC> vec;
        vec* R = reinterpret_cast<vec*>(Hr);
        const vec* Lp = reinterpret_cast<const vec*>(Hl);
#pragma unroll 4
        for (int e = threadIdx.x; e < m / VEC; e += NT) {
            vec x = Lp[e], y = R[e];
#pragma unroll
            for (int u = 0; u < VEC; ++u) y.v[u] = fma(f, x.v[u], y.v[u]);
            R[e] = y;
        }
    } else {
#pragma unroll 4
        for (int e = threadIdx.x; e < m; e += NT) Hr[e] = fma(f, Hl[e], Hr[e]);
    }
    __syncthreads();
    if (threadIdx.x == 0) gsum[bh * n + j] = gl + gr;
}

template <bool DL>
__device__ __forceinline__ void ll_output_body(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ti* __restrict__ a,
    const ti* __restrict__ lam, const ta* __restrict__ H, const ta* __restrict__ gsum, const ta* __restrict__ old,
    ti* __restrict__ out, int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old,
    const ti* __restrict__ X, const ti* __restrict__ Y, ta* __restrict__ dl, const int* __restrict__ rows,
    const int* __restrict__ tmap, int Ts) {
    constexpr int RM = CH / 16, RN = DVP / 16;
    extern __shared__ __align__(16) unsigned char smem_llo[];  // (own name: a template's extern array)
    ta* Qt = reinterpret_cast<ta*>(smem_llo);  // DKP x QLD: q transposed
    ta* Kt = Qt + DKP * QLD;                   // DKP x QLD: k transposed
    ta* Vs = Kt + DKP * QLD;                   // CH x DVP
    ta* Pt = Vs + CH * DVP;                    // CH x QLD: weighted scores, transposed (Pt[s][t])
    ta* Hs = Pt + CH * QLD;                    // HS x DVP staging
    ta* As = Hs + HS * DVP;                    // CH: decay from the chunk start to a row
    ta* Ar = As + CH;                          // CH: a per row
    ta* lamS = Ar + CH;                        // CH x NLC intra-chunk level weights
    ta* Xt = lamS + CH * NLC;                  // DL: DVP x QLD, X transposed
    ta* Yt = Xt + DVP * QLD;                   // DL: DVP x QLD, Y transposed
    ta* dlS = Yt + DVP * QLD;                  // DL: CH x NLC, intra-chunk level sums
    check_smem((unsigned)((2 * DKP * QLD + CH * DVP + CH * QLD + HS * DVP + 2 * CH + CH * NLC +
                           (DL ? 2 * DVP * QLD + CH * NLC : 0)) * sizeof(ta)));
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 cabs = F + j;
    const i64 g0 = cabs * CH - p;  // call index of the chunk's row 0 (negative in a first partial chunk)
    const i64 nseq = gridDim.y;
    const ti* qb = q + seq_row(rows, 0, bh, nseq) * Ts * DK;
    const ti* kb = k + seq_row(rows, 1, bh, nseq) * Ts * DK;
    const ti* vb = v + seq_row(rows, 2, bh, nseq) * Ts * DV;
    const ti* lb = lam + seq_row(rows, 4, bh, nseq) * Ts * L;
    ta* dlb = DL ? dl + bh * T * L : nullptr;  // this sequence's rows of dl
    staged<CH * DKP, NT>(tile_loader<DKP>(qb, g0, T, DK, tmap), [&](int idx, ta x) { Qt[(idx % DKP) * QLD + idx / DKP] = x; });
    staged<CH * DKP, NT>(tile_loader<DKP>(kb, g0, T, DK, tmap), [&](int idx, ta x) { Kt[(idx % DKP) * QLD + idx / DKP] = x; });
    staged<CH * DVP, NT>(tile_loader<DVP>(vb, g0, T, DV, tmap), [&](int idx, ta x) { Vs[idx] = x; });
    staged<CH * NLC, NT>(tile_loader<NLC>(lb, g0, T, L, tmap), [&](int idx, ta x) { lamS[idx] = x; });
    chunk_sums(a + seq_row(rows, 3, bh, nseq) * Ts, g0, T, As, nullptr, Ar, tmap);
    if (DL) {
        staged<CH * DVP, NT>(tile_loader<DVP>(X + bh * T * DV, g0, T, DV), [&](int idx, ta x) { Xt[(idx % DVP) * QLD + idx / DVP] = x; });
        staged<CH * DVP, NT>(tile_loader<DVP>(Y + bh * T * DV, g0, T, DV), [&](int idx, ta x) { Yt[(idx % DVP) * QLD + idx / DVP] = x; });
        for (int idx = tid; idx < CH * NLC; idx += NT) dlS[idx] = (ta)0;
        for (int idx = tid; idx < CH * L; idx += NT) {
            i64 g = g0 + idx / L;
            if (g >= 0 && g < T) dlb[g * L + idx % L] = (ta)0;
        }
    }
    __syncthreads();
    decay_table(Ar, Pt, QLD, 1);  // Pt[s][t] = exp(a_{s+1} + ... + a_t)
    __syncthreads();

    // intra-chunk: (M o (Q K^T)) V with M[t,s] = lambda[t, level(t,s)] exp(a_{s+1} + ... + a_t), s <= t
    {
        ta P[RM][RM], P2[RM][RM];
        zero_acc(P);
        mm_acc<RM, RM, DKP>(P, Qt, QLD, Kt, QLD, ty, tx);
        if (DL) {
            zero_acc(P2);
            mm_acc<RM, RM, DVP>(P2, Xt, QLD, Yt, QLD, ty, tx);
        }
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            int t = ty * RM + ii;
#pragma unroll
            for (int jj = 0; jj < RM; ++jj) {
                int s = tx * RM + jj;
                ta w = (ta)0;
                if (s <= t) {
                    const int lev = intra_level(t, s);
                    const ta dec = Pt[s * QLD + t];
                    w = lamS[t * NLC + lev] * dec;
                    if (DL) atomicAdd(&dlS[t * NLC + lev], P[ii][jj] * P2[ii][jj] * dec);
                }
                Pt[s * QLD + t] = P[ii][jj] * w;
            }
        }
    }
    __syncthreads();
    ta acc[RM][RN];
    zero_acc(acc);
    mm_acc<RM, RN, CH>(acc, Pt, QLD, Vs, DVP, ty, tx);

    // earlier chunks of this call, one Fenwick block per occupied chunk level
    ta dec = (ta)0;  // log decay from the end of the current block to the start of this chunk
    for (int lp = 1; lp < 63; ++lp) {
        i64 hi = cabs >> (lp - 1);
        if (hi == 0) break;
        if (!(hi & 1)) continue;
        i64 e = (hi << (lp - 1)) - 1;
        if (e < F) break;  // this block and all higher ones lie before the call (in the state)
        i64 slot = e - F;
        ta w[RM], wd[RM], tmp[RM][RN];
        int lv[RM];
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            int t = ty * RM + ii;
            i64 row = tok_row(tmap, g0 + t, T);
            lv[ii] = LOGC + lp;
            wd[ii] = ex(As[t] + dec);
            w[ii] = (row >= 0 && lv[ii] < L) ? ld(lb + row * L + lv[ii]) * wd[ii] : (ta)0;
        }
        read_matrix(tmp, Qt, Hs, H + (bh * n + slot) * (i64)DK * DV, DK, DV, ty, tx);
        add_weighted(acc, w, tmp);
        if (DL) add_level_dots(dlb, tmp, wd, lv, Xt, g0, T, L, ty, tx);
        dec += gsum[bh * n + slot];
    }
    // incoming state: old bucket l (occupied where bit l-1 of p is set), decayed to p - 1, sits at
    // level max(l, bit_length(p XOR t)) from a query t >= p; dec is now a_p + ... + a_{chunk start - 1}
    for (int jl = 0; jl < n_old; ++jl) {
        if (!((p >> jl) & 1)) continue;
        ta w[RM], wd[RM], tmp[RM][RN];
        int lv[RM];
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            int t = ty * RM + ii;
            i64 row = tok_row(tmap, g0 + t, T);
            lv[ii] = max(jl + 1, fen_level(cabs * CH + t, p));
            wd[ii] = ex(As[t] + dec);
            w[ii] = (row >= 0 && lv[ii] < L) ? ld(lb + row * L + lv[ii]) * wd[ii] : (ta)0;
        }
        read_matrix(tmp, Qt, Hs, old + (bh * n_old + jl) * (i64)DK * DV, DK, DV, ty, tx);
        add_weighted(acc, w, tmp);
        if (DL) add_level_dots(dlb, tmp, wd, lv, Xt, g0, T, L, ty, tx);
    }
    if (DL) {  // the intra-chunk levels, after every read's update of these rows
        __syncthreads();
        for (int idx = tid; idx < CH * NLC; idx += NT) {
            int t = idx / NLC, l = idx % NLC;
            i64 g = g0 + t;
            if (g >= 0 && g < T && l < L) dlb[g * L + l] += dlS[idx];
        }
    }

    ti* ob = out + bh * Ts * DV;  // outputs of the input rows (a token map: zero tokens have none)
#pragma unroll
    for (int ii = 0; ii < RM; ++ii) {
        int t = ty * RM + ii;
        i64 row = tok_row(tmap, g0 + t, T);
        if (row < 0) continue;
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            int c = tx * RN + jj;
            if (c < DV) st(ob + row * DV + c, acc[ii][jj]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(NT) ll_output(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ti* __restrict__ a,
    const ti* __restrict__ lam, const ta* __restrict__ H, const ta* __restrict__ gsum, const ta* __restrict__ old,
    ti* __restrict__ out, int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old, const int* __restrict__ rows,
    const int* __restrict__ tmap, int Ts) {
    ll_output_body<false>(q, k, v, a, lam, H, gsum, old, out, T, DK, DV, L, p, F, n, n_old, nullptr, nullptr, nullptr, rows,
                          tmap, Ts);
}

extern "C" __global__ void __launch_bounds__(NT) ll_output_dl(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ti* __restrict__ a,
    const ti* __restrict__ lam, const ta* __restrict__ H, const ta* __restrict__ gsum, const ta* __restrict__ old,
    ti* __restrict__ out, int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old,
    const ti* __restrict__ X, const ti* __restrict__ Y, ta* __restrict__ dl) {
    ll_output_body<true>(q, k, v, a, lam, H, gsum, old, out, T, DK, DV, L, p, F, n, n_old, X, Y, dl, nullptr, nullptr, T);
}

// The state at p' = p + T: one block per new level l = blockIdx.x + 1 (1 .. bit_length(p')).
// Level l is empty unless bit l-1 of p' is set. Old levels above h = bit_length(p XOR p') stay
// (decayed over the call); level h gets the old levels below h; levels <= h get the call's tokens
// of the bucket [cc - 2^(l-1), cc), cc = p' with its low l-1 bits cleared: a Fenwick slot for
// chunk levels (l - 1 >= log2 CH), a token range of the last chunk otherwise. All decayed to p'-1.
extern "C" __global__ void __launch_bounds__(NT) ll_new_state(
    const ti* __restrict__ k, const ti* __restrict__ v, const ti* __restrict__ a, const ta* __restrict__ H,
    const ta* __restrict__ gsum, const ta* __restrict__ old, ta* __restrict__ newlev,
    int T, int DK, int DV, i64 p, i64 F, int n, int n_old, int h, int Lnew, const int* __restrict__ rows) {
    __shared__ ta decs[64];
    __shared__ ta wS[CH];
    __shared__ ta misc[2];  // A_part, total
    const int tid = threadIdx.x;
    const int l = blockIdx.x + 1;
    const i64 bh = blockIdx.y;
    const i64 pn = p + T;
    const i64 cs = pn / CH;                 // absolute chunk of position p'
    const int rend = (int)(pn - cs * CH) - 1;  // local row of p' - 1 in chunk cs (-1: p' is chunk-aligned)
    const i64 nseq = gridDim.y;
    const ti* ab = a + seq_row(rows, 3, bh, nseq) * T;
    if (tid == 0) {
        ta apart = (ta)0;  // a over [cs*CH, p') inside the call
        for (int r = 0; r <= rend; ++r) {
            i64 g = cs * CH + r - p;
            if (g >= 0) apart += ld(ab + g);
        }
        ta dec = (ta)0;
        for (int lp = 1; lp < 63; ++lp) {
            i64 hi = cs >> (lp - 1);
            if (hi == 0) break;
            decs[lp] = dec;
            if (hi & 1) {
                i64 e = (hi << (lp - 1)) - 1;
                if (e < F) break;
                dec += gsum[bh * n + (e - F)];
            }
        }
        misc[0] = apart;
        misc[1] = dec + apart;
    }
    __syncthreads();
    const ta apart = misc[0], total = misc[1];
    const int m = DK * DV;
    ta* dst = newlev + (bh * Lnew + (l - 1)) * (i64)m;
    if (!((pn >> (l - 1)) & 1)) {
        for (int e = tid; e < m; e += NT) dst[e] = (ta)0;
        return;
    }
    const ta ftot = ex(total);
    if (l > h) {  // an old level kept (bit l-1 of p is set too)
        const ta* src = old + (bh * n_old + (l - 1)) * (i64)m;
        for (int e = tid; e < m; e += NT) dst[e] = ftot * src[e];
        return;
    }
    const int nfold = (l == h) ? min(h - 1, n_old) : 0;
    const ta* ob = old + bh * (i64)n_old * m;
    if (l - 1 >= LOGC) {  // whole chunks: one Fenwick slot
        const int lp = l - LOGC;
        const i64 e = ((cs >> (lp - 1)) << (lp - 1)) - 1;
        const ta f = ex(decs[lp] + apart);
        const ta* src = H + (bh * n + (e - F)) * (i64)m;
        for (int x = tid; x < m; x += NT) {
            ta val = f * src[x];
            for (int jl = 0; jl < nfold; ++jl) val = fma(ftot, ob[(i64)jl * m + x], val);
            dst[x] = val;
        }
        return;
    }
    // a token range of chunk cs (p' is not chunk-aligned here)
    const i64 cc = (pn >> (l - 1)) << (l - 1);
    const int r0 = (int)(cc - ((i64)1 << (l - 1)) - cs * CH), r1 = (int)(cc - cs * CH);
    if (tid < CH) {
        int r = tid;
        ta s = (ta)0;
        i64 g = cs * CH + r - p;
        if (r >= r0 && r < r1 && g >= 0) {
            for (int u = r + 1; u <= rend; ++u) s += ld(ab + (cs * CH + u - p));
            wS[r] = ex(s);
        } else {
            wS[r] = (ta)0;
        }
    }
    __syncthreads();
    const ti* kb = k + seq_row(rows, 1, bh, nseq) * T * DK;
    const ti* vb = v + seq_row(rows, 2, bh, nseq) * T * DV;
    for (int x = tid; x < m; x += NT) {
        int i = x / DV, c = x % DV;
        ta val = (ta)0;
        for (int r = r0; r < r1; ++r) {
            i64 g = cs * CH + r - p;
            if (g < 0) continue;
            val = fma(ld(kb + g * DK + i) * wS[r], ld(vb + g * DV + c), val);
        }
        for (int jl = 0; jl < nfold; ++jl) val = fma(ftot, ob[(i64)jl * m + x], val);
        dst[x] = val;
    }
}

// One decoding step (T = 1) at position p for every sequence: blocks (sequence, 16 columns).
extern "C" __global__ void __launch_bounds__(NT) ll_decode(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ti* __restrict__ a,
    const ti* __restrict__ lam, const ta* __restrict__ old, ta* __restrict__ newlev, ti* __restrict__ out,
    int DK, int DV, int L, i64 p, int n_old, int h, int Lnew, const int* __restrict__ rows) {
    __shared__ ta qs[DKP], ks[DKP], vs[DVP], outs[DVP], wl[64], red[NT / 32];
    const int tid = threadIdx.x;
    const i64 bh = blockIdx.x, nseq = gridDim.x;
    const ti* qr = q + seq_row(rows, 0, bh, nseq) * DK;
    const ti* kr = k + seq_row(rows, 1, bh, nseq) * DK;
    const ti* vr = v + seq_row(rows, 2, bh, nseq) * DV;
    const ti* lr = lam + seq_row(rows, 4, bh, nseq) * L;
    ta part = (ta)0;
    for (int i = tid; i < DK; i += NT) {
        qs[i] = ld(qr + i);
        ks[i] = ld(kr + i);
        part = fma(qs[i], ks[i], part);
    }
    for (int c = tid; c < DV; c += NT) {
        vs[c] = ld(vr + c);
        outs[c] = (ta)0;
    }
    if (tid < n_old) wl[tid] = ((p >> tid) & 1) ? ld(lr + tid + 1) : (ta)0;
    const ta qk = block_sum(part, red);  // synchronises: qs, ks, vs, wl visible
    const ta ea = ex(ld(a + seq_row(rows, 3, bh, nseq)));
    const int m = DK * DV;
    const ta* ob = old + bh * (i64)n_old * m;
    ta* nb = newlev + bh * (i64)Lnew * m;
    // this block's columns [c0, c0 + cw): a column of the output needs only that column of the states
    const int c0 = blockIdx.y * DEC_CB, cw = min(DEC_CB, DV - c0);
    for (int y = tid; y < DK * cw; y += NT) {
        const int i = y / cw, c = c0 + y % cw, x = i * DV + c;
        ta rd = (ta)0, fold = (ta)0;
        for (int jl = 0; jl < n_old; ++jl) {
            ta o = ob[(i64)jl * m + x];
            rd = fma(wl[jl], o, rd);
            if (jl < h - 1) fold += o;
        }
        atomicAdd(&outs[c], qs[i] * rd);
        for (int lv = 1; lv <= Lnew; ++lv) {
            ta val;
            if (lv < h) val = (ta)0;
            else if (lv == h) val = fma(ea, fold, ks[i] * vs[c]);
            else val = (lv - 1 < n_old) ? ea * ob[(i64)(lv - 1) * m + x] : (ta)0;
            nb[(i64)(lv - 1) * m + x] = val;
        }
    }
    __syncthreads();
    const ta lam0 = ld(lr);
    for (int c = c0 + tid; c < c0 + cw; c += NT) st(out + bh * DV + c, fma(ea, outs[c], lam0 * qk * vs[c]));
}

#if TI_BF16
// ---- tensor-core versions for bfloat16 inputs (CH = 64, NTC = 128 threads, fp32 accumulation) -----
// Same algorithm as above; products of bf16 tiles on mma.sync. Rounded to bf16 on the way into a
// product: k_s exp(A_end - A_s) (chunk states), the weighted scores M o (Q K^T), and the Fenwick
// block / state matrices read by the queries (relative 2^-9 each, inside the bf16 output rounding).

// Rows g / g+8 of a warp's A fragments times wlo / whi (re-rounded to bf16).
__device__ __forceinline__ unsigned scale2(unsigned x, float w) {
    return pack2(from_bf((bf)(x & 0xffffu)) * w, from_bf((bf)(x >> 16)) * w);
}

// ---- v4: asynchronous row-major tiles; the Fenwick blocks a chunk reads are listed first and
// each one's copy is issued while the previous one is multiplied (double buffer) ----------------

extern "C" __global__ void __launch_bounds__(NTC) ll_chunk_states_tc4(
    const bf* __restrict__ k, const bf* __restrict__ v, const bf* __restrict__ a,
    float* __restrict__ H, float* __restrict__ gsum, int T, int DK, int DV, i64 p, i64 F, int n,
    const int* __restrict__ rows, const int* __restrict__ tmap, int Ts) {
    constexpr int LDK = DKP + 8, LDV = DVP + 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf* Ks = reinterpret_cast<bf*>(smem_raw);  // CH x LDK: k, then k_s exp(A_end - A_s)
    bf* Vs = Ks + CH * LDK;                    // CH x LDV
    float* As = reinterpret_cast<float*>(Vs + CH * LDV);  // CH: decay from the chunk start
    float* Bs = As + CH;                                   // CH: decay to the chunk end
    check_smem((unsigned)((CH * LDK + CH * LDV) * 2 + 2 * CH * 4));
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 g0 = (F + j) * CH - p;
    const i64 nseq = gridDim.y;
    tile_async<DKP>(Ks, LDK, k + seq_row(rows, 1, bh, nseq) * Ts * DK, g0, T, DK, tmap);
    tile_async<DVP>(Vs, LDV, v + seq_row(rows, 2, bh, nseq) * Ts * DV, g0, T, DV, tmap);
    chunk_sums(a + seq_row(rows, 3, bh, nseq) * Ts, g0, T, As, Bs, nullptr, tmap);
    cp_async_wait_all();
    __syncthreads();
    const float gend = As[CH - 1];
    for (int idx = threadIdx.x; idx < CH * DKP; idx += NTC) {
        int ss = idx / DKP, ii = idx % DKP;
        Ks[ss * LDK + ii] = to_bf(from_bf(Ks[ss * LDK + ii]) * ex(Bs[ss]));
    }
    __syncthreads();
    mma_state_kn(H + (bh * n + j) * (i64)DK * DV, Ks, LDK, Vs, LDV, DK, DV);
    if (threadIdx.x == 0) gsum[bh * n + j] = gend;
}

#define LL_MAXREADS 128
#define LL_DS_IN_FS (DKP * (DVP + 4) >= CH * (CH + 1))

extern "C" __global__ void __launch_bounds__(NTC) ll_output_tc4(
    const bf* __restrict__ q, const bf* __restrict__ k, const bf* __restrict__ v, const bf* __restrict__ a,
    const bf* __restrict__ lam, const float* __restrict__ H, const float* __restrict__ gsum,
    const float* __restrict__ old, bf* __restrict__ out, int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old,
    const int* __restrict__ rows, const int* __restrict__ tmap, int Ts) {
    constexpr int LDK = DKP + 8, LDV = DVP + 8, LDF = DVP + 4;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float* Fs = reinterpret_cast<float*>(smem_raw);    // 2 x DKP x LDF: Fenwick block tiles (fp32)
    bf* Qs = reinterpret_cast<bf*>(Fs + 2 * DKP * LDF);  // CH x LDK
    bf* Ks = Qs + CH * LDK;                            // CH x LDK
    bf* Vs = Ks + CH * LDK;                            // CH x LDV
    bf* Hs = Vs + CH * LDV;                            // DKP x LDV: the tile being read, bf16
    float* As = reinterpret_cast<float*>(Hs + DKP * LDV);  // CH: decay from the chunk start
    float* Ar = As + CH;                    // CH: a per row
    // CH x (CH + 1): Ds[t][s] = exp(a_{s+1} + ... + a_t), used before the Fenwick reads: in the
    // second Fenwick buffer where it fits (that one is first written by the second read)
    float* Ds = LL_DS_IN_FS ? Fs + DKP * LDF : Ar + CH;
    float* lamS = Ar + CH + (LL_DS_IN_FS ? 0 : CH * (CH + 1));  // CH x NLC
    float* rdec = lamS + CH * NLC;          // LL_MAXREADS: decay from the block's end to the chunk start
    int* rlev = reinterpret_cast<int*>(rdec + LL_MAXREADS);  // > 0: chunk level LOGC + l'; < 0: old level -(l)
    const float** rsrc = reinterpret_cast<const float**>(rlev + LL_MAXREADS);  // 8-byte aligned (checked)
    __shared__ int nreads_s;
    check_smem((unsigned)(2 * DKP * LDF * 4 + (2 * CH * LDK + CH * LDV + DKP * LDV) * 2 + (2 * CH + (LL_DS_IN_FS ? 0 : CH * (CH + 1)) + CH * NLC) * 4 +
                          LL_MAXREADS * (4 + 4 + 8)));
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 cabs = F + j;
    const i64 g0 = cabs * CH - p;
    const i64 nseq = gridDim.y;
    const bf* lb = lam + seq_row(rows, 4, bh, nseq) * Ts * L;
    if (threadIdx.x == 0) {  // the reads of this chunk, in order: Fenwick blocks of this call, then the old state
        int nr = 0;
        float dec = 0.f;
        for (int lp = 1; lp < 63; ++lp) {
            i64 hi = cabs >> (lp - 1);
            if (hi == 0) break;
            if (!(hi & 1)) continue;
            i64 e = (hi << (lp - 1)) - 1;
            if (e < F) break;
            rsrc[nr] = H + (bh * n + (e - F)) * (i64)DK * DV;
            rlev[nr] = LOGC + lp;
            rdec[nr] = dec;
            ++nr;
            dec += gsum[bh * n + (e - F)];
        }
        for (int jl = 0; jl < n_old; ++jl) {
            if (!((p >> jl) & 1)) continue;
            rsrc[nr] = old + (bh * n_old + jl) * (i64)DK * DV;
            rlev[nr] = -(jl + 1);
            rdec[nr] = dec;
            ++nr;
        }
        nreads_s = nr;
    }
    tile_async<DKP>(Qs, LDK, q + seq_row(rows, 0, bh, nseq) * Ts * DK, g0, T, DK, tmap);
    tile_async<DKP>(Ks, LDK, k + seq_row(rows, 1, bh, nseq) * Ts * DK, g0, T, DK, tmap);
    tile_async<DVP>(Vs, LDV, v + seq_row(rows, 2, bh, nseq) * Ts * DV, g0, T, DV, tmap);
    for (int idx = threadIdx.x; idx < CH * NLC; idx += NTC) {
        int l = idx % NLC;
        i64 row = tok_row(tmap, g0 + idx / NLC, T);
        lamS[idx] = (row >= 0 && l < L) ? ld(lb + row * L + l) : 0.f;
    }
    chunk_sums(a + seq_row(rows, 3, bh, nseq) * Ts, g0, T, As, nullptr, Ar, tmap);
    __syncthreads();
    decay_table(Ar, Ds, 1, CH + 1);
    cp_async_wait_all();
    __syncthreads();
    const int nreads = nreads_s;
    if (nreads > 0) state_async(Fs, LDF, rsrc[0], DK, DV);  // first block: in flight during the intra part
    cp_async_commit();

    const int rlo = 16 * w + g, rhi = rlo + 8;
    const i64 row_lo = tok_row(tmap, g0 + rlo, T), row_hi = tok_row(tmap, g0 + rhi, T);  // input rows (< 0: none)
    const bool vlo = row_lo >= 0, vhi = row_hi >= 0;
    unsigned qa[DKP / 16][4];
#pragma unroll
    for (int kk = 0; kk < DKP / 16; ++kk) frag_a(qa[kk], Qs, LDK, 16 * w, 16 * kk);
    float O[DVP / 8][4];
#pragma unroll
    for (int nt = 0; nt < DVP / 8; ++nt) O[nt][0] = O[nt][1] = O[nt][2] = O[nt][3] = 0.f;
    {
        float P[CH / 8][4];
#pragma unroll
        for (int nt = 0; nt < CH / 8; ++nt) P[nt][0] = P[nt][1] = P[nt][2] = P[nt][3] = 0.f;
        mma_rows<CH>(P, qa, Ks, LDK);
#pragma unroll
        for (int nt = 0; nt < CH / 8; ++nt)
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                int tt = x < 2 ? rlo : rhi, s = 8 * nt + 2 * t4 + (x & 1);
                float wt = 0.f;
                if (s <= tt) wt = lamS[tt * NLC + intra_level(tt, s)] * Ds[tt * (CH + 1) + s];
                P[nt][x] *= wt;
            }
#pragma unroll
        for (int kk = 0; kk < CH / 16; ++kk) {
            unsigned pa[4] = {pack2(P[2 * kk][0], P[2 * kk][1]), pack2(P[2 * kk][2], P[2 * kk][3]),
                              pack2(P[2 * kk + 1][0], P[2 * kk + 1][1]), pack2(P[2 * kk + 1][2], P[2 * kk + 1][3])};
#pragma unroll
            for (int nt = 0; nt < DVP / 8; ++nt) {
                unsigned b0, b1;
                frag_b_kn(b0, b1, Vs, LDV, 16 * kk, 8 * nt);
                mma_bf16(O[nt], pa, b0, b1);
            }
        }
    }

    if (LL_DS_IN_FS) __syncthreads();  // every warp is done with Ds before the second read lands on it
    for (int r = 0; r < nreads; ++r) {
        if (r + 1 < nreads) state_async(Fs + ((r + 1) & 1) * DKP * LDF, LDF, rsrc[r + 1], DK, DV);
        cp_async_commit();
        cp_async_wait<1>();  // block r has landed (only r + 1 may still be in flight)
        __syncthreads();
        const float* F0 = Fs + (r & 1) * DKP * LDF;
        for (int idx = threadIdx.x; idx < DKP * DVP; idx += NTC) {
            int i = idx / DVP, jj = idx % DVP;
            Hs[i * LDV + jj] = to_bf(F0[i * LDF + jj]);
        }
        __syncthreads();
        const int lev = rlev[r];
        const float dec = rdec[r];
        int llo, lhi;
        if (lev > 0) {
            llo = lhi = lev;
        } else {
            llo = max(-lev, fen_level(cabs * CH + rlo, p));
            lhi = max(-lev, fen_level(cabs * CH + rhi, p));
        }
        const float wlo = (vlo && llo < L) ? ld(lb + row_lo * L + llo) * ex(As[rlo] + dec) : 0.f;
        const float whi = (vhi && lhi < L) ? ld(lb + row_hi * L + lhi) * ex(As[rhi] + dec) : 0.f;
#pragma unroll
        for (int kk = 0; kk < DKP / 16; ++kk) {
            unsigned qw[4] = {scale2(qa[kk][0], wlo), scale2(qa[kk][1], whi), scale2(qa[kk][2], wlo), scale2(qa[kk][3], whi)};
#pragma unroll
            for (int nt = 0; nt < DVP / 8; ++nt) {
                unsigned b0, b1;
                frag_b_kn(b0, b1, Hs, LDV, 16 * kk, 8 * nt);
                mma_bf16(O[nt], qw, b0, b1);
            }
        }
        __syncthreads();  // Hs and Fs[r & 1] are free again
    }

    bf* ob = out + bh * Ts * DV;
#pragma unroll
    for (int nt = 0; nt < DVP / 8; ++nt)
#pragma unroll
        for (int x = 0; x < 4; ++x) {
            int c = 8 * nt + 2 * t4 + (x & 1);
            if ((x < 2 ? vlo : vhi) && c < DV) st(ob + (x < 2 ? row_lo : row_hi) * DV + c, O[nt][x]);
        }
}
#endif
