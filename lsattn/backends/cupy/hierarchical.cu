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
// hi_merge  the chunk tree's merges, one launch per depth d = 1, 2, ... (parallel over the chunks
//           of that depth, sequences and HI_BV value columns): one exp-kernel summary (m, n, S, z)
//           per chunk-level Fenwick slot, S_ic = sum_s exp(k_si + d_s - m_i) exp(lv_sc - n_c), z_i =
//           sum_s exp(k_si + d_s - m_i), keys decayed (d_s) to the end of the slot's last chunk; a
//           slot is stored once, by id (the chunk whose merge made it). Chunk c (z = trailing zeros
//           of c + 1 = d): its own summary (keys decayed to its end by suffix sums inside it, from
//           hi_intra) and the chunk-level slots 1 .. z held before it (ids c - 2^(m-1), made at
//           smaller depths) become slot z + 1, the slots' keys decayed to c's end by sums of the
//           stretch totals between (the chunk's own and the held slots' below them), with the larger
//           per-feature and per-column maxima as shifts (factors <= 1): the Fenwick merge at chunk
//           granularity of gated_delta.cu's gd_scan (see there why the slots are the chunk tree's
//           buckets), as a tree (no sequential chunk loop). gnode: each slot's total decay. The
//           incoming state's slots are never merged.
// hi_snap   one block per (chunk, sequence): the m of the slots held before the chunk, decayed to
//           its start (msnap, for hi_read): a chunk-level slot by the totals of the held slots below
//           it (the chunks between), an incoming slot by all of them.
// hi_read   one block per (chunk, sequence, HI_RW value columns), in parallel: start from
//           hi_intra's (lnum, lden) as running (shift, sum) pairs; for every slot held before the
//           chunk (incoming slot j: bit j of p, read at level max(j + 1, bit_length(p XOR t));
//           chunk-level slot m: read at level log2 CH + m), r_t = max_i (q_ti + m_i), e = exp(q + m
//           - r) <= 1, den_t = e . z, num_tc = e . S_c, log weight x_t = r_t + lam[t, level] +
//           (a_{t0} + ... + a_t) (t0: the chunk's first token of the call); add den_t exp(x_t) and
//           num_tc exp(x_t + n_c) to the pairs (hi_lse_add: the larger exponent is the shift, zero
//           terms skipped); log y = U_tc + log Num_tc - (U_t + log Den_t). One slot at a time, e once
//           per block (all 64 columns of a head: no column block recomputes it).
// The returned state is assembled on the host (hierarchical.py).
// Files: this one (constants, the device helpers the four kernels and the backward share, hi_merge, hi_snap),
// hierarchical_intra.cu (hi_intra), hierarchical_read.cu (hi_read); each compiled after this one.
//
// Zeros: a weight involving a clamped decay or level weight, or a clamped value, has a log at or
// below alo (every other term is finite and far above it), so its exp is 0 beside any other term,
// and an output whose every visible term is such a zero comes out at or below alo: written as
// -inf (the threshold alo / 2 = lo / (8 (p + T)); log outputs of genuine inputs are far above it).
// A row whose every level is switched off has no defined output (0 / 0: lden at the stand-in).
// Every exponential has an argument <= 0 (a difference from a maximum): common.cu's fex.
// Costs per chunk: hi_intra CH^2 / 2 (d_k + d_v) exponentials; hi_read per held slot CH d_k
// exponentials (e, once per 64 columns) and 2 CH d_k (d_v + 1) flops; hi_merge per merged slot
// d_k d_v exponentials and flops, in ~log2(n) launches (the tree's depth) instead of a chunk loop.
#define HI_BV 16  // value columns per block of hi_merge
#define HI_AV 64  // value columns per pass of hi_intra
#define HI_RW 64  // value columns per block of hi_read
constexpr int HI_RB = DKP / (NT / HI_BV);  // features per thread of hi_merge
constexpr int HI_P = NT / CH;  // threads per row of the row maxima
constexpr int HI_LOG2C = CH == 16 ? 4 : (CH == 32 ? 5 : 6);
#ifndef HI_TF32
#define HI_TF32 0  // the tensor-core kernels' products as 3xTF32 (float32 / float16 inputs; host: -DHI_TF32=1)
#endif
#ifndef HI_TC
#define HI_TC (TI_BF16 || HI_TF32)  // the tensor-core kernels (the CPU emulation sets it for float)
#endif
// hi_read on tensor cores: every HI_TC variant (float32 / float16: 3xTF32, measured ~25% faster than its FFMA form;
// its shared-memory planes variant was slower: benchmarks/NOTES.md, session 11)
#define HI_RTC HI_TC
// hi_read's threads: FFMA NT (a 16 x 16 grid of HI_RR x HI_RC micro-tiles); tensor cores 4 CH, at least 128: two
// warps per m-tile of 16 rows at every chunk (with NT at CH = 32 / 16, four / eight warps made each row's E)
constexpr int HI_RNT = HI_RTC ? (4 * CH > 128 ? 4 * CH : 128) : NT;
constexpr int HI_RWPM = (HI_RNT / 32) / (CH / 16), HI_RNPW = (HI_RW / 8) / HI_RWPM;  // tensor cores: warps per m-tile, n-tiles per warp
constexpr int HI_RC = HI_RTC ? 4 : HI_RW / 16;  // columns per thread of hi_read (FFMA: 16 column groups)
constexpr int HI_RR = HI_RTC ? HI_RNPW : CH / 16;  // rows per thread (FFMA: 16 row groups)
// Row strides (no bank conflicts): FFMA: odd, for column walks; tensor cores: 8 mod 32 words for the
// fragments' 64-bit pair loads along a row (q / k / e tiles, the pair weights), 4 mod 32 for the scalar
// loads down k-major tiles (values, hi_read's S).
constexpr int HI_KLD = HI_TC ? DKP + 8 : DKP + 1;  // the q / e tiles
constexpr int HI_KKLD = HI_TC ? DKP + 4 : DKP + 1;  // hi_intra's k tile (no fragment reads)
constexpr int HI_XLD = HI_TC ? CH + 8 : CH + 1;    // the pairs
constexpr int HI_VLD = HI_TC ? 64 + 4 : 64 + 1;    // hi_intra's value tile (HI_AV columns)
constexpr int HI_SLD = HI_RTC ? 64 + 4 : 64;       // hi_read's S tile (HI_RW columns)
constexpr int HI_RKLD = HI_RTC ? HI_KLD : DKP + 1;  // hi_read's q / e tiles
constexpr int HI_BVL = HI_TC && HI_KLD > HI_VLD ? HI_KLD : HI_VLD;  // hi_intra's value tile (tensor cores: or exp(k - mk))
#define HI_LMAX 64  // level weights staged per row (levels used: < num_levels(p + T) <= 63)
#define HI_HELD 128  // hi_read (tensor cores): slots held before a chunk, at most (incoming <= 63, chunk levels <= 64)

