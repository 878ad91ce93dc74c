// Common device helpers of the CuPy RawKernel backend (lsattn/backends/cupy_backend.py).
//
// The Python wrapper prepends this file to each kernel file and compiles the result once per
// (device, compute dtype, input dtype, chunk CH, padded head dims DKP/DVP) with -D options:
//   TA       compute / accumulation type: float or double
//   TI_BF16  1: inputs and outputs are bfloat16 (stored as unsigned short), computed in float
//   TI_F16   1: inputs and outputs are float16 (stored as unsigned short), computed in float by
//            the FFMA kernels (no tensor-core variant: fp16's range cannot hold the unnormalised
//            states those round to 16 bits)
//   CH       chunk length: 16, 32 or 64 (a power of two; tiles are CH x CH)
//   DKP,DVP  head dims padded to 16, 32, 64 or 128 (shared-memory tiles; the real dims are runtime)
//   LOGV     1: the exp-kernel kernels serve log_attention (values given as log v, outputs log y;
//            per-column value shifts, see exp_kernel.cu); 0: exp_kernel_attention
// Every kernel runs NT = 256 threads as a 16 x 16 grid (tx = tid % 16, ty = tid / 16); a tile
// of R x C results gives each thread an (R/16) x (C/16) register micro-tile.
#ifndef TA
#define TA float
#endif
#ifndef TI_BF16
#define TI_BF16 0
#endif
#ifndef TI_F16
#define TI_F16 0
#endif
#ifndef CH
#define CH 64
#endif
#ifndef DKP
#define DKP 64
#endif
#ifndef DVP
#define DVP 64
#endif

#ifndef LOGV
#define LOGV 0
#endif

#define NT 256
#define DEC_CB 16  // columns per block of the decoding kernels

typedef TA ta;
typedef long long i64;

#if TI_BF16
typedef unsigned short ti;
__device__ __forceinline__ ta ld(const ti* p) { return (ta)__uint_as_float(((unsigned)__ldg(p)) << 16); }
__device__ __forceinline__ void st(ti* p, ta x) {
    unsigned u = __float_as_uint((float)x);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) { *p = (ti)((u >> 16) | 0x40u); return; }  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    *p = (ti)(u >> 16);
}
#elif TI_F16
typedef unsigned short ti;
__device__ __forceinline__ ta ld(const ti* p) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(__ldg(p)));
    return (ta)f;
}
__device__ __forceinline__ void st(ti* p, ta x) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"((float)x));
    *p = h;
}
#else
typedef TA ti;
__device__ __forceinline__ ta ld(const ti* p) { return __ldg(p); }
__device__ __forceinline__ void st(ti* p, ta x) { *p = x; }
#endif

// Row of input i (log-linear: q, k, v, a, lam = 0 .. 4; exp-kernel: q, k, v = 0 .. 2) that sequence
// bh of nseq reads. Broadcast batch axes (q, k shared by grouped-query heads) keep their distinct
// rows only; rows (5 or 3 x nseq) maps sequences to them; null: every input has one row per sequence.
__device__ __forceinline__ i64 seq_row(const int* rows, int i, i64 bh, i64 nseq) {
    return rows ? (i64)rows[i * nseq + bh] : bh;
}

// Token g of a call of T positions: the input row it reads, -1 for a zero token (outside [0, T)).
// tmap (packed segments laid out for their Fenwick levels, lsattn._varlen.layout): tmap[g] >= 0 is
// that row, -1 a zero token of a gap, -2 - r row r that starts a segment (its log decay reads as
// -inf: a hard reset). Null: token g is row g.
__device__ __forceinline__ i64 tok_row(const int* tmap, i64 g, i64 T) {
    if (g < 0 || g >= T) return -1;
    if (!tmap) return g;
    const int m = tmap[g];
    return m >= -1 ? (i64)m : (i64)(-2 - m);
}
__device__ __forceinline__ bool tok_reset(const int* tmap, i64 g, i64 T) {
    return tmap && g >= 0 && g < T && tmap[g] <= -2;
}

