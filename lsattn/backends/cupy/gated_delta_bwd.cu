// Log-linear Gated DeltaNet: the backward of the chunk scan gd_scan (gated_delta.cu), for torch
// autograd (host: gated_delta_bwd.py): its formulas, switches, shared layout and tensor-core helpers; the kernels
// (gdb_body: gd_scan_bwd, gd_scan_bwd_x1) in gated_delta_bwd_scan.cu, compiled after this file. Compiled after
// common.cu and gated_delta.cu.
//
// The forward scan, per block (sequence, GDB_BV value columns; every column evolves on its own),
// over the call's chunks c = F + j, j = 0 .. n - 1, for every slot S held before chunk c (an
// incoming slot s: bit s of p; a chunk-level slot m: gd_held(c, m, F)):
//   (a) r = Qe S,  out[t] += lambda[t, lev] r[t]          (Qe = qeff_c: CH x d_k)
//   (b) W = Ek S,  S' = e^g S - Ph W                      (Ek = e^G K: CH x d_k, Ph = phi: d_k x CH)
//   (c) after (a), (b) of every slot, unless the call ends inside chunk c: z = trailing zeros of
//       c + 1,  S^{z+1} <- H_c + sum_{m <= z held} S^m  (slot z + 1 is empty before: bit z of c
//       is clear), and the slots m <= z are no longer held.
// lev: the chunk-level slot m is read at level log2 CH + m, the incoming slot s at
// max(s + 1, bit_length(p XOR t)); only rows t of the call (0 <= t - p < T) read.
//
// Backward: adjoint slots dS (d_k x GDB_BV each, zero after the last chunk: the final states are
// not outputs of the differentiated call), in reverse chunk order j = n - 1 .. 0:
//   reverse of (c): dH_c = dS^{z+1}; dS^m = dS^{z+1} for the held m <= z; dS^{z+1} = 0;
//   reverse of (a), (b) for every held slot, with S the slot before chunk c and dS' its adjoint
//   after the chunk:
//     dr[t]     = lambda[t, lev] dout[t]                  (rows of the call; 0 elsewhere)
//     dlambda[t, lev] += sum_cols r[t] dout[t]
//     dW        = -Ph^T dS'                                (CH x w)
//     dQe      += dr S^T,  dEk += dW S^T,  dPh -= dS' W^T
//     dg       += e^g sum(dS' * S)
//     dS        = e^g dS' + Qe^T dr + Ek^T dW
//   after chunk 0 the incoming slots' adjoints are d old.
// The slots S before each chunk are recomputed first (phase 1: (b) and (c) for j < n - 1, the
// reads skipped) into the scratch `sv` (n x NS slots of d_k x d_v, NS = n_old + NLC: a d_k x d_v
// state per chunk and level, ~(NS / CH) of a T d_k d_v tensor; see gated_delta_bwd.py).
// Column blocks own disjoint columns of sv, dS, dH and d old; their shares of the reductions over
// columns (dQe, dEk, dPh, dg, dlambda) are added with atomicAdd into zeroed outputs (ceil(d_v / GDB_BV)
// adds per element: no per-column-block copies, no host-side sum; the order of the adds varies).
//
// Threads: GDB_BV columns x GDB_RG row groups; a thread owns rows kk = rg DKP/GDB_RG + i of
// its column of every slot in global memory (the (c) merges). The products: float32 on tensor cores
// (GDB_TC, below); float64 (FFMA): a thread owns rows kk of its column for (b) and dS, rows
// t = rg CH/GDB_RG + i of the per-token products, and elements (t, kk) = (tid / DKP + e NT / DKP, tid % DKP)
// of the CH x DKP outer products (a fixed kk: the staged S and dS' values are loaded once per column).
// Shared (FFMA): qeff^T, eGK^T ([kk][t]), phi ([t][kk] in phase 1, [kk][t] in phase 2), the staged S and dS' (row
// stride GDB_BV + 1: the outer products read them along kk), W, dr, dW ([t][col]) and NT values for a reduction.
// Value columns per block (the host's grid: ceil(d_v / 16) column blocks, _compile.gd_scan_bwd_columns). 8 or 4
// (timing builds, CH and DKP >= 32 / 64) were slower at 8K (H200, session 13: 7.49 ms at 16, 11.8 at 8 (186
// registers: 1 block per SM), 21.5 at 4): more blocks repeat the chunks' tile copies and the column sums' atomics.
#ifndef GDB_BV
#define GDB_BV 16
#endif
#ifndef GDB_PF  // the next held slot fetched during the current one's products (0: fetched before its own; 8K: 7.49 -> 7.14 ms)
#define GDB_PF 1
#endif
// (512 threads a block on the same 16 columns were 10% slower: session 13, GDB_NT, removed)
#define GDB_RG (NT / GDB_BV)
#define GDB_SBS (GDB_BV + 1)
// float32: the products on tensor cores (GDB_TC), mma.sync m16n8k8 tf32 with split operands (3xTF32, ~2^-21
// relative: gd_scan_bwd) or rounded ones (1xTF32, ~2^-11: gd_scan_bwd_x1, for bfloat16 callers, whose gradients
// keep 8 bits); float64 (or a timing build's GDB_TCM=0): FFMA. Each product is a handful of 16 x 8 tiles dealt over
// the 8 warps (GdbTiles): per slot (r, W, dW) CH x GDB_BV (K = d_k), the outer products CH x DKP (K = GDB_BV,
// accumulated over the chunk's slots in registers), dS DKP x GDB_BV (K = CH). Shared layouts (row strides): Qe, Ek
// [t][kk] (DKP + 4) and phi [kk][t] (CH + 8) as stored (gd_copy), S and dS' [kk][col] (GDB_BV + 8), W, dr, dW
// [t][col] (GDB_BV + 4): the fragment reads on 32 banks, or 2 ways where a tile is read both ways.
#ifndef GDB_TCM
#define GDB_TCM 1
#endif
constexpr bool GDB_TC = GDB_TCM && sizeof(ta) == 4 && GDB_BV == 16;
constexpr int GDB_LQ = DKP + 4, GDB_LP = CH + 8;
constexpr int GDB_LS = GDB_TC ? GDB_BV + 8 : GDB_SBS, GDB_LW = GDB_TC ? GDB_BV + 4 : GDB_BV;
// shared memory in elements (_compile.Config.smem("gd_scan_bwd")): GDB_NB sets of the chunk tiles (GDB_TW each),
// S, dS', W, dr, dW and a reduction. One set: each chunk's copies waited for; a timing build's GDB_DB=1: two sets
// where they fit, the next chunk's copied (cp.async) during this one's slots (H200, 8K, 3xTF32: 5.38 -> 5.79 ms,
// slower: session 14)
#ifndef GDB_DB
#define GDB_DB 0
#endif
constexpr int GDB_TW = GDB_TC ? 2 * CH * GDB_LQ + DKP * GDB_LP : 3 * DKP * CH;
// TC: two sets of the slot buffers (S, dS', W, dr, dW), alternating between slot steps: no barrier at a step's end
// (the next step's writes go to the other set, whose last readers passed this step's first barrier; a timing build
// may set GDB_SB2=0)
#ifndef GDB_SB2
#define GDB_SB2 1
#endif
constexpr int GDB_SET = 2 * DKP * GDB_LS + 3 * CH * GDB_LW, GDB_NS2 = GDB_TC && GDB_SB2 ? 2 : 1;
// TC with two sets of slot buffers: GDB_G (1xTF32, gd_scan_bwd_x1) / GDB_GF (3xTF32, gd_scan_bwd) slots of a chunk per
// pass, 1 or 2 (session 19, s19f16). Two: the pass's slots in the two sets (one each), their products side by side (the
// chunk tiles' A fragments loaded once for both, two independent mma chains a warp), a barrier at the pass's end
// instead of the sets' alternation: 3 barriers per two slots instead of 4. The sums in the same order: bit-equal to 1.
// (ptxas, sm_90: two at CH x DKP = 64 x 128 spill in both builds, at 64 x 64 in the 3xTF32 one: there one a pass)
#ifndef GDB_G
#define GDB_G 2
#endif
#ifndef GDB_GF
#define GDB_GF 1
#endif
// GDB_MG (session 19): the (c) merges' rows of a thread loaded before any of their stores (their loads in flight
// together); 0: row by row, each row's loads after the previous row's stores (which may alias them: a round trip a row)
#ifndef GDB_MG
#define GDB_MG 1
#endif
// GDB_CB (session 19): a chunk's boundary in fewer round trips (TC, one set of chunk tiles, GDB_MG, GDB_PF): the
// first pass's slots fetched before the merges' stores (the merged ones taken from the merge's registers: its rows are
// the fetch's), phase 1's next tile copies issued before its merge and no barrier after it, e^g and dout loaded before
// the copies' wait. 1: in gd_scan_bwd (3xTF32) only, 2: in gd_scan_bwd_x1 too (H200, session 20: 3xTF32 32K 26.45 ->
// 25.64 ms with it, but 1xTF32 15.93 -> 16.33). GDB_LA (session 19, TC): the read weights lambda of a pass's rows
// loaded a pass ahead.
#ifndef GDB_CB
#define GDB_CB 1
#endif
#ifndef GDB_LA
#define GDB_LA 1
#endif
// GDB_DS2 (session 19, TC; default 0): dS's two products (Qe^T dr, Ek^T dW) in two accumulators, added at the end (two
// mma chains of CH / 8 steps instead of one of CH / 4; the sum's rounding differs: within the tests' bounds, not bit-equal)
#ifndef GDB_DS2
#define GDB_DS2 0
#endif
// GDB_ABL (timing builds only, wrong gradients): bit 1 drops the chunks' outer-product atomicAdds, bit 2 phase 1
#ifndef GDB_ABL
#define GDB_ABL 0
#endif
constexpr int GDB_REST = GDB_NS2 * GDB_SET + NT;
// GD_S16 (gated_delta_bwd.S16_TRAIN: bfloat16 callers' training steps whose forward ran the GD_S16 build): qeff, e^G K,
// phi, H read as the forward stored them, bfloat16 (gd_e: gd_bf). The chunk's three tiles are copied (cp.async) as they
// are into a 16-bit staging area over the slot buffers' sets (free from the chunk's top, where the copies are issued,
// until its passes: every reader of the sets passed a barrier before), then widened into the float32 tile set in the
// pass that rounds that set to tf32 in the 1xTF32 build (GDB_PR: a bf16 value widened is an exact tf32 value, so the
// products are those of float32 tiles holding the same values); H widened where the merges read it. (A staging area
// of its own, 24 KB more at 64 x 64, measured the same: session 24, s24a.)
static_assert(!GD_H16 || (GDB_TC && !GDB_DB), "16-bit intermediates: the tensor-core build, one tile set");
static_assert(!GD_H16 || GDB_NS2 * GDB_SET * (int)sizeof(ta) >= 3 * CH * DKP * (int)sizeof(gd_e), "the staging area");
constexpr int GDB_NB = GDB_TC && GDB_DB && (2 * GDB_TW + GDB_REST) * (int)sizeof(ta) <= 227 * 1024 ? 2 : 1;
constexpr int GDB_SMEM = GDB_NB * GDB_TW + GDB_REST;