// The outputs of hi_read's CH x HI_RW tile a thread owns, (ii, jj) -> (row, column). FFMA: a 16 x 16
// (ty, tx) grid of HI_RR x HI_RC micro-tiles. Tensor cores: the accumulators of mma m16n8k16; warp w
// owns m-tile w / HI_RWPM and HI_RNPW n-tiles, element e = ii HI_RC + jj is n-tile e / 4, entry e % 4
// (c0, c1: row g, columns 2t, 2t + 1; c2, c3: row g + 8; lane = 4 g + t).
#if HI_TC
constexpr int HI_WPM = (NT / 32) / (CH / 16);  // hi_intra's warps per m-tile
static_assert(4 * HI_RNPW == HI_RR * HI_RC, "one mma accumulator per owned output");
#if HI_RTC
__device__ __forceinline__ int hr_row(int ii, int jj) {
    const int e = ii * HI_RC + jj, lane = threadIdx.x & 31;
    return 16 * ((int)(threadIdx.x >> 5) / HI_RWPM) + (lane >> 2) + 8 * ((e & 3) >> 1);
}
__device__ __forceinline__ int hr_col(int ii, int jj) {
    const int e = ii * HI_RC + jj, lane = threadIdx.x & 31;
    return 8 * (((int)(threadIdx.x >> 5) % HI_RWPM) * HI_RNPW + (e >> 2)) + 2 * (lane & 3) + (e & 1);
}
#endif
#if !HI_TF32
// bf16 halves of two fp32 values: hi = round(x), lo = round(x - hi) (x = hi + lo to ~2^-17 relative)
__device__ __forceinline__ void hi_split(float x0, float x1, unsigned& hi, unsigned& lo) {
    hi = pack2(x0, x1);
    lo = pack2(x0 - __uint_as_float(hi << 16), x1 - __uint_as_float(hi & 0xffff0000u));
}
#endif
// The pair (X[o], X[o + 1]) (o even, X 8-byte aligned) and the pair (X[o], X[o + ld])
__device__ __forceinline__ float2 hi_row2(const float* X, int o) { return *reinterpret_cast<const float2*>(X + o); }
__device__ __forceinline__ float2 hi_col2(const float* X, int o, int ld) { return make_float2(X[o], X[o + ld]); }
// c[u] += A B over reduction indices k0 .. k1 - 1 (steps of 16) for the warp's rows r0 .. r0 + 15 and the NN
// n-tiles of columns n0 + 8 u .. (fp32 operands read where they lie, two at a time: A2(r, k) = (A(r, k),
// A(r, k + 1)), B2(k, n) = (B(k, n), B(k + 1, n)); k even), from the hi / lo bf16
// halves of both, three mma per step (hi hi + lo hi + hi lo: each product to ~2^-16, fp32 accumulation);
// c[u][x]: row r0 + g + 8 (x >> 1), column n0 + 8 u + 2 t + (x & 1). Nonnegative operands keep that
// accuracy in the sum. hi_read's E S and hi_intra's pair weights and W V (bf16 inputs) share it.
// HI_TF32 (float32 / float16 inputs: the float32 bound): tf32 halves instead (3xTF32, ~2^-21 relative, as
// gd_scan), two m16n8k8 triples per step: m16n8k8's reduction slots t / t + 4 stand for the step's indices
// 2t / 2t + 8 in the first triple and 2t + 1 / 2t + 9 in the second (the same pairs, the same fragment rows
// and columns, the same accumulators).
template <int NN, typename FA, typename FB>
__device__ __forceinline__ void hi_mma3(float (&c)[NN][4], int r0, int n0, int k0, int k1, FA A, FB B) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#if HI_TF32
#pragma unroll 1
    for (int kb = k0; kb < k1; kb += 16) {
        unsigned ah[2][4], al[2][4];  // [h]: the step's even reduction indices (h = 0), its odd ones
#pragma unroll
        for (int x = 0; x < 4; ++x) {
            const float2 v = A(r0 + g + 8 * (x & 1), kb + 2 * t + 8 * (x >> 1));
            tf32_split(v.x, ah[0][x], al[0][x]);
            tf32_split(v.y, ah[1][x], al[1][x]);
        }
#pragma unroll
        for (int u = 0; u < NN; ++u) {
            const float2 v0 = B(kb + 2 * t, n0 + 8 * u + g), v1 = B(kb + 2 * t + 8, n0 + 8 * u + g);
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                unsigned bh0, bl0, bh1, bl1;
                tf32_split(h ? v0.y : v0.x, bh0, bl0);
                tf32_split(h ? v1.y : v1.x, bh1, bl1);
                mma_tf32(c[u], al[h], bh0, bh1);
                mma_tf32(c[u], ah[h], bl0, bl1);
                mma_tf32(c[u], ah[h], bh0, bh1);
            }
        }
    }
