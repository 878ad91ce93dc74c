// bfloat16 patterns, mma.sync m16n8k16 (bf16 operands) and m16n8k8 (tf32 operands), fp32
// accumulators, for the CPU emulations of the tensor-core kernels (cuda_emu_ek_bwd.cpp,
// cuda_emu_hier.cpp, cuda_emu_gd_scan.cpp); include after threadIdx is defined.
#pragma once
#include <barrier>
#include <cstring>
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline unsigned short emu_to_bf(float x) {  // round to nearest even (cvt.rn.bf16.f32; no NaN here)
    unsigned u = __float_as_uint(x);
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline unsigned pack2(float lo, float hi) { return (unsigned)emu_to_bf(lo) | ((unsigned)emu_to_bf(hi) << 16); }
// The warp-collective tensor-core products: the 32 lanes of a warp post their fragments, meet at
// the warp's barrier, each computes its four accumulators from all of them (C rows g / g + 8,
// columns 2t, 2t + 1 of lane 4 g + t), and meet again. A(W, r, k), B(W, k, n): the operands as
// floats from the posted fragments; K: the reduction length. The products are exact in double,
// the sum is rounded once.
struct EmuWarp {
    emu_barrier bar{32};
    unsigned a[32][4], b[32][2];
};
static EmuWarp emu_warps[1024 / 32];  // up to 1024 threads per block
template <int K, typename FA, typename FB>
inline void emu_mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1, FA A, FB B) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    EmuWarp& W = emu_warps[threadIdx.x >> 5];
    for (int x = 0; x < 4; ++x) W.a[lane][x] = a[x];
    W.b[lane][0] = b0;
    W.b[lane][1] = b1;
    W.bar.arrive_and_wait();
    for (int x = 0; x < 4; ++x) {
        const int r = g + 8 * (x >> 1), n = 2 * t + (x & 1);
        double s = 0;
        for (int k = 0; k < K; ++k) s += (double)A(W, r, k) * B(W, k, n);
        c[x] = (float)((double)c[x] + s);
    }
    W.bar.arrive_and_wait();
}
// mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32 (the PTX fragment layout: A rows g / g + 8,
// reduction 2t, 2t + 1 (+ 8); B column g, reduction 2t, 2t + 1 (+ 8)).
inline float emu_bf_half(unsigned u, int hi) { return __uint_as_float(hi ? (u & 0xffff0000u) : (u << 16)); }
inline void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    emu_mma<16>(c, a, b0, b1,
                [](EmuWarp& W, int r, int k) { return emu_bf_half(W.a[4 * (r % 8) + (k % 8) / 2][(r >= 8) + 2 * (k >= 8)], k % 2); },
                [](EmuWarp& W, int k, int n) { return emu_bf_half(W.b[4 * n + (k % 8) / 2][k >= 8], k % 2); });
}
// common.cu's tf32 helpers (gd_scan, float32): cvt.rna.tf32.f32 (round to nearest, ties away from
// zero, 10 mantissa bits), the hi / lo split, and mma.sync.m16n8k8.row.col.f32.tf32.tf32.f32 (A
// (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4); B (t, g), (t + 4, g)).
inline unsigned to_tf32(float x) {
    unsigned u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0xffffe000u) | ((u & 0x1fffu) ? 0x2000u : 0u);  // inf; NaN stays NaN
    return (u + 0x1000u) & 0xffffe000u;  // magnitude + half an ulp, truncated: ties away from zero
}
inline void tf32_split(float x, unsigned& hi, unsigned& lo) {
    hi = to_tf32(x);
    lo = to_tf32(x - __uint_as_float(hi));
}
inline void mma_tf32(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    emu_mma<8>(c, a, b0, b1,
               [](EmuWarp& W, int r, int k) { return __uint_as_float(W.a[4 * (r % 8) + k % 4][(r >= 8) + 2 * (k >= 4)]); },
               [](EmuWarp& W, int k, int n) { return __uint_as_float(W.b[4 * n + k % 4][k >= 4]); });
}