__device__ __forceinline__ float ex(float x) { return expf(x); }
__device__ __forceinline__ double ex(double x) { return exp(x); }
// exp of an argument <= 0 where it matters (a difference from a maximum): the hardware ex2 in float
// (relative error ~1e-6 for arguments down to -87; results below float's normal range flush to 0),
// exp in double
__device__ __forceinline__ float fex(float x) { return __expf(x); }
__device__ __forceinline__ double fex(double x) { return exp(x); }
__device__ __forceinline__ float lg(float x) { return logf(x); }
__device__ __forceinline__ double lg(double x) { return log(x); }
__device__ __forceinline__ float fmx(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double fmx(double a, double b) { return fmax(a, b); }
__device__ __forceinline__ float fmn(float a, float b) { return fminf(a, b); }
__device__ __forceinline__ double fmn(double a, double b) { return fmin(a, b); }

// Smallest denominator (relative to the row shift) the chunked exp-kernel read trusts; below it
// the row is recomputed with its exact shift. Terms lost to underflow are < 2^-126 (float) each.
#define DEN_FLOOR ((ta)1e-20)

// A finite "minus infinity" for running maxima (no -inf arithmetic).
__device__ __forceinline__ ta neg_big() { return sizeof(ta) == 4 ? (ta)-3.0e38f : (ta)-1.0e308; }

// The stand-in for log v = -inf (v = 0): -finfo.max / 8 exactly as on the host and in the
// array-API states (the value shift of no values); exp of it minus a finite shift is 0.
__device__ __forceinline__ ta lo_v() {
    return sizeof(ta) == 4 ? (ta)(-3.4028234663852886e38f / 8) : (ta)(-1.7976931348623157e308 / 8);
}
__device__ __forceinline__ ta minus_inf() {
    return sizeof(ta) == 4 ? (ta)__int_as_float(0xff800000) : (ta)__longlong_as_double(0xfff0000000000000LL);
}
// A log output: values near the stand-in (every visible value was 0) are -inf.
__device__ __forceinline__ ta log_out(ta x) { return x > lo_v() / 2 ? x : minus_inf(); }

__device__ __forceinline__ int bitlen64(i64 x) { return x <= 0 ? 0 : 64 - __clzll(x); }

// Fenwick level of key s seen from query t (s <= t): 0 if equal, else bit_length(t XOR s).
__device__ __forceinline__ int fen_level(i64 t, i64 s) { return bitlen64(t ^ s); }

// N consecutive values from shared memory into registers, 16-byte loads where alignment allows.
template <int N>
__device__ __forceinline__ void ldv(const float* p, float (&o)[N]) {
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int u = 0; u < N; u += 4) {
            float4 t = *reinterpret_cast<const float4*>(p + u);
            o[u] = t.x; o[u + 1] = t.y; o[u + 2] = t.z; o[u + 3] = t.w;
        }
    } else if constexpr (N % 2 == 0) {
#pragma unroll
        for (int u = 0; u < N; u += 2) {
            float2 t = *reinterpret_cast<const float2*>(p + u);
            o[u] = t.x; o[u + 1] = t.y;
        }
    } else {
#pragma unroll
        for (int u = 0; u < N; ++u) o[u] = p[u];
    }
}
template <int N>
__device__ __forceinline__ void ldv(const double* p, double (&o)[N]) {
    if constexpr (N % 2 == 0) {
#pragma unroll
        for (int u = 0; u < N; u += 2) {
            double2 t = *reinterpret_cast<const double2*>(p + u);
            o[u] = t.x; o[u + 1] = t.y;
        }
    } else {
#pragma unroll
        for (int u = 0; u < N; ++u) o[u] = p[u];
    }
}

// acc[i][j] += sum_{kk < KD} A[kk*lda + ty*RM + i] * B[kk*ldb + tx*RN + j]
// (both operands "k-major" in shared memory: row kk holds one reduction index).
template <int RM, int RN, int KD>
__device__ __forceinline__ void mm_acc(ta (&acc)[RM][RN], const ta* A, int lda, const ta* B, int ldb, int ty, int tx) {
    const ta* a0 = A + ty * RM;
    const ta* b0 = B + tx * RN;
#pragma unroll 4
    for (int kk = 0; kk < KD; ++kk) {
        ta a[RM], b[RN];
        ldv<RM>(a0 + kk * lda, a);
        ldv<RN>(b0 + kk * ldb, b);
#pragma unroll
        for (int i = 0; i < RM; ++i)
#pragma unroll
            for (int j = 0; j < RN; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
    }
}

template <int RM, int RN>
__device__ __forceinline__ void zero_acc(ta (&acc)[RM][RN]) {
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) acc[i][j] = (ta)0;
}