#else
#pragma unroll 2
    for (int kb = k0; kb < k1; kb += 16) {
        unsigned ah[4], al[4], bh[NN][2], bl[NN][2];
#pragma unroll
        for (int x = 0; x < 4; ++x) {  // a0..a3: rows g / g + 8, reduction pairs 2t / 2t + 8
            const float2 v = A(r0 + g + 8 * (x & 1), kb + 2 * t + 8 * (x >> 1));
            hi_split(v.x, v.y, ah[x], al[x]);
        }
#pragma unroll
        for (int u = 0; u < NN; ++u)
#pragma unroll
            for (int x = 0; x < 2; ++x) {  // b0, b1: column g, reduction pairs 2t / 2t + 8
                const float2 v = B(kb + 2 * t + 8 * x, n0 + 8 * u + g);
                hi_split(v.x, v.y, bh[u][x], bl[u][x]);
            }
#pragma unroll
        for (int u = 0; u < NN; ++u) {
            mma_bf16(c[u], al, bh[u][0], bh[u][1]);
            mma_bf16(c[u], ah, bl[u][0], bl[u][1]);
            mma_bf16(c[u], ah, bh[u][0], bh[u][1]);
        }
    }
#endif
}
#endif
#if !HI_RTC
__device__ __forceinline__ int hr_row(int ii, int) { return (int)(threadIdx.x / 16) * HI_RR + ii; }
__device__ __forceinline__ int hr_col(int, int jj) { return (int)(threadIdx.x % 16) * HI_RC + jj; }
#endif

