// Backward of log-linear Mamba-2 (lsattn.loglinear_attention); compiled after common.cu and
// loglinear.cu (chunk_sums, decay_table, the DL output kernel). FFMA kernels computing in TA (float
// for 16-bit inputs, which they read and whose gradients they write as such).
//
// With W[t,s] = lambda[t, level(t,s)] exp(a_{s+1} + ... + a_t) (s <= t) and dO the output gradient:
//   dq_t = sum_s W[t,s] (dO_t . v_s) k_s        the forward on (dO, v, k): ll_output_dl, which also
//   dl[t,l] = sum_{level(t,s)=l} ...            gives the level-weight gradient
//   dv_s = sum_t W[t,s] (q_t . k_s) dO_t,  dk_s = sum_t W[t,s] (dO_t . v_s) q_t     (this file)
//   da_r = sum_{t >= r} (dO_t . o_t - k_t . dk_t)                                     (host)
//
// dk, dv by chunks of keys. Within a chunk: the transposed masked products. Across chunks: a key
// chunk c meets the query chunks of a later Fenwick block at chunk level l' exactly when bit l'-1
// of c is clear; they form the "right block" R = [r0, r0 + 2^(l'-1)), r0 = ((c >> (l'-1)) | 1)
// << (l'-1), and every query of R weighs c's keys by its level LOGC + l' weight. So
//   ll_bw_blocks  per right block (one per chunk index r0 > F: r0's trailing zeros give l'):
//                 G_R = sum_{t in R} lambda[t, LOGC + l'] exp(a_{R start} + ... + a_t) q_t dO_t^T
//                 (d_k x d_v) and its total log decay, chunk by chunk from R's end (Horner: every
//                 exponent <= 0, each decay summed over its own stretch)
//   ll_bw_dkdv    per key chunk c: dS = sum_{l'} exp(decay from c's end to R's start) G_R over its
//                 right blocks (the decay is the sum of the totals of the blocks in between), then
//                 dv_s = exp(a_{s+1} + ... + a_end) dS^T k_s, dk_s = exp(...) dS v_s, plus the
//                 intra-chunk products.

extern "C" __global__ void __launch_bounds__(NT) ll_bw_blocks(
    const ti* __restrict__ q, const ti* __restrict__ dO, const ti* __restrict__ a, const ti* __restrict__ lam,
    ta* __restrict__ G, ta* __restrict__ gtot, int T, int DK, int DV, int L, i64 p, i64 F, int n) {
    constexpr int RI = DKP / 16, RN = DVP / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Qw = reinterpret_cast<ta*>(smem_raw);  // CH x DKP: q_t lambda[t, lev] exp(a_{chunk start} + ... + a_t)
    ta* Os = Qw + CH * DKP;                    // CH x DVP: dO
    ta* As = Os + CH * DVP;                    // CH: decay from the chunk start
    check_smem((unsigned)((CH * DKP + CH * DVP + CH) * sizeof(ta)));
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const i64 bh = blockIdx.y;
    const i64 r0 = F + 1 + blockIdx.x;
    const int lp = __ffsll(r0);  // chunk level of the right block starting at r0
    const int lev = LOGC + lp;
    const i64 last = min(r0 + ((i64)1 << (lp - 1)), F + n) - 1;
    const ti* qb = q + bh * T * DK;
    const ti* ob = dO + bh * T * DV;
    const ti* lb = lam + bh * T * L;
    ta acc[RI][RN];
    zero_acc(acc);
    ta gt = (ta)0;
    for (i64 j = last; j >= r0; --j) {
        const i64 g0 = j * CH - p;
        __syncthreads();  // the previous chunk's tiles are consumed
        staged<CH * DKP, NT>(tile_loader<DKP>(qb, g0, T, DK), [&](int idx, ta x) { Qw[idx] = x; });
        staged<CH * DVP, NT>(tile_loader<DVP>(ob, g0, T, DV), [&](int idx, ta x) { Os[idx] = x; });
        chunk_sums(a + bh * T, g0, T, As, nullptr, nullptr);
        __syncthreads();
        for (int idx = tid; idx < CH * DKP; idx += NT) {
            int r = idx / DKP;
            i64 g = g0 + r;
            ta w = (g >= 0 && g < T && lev < L) ? ld(lb + g * L + lev) * ex(As[r]) : (ta)0;
            Qw[idx] *= w;
        }
        const ta tot = As[CH - 1];
        __syncthreads();
        const ta f = ex(tot);
#pragma unroll
        for (int i = 0; i < RI; ++i)
#pragma unroll
            for (int c = 0; c < RN; ++c) acc[i][c] *= f;
        mm_acc<RI, RN, CH>(acc, Qw, DKP, Os, DVP, ty, tx);
        gt += tot;
    }
    store_tile(G + (bh * n + (r0 - F)) * (i64)DK * DV, acc, DK, DV, ty, tx);
    if (tid == 0) gtot[bh * n + (r0 - F)] = gt;
}