// Block-wide sum / max over NT threads; `red` is NT/32 shared slots. Every thread gets the result.
__device__ __forceinline__ ta warp_sum(ta x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
__device__ __forceinline__ ta warp_max(ta x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmx(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
__device__ __forceinline__ ta block_sum(ta x, ta* red) {
    x = warp_sum(x);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = x;
    __syncthreads();
    ta s = (ta)0;
#pragma unroll
    for (int w = 0; w < NT / 32; ++w) s += red[w];
    return s;
}
__device__ __forceinline__ ta block_max(ta x, ta* red) {
    x = warp_max(x);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = x;
    __syncthreads();
    ta s = red[0];
#pragma unroll
    for (int w = 1; w < NT / 32; ++w) s = fmx(s, red[w]);
    return s;
}

// N consecutive elements moved as one 16-byte (or smaller) access.
template <int N, typename T = ta>
struct alignas(sizeof(T) * N) Pack {
    T v[N];
};

// Storage <-> compute conversions (stored summaries: the compute type, or bf16 in the bf16 path).
__device__ __forceinline__ ta from_st(ta x) { return x; }
template <typename ST>
__device__ __forceinline__ ST to_st(ta x) { return x; }

// staged<> loader of a tile of DP columns: element idx is token g0 + idx / DP, column idx % DP of the
// row-major input src (D columns; the token's row: tok_row), zero outside tokens [0, T) and columns [0, D).
template <int DP>
__device__ __forceinline__ auto tile_loader(const ti* src, i64 g0, i64 T, int D, const int* tmap = nullptr) {
    return [=](int idx) {
        const int c = idx % DP;
        const i64 r = tok_row(tmap, g0 + idx / DP, T);
        return (r >= 0 && c < D) ? ld(src + r * D + c) : (ta)0;
    };
}

// A 16 x 16-thread register tile (rows ty RI + ii, columns tx RN + jj) into the row-major DK x DV
// matrix M, inside its bounds.
template <int RI, int RN>
__device__ __forceinline__ void store_tile(ta* M, const ta (&acc)[RI][RN], int DK, int DV, int ty, int tx) {
#pragma unroll
    for (int ii = 0; ii < RI; ++ii) {
        const int i = ty * RI + ii;
#pragma unroll
        for (int jj = 0; jj < RN; ++jj) {
            const int c = tx * RN + jj;
            if (i < DK && c < DV) M[(i64)i * DV + c] = acc[ii][jj];
        }
    }
}

// for (idx = tid; idx < TOTAL; idx += NTH) store(idx, load(idx)), in batches of loads (about 64
// bytes per thread) issued before the batch's first store: loads in flight together instead of one DRAM
// latency each, with a bounded number of registers.
template <int TOTAL, int NTH, typename L, typename S>
__device__ __forceinline__ void staged(L load, S store) {
    using V = decltype(load(0));
    constexpr int N = (TOTAL + NTH - 1) / NTH;
    constexpr int BW = 64 / (int)sizeof(V) < 1 ? 1 : (64 / (int)sizeof(V) > 16 ? 16 : 64 / (int)sizeof(V));
    constexpr int B = N < BW ? N : BW;  // about 64 bytes per thread in flight per batch
#pragma unroll
    for (int u0 = 0; u0 < N; u0 += B) {
        V r[B];
#pragma unroll
        for (int u = 0; u < B; ++u) {
            const int idx = threadIdx.x + (u0 + u) * NTH;
            r[u] = (u0 + u < N && idx < TOTAL) ? load(idx) : V();
        }
#pragma unroll
        for (int u = 0; u < B; ++u) {
            const int idx = threadIdx.x + (u0 + u) * NTH;
            if (u0 + u < N && idx < TOTAL) store(idx, r[u]);
        }
    }
}

// The CH x DP tile of rows g0.. of src (tile_loader) into row-major R [r][c] and / or transposed
// Tt [c][r] (leading dimension ldt); a null destination is skipped. clamp: log values, -inf (and
// anything below) raised to the stand-in lo_v().
template <int DP>
__device__ __forceinline__ void load_rows(const ti* src, i64 g0, i64 T, int D, ta* R, ta* Tt, int ldt, bool clamp = false) {
    staged<CH * DP, NT>(tile_loader<DP>(src, g0, T, D), [&](int idx, ta x) {
        if (clamp) x = fmx(x, lo_v());
        if (R) R[idx] = x;
        if (Tt) Tt[(idx % DP) * ldt + idx / DP] = x;
    });
}

// Trap when the launch gave less dynamic shared memory than the kernel's layout needs.
__device__ __forceinline__ void check_smem(unsigned need) {
    unsigned have;
    asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(have));
    if (have < need) __trap();
}

// ---- asynchronous copies (global -> shared without registers; every load of a block in flight) ----
__device__ __forceinline__ unsigned smem_u32(const void* p) {
    unsigned r;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
}
// 16 bytes global -> shared, zero-filled when !valid (src-size 0: nothing is read)
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_u32(dst)), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }
__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.commit_group;\n\tcp.async.wait_group 0;" ::: "memory");
}
// one element of the compute type (4 or 8 bytes) global -> shared, zero-filled when !valid
__device__ __forceinline__ void cp_async_ta(ta* dst, const ta* src, bool valid) {
    if constexpr (sizeof(ta) == 4)
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(smem_u32(dst)), "l"(src), "r"(valid ? 4 : 0));
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(smem_u32(dst)), "l"(src), "r"(valid ? 8 : 0));
}