// (U, S) standing for S exp(U), plus w exp(x) (w > 0): the larger exponent becomes the shift.
__device__ __forceinline__ void hi_lse_add(ta& U, ta& S, ta x, ta w) {
    if (x > U) {
        S = fma(S, fex(U - x), w);
        U = x;
    } else {
        S = fma(w, fex(x - U), S);
    }
}

// Rows g0 .. g0 + CH - 1 of one sequence's (T, D) input into X (row stride ldx, DKP columns; the block's nt threads);
// rows outside [0, T) and columns >= D are 0. wide, bf16 inputs: 16-byte loads of 8 and stores of 4 where the
// rows allow (hi_intra; float32 / float16: scalar loads, the 3xTF32 kernels' registers are at their bound; hi_read:
// scalar, its registers too).
__device__ __forceinline__ void hi_rows(ta* X, const ti* src, i64 g0, int T, int D, int ldx = HI_KLD, bool wide = false,
                                        int nt = NT) {
#if TI_BF16  // (the CPU emulation reads float32: the scalar loads)
    if (wide && DKP % 8 == 0 && D % 8 == 0 && ldx % 4 == 0 && (reinterpret_cast<unsigned long long>(src) & 15) == 0) {
        for (int idx = threadIdx.x; idx < CH * DKP / 8; idx += nt) {
            const int t = idx / (DKP / 8), i = 8 * (idx % (DKP / 8));
            const i64 g = g0 + t;
            uint4 w = {0u, 0u, 0u, 0u};
            if (i < D && g >= 0 && g < T) w = *reinterpret_cast<const uint4*>(src + g * D + i);
            const unsigned u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int e = 0; e < 8; e += 4)  // element e of the 16 bytes as ld converts it
                *reinterpret_cast<float4*>(X + t * ldx + i + e) =
                    make_float4(__uint_as_float(u[e >> 1] << 16), __uint_as_float(u[e >> 1] & 0xffff0000u),
                                __uint_as_float(u[(e >> 1) + 1] << 16), __uint_as_float(u[(e >> 1) + 1] & 0xffff0000u));
        }
        return;
    }
#endif
    for (int idx = threadIdx.x; idx < CH * DKP; idx += nt) {
        const int t = idx / DKP, i = idx % DKP;
        const i64 g = g0 + t;
        X[t * ldx + i] = (i < D && g >= 0 && g < T) ? ld(src + g * D + i) : (ta)0;
    }
}

