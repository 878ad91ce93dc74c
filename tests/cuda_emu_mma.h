// bfloat16 patterns and mma.sync m16n8k16 (bf16 operands, fp32 accumulators) for the CPU emulations
// of the tensor-core kernels (cuda_emu_ek_bwd.cpp, cuda_emu_hier.cpp); include after threadIdx and
// NT (threads of the largest block) are defined.
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
// mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32, warp-collective: the 32 lanes of a warp post their
// fragments, meet at the warp's barrier, each computes its four accumulators from all of them
// (the PTX fragment layout: lane 4 g + t; A rows g / g + 8, reduction 2t, 2t + 1 (+ 8); B column g,
// reduction 2t, 2t + 1 (+ 8); C row g / g + 8, columns 2t, 2t + 1), and meet again.
struct EmuWarp {
    std::barrier<> bar{32};
    unsigned a[32][4], b[32][2];
};
static EmuWarp emu_warps[NT / 32];
inline void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    EmuWarp& W = emu_warps[threadIdx.x >> 5];
    for (int x = 0; x < 4; ++x) W.a[lane][x] = a[x];
    W.b[lane][0] = b0;
    W.b[lane][1] = b1;
    W.bar.arrive_and_wait();
    auto half = [](unsigned u, int hi) { return __uint_as_float(hi ? (u & 0xffff0000u) : (u << 16)); };
    auto A = [&](int r, int k) { return half(W.a[4 * (r % 8) + (k % 8) / 2][(r >= 8) + 2 * (k >= 8)], k % 2); };
    auto B = [&](int k, int n) { return half(W.b[4 * n + (k % 8) / 2][k >= 8], k % 2); };
    for (int x = 0; x < 4; ++x) {
        const int r = g + 8 * (x >> 1), n = 2 * t + (x & 1);
        double s = 0;  // bf16 products are exact; the sum rounded once
        for (int k = 0; k < 16; ++k) s += (double)A(r, k) * B(k, n);
        c[x] = (float)((double)c[x] + s);
    }
    W.bar.arrive_and_wait();
}
