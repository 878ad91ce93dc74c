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

// a'[g0] + ... + a'[g1 - 1], a' = max(a, fl) (one sequence's log decays, clamped; fl = minus_inf(): as
// they are), in every thread. Serial order per thread, then block_sum: -inf stays -inf (no
// differences of cumulative sums).
__device__ __forceinline__ ta pk_range_sum(const ta* a, i64 g0, i64 g1, ta fl, ta* red) {
    ta s = (ta)0;
    for (i64 g = g0 + threadIdx.x; g < g1; g += NT) s += fmx(a[g], fl);
    return block_sum(s, red);
}

// The tile of blockIdx.x (tiles: (2, ntiles) stream, first packed token): its stream i, first packed
// token g0 and tokens cnt (<= PK_TILE); the stream's first packed token, new tokens n and offset p.
struct PkTile {
    int i, cnt;
    i64 g0, first, n, p;
};
__device__ __forceinline__ PkTile pk_tile(const i64* seg, const i64* tiles, int N, int ntiles) {
    PkTile t;
    t.i = (int)tiles[blockIdx.x];
    t.g0 = tiles[ntiles + blockIdx.x];
    t.first = seg[t.i];
    t.n = seg[N + t.i];
    t.p = seg[2 * N + t.i];
    t.cnt = (int)min((i64)PK_TILE, t.first + t.n - t.g0);
    return t;
}

// W[r] = a'_first + ... + a'_{g0 + r} for the tile's tokens (ab null: 0). Callers synchronise.
__device__ __forceinline__ void pk_prefix(const ta* ab, const PkTile& t, ta fl, ta* W, ta* red) {
    if (ab == nullptr) {
        if (threadIdx.x < PK_TILE) W[threadIdx.x] = (ta)0;
        return;
    }
    const ta before = pk_range_sum(ab, t.first, t.g0, fl, red);
    if (threadIdx.x == 0) {
        ta c = before;
        for (int r = 0; r < PK_TILE; ++r) {
            if (r < t.cnt) c += fmx(ab[t.g0 + r], fl);
            W[r] = c;
        }
    }
}

