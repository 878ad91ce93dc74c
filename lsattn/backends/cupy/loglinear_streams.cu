// Packed streams with states (lsattn/_ll_packed.py, parts 2 and 3) of the operators whose level
// slots are d_k x d_v matrices (loglinear_attention, loglinear_gated_delta), every stream at once in
// two launches instead of ~100 array operations. Compiled after common.cu and loglinear.cu; inputs
// in the compute type (ta), C-contiguous, one row per sequence bh of BH.
//
// seg (4, N) int64, per stream i: its first packed token, its new tokens n, its offset p, and
// h = bit_length(p XOR (p + n)) (the levels that change). Old slots: old (BH, N, L_old, DK, DV),
// slot j holding keys only where bit j of p is set.

#define PK_TILE 64  // tokens per block of ll_pk_read
#define PK_KC 32    // reduction rows per shared stage
#define PK_XLD (PK_TILE + 4)
#define PK_KROWS (((DKP + PK_KC - 1) / PK_KC) * PK_KC)

// a[g0] + ... + a[g1 - 1] (one sequence's log decays), in every thread. Serial order per thread, then
// block_sum: -inf stays -inf (no differences of cumulative sums).
__device__ __forceinline__ ta pk_range_sum(const ta* a, i64 g0, i64 g1, ta* red) {
    ta s = (ta)0;
    for (i64 g = g0 + threadIdx.x; g < g1; g += NT) s += a[g];
    return block_sum(s, red);
}

// Part 2: each token t of a stream with an incoming state adds
//   sum over occupied old slots j of lam[t, min(max(j + 1, bit_length(p XOR pos_t)), L - 1)] (x_t . old_j)
// to its output row, x_t = exp(a_first + ... + a_t) q_t (a given: loglinear_attention) or x_t itself
// (a null: Gated DeltaNet's reads, the transitions already applied). out (BH, T, DV) is updated in
// place. Blocks: (tile of PK_TILE tokens of one stream (tiles: (2, ntiles) stream, first token),
// sequence, DVP value columns); a 16 x 16 thread grid of 4 x DVP/16 register tiles.
extern "C" __global__ void __launch_bounds__(NT) ll_pk_read(
    const ta* __restrict__ x, const ta* __restrict__ a, const ta* __restrict__ lam, const ta* __restrict__ old,
    ta* __restrict__ out, const i64* __restrict__ seg, const i64* __restrict__ tiles,
    int T, int DK, int DV, int L, int N, int L_old, int ntiles) {
    extern __shared__ unsigned char smem_raw[];
    ta* Xt = (ta*)smem_raw;          // PK_KROWS x PK_XLD: the tile's x, k-major
    ta* Os = Xt + PK_KROWS * PK_XLD;  // PK_KC x DVP: rows of one old slot
    __shared__ ta w[PK_TILE], dec[PK_TILE], red[NT / 32];
    constexpr int RM = PK_TILE / 16, RN = DVP / 16;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const i64 bh = blockIdx.y;
    const int c0 = blockIdx.z * DVP;
    const int i = (int)tiles[blockIdx.x];
    const i64 g0 = tiles[ntiles + blockIdx.x];
    const i64 first = seg[i], n = seg[N + i], p = seg[2 * N + i];
    const int cnt = (int)min((i64)PK_TILE, first + n - g0);
    if (a != nullptr) {  // exp(a_first + ... + a_t) for the tile's tokens
        const ta* ab = a + bh * T;
        const ta before = pk_range_sum(ab, first, g0, red);
        if (tid == 0) {
            ta s = before;
            for (int r = 0; r < PK_TILE; ++r) {
                if (r < cnt) s += ab[g0 + r];
                dec[r] = ex(s);
            }
        }
        __syncthreads();
    }
    const ta* xb = x + (bh * T + g0) * DK;
    for (int e = tid; e < PK_KROWS * PK_TILE; e += NT) {
        const int r = e % PK_TILE, kk = e / PK_TILE;
        ta val = (ta)0;
        if (r < cnt && kk < DK) val = a != nullptr ? xb[(i64)r * DK + kk] * dec[r] : xb[(i64)r * DK + kk];
        Xt[kk * PK_XLD + r] = val;
    }
    ta acc[RM][RN];
    zero_acc(acc);
    const ta* ob = old + (bh * N + i) * (i64)L_old * DK * DV;
    for (int j = 0; j < L_old; ++j) {
        if (!((p >> j) & 1)) continue;  // an empty slot (block-uniform)
        __syncthreads();                // the previous slot's weights are read
        if (tid < PK_TILE) {
            const i64 pos = p + (g0 - first) + tid;
            const int lev = min(max(j + 1, bitlen64(p ^ pos)), L - 1);
            w[tid] = tid < cnt ? lam[(bh * T + g0 + tid) * L + lev] : (ta)0;
        }
        ta part[RM][RN];
        zero_acc(part);
        for (int k0 = 0; k0 < DK; k0 += PK_KC) {
            __syncthreads();
            for (int e = tid; e < PK_KC * DVP; e += NT) {
                const int kk = k0 + e / DVP, c = c0 + e % DVP;
                Os[e] = (kk < DK && c < DV) ? ob[((i64)j * DK + kk) * DV + c] : (ta)0;
            }
            __syncthreads();
            mm_acc<RM, RN, PK_KC>(part, Xt + k0 * PK_XLD, PK_XLD, Os, DVP, ty, tx);
        }
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            const ta wr = w[ty * RM + ii];
#pragma unroll
            for (int jj = 0; jj < RN; ++jj) acc[ii][jj] = fma(wr, part[ii][jj], acc[ii][jj]);
        }
    }