// The clamped decay of row g of a sequence (0 outside the call and without decays).
__device__ __forceinline__ ta hi_decay(const ti* a, i64 g, int T, ta alo) {
    return (a && g >= 0 && g < T) ? fmx(ld(a + g), alo) : (ta)0;
}

// Slot ids of hi_merge / hi_snap / hi_read: s < n_old the incoming slot s; n_old + j the chunk-level slot the
// merge after chunk F + j created (its level: 1 + trailing zeros of F + j + 1). Before chunk c the
// chunk-level slot of level m is held iff bit m - 1 of c is set and the chunk that created it,
// ((c >> (m - 1)) << (m - 1)) - 1, is one of the call's (>= F); hi_slot returns its id or -1.
__device__ __forceinline__ int hi_slot(i64 c, int m, i64 F, int n_old) {
    if (!((c >> (m - 1)) & 1)) return -1;
    const i64 cr = ((c >> (m - 1)) << (m - 1)) - 1;
    return cr >= F ? (int)(n_old + cr - F) : -1;
}

// Chunk c's decays (one thread per token), then their prefix sums from the chunk's first token of
// the call (thread 0); ends with a barrier.
__device__ __forceinline__ void hi_decays(ta* ac, ta* pre, const ti* ab, i64 g0, int T, ta alo) {
    const int tid = threadIdx.x;
    for (int s = tid; s < CH; s += NT) ac[s] = hi_decay(ab, g0 + s, T, alo);
    __syncthreads();
    if (tid == 0) {
        ta run = (ta)0;
        for (int s = 0; s < CH; ++s) pre[s] = run += ac[s];
    }
    __syncthreads();
}