// ---- tensor cores in float32 (gd_scan): mma.sync m16n8k8 tf32, 3xTF32 split operands ----
// x = hi + lo, both tf32 (cvt.rna: 10 mantissa bits); a product of split operands summed as
// A_lo B_hi + A_hi B_lo + A_hi B_hi keeps ~2^-21 relative (the dropped A_lo B_lo ~2^-22).
__device__ __forceinline__ unsigned to_tf32(float x) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ void tf32_split(float x, unsigned& hi, unsigned& lo) {
    hi = to_tf32(x);
    lo = to_tf32(x - __uint_as_float(hi));
}
// Fragments (lane = 4 g + t): A a0..a3 = (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4); B b0, b1 =
// (t, g), (t + 4, g); C c0..c3 = (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
__device__ __forceinline__ void mma_tf32(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

#if TI_BF16 || HIB_TC  // (HIB_TC: hierarchical_bwd.cu's products for bf16 callers on float32 tiles)
// ---- tensor cores (bf16 inputs): mma.sync m16n8k16, bf16 operands, fp32 accumulators ----------
// Tiles live in shared memory as bf16 with the reduction index contiguous: A as [m][k], B as [n][k];
// row strides are padded to 8 mod 16 elements so the 32-bit fragment loads hit 32 distinct banks.
// Fragments (lane = 4 g + t): A a0..a3 = rows g / g+8, cols 2t / 2t+8 (pairs); B b0, b1 = col g,
// rows 2t, 2t+8 (pairs); C c0,c1 = row g, cols 2t, 2t+1; c2,c3 = row g+8.
#define NTC 128  // 4 warps; warp w owns rows 16w .. 16w+15 of a 64-row chunk

typedef unsigned short bf;

template <bool FAST>
__device__ __forceinline__ float exf(float x) { return FAST ? __expf(x) : expf(x); }

__device__ __forceinline__ unsigned pack2(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
__device__ __forceinline__ bf to_bf(float x) { return (bf)(pack2(x, 0.f) & 0xffffu); }
__device__ __forceinline__ float from_bf(bf x) { return __uint_as_float(((unsigned)x) << 16); }
__device__ __forceinline__ float from_st(bf x) { return from_bf(x); }
template <>
__device__ __forceinline__ bf to_st<bf>(float x) { return to_bf(x); }

__device__ __forceinline__ void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// A fragment of rows r0..r0+15, cols k0..k0+15 of X[m][k] (row stride ld)
__device__ __forceinline__ void frag_a(unsigned (&a)[4], const bf* X, int ld, int r0, int k0) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bf* p = X + (r0 + g) * ld + k0 + 2 * t;
    a[0] = *reinterpret_cast<const unsigned*>(p);
    a[1] = *reinterpret_cast<const unsigned*>(p + 8 * ld);
    a[2] = *reinterpret_cast<const unsigned*>(p + 8);
    a[3] = *reinterpret_cast<const unsigned*>(p + 8 * ld + 8);
}
// B fragment of cols n0..n0+7, rows k0..k0+15 of B, from Y[n][k] (row stride ld)
__device__ __forceinline__ void frag_b(unsigned& b0, unsigned& b1, const bf* Y, int ld, int n0, int k0) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bf* p = Y + (n0 + g) * ld + k0 + 2 * t;
    b0 = *reinterpret_cast<const unsigned*>(p);
    b1 = *reinterpret_cast<const unsigned*>(p + 8);
}

