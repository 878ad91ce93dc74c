// Common device helpers of the CuPy RawKernel backend (lsattn/backends/cupy_backend.py).
//
// The Python wrapper prepends this file to each kernel file and compiles the result once per
// (device, compute dtype, input dtype, chunk CH, padded head dims DKP/DVP) with -D options:
//   TA       compute / accumulation type: float or double
//   TI_BF16  1: inputs and outputs are bfloat16 (stored as unsigned short), computed in float
//   CH       chunk length: 16, 32 or 64 (a power of two; tiles are CH x CH)
//   DKP,DVP  head dims padded to 16, 32, 64 or 128 (shared-memory tiles; the real dims are runtime)
// Every kernel runs NT = 256 threads as a 16 x 16 grid (tx = tid % 16, ty = tid / 16); a tile
// of R x C results gives each thread an (R/16) x (C/16) register micro-tile.
#ifndef TA
#define TA float
#endif
#ifndef TI_BF16
#define TI_BF16 0
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

#define NT 256

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
#else
typedef TA ti;
__device__ __forceinline__ ta ld(const ti* p) { return __ldg(p); }
__device__ __forceinline__ void st(ti* p, ta x) { *p = x; }
#endif

__device__ __forceinline__ float ex(float x) { return expf(x); }
__device__ __forceinline__ double ex(double x) { return exp(x); }
__device__ __forceinline__ float fmx(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double fmx(double a, double b) { return fmax(a, b); }

// Smallest denominator (relative to the row shift) the chunked exp-kernel read trusts; below it
// the row is recomputed with its exact shift. Terms lost to underflow are < 2^-126 (float) each.
#define DEN_FLOOR ((ta)1e-20)

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

// Trap when the launch gave less dynamic shared memory than the kernel's layout needs.
__device__ __forceinline__ void check_smem(unsigned need) {
    unsigned have;
    asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(have));
    if (have < need) __trap();
}
