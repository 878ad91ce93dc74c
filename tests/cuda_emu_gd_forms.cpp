// The CUDA source of gd_forms (lsattn/backends/cupy/gated_delta_forms.cu) compiled as C++ for the
// CPU: the emulation of cuda_emu_gd_scan.cpp (a std::thread per CUDA thread, __syncthreads a
// std::barrier, shared memory one static buffer; it includes gated_delta.cu through KERNEL and
// defines run(), gd_scan's launch) plus the helpers of common.cu that gd_forms uses besides, restated.
// tests/test_cupy_gated_delta.py builds it with
//   g++ -std=c++20 -shared -fPIC -DTA=.. -DCH=.. -DDKP=.. [-DTI_BF16=1] -DKERNEL='"<gated_delta.cu>"' -DFORMS_KERNEL='"<gated_delta_forms.cu>"'
#include <cstring>

#include "cuda_emu_gd_scan.cpp"

#ifndef TI_BF16
#define TI_BF16 0
#endif
#if TI_BF16
// bfloat16 inputs (-DTI_BF16=1, TA float): the tensor-core gf_product, its mma.sync emulated per
// warp (below); inputs are 16-bit patterns
typedef unsigned short ti;
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline ta ld(const ti* p) { return __uint_as_float(((unsigned)*p) << 16); }
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
#else
typedef ta ti;
inline ta ld(const ti* p) { return *p; }
#endif

inline int fen_level(i64 t, i64 s) { return bitlen64(t ^ s); }
#include "cuda_emu_mm.h"

#include FORMS_KERNEL

// gd_forms' launch: grid (n, BH), NT threads per block.
extern "C" void run_forms(const ti* q, const ti* k, const ti* v, const ti* a, const ti* bt, const ti* lam, ta* qe, ta* ek,
                          ta* ph, ta* Hc, ta* gc, ta* out, int T, int DK, int DV, int L, i64 p, i64 F, int n, int BH) {
    emu_launch(n, BH, 1, [=] { gd_forms(q, k, v, a, bt, lam, qe, ek, ph, Hc, gc, out, T, DK, DV, L, p, F, n); });
}
