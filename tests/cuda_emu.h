// The CUDA-to-C++ preamble of the CPU emulations of the kernels (tests/cuda_emu_*.cpp): every CUDA
// thread of a block is a fiber (cuda_emu_fiber.h), __syncthreads a block-wide barrier, the blocks of a grid
// run one after another. Include first, with -DTA=float|double (the compute type `ta`); then each
// emulation restates the rest of common.cu its kernels use, includes them and defines its launches.
//
// __shared__ storage: blocks run one at a time, so a kernel's __shared__ variables are `static`
// (one instance, seen by every thread of the running block, as on the GPU). A kernel's dynamic
// shared memory `extern __shared__ unsigned char smem_raw[]` must reach the compiler as
// `extern unsigned char smem_raw[]` (`extern static` is ill-formed): tests/helpers.emulation
// rewrites the kernels' texts so, and the declaration then names the one buffer below.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "cuda_emu_fiber.h"
using std::fma;
using std::max;
using std::min;
typedef TA ta;
typedef long long i64;
#define NT 256
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__
#define __align__(x) __attribute__((aligned(x)))
#define __shared__ static
static emu_barrier* emu_bar;  // the running block's
inline void __syncthreads() { emu_bar->arrive_and_wait(); }
#include "cuda_emu_sync.h"
alignas(16) unsigned char smem_raw[256 * 1024];
static unsigned emu_smem = sizeof(smem_raw);  // the running launch's dynamic shared memory (bytes)
inline void check_smem(unsigned need) { if (need > emu_smem || need > sizeof(smem_raw)) std::abort(); }

// common.cu's scalar helpers
inline float ex(float x) { return std::exp(x); }
inline double ex(double x) { return std::exp(x); }
inline float fex(float x) { return std::exp(x); }
inline double fex(double x) { return std::exp(x); }
inline float lg(float x) { return std::log(x); }
inline double lg(double x) { return std::log(x); }
inline float fmx(float a, float b) { return std::fmax(a, b); }
inline double fmx(double a, double b) { return std::fmax(a, b); }
inline float fmn(float a, float b) { return std::fmin(a, b); }
inline double fmn(double a, double b) { return std::fmin(a, b); }
#define DEN_FLOOR ((ta)1e-20)  // common.cu's
inline ta neg_big() { return sizeof(ta) == 4 ? (ta)-3.0e38f : (ta)-1.0e308; }
inline ta lo_v() { return -std::numeric_limits<ta>::max() / 8; }
inline ta minus_inf() { return -std::numeric_limits<ta>::infinity(); }
inline ta log_out(ta x) { return x > lo_v() / 2 ? x : minus_inf(); }
inline int bitlen64(i64 x) { return x <= 0 ? 0 : 64 - __builtin_clzll(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }

// A launch of grid (gx, gy, gz): the blocks one after another, each as nt fibers (NT unless given) that call
// body() with threadIdx, blockIdx and gridDim set, every other block in reverse order (cuda_emu_fiber.h); one
// barrier per block (emu_bar) and one per warp of 32 threads (emu_warp_bar, for the warp shuffles an emulation
// restates).
static emu_barrier* emu_warp_bar[1024 / 32];
template <typename F>
void emu_launch(unsigned gx, unsigned gy, unsigned gz, const F& body, int nt = NT) {
    const std::function<void()> run = [&body] { body(); };
    unsigned i = 0;
    for (unsigned bx = 0; bx < gx; ++bx)
        for (unsigned by = 0; by < gy; ++by)
            for (unsigned bz = 0; bz < gz; ++bz) {
                emu_barrier bar(nt);
                emu_bar = &bar;
                std::vector<std::unique_ptr<emu_barrier>> warps;
                for (int w = 0; w < nt / 32; ++w) emu_warp_bar[w] = warps.emplace_back(new emu_barrier(32)).get();
                blockIdx = {bx, by, bz};
                gridDim = {gx, gy, gz};
                emu_run_block(nt, run, i++ % 2 == 1);
            }
}