// Tokens g0 .. g0+CH-1 (valid in [0, T); their rows: tok_row) of a (rows x D) bf16 matrix into
// X[r][c] (stride ldx), zero outside; 32-bit loads (column pairs) when D is even (base pointers are
// 16-byte aligned).
template <int DP>
__device__ __forceinline__ void tile_rows(bf* X, int ldx, const bf* src, i64 g0, i64 T, int D, const int* tmap = nullptr) {
    if ((D & 1) == 0) {
        constexpr int W = DP / 2;
        staged<CH * W, NTC>(
            [&](int idx) {
                int c = 2 * (idx % W);
                i64 g = tok_row(tmap, g0 + idx / W, T);
                return (g >= 0 && c < D) ? __ldg(reinterpret_cast<const unsigned*>(src + g * D + c)) : 0u;
            },
            [&](int idx, unsigned val) { *reinterpret_cast<unsigned*>(X + (idx / W) * ldx + 2 * (idx % W)) = val; });
    } else {
        staged<CH * DP, NTC>(
            [&](int idx) {
                int c = idx % DP;
                i64 g = tok_row(tmap, g0 + idx / DP, T);
                return (g >= 0 && c < D) ? __ldg(src + g * D + c) : (bf)0;
            },
            [&](int idx, bf val) { X[(idx / DP) * ldx + idx % DP] = val; });
    }
}
// ---- ldmatrix (v4 tiles: row-major, every load of a block in flight) ----
// B fragment (k0..k0+15, n0..n0+7) of a row-major [k][n] bf16 tile (stride ld): ldmatrix.trans
__device__ __forceinline__ void frag_b_kn(unsigned& b0, unsigned& b1, const bf* X, int ld, int k0, int n0) {
    const int lane = threadIdx.x & 31;
    const bf* p = X + (k0 + (lane & 15)) * ld + n0;
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];" : "=r"(b0), "=r"(b1) : "r"(smem_u32(p)));
}
// A fragment (m0..m0+15, k0..k0+15) of A = X^T for a row-major [k][m] bf16 tile X: ldmatrix.trans
__device__ __forceinline__ void frag_a_km(unsigned (&a)[4], const bf* X, int ld, int m0, int k0) {
    const int lane = threadIdx.x & 31, q = lane >> 3, r = lane & 7;
    const bf* p = X + (k0 + r + (q >= 2 ? 8 : 0)) * ld + m0 + ((q & 1) ? 8 : 0);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3]) : "r"(smem_u32(p)));
}
// Rows g0 .. g0+CH-1 (valid in [0, T)) of a (rows x D) bf16 matrix into X[r][c] (stride ldx),
// zero outside; asynchronous (16-byte pieces, D % 8 == 0) or, otherwise, staged. Completes with
// cp_async_wait_all() + __syncthreads().
template <int DP>
__device__ __forceinline__ void tile_async(bf* X, int ldx, const bf* src, i64 g0, i64 T, int D, const int* tmap = nullptr) {
    if ((D & 7) == 0) {
        constexpr int W = DP / 8;
        for (int idx = threadIdx.x; idx < CH * W; idx += NTC) {
            int r = idx / W, c = 8 * (idx % W);
            i64 g = tok_row(tmap, g0 + r, T);
            bool ok = g >= 0 && c < D;
            cp_async16(X + r * ldx + c, ok ? (const void*)(src + g * D + c) : (const void*)src, ok);
        }
    } else {
        tile_rows<DP>(X, ldx, src, g0, T, D, tmap);
    }
}
// A DK x DV fp32 matrix into F[i][j] (stride ldf floats), zero outside; asynchronous when DV % 4 == 0.
__device__ __forceinline__ void state_async(float* F, int ldf, const float* M, int DK, int DV) {
    if ((DV & 3) == 0) {
        constexpr int W = DVP / 4;
        for (int idx = threadIdx.x; idx < DKP * W; idx += NTC) {
            int i = idx / W, j = 4 * (idx % W);
            bool ok = i < DK && j < DV;
            cp_async16(F + i * ldf + j, ok ? (const void*)(M + (i64)i * DV + j) : (const void*)M, ok);
        }
    } else {
        staged<DKP * DVP, NTC>(
            [&](int idx) {
                int i = idx / DVP, j = idx % DVP;
                return (i < DK && j < DV) ? __ldg(M + (i64)i * DV + j) : 0.f;
            },
            [&](int idx, float x) { F[(idx / DVP) * ldf + idx % DVP] = x; });
    }
}
// A bf16 DK x DV matrix into X[i][j] (stride ldx), zero outside; asynchronous when DV % 8 == 0.
__device__ __forceinline__ void state_async_bf(bf* X, int ldx, const bf* M, int DK, int DV) {
    if ((DV & 7) == 0) {
        constexpr int W = DVP / 8;
        for (int idx = threadIdx.x; idx < DKP * W; idx += NTC) {
            int i = idx / W, j = 8 * (idx % W);
            bool ok = i < DK && j < DV;
            cp_async16(X + i * ldx + j, ok ? (const void*)(M + (i64)i * DV + j) : (const void*)M, ok);
        }
    } else {
        staged<DKP * DVP, NTC>(
            [&](int idx) {
                int i = idx / DVP, j = idx % DVP;
                return (i < DK && j < DV) ? __ldg(M + (i64)i * DV + j) : (bf)0;
            },
            [&](int idx, bf x) { X[(idx / DVP) * ldx + idx % DVP] = x; });
    }
}
__device__ __forceinline__ void store_pair(float* M, i64 o, float a, float b, bool pair, bool second) {
    if (pair) {
        *reinterpret_cast<float2*>(M + o) = make_float2(a, b);
    } else {
        M[o] = a;
        if (second) M[o + 1] = b;
    }
}
__device__ __forceinline__ void store_pair(bf* M, i64 o, float a, float b, bool pair, bool second) {
    if (pair) {
        *reinterpret_cast<unsigned*>(M + o) = pack2(a, b);
    } else {
        M[o] = to_bf(a);
        if (second) M[o + 1] = to_bf(b);
    }
}
// (DKP x DVP) = X^T V, X row-major [s][i] (stride ldx), V row-major [s][j] (stride ldv); warp w
// owns row tiles w, w+4, ...; rows i < DK, cols j < DV stored into M (DK x DV, fp32 or bf16).
template <typename OT>
__device__ __forceinline__ void mma_state_kn(OT* M, const bf* X, int ldx, const bf* V, int ldv, int DK, int DV) {
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    for (int mt = w; mt < DKP / 16; mt += NTC / 32) {
        float acc[DVP / 8][4];
#pragma unroll
        for (int nt = 0; nt < DVP / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < CH / 16; ++kk) {
            unsigned a[4];
            frag_a_km(a, X, ldx, 16 * mt, 16 * kk);
#pragma unroll
            for (int nt = 0; nt < DVP / 8; ++nt) {
                unsigned b0, b1;
                frag_b_kn(b0, b1, V, ldv, 16 * kk, 8 * nt);
                mma_bf16(acc[nt], a, b0, b1);
            }
        }
#pragma unroll
        for (int nt = 0; nt < DVP / 8; ++nt)
#pragma unroll
            for (int x = 0; x < 4; x += 2) {
                int i = 16 * mt + g + (x >= 2 ? 8 : 0), j = 8 * nt + 2 * t;
                if (i < DK && j < DV)
                    store_pair(M, (i64)i * DV + j, acc[nt][x], acc[nt][x + 1], (DV & 1) == 0 && j + 1 < DV, j + 1 < DV);
            }
    }
}

// acc[n][.] (+)= A-rows of this warp (qa: DKP/16 fragments) times B = Y^T, Y[n][k] (n over NN cols)
template <int NN>
__device__ __forceinline__ void mma_rows(float (&acc)[NN / 8][4], const unsigned (&qa)[DKP / 16][4], const bf* Y, int ld) {
#pragma unroll
    for (int kk = 0; kk < DKP / 16; ++kk)
#pragma unroll
        for (int nt = 0; nt < NN / 8; ++nt) {
            unsigned b0, b1;
            frag_b(b0, b1, Y, ld, 8 * nt, 16 * kk);
            mma_bf16(acc[nt], qa[kk], b0, b1);
        }
}
#endif