#pragma unroll
    for (int ii = 0; ii < RM; ++ii) {
        const int r = ty * RM + ii;
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            const int c = c0 + tx * RN + jj;
            if (r < cnt && c < DV) out[(bh * T + g0 + r) * DV + c] += acc[ii][jj];
        }
    }
}

// Part 3: new slot l (1 .. L_new) of stream i (_chunktree.state_merge_plan): the old slots carried
// over the stream's new tokens (l > h: old slot l - 1; l == h: the old slots below h - 1 folded;
// l < h: none), by exp(a_first + ... + a_last) (a given) or by the transition product tot
// (BH, N, DK, DK) (a null: Gated DeltaNet), plus the new tokens of the slot, packed tokens
// [rs, rs + rl) (rng (2, N L_new)), each written as y_s v_s^T with y_s = exp(a_{s+1} + ... + a_last)
// k_s (a given) or Gated DeltaNet's writes. lev (BH, N, L_new, DK, DV): every slot written.
// Blocks: (stream x slot, sequence, DVP value columns); DKP/16 x DVP/16 register tiles.
extern "C" __global__ void __launch_bounds__(NT) ll_pk_state(
    const ta* __restrict__ y, const ta* __restrict__ v, const ta* __restrict__ a, const ta* __restrict__ tot,
    const ta* __restrict__ old, ta* __restrict__ lev, const i64* __restrict__ seg, const i64* __restrict__ rng,
    int T, int DK, int DV, int N, int L_old, int L_new) {
    extern __shared__ unsigned char smem_raw[];
    ta* As = (ta*)smem_raw;   // PK_KC x DKP: a stretch's keys, or rows of tot^T
    ta* Bs = As + PK_KC * DKP;  // PK_KC x DVP: the stretch's values, or rows of the kept slots
    __shared__ ta dec[PK_KC], red[NT / 32];
    constexpr int RM = DKP / 16, RN = DVP / 16;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int slot = blockIdx.x, i = slot / L_new, l = slot % L_new + 1;
    const i64 bh = blockIdx.y;
    const int c0 = blockIdx.z * DVP;
    const i64 first = seg[i], n = seg[N + i];
    const int h = (int)seg[3 * N + i];
    const i64 rs = rng[slot], rl = rng[(i64)N * L_new + slot];
    const ta* ab = a == nullptr ? nullptr : a + bh * T;
    ta acc[RM][RN];
    zero_acc(acc);
    const int stay = (l > h && l <= L_old) ? l - 1 : -1;
    const int nfold = l == h ? min(h - 1, L_old) : 0;
    const ta* ob = old + (bh * N + i) * (i64)L_old * DK * DV;
    auto kept = [&](int kk, int c) {  // the old slots that land in slot l, before the carry
        if (stay >= 0) return ob[((i64)stay * DK + kk) * DV + c];
        ta s = (ta)0;
        for (int jl = 0; jl < nfold; ++jl) s += ob[((i64)jl * DK + kk) * DV + c];
        return s;
    };
    if (stay >= 0 || nfold > 0) {
        if (ab != nullptr) {  // a scalar carry
            const ta f = ex(pk_range_sum(ab, first, first + n, red));
#pragma unroll
            for (int ii = 0; ii < RM; ++ii)
#pragma unroll
                for (int jj = 0; jj < RN; ++jj) {
                    const int r = ty * RM + ii, c = c0 + tx * RN + jj;
                    if (r < DK && c < DV) acc[ii][jj] = f * kept(r, c);
                }
        } else {  // tot @ kept
            const ta* M = tot + (bh * N + i) * (i64)DK * DK;
            for (int k0 = 0; k0 < DK; k0 += PK_KC) {
                __syncthreads();
                for (int e = tid; e < PK_KC * DKP; e += NT) {
                    const int m = k0 + e / DKP, r = e % DKP;
                    As[e] = (m < DK && r < DK) ? M[(i64)r * DK + m] : (ta)0;
                }
                for (int e = tid; e < PK_KC * DVP; e += NT) {
                    const int m = k0 + e / DVP, c = c0 + e % DVP;
                    Bs[e] = (m < DK && c < DV) ? kept(m, c) : (ta)0;
                }
                __syncthreads();
                mm_acc<RM, RN, PK_KC>(acc, As, DKP, Bs, DVP, ty, tx);
            }
        }
    }
    if (rl > 0) {  // the new tokens, stretches of PK_KC from the slot's last token back
        ta run = ab != nullptr ? pk_range_sum(ab, rs + rl, first + n, red) : (ta)0;  // a after the stretch
        for (i64 e1 = rs + rl; e1 > rs; e1 -= PK_KC) {
            const i64 s0 = max(rs, e1 - PK_KC);
            const int m = (int)(e1 - s0);
            __syncthreads();  // the previous stretch is read
            if (ab != nullptr && tid == 0) {
                for (int u = m - 1; u >= 0; --u) {
                    dec[u] = ex(run);
                    run += ab[s0 + u];
                }
            }
            __syncthreads();
            for (int e = tid; e < PK_KC * DKP; e += NT) {
                const int u = e / DKP, kk = e % DKP;
                ta val = (ta)0;
                if (u < m && kk < DK) {
                    val = y[(bh * T + s0 + u) * DK + kk];
                    if (ab != nullptr) val *= dec[u];
                }
                As[e] = val;
            }
            for (int e = tid; e < PK_KC * DVP; e += NT) {
                const int u = e / DVP, c = c0 + e % DVP;
                Bs[e] = (u < m && c < DV) ? v[(bh * T + s0 + u) * DV + c] : (ta)0;
            }
            __syncthreads();
            mm_acc<RM, RN, PK_KC>(acc, As, DKP, Bs, DVP, ty, tx);
        }
    }
    ta* dst = lev + ((bh * N + i) * (i64)L_new + (l - 1)) * DK * DV;
#pragma unroll
    for (int ii = 0; ii < RM; ++ii)
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            const int r = ty * RM + ii, c = c0 + tx * RN + jj;
            if (r < DK && c < DV) dst[(i64)r * DV + c] = acc[ii][jj];
        }
}