// hi_merge: depth d of the chunk tree, one block per (chunk c = c0 + x 2^(d+1) (the call's chunks with
// d trailing ones; not its last, whose summary nobody reads), HI_BV value columns (ncb blocks), sequence):
// the chunk's summary (slot n_old + j, hi_intra's) and the held chunk-level slots 1 .. d (of the call;
// final: made at depths < d) merge in place into slot n_old + j, level d + 1 (hi_merge's comment above).
// Each thread its HI_RB features of one column, every shift and decay in its own registers (no staged
// shifts, no serial loads by one thread): the held slots' loads HI_MG at a time in flight together, the
// first group's kept from the shifts' pass to the sums' (d <= HI_MG: one round of loads).
// HI_MG 1 at 4 blocks per SM (64 registers, no spills at d_k = 64): 6-8% faster than 2 at 3 (80 registers; the
// same values bit for bit; benchmarks/NOTES.md, session 14)
#ifndef HI_MG
#define HI_MG 1
#endif
#ifndef HI_MMINB
#define HI_MMINB 4
#endif
extern "C" __global__ void __launch_bounds__(NT, HI_MMINB) hi_merge(
    ta* __restrict__ wm,     // (BH, ncb, n_old + n, DK) by slot id, m decayed to the slot's end (every column block a copy)
    ta* __restrict__ wz,     // (BH, ncb, n_old + n, DK) ... z
    ta* __restrict__ wn,     // (BH, n_old + n, DV)
    ta* __restrict__ wS,     // (BH, n_old + n, DK, DV)
    const ta* __restrict__ gch,  // (BH, n) the chunks' total decays (hi_intra)
    ta* __restrict__ gnode,  // (BH, n) the chunk-level slots' total decays (in: gch; out: slot n_old + j's)
    int DK, int DV, i64 F, int n, int n_old, i64 c0, int d) {
    const int tid = threadIdx.x, cc = tid % HI_BV, rg = tid / HI_BV;
    const i64 bh = blockIdx.z, c = c0 + ((i64)blockIdx.x << (d + 1)), j = c - F;
    const int cb = blockIdx.y, ncb = gridDim.y;
    if (j < 0 || j >= n - 1) return;  // uniform over the block
    const int vc = cb * HI_BV + cc, vs = vc < DV ? vc : 0;
    const bool cok = vc < DV;
    const int NS = n_old + n;
    ta* mb = wm + (bh * ncb + cb) * NS * DK;
    ta* zb = wz + (bh * ncb + cb) * NS * DK;
    ta* nb = wn + bh * NS * DV;
    ta* Sb = wS + bh * NS * (i64)DK * DV;
    const ta* gb = gnode + bh * n - n_old;  // by slot id
    const i64 dst = n_old + j;
    int nz = 0;  // merged slots held
    for (int m = 1; m <= d; ++m) nz += hi_slot(c, m, F, n_old) >= 0;
    if (nz == 0) return;  // the chunk's summary is the new slot as it is (gnode: gch)
    // the chunk's own summary (features rg HI_RB + i, those < DK loaded) and the held slots m0 .. m0 + HI_MG - 1
    // (id -1: not held; slot m ends where the held slots below it begin, decayed by their totals and the chunk's)
    bool kok[HI_RB];
#pragma unroll
    for (int i = 0; i < HI_RB; ++i) kok[i] = rg * HI_RB + i < DK;
    ta om[HI_RB], oS[HI_RB], oz[HI_RB];
    const ta on = nb[dst * DV + vs], g0 = gch[bh * n + j];
    const ta* S0 = Sb + (dst * DK + rg * HI_RB) * DV + vs;
#pragma unroll
    for (int i = 0; i < HI_RB; ++i) {
        om[i] = kok[i] ? mb[dst * DK + rg * HI_RB + i] : (ta)0;
        oS[i] = kok[i] ? S0[i * DV] : (ta)0;
        oz[i] = kok[i] ? zb[dst * DK + rg * HI_RB + i] : (ta)0;
    }
    int id[HI_MG];
    ta gg[HI_MG], nn[HI_MG], mm[HI_MG][HI_RB], ss[HI_MG][HI_RB], zz[HI_MG][HI_RB];
    auto load = [&](int m0) {
#pragma unroll
        for (int u = 0; u < HI_MG; ++u) {
            id[u] = m0 + u <= d ? hi_slot(c, m0 + u, F, n_old) : -1;
            const bool h = id[u] >= 0;
            const i64 s = h ? id[u] : dst;
            gg[u] = h ? gb[s] : (ta)0;
            nn[u] = h ? nb[s * DV + vs] : (ta)0;
            const ta* Ss = Sb + (s * DK + rg * HI_RB) * DV + vs;
#pragma unroll
            for (int i = 0; i < HI_RB; ++i) {
                mm[u][i] = h && kok[i] ? mb[s * DK + rg * HI_RB + i] : (ta)0;
                ss[u][i] = h && kok[i] ? Ss[i * DV] : (ta)0;
                zz[u][i] = h && kok[i] ? zb[s * DK + rg * HI_RB + i] : (ta)0;
            }
        }
    };
    load(1);
    // the shifts: per feature the chunk's and the merged slots' m (decayed), per column their n
    ta M[HI_RB], N = cok ? on : lo_v(), D = g0;
#pragma unroll
    for (int i = 0; i < HI_RB; ++i) M[i] = kok[i] ? om[i] : neg_big();
    for (int m0 = 1;;) {
#pragma unroll
        for (int u = 0; u < HI_MG; ++u)
            if (id[u] >= 0) {
#pragma unroll
                for (int i = 0; i < HI_RB; ++i)
                    if (kok[i]) M[i] = fmx(M[i], mm[u][i] + D);
                if (cok) N = fmx(N, nn[u]);
                D += gg[u];
            }
        if ((m0 += HI_MG) > d) break;
        load(m0);
    }
    if (tid == 0 && cb == 0) gnode[bh * n + j] = D;
    // the thread's HI_RB features of column vc (and of z where cc == 0), slot by slot
    ta xs[HI_RB], xz[HI_RB];
    {
        const ta fv = cok ? fex(on - N) : (ta)0;
#pragma unroll
        for (int i = 0; i < HI_RB; ++i) {
            const ta fk = kok[i] ? fex(om[i] - M[i]) : (ta)0;
            xs[i] = kok[i] && cok ? fk * fv * oS[i] : (ta)0;
            xz[i] = kok[i] && cc == 0 ? fk * oz[i] : (ta)0;
        }
    }
    D = g0;
    if (d > HI_MG) load(1);  // (else the first group is still in the registers)
    for (int m0 = 1;;) {
#pragma unroll
        for (int u = 0; u < HI_MG; ++u)
            if (id[u] >= 0) {
                const ta fv = cok ? fex(nn[u] - N) : (ta)0;
#pragma unroll
                for (int i = 0; i < HI_RB; ++i) {
                    if (!kok[i]) continue;
                    const ta fk = fex(mm[u][i] + D - M[i]);
                    if (cok) xs[i] = fma(fk * fv, ss[u][i], xs[i]);
                    if (cc == 0) xz[i] = fma(fk, zz[u][i], xz[i]);
                }
                D += gg[u];
            }
        if ((m0 += HI_MG) > d) break;
        load(m0);
    }
    __syncthreads();  // every thread has read the chunk's old m and n (other threads write them now)
#pragma unroll
    for (int i = 0; i < HI_RB; ++i) {
        const int kk = rg * HI_RB + i;
        if (kk >= DK) continue;
        if (cok) Sb[(dst * DK + kk) * DV + vc] = xs[i];
        if (cc == 0) {
            zb[dst * DK + kk] = xz[i];
            mb[dst * DK + kk] = M[i];
        }
    }
    if (rg == 0 && cok) nb[dst * DV + vc] = N;
}