extern "C" __global__ void __launch_bounds__(NT) ll_bw_dkdv(
    const ti* __restrict__ q, const ti* __restrict__ k, const ti* __restrict__ v, const ti* __restrict__ dO,
    const ti* __restrict__ a, const ti* __restrict__ lam, const ta* __restrict__ G, const ta* __restrict__ gtot,
    ti* __restrict__ dk, ti* __restrict__ dv, int T, int DK, int DV, int L, i64 p, i64 F, int n) {
    constexpr int RM = CH / 16, RI = DKP / 16, RN = DVP / 16;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Qt = reinterpret_cast<ta*>(smem_raw);  // DKP x QLD: q transposed
    ta* Kt = Qt + DKP * QLD;                   // DKP x QLD: k transposed
    ta* Ot = Kt + DKP * QLD;                   // DVP x QLD: dO transposed
    ta* Vt = Ot + DVP * QLD;                   // DVP x QLD: v transposed
    ta* Qr = Vt + DVP * QLD;                   // CH x DKP: q
    ta* Or = Qr + CH * DKP;                    // CH x DVP: dO
    ta* P1 = Or + CH * DVP;                    // CH x QLD: [t][s] W o (Q K^T)
    ta* P2 = P1 + CH * QLD;                    // CH x QLD: [t][s] W o (dO V^T)
    ta* Ds = P2 + CH * QLD;                    // DKP x DVP: dS
    ta* Dst = Ds + DKP * DVP;                  // DVP x DKP: dS transposed
    ta* As = Dst + DVP * DKP;                  // CH (unused here; chunk_sums writes it)
    ta* Bs = As + CH;                          // CH: decay from a row to the chunk end
    ta* Ar = Bs + CH;                          // CH: a per row
    ta* lamS = Ar + CH;                        // CH x NLC intra-chunk level weights
    check_smem((unsigned)((2 * DKP * QLD + 2 * DVP * QLD + CH * DKP + CH * DVP + 2 * CH * QLD + 2 * DKP * DVP + 3 * CH +
                           CH * NLC) * sizeof(ta)));
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const int j = blockIdx.x;
    const i64 bh = blockIdx.y;
    const i64 c = F + j;
    const i64 g0 = c * CH - p;
    const ti* qb = q + bh * T * DK;
    const ti* kb = k + bh * T * DK;
    const ti* vb = v + bh * T * DV;
    const ti* ob = dO + bh * T * DV;
    staged<CH * DKP, NT>(tile_loader<DKP>(qb, g0, T, DK), [&](int idx, ta x) { Qt[(idx % DKP) * QLD + idx / DKP] = x; Qr[idx] = x; });
    staged<CH * DKP, NT>(tile_loader<DKP>(kb, g0, T, DK), [&](int idx, ta x) { Kt[(idx % DKP) * QLD + idx / DKP] = x; });
    staged<CH * DVP, NT>(tile_loader<DVP>(ob, g0, T, DV), [&](int idx, ta x) { Ot[(idx % DVP) * QLD + idx / DVP] = x; Or[idx] = x; });
    staged<CH * DVP, NT>(tile_loader<DVP>(vb, g0, T, DV), [&](int idx, ta x) { Vt[(idx % DVP) * QLD + idx / DVP] = x; });
    staged<CH * NLC, NT>(tile_loader<NLC>(lam + bh * T * L, g0, T, L), [&](int idx, ta x) { lamS[idx] = x; });
    chunk_sums(a + bh * T, g0, T, As, Bs, Ar);
    __syncthreads();
    decay_table(Ar, P1, 1, QLD);  // P1[t][s] = exp(a_{s+1} + ... + a_t)
    __syncthreads();
    {
        ta S1[RM][RM], S2[RM][RM];
        zero_acc(S1);
        zero_acc(S2);
        mm_acc<RM, RM, DKP>(S1, Qt, QLD, Kt, QLD, ty, tx);
        mm_acc<RM, RM, DVP>(S2, Ot, QLD, Vt, QLD, ty, tx);
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            int t = ty * RM + ii;
#pragma unroll
            for (int jj = 0; jj < RM; ++jj) {
                int s = tx * RM + jj;
                ta w = (ta)0;
                if (s <= t) w = lamS[t * NLC + intra_level(t, s)] * P1[t * QLD + s];
                P1[t * QLD + s] = S1[ii][jj] * w;
                P2[t * QLD + s] = S2[ii][jj] * w;
            }
        }
    }
    // dS over the right blocks of c, nearest first; gap = decay from c's end to the block's start
    {
        ta ds[RI][RN];
        zero_acc(ds);
        ta gap = (ta)0;
        for (int lp = 1; lp < 63; ++lp) {
            const i64 hi = c >> (lp - 1);
            if (hi & 1) continue;
            const i64 r0 = (hi | 1) << (lp - 1);
            if (r0 >= F + n) break;
            const i64 slot = r0 - F;
            const ta f = ex(gap);
            const ta* Gm = G + (bh * n + slot) * (i64)DK * DV;
#pragma unroll
            for (int i = 0; i < RI; ++i) {
                int row = ty * RI + i;
#pragma unroll
                for (int cc = 0; cc < RN; ++cc) {
                    int col = tx * RN + cc;
                    if (row < DK && col < DV) ds[i][cc] = fma(f, Gm[(i64)row * DV + col], ds[i][cc]);
                }
            }
            gap += gtot[bh * n + slot];
        }
#pragma unroll
        for (int i = 0; i < RI; ++i)
#pragma unroll
            for (int cc = 0; cc < RN; ++cc) {
                int row = ty * RI + i, col = tx * RN + cc;
                Ds[row * DVP + col] = ds[i][cc];
                Dst[col * DKP + row] = ds[i][cc];
            }
    }
    __syncthreads();
    // dv = diag(exp(tail)) K dS + P1^T dO;  dk = diag(exp(tail)) V dS^T + P2^T Q
    ta accv[RM][RN], acck[RM][RI];
    zero_acc(accv);
    zero_acc(acck);
    mm_acc<RM, RN, DKP>(accv, Kt, QLD, Ds, DVP, ty, tx);
    mm_acc<RM, RI, DVP>(acck, Vt, QLD, Dst, DKP, ty, tx);
#pragma unroll
    for (int ii = 0; ii < RM; ++ii) {
        const ta e = ex(Bs[ty * RM + ii]);
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) accv[ii][jj] *= e;
#pragma unroll
        for (int jj = 0; jj < RI; ++jj) acck[ii][jj] *= e;
    }
    mm_acc<RM, RN, CH>(accv, P1, QLD, Or, DVP, ty, tx);
    mm_acc<RM, RI, CH>(acck, P2, QLD, Qr, DKP, ty, tx);
#pragma unroll
    for (int ii = 0; ii < RM; ++ii) {
        int s = ty * RM + ii;
        i64 g = g0 + s;
        if (g < 0 || g >= T) continue;
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            int col = tx * RN + jj;
            if (col < DV) st(dv + (bh * T + g) * DV + col, accv[ii][jj]);
        }
#pragma unroll
        for (int jj = 0; jj < RI; ++jj) {
            int col = tx * RI + jj;
            if (col < DK) st(dk + (bh * T + g) * DK + col, acck[ii][jj]);
        }
    }
}