// The warp's tiles of a (16 MB) x (8 NB) product: the MB NB tiles dealt evenly over the 8 warps (fewer than 8:
// one each to the first warps, the others idle: `on` false); a warp's NTL tiles share a row block.
template <int MB, int NB>
struct GdbTiles {
    static constexpr int TILES = MB * NB, NTL = TILES >= 8 ? TILES / 8 : 1;
    static_assert(NB % NTL == 0, "a warp's tiles in one row block");
    int id0;
    bool on;
    __device__ __forceinline__ GdbTiles() : id0(threadIdx.x / 32 * NTL), on(threadIdx.x / 32 < TILES / NTL) {}
    __device__ __forceinline__ int r0() const { return 16 * (id0 / NB); }
    __device__ __forceinline__ int n0(int i) const { return 8 * ((id0 + i) % NB); }
};
// 1xTF32 (X1): the operands that are only operands (the chunk tiles, W, dr, dW) are rounded to tf32 once, in shared
// memory (GDB_PR; a timing build may set 0: rounded at every fragment load); S and dS' (also summed at full precision)
// at their fragment loads
#ifndef GDB_PR
#define GDB_PR 1
#endif
__device__ __forceinline__ float gdb_round(float x) { return __uint_as_float(to_tf32(x)); }
// mma's fragments from element functions: A a(row, k), rows g, g + 8, k t, t + 4; B b(k, n), k t, t + 4, n g
// (lane 4 g + t); split into tf32 (hi, lo), or rounded (X1: hi alone; RN false: already rounded)
template <bool X1, bool RN = true, typename F>
__device__ __forceinline__ void gdb_fa(F a, unsigned (&h)[4], unsigned (&l)[4]) {
    const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
    for (int x = 0; x < 4; ++x) {
        const float v = a(g + 8 * (x & 1), t + 4 * (x >> 1));
        if (X1) h[x] = RN ? to_tf32(v) : __float_as_uint(v), l[x] = 0u;
        else tf32_split(v, h[x], l[x]);
    }
}
template <bool X1, bool RN = true, typename F>
__device__ __forceinline__ void gdb_fb(F b, unsigned (&h)[2], unsigned (&l)[2]) {
    const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
    for (int x = 0; x < 2; ++x) {
        const float v = b(t + 4 * x, g);
        if (X1) h[x] = RN ? to_tf32(v) : __float_as_uint(v), l[x] = 0u;
        else tf32_split(v, h[x], l[x]);
    }
}
// c += A B: A_lo B_hi + A_hi B_lo + A_hi B_hi (3xTF32), or A_hi B_hi (X1)
template <bool X1>
__device__ __forceinline__ void gdb_mma(float (&c)[4], const unsigned (&ah)[4], const unsigned (&al)[4],
                                        const unsigned (&bh)[2], const unsigned (&bl)[2]) {
    if (!X1) {
        mma_tf32(c, al, bh[0], bh[1]);
        mma_tf32(c, ah, bl[0], bl[1]);
    }
    mma_tf32(c, ah, bh[0], bh[1]);
}

// Chunk-level slot m (1-based) holds keys before chunk c of a call whose first chunk is F: bit
// m - 1 of c is set (the Fenwick bucket [cl - 2^(m-1), cl), cl = c with its low m - 1 bits
// cleared) and the bucket has chunks of the call (cl - 1 >= F).
__device__ __forceinline__ bool gd_held(i64 c, int m, i64 F) {
    return ((c >> (m - 1)) & 1) && ((c >> (m - 1)) << (m - 1)) > F;
}