// hi_snap: one block per (chunk F + j, sequence): msnap[j] = the held slots' m decayed to the chunk's start
// (slot order: incoming s, then chunk level m at n_old + m - 1; entries of slots not held are left as they are).
extern "C" __global__ void __launch_bounds__(NT) hi_snap(
    const ta* __restrict__ wm,     // (BH, ncb, n_old + n, DK) after hi_merge (column block 0 read)
    const ta* __restrict__ gnode,  // (BH, n) after hi_merge
    ta* __restrict__ msnap,        // (BH, n, n_old + NLC, DK) out
    int DK, i64 p, i64 F, int n, int n_old, int NLC, int ncb) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ta* Dm = reinterpret_cast<ta*>(smem_raw);  // HI_LMAX + 1: decay of held slot m (then of the incoming ones)
    check_smem((HI_LMAX + 1) * sizeof(ta));
    const int tid = threadIdx.x, j = blockIdx.x;
    const i64 bh = blockIdx.y, c = F + j;
    const int NS = n_old + n, NSL = n_old + NLC;
    if (tid == 0) {  // the held slots below slot m cover the chunks between its end and the chunk's start
        ta D = (ta)0;
        for (int m = 1; m <= NLC; ++m) {
            const int id = hi_slot(c, m, F, n_old);
            Dm[m - 1] = D;
            if (id >= 0) D += gnode[bh * n + id - n_old];
        }
        Dm[HI_LMAX] = D;
    }
    __syncthreads();
    const ta* mb = wm + (bh * ncb) * NS * DK;
    for (int i = tid; i < DK; i += NT) {
        ta* dst = msnap + ((bh * n + j) * NSL) * DK + i;
        for (int s = 0; s < n_old; ++s)
            if ((p >> s) & 1) dst[s * DK] = mb[s * DK + i] + Dm[HI_LMAX];
        for (int m = 1; m <= NLC; ++m) {
            const int id = hi_slot(c, m, F, n_old);
            if (id >= 0) dst[(n_old + m - 1) * DK] = mb[id * DK + i] + Dm[m - 1];
        }
    }
}
