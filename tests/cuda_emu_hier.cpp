// The CUDA source of hi_intra, hi_merge, hi_snap and hi_read (lsattn/backends/cupy/hierarchical.cu) compiled as C++
// for the CPU, as cuda_emu_gd_scan.cpp does for gd_scan: every CUDA thread of a block is a
// std::thread, __syncthreads a std::barrier, shared memory one static buffer (blocks run one
// after another). Only the subset of common.cu that hierarchical.cu uses is restated here (inputs
// in the compute type: ti = ta). tests/test_cupy_hierarchical.py builds it with
//   g++ -std=c++20 -shared -fPIC -DTA=float|double -DCH=.. -DDKP=.. [-DHI_TC=1] -DKERNEL='"<path of the .cu>"'
// and drives it through the backend's host logic (hierarchical.compute).
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <thread>
#include <vector>
using std::fma;
using std::max;
using std::min;
typedef TA ta;
typedef TA ti;
typedef long long i64;
#define NT 256
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __restrict__
#define __align__(x) __attribute__((aligned(x)))
struct emu_idx { unsigned x, y, z; };
thread_local emu_idx threadIdx, blockIdx, gridDim;
static std::barrier<>* emu_bar;
inline void __syncthreads() { emu_bar->arrive_and_wait(); }
alignas(16) unsigned char smem_raw[256 * 1024];
static unsigned emu_smem = 0;  // the launch's dynamic shared memory (the host's Config.smem)
inline ta ld(const ti* p) { return *p; }
inline void st(ti* p, ta x) { *p = x; }
inline ta ex(ta x) { return std::exp(x); }
inline ta fex(ta x) { return std::exp(x); }
inline ta lg(ta x) { return std::log(x); }
inline ta fmx(ta a, ta b) { return std::fmax(a, b); }
inline ta neg_big() { return sizeof(ta) == 4 ? (ta)-3.0e38f : (ta)-1.0e308; }
inline ta lo_v() { return -std::numeric_limits<ta>::max() / 8; }
inline ta minus_inf() { return -std::numeric_limits<ta>::infinity(); }
inline ta log_out(ta x) { return x > lo_v() / 2 ? x : minus_inf(); }
inline int bitlen64(i64 x) { return x <= 0 ? 0 : 64 - __builtin_clzll(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline void check_smem(unsigned need) { if (need > emu_smem || need > sizeof(smem_raw)) std::abort(); }
template <int TOTAL, int NTH, typename L, typename S>
inline void staged(L load, S store) {  // common.cu's, one element at a time
    for (int idx = threadIdx.x; idx < TOTAL; idx += NTH) store(idx, load(idx));
}

#ifndef HI_TC
#define HI_TC 0
#endif
#if HI_TC  // hi_read's tensor-core product (-DHI_TC=1, TA float): mma emulated per warp
#include "cuda_emu_mma.h"
#endif

#include KERNEL

static void launch(unsigned gx, unsigned gy, unsigned gz, unsigned smem, const std::function<void()>& body) {
    emu_smem = smem;
    for (unsigned bx = 0; bx < gx; ++bx)
        for (unsigned by = 0; by < gy; ++by)
            for (unsigned bz = 0; bz < gz; ++bz) {
                std::barrier<> bar(NT);
                emu_bar = &bar;
                std::vector<std::thread> threads;
                for (int t = 0; t < NT; ++t)
                    threads.emplace_back([=, &body] {
                        threadIdx = {(unsigned)t, 0, 0};
                        blockIdx = {bx, by, bz};
                        gridDim = {gx, gy, gz};
                        body();
                    });
                for (auto& th : threads) th.join();
            }
}

// hi_intra's launch: grid (n, BH).
extern "C" void run_intra(const ta* q, const ta* k, const ta* lv, const ta* lam, const ta* a, ta* lden, ta* lnum, ta* wm,
                          ta* wz, ta* wn, ta* wS, ta* gch, int T, int DK, int DV, int L, i64 p, i64 F, ta alo, int n_old,
                          int ncb, int n, int BH, unsigned smem) {
    launch(n, BH, 1, smem, [=] { hi_intra(q, k, lv, lam, a, lden, lnum, wm, wz, wn, wS, gch, T, DK, DV, L, p, F, alo, n_old, ncb); });
}

// hi_merge's launch: grid (count, ncb, BH).
extern "C" void run_merge(ta* wm, ta* wz, ta* wn, ta* wS, const ta* gch, ta* gnode, int DK, int DV, i64 F, int n, int n_old,
                          i64 c0, int d, int count, int BH, int ncb, unsigned smem) {
    launch(count, ncb, BH, smem, [=] { hi_merge(wm, wz, wn, wS, gch, gnode, DK, DV, F, n, n_old, c0, d); });
}

// hi_snap's launch: grid (n, BH).
extern "C" void run_snap(const ta* wm, const ta* gnode, ta* msnap, int DK, i64 p, i64 F, int n, int n_old, int NLC,
                         int ncb, int BH, unsigned smem) {
    launch(n, BH, 1, smem, [=] { hi_snap(wm, gnode, msnap, DK, p, F, n, n_old, NLC, ncb); });
}

// hi_read's launch: grid (n nrb, BH).
extern "C" void run_read(const ta* q, const ta* lam, const ta* a, const ta* lden, const ta* lnum, const ta* msnap,
                         const ta* wz, const ta* wn, const ta* wS, ta* out, int T, int DK, int DV, int L, i64 p, i64 F,
                         int n, int n_old, int NLC, ta alo, int BH, int ncb, unsigned smem) {
    const int nrb = (DV + 63) / 64;
    launch(n * nrb, BH, 1, smem, [=] { hi_read(q, lam, a, lden, lnum, msnap, wz, wn, wS, out, T, DK, DV, L, p, F, n, n_old, NLC, alo, ncb, nrb); });
}