// Thread 0: dec[u] = a'_{s+1} + ... + a'_last for the stretch s = s0 + u < s0 + m, a' = max(a, fl)
// (a null: 0), from run = a' after the stretch (updated to a' from s0 on). Callers synchronise.
__device__ __forceinline__ void pk_suffix(const ta* ab, i64 s0, int m, ta fl, ta& run, ta* dec) {
    if (threadIdx.x != 0) return;
    for (int u = m - 1; u >= 0; --u) {
        dec[u] = run;
        if (ab != nullptr) run += fmx(ab[s0 + u], fl);
    }
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
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Xt = (ta*)smem_raw;          // PK_KROWS x PK_XLD: the tile's x, k-major
    ta* Os = Xt + PK_KROWS * PK_XLD;  // PK_KC x DVP: rows of one old slot
    check_smem((unsigned)((PK_KROWS * PK_XLD + PK_KC * DVP) * sizeof(ta)));
    __shared__ ta w[PK_TILE], dec[PK_TILE], red[NT / 32];
    constexpr int RM = PK_TILE / 16, RN = DVP / 16;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const i64 bh = blockIdx.y;
    const int c0 = blockIdx.z * DVP;
    const PkTile tl = pk_tile(seg, tiles, N, ntiles);
    const int i = tl.i, cnt = tl.cnt;
    const i64 g0 = tl.g0, first = tl.first, p = tl.p;
    pk_prefix(a == nullptr ? nullptr : a + bh * T, tl, minus_inf(), dec, red);  // a_first + ... + a_t
    __syncthreads();
    const ta* xb = x + (bh * T + g0) * DK;
    for (int e = tid; e < PK_KROWS * PK_TILE; e += NT) {
        const int r = e % PK_TILE, kk = e / PK_TILE;
        Xt[kk * PK_XLD + r] = (r < cnt && kk < DK) ? xb[(i64)r * DK + kk] * ex(dec[r]) : (ta)0;
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
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* As = (ta*)smem_raw;   // PK_KC x DKP: a stretch's keys, or rows of tot^T
    ta* Bs = As + PK_KC * DKP;  // PK_KC x DVP: the stretch's values, or rows of the kept slots
    check_smem((unsigned)(PK_KC * (DKP + DVP) * sizeof(ta)));
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
            const ta f = ex(pk_range_sum(ab, first, first + n, minus_inf(), red));
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
        ta run = ab != nullptr ? pk_range_sum(ab, rs + rl, first + n, minus_inf(), red) : (ta)0;  // a after the stretch
        for (i64 e1 = rs + rl; e1 > rs; e1 -= PK_KC) {
            const i64 s0 = max(rs, e1 - PK_KC);
            const int m = (int)(e1 - s0);
            __syncthreads();  // the previous stretch is read
            pk_suffix(ab, s0, m, minus_inf(), run, dec);
            __syncthreads();
            for (int e = tid; e < PK_KC * DKP; e += NT) {
                const int u = e / DKP, kk = e % DKP;
                ta val = (ta)0;
                if (u < m && kk < DK) {
                    val = y[(bh * T + s0 + u) * DK + kk];
                    if (ab != nullptr) val *= ex(dec[u]);
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

// ---- loglinear_log_attention: slots are exp-kernel summaries (m, n, S, z) in log space ----------
// (lsattn.exp_kernel: m (DK) key shifts, n (DV) value shifts, S (DK x DV), z (DK); lsattn._ll_packed
// ._hierarchical). Decays are clamped as a per-stream call clamps them (max(a, lo / (4 (p + n))),
// lo = lo_v()), log level weights to lo, log values to lo.

__device__ __forceinline__ ta pk_floor(i64 end) { return (ta)((double)lo_v() / (4.0 * (double)end)); }

// log(exp(x) + exp(y)) (NumPy's logaddexp: -inf on both sides stays -inf)
__device__ __forceinline__ float pk_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double pk_log1p(double x) { return log1p(x); }
__device__ __forceinline__ ta pk_logaddexp(ta x, ta y) {
    const ta mx = fmx(x, y), mn = x < y ? x : y;
    if (mx == minus_inf()) return mx;
    return mx + pk_log1p(ex(mn - mx));
}

// Part 2 and the finish: every packed token t of a non-empty stream combines its partial (r, den, y)
// (the new tokens among themselves) with its reads of the occupied old slots j,
//   read = (max_i (q_ti + m_ji) + w_tj, A . z_j, log(A S_j) + n_j), A_i = exp(q_ti + m_ji - max),
//   w_tj = max(lam[t, level], lo) + a'_first + ... + a'_t (a null: no decay),
// shifted to the larger shift (exp_kernel.combine), and writes out = y - log(den) (-inf where every
// visible value was 0). Blocks as ll_pk_read (tiles of every non-empty stream).
extern "C" __global__ void __launch_bounds__(NT) hi_pk_read(
    const ta* __restrict__ q, const ta* __restrict__ a, const ta* __restrict__ lam, const ta* __restrict__ om,
    const ta* __restrict__ on, const ta* __restrict__ oS, const ta* __restrict__ oz, const ta* __restrict__ pr,
    const ta* __restrict__ pden, const ta* __restrict__ py, ta* __restrict__ out, const i64* __restrict__ seg,
    const i64* __restrict__ tiles, int T, int DK, int DV, int L, int N, int L_old, int ntiles) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Qt = (ta*)smem_raw;           // PK_KROWS x PK_XLD: the tile's queries, k-major
    ta* At = Qt + PK_KROWS * PK_XLD;  // the same for exp(q + m_j - r_j)
    ta* Os = At + PK_KROWS * PK_XLD;  // PK_KC x DVP: rows of S_j
    check_smem((unsigned)((2 * PK_KROWS * PK_XLD + PK_KC * DVP) * sizeof(ta)));
    __shared__ ta R[PK_TILE], D[PK_TILE], W[PK_TILE], rj[PK_TILE], sa[PK_TILE], sb[PK_TILE];
    __shared__ ta Ms[DKP], Zs[DKP], Ns[DVP], red[NT / 32];
    constexpr int RM = PK_TILE / 16, RN = DVP / 16;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const i64 bh = blockIdx.y;
    const int c0 = blockIdx.z * DVP;
    const PkTile tl = pk_tile(seg, tiles, N, ntiles);
    const int i = tl.i, cnt = tl.cnt;
    const i64 g0 = tl.g0, first = tl.first, p = tl.p;
    const ta lo = lo_v();
    pk_prefix(a == nullptr ? nullptr : a + bh * T, tl, pk_floor(p + tl.n), W, red);  // a'_first + ... + a'_t
    if (tid < PK_TILE) {
        const bool in = tid < cnt;
        R[tid] = in ? pr[bh * T + g0 + tid] : (ta)0;
        D[tid] = in ? pden[bh * T + g0 + tid] : (ta)1;
    }
    for (int e = tid; e < PK_KROWS * PK_TILE; e += NT) {
        const int r = e % PK_TILE, kk = e / PK_TILE;
        Qt[kk * PK_XLD + r] = (r < cnt && kk < DK) ? q[(bh * T + g0 + r) * DK + kk] : (ta)0;
    }
    ta acc[RM][RN];
#pragma unroll
    for (int ii = 0; ii < RM; ++ii)
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            const int r = ty * RM + ii, c = c0 + tx * RN + jj;
            acc[ii][jj] = (r < cnt && c < DV) ? py[(bh * T + g0 + r) * DV + c] : (ta)0;
        }
    const i64 sl = (bh * N + i) * (i64)L_old;  // the stream's first old slot
    for (int j = 0; j < L_old; ++j) {
        if (!((p >> j) & 1)) continue;  // an empty slot: reads nothing (exp of the stand-in is 0)
        __syncthreads();
        for (int e = tid; e < DKP; e += NT) {
            Ms[e] = e < DK ? om[(sl + j) * DK + e] : (ta)0;
            Zs[e] = e < DK ? oz[(sl + j) * DK + e] : (ta)0;
        }
        for (int e = tid; e < DVP; e += NT) Ns[e] = c0 + e < DV ? on[(sl + j) * DV + c0 + e] : (ta)0;
        __syncthreads();
        if (tid < PK_TILE) {
            ta mx = minus_inf();
            for (int kk = 0; kk < DK; ++kk) mx = fmx(mx, Qt[kk * PK_XLD + tid] + Ms[kk]);
            rj[tid] = mx;
        }
        __syncthreads();
        for (int e = tid; e < PK_KROWS * PK_TILE; e += NT) {
            const int r = e % PK_TILE, kk = e / PK_TILE;
            At[kk * PK_XLD + r] = kk < DK ? ex(Qt[kk * PK_XLD + r] + Ms[kk] - rj[r]) : (ta)0;
        }
        __syncthreads();
        if (tid < PK_TILE) {
            ta den = (ta)0;
            for (int kk = 0; kk < DK; ++kk) den = fma(At[kk * PK_XLD + tid], Zs[kk], den);
            const i64 pos = p + (g0 - first) + tid;
            const int lev = min(max(j + 1, bitlen64(p ^ pos)), L - 1);
            const ta w = tid < cnt ? fmx(lam[(bh * T + g0 + tid) * L + lev], lo) + W[tid] : (ta)0;
            const ta rb = rj[tid] + w, rn = fmx(R[tid], rb);
            sa[tid] = R[tid] - rn;
            sb[tid] = rb - rn;
            D[tid] = ex(R[tid] - rn) * D[tid] + ex(rb - rn) * den;
            R[tid] = rn;
        }
        ta part[RM][RN];
        zero_acc(part);
        const ta* Sj = oS + (sl + j) * (i64)DK * DV;
        for (int k0 = 0; k0 < DK; k0 += PK_KC) {
            __syncthreads();
            for (int e = tid; e < PK_KC * DVP; e += NT) {
                const int kk = k0 + e / DVP, c = c0 + e % DVP;
                Os[e] = (kk < DK && c < DV) ? Sj[(i64)kk * DV + c] : (ta)0;
            }
            __syncthreads();
            mm_acc<RM, RN, PK_KC>(part, At + k0 * PK_XLD, PK_XLD, Os, DVP, ty, tx);
        }
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            const int r = ty * RM + ii;
#pragma unroll
            for (int jj = 0; jj < RN; ++jj) {
                const ta yb = (part[ii][jj] > (ta)0 ? lg(part[ii][jj]) : lo) + Ns[tx * RN + jj];
                acc[ii][jj] = pk_logaddexp(acc[ii][jj] + sa[r], yb + sb[r]);
            }
        }
    }
    __syncthreads();
#pragma unroll
    for (int ii = 0; ii < RM; ++ii) {
        const int r = ty * RM + ii;
        const ta ld_ = lg(D[r]);
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            const int c = c0 + tx * RN + jj;
            const ta o = acc[ii][jj] - ld_;
            if (r < cnt && c < DV) out[(bh * T + g0 + r) * DV + c] = o > lo / 2 ? o : minus_inf();
        }
    }
}

// Part 3: new slot l of stream i as one summary of its sources: the new tokens [rs, rs + rl) (keys
// k_s + a'_{s+1} + ... + a'_last, log values max(lv_s, lo)) and the kept old slots (as ll_pk_state,
// their key shifts m + a'_first + ... + a'_last), all shifted to the per-feature maximum mf and the
// per-column maximum nf (exp_kernel.summarise and merge in one pass; empty: m = n = lo, S = z = 0).
// Blocks as ll_pk_state; m and z are written by the first column block.
extern "C" __global__ void __launch_bounds__(NT) hi_pk_state(
    const ta* __restrict__ k, const ta* __restrict__ lv, const ta* __restrict__ a, const ta* __restrict__ om,
    const ta* __restrict__ on, const ta* __restrict__ oS, const ta* __restrict__ oz, ta* __restrict__ nm,
    ta* __restrict__ nn, ta* __restrict__ nS, ta* __restrict__ nz, const i64* __restrict__ seg,
    const i64* __restrict__ rng, int T, int DK, int DV, int N, int L_old, int L_new) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* As = (ta*)smem_raw;     // PK_KC x DKP: exp(key - mf) of a stretch
    ta* Bs = As + PK_KC * DKP;  // PK_KC x DVP: exp(lv - nf)
    check_smem((unsigned)(PK_KC * (DKP + DVP) * sizeof(ta)));
    __shared__ ta dec[PK_KC], mf[DKP], nf[DVP], red[NT / 32];
    constexpr int RM = DKP / 16, RN = DVP / 16;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int slot = blockIdx.x, i = slot / L_new, l = slot % L_new + 1;
    const i64 bh = blockIdx.y;
    const int c0 = blockIdx.z * DVP;
    const i64 first = seg[i], n = seg[N + i], p = seg[2 * N + i];
    const int h = (int)seg[3 * N + i];
    const i64 rs = rng[slot], rl = rng[(i64)N * L_new + slot];
    const ta lo = lo_v(), fl = pk_floor(p + n);
    const ta* ab = a == nullptr ? nullptr : a + bh * T;
    const int stay = (l > h && l <= L_old) ? l - 1 : -1;
    const int nfold = l == h ? min(h - 1, L_old) : 0;
    const int j0 = stay >= 0 ? stay : 0, j1 = stay >= 0 ? stay + 1 : nfold;  // the kept old slots
    const i64 sl = (bh * N + i) * (i64)L_old;
    const ta tot = ab != nullptr ? pk_range_sum(ab, first, first + n, fl, red) : (ta)0;
    const ta tail = ab != nullptr ? pk_range_sum(ab, rs + rl, first + n, fl, red) : (ta)0;
    // the shifts: old slots' (tid < DKP: features; tid >= NT / 2: columns), then the new tokens'
    const int kf = tid, cf = tid - NT / 2;
    ta mk = lo, nv = lo;
    for (int j = j0; j < j1; ++j) {
        if (kf < DK) mk = fmx(mk, om[(sl + j) * DK + kf] + tot);
        if (cf >= 0 && c0 + cf < DV) nv = fmx(nv, on[(sl + j) * DV + c0 + cf]);
    }
    const ta* kb = k + bh * T * DK;
    const ta* vb = lv + bh * T * DV;
    ta run = tail;  // thread 0: a' after the stretch
    for (i64 e1 = rs + rl; e1 > rs; e1 -= PK_KC) {
        const i64 s0 = max(rs, e1 - PK_KC);
        const int m = (int)(e1 - s0);
        __syncthreads();
        pk_suffix(ab, s0, m, fl, run, dec);
        __syncthreads();
        for (int u = 0; u < m; ++u) {
            if (kf < DK) mk = fmx(mk, kb[(s0 + u) * DK + kf] + dec[u]);
            if (cf >= 0 && c0 + cf < DV) nv = fmx(nv, fmx(vb[(s0 + u) * DV + c0 + cf], lo));
        }
    }
    if (kf < DKP) mf[kf] = mk;
    if (cf >= 0 && cf < DVP) nf[cf] = nv;
    // the new tokens' S and z, shifted to (mf, nf)
    ta acc[RM][RN];
    zero_acc(acc);
    ta zk = (ta)0;
    run = tail;
    for (i64 e1 = rs + rl; e1 > rs; e1 -= PK_KC) {
        const i64 s0 = max(rs, e1 - PK_KC);
        const int m = (int)(e1 - s0);
        __syncthreads();
        pk_suffix(ab, s0, m, fl, run, dec);
        __syncthreads();
        for (int e = tid; e < PK_KC * DKP; e += NT) {
            const int u = e / DKP, kk = e % DKP;
            As[e] = (u < m && kk < DK) ? ex(kb[(s0 + u) * DK + kk] + dec[u] - mf[kk]) : (ta)0;
        }
        for (int e = tid; e < PK_KC * DVP; e += NT) {
            const int u = e / DVP, c = e % DVP;
            Bs[e] = (u < m && c0 + c < DV) ? ex(fmx(vb[(s0 + u) * DV + c0 + c], lo) - nf[c]) : (ta)0;
        }
        __syncthreads();
        mm_acc<RM, RN, PK_KC>(acc, As, DKP, Bs, DVP, ty, tx);
        if (kf < DK)
            for (int u = 0; u < m; ++u) zk += As[u * DKP + kf];
    }
    __syncthreads();
    // the kept old slots, rescaled to (mf, nf)
    for (int j = j0; j < j1; ++j) {
        const ta* Sj = oS + (sl + j) * (i64)DK * DV;
#pragma unroll
        for (int ii = 0; ii < RM; ++ii) {
            const int r = ty * RM + ii;
            if (r >= DK) continue;
            const ta fm = ex(om[(sl + j) * DK + r] + tot - mf[r]);
#pragma unroll
            for (int jj = 0; jj < RN; ++jj) {
                const int c = tx * RN + jj;
                if (c0 + c < DV) acc[ii][jj] = fma(fm * ex(on[(sl + j) * DV + c0 + c] - nf[c]), Sj[(i64)r * DV + c0 + c], acc[ii][jj]);
            }
        }
        if (kf < DK) zk = fma(ex(om[(sl + j) * DK + kf] + tot - mf[kf]), oz[(sl + j) * DK + kf], zk);
    }
    const i64 o = (bh * N + i) * (i64)L_new + (l - 1);
#pragma unroll
    for (int ii = 0; ii < RM; ++ii)
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            const int r = ty * RM + ii, c = c0 + tx * RN + jj;
            if (r < DK && c < DV) nS[o * DK * DV + (i64)r * DV + c] = acc[ii][jj];
        }
    if (blockIdx.z == 0 && kf < DK) {
        nm[o * DK + kf] = fmx(mf[kf], lo);
        nz[o * DK + kf] = zk;
    }
    if (cf >= 0 && c0 + cf < DV) nn[o * DV + c0 + cf] = nf[cf];
}
