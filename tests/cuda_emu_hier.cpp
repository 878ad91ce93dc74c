// The CUDA source of hi_intra, hi_merge, hi_snap and hi_read (lsattn/backends/cupy/hierarchical.cu) compiled as C++
// for the CPU on the emulation of cuda_emu.h (a fiber per CUDA thread, blocks one after
// another); the rest of common.cu that hierarchical.cu uses is restated here (inputs in the
// compute type: ti = ta). tests/test_cupy_hierarchical.py builds it with
//   g++ -std=c++20 -shared -fPIC -DTA=float|double -DCH=.. -DDKP=.. [-DHI_TC=1 [-DHI_TF32=1]] -DKERNEL='"<path of the .cu>"'
// and drives it through the backend's host logic (hierarchical.compute).
#include "cuda_emu.h"
#include <cstring>
typedef TA ti;
// Reads of unwritten memory: the tests fill what the host allocates uninitialised with EMU_POISON's bits (a NaN with a
// payload no arithmetic makes) and count the loads that see it (the kernels' ld, their asynchronous copies), masked
// loads included, whose values a select drops (initcheck's reports on the GPU; NaN in the gradients would not show them)
#include <atomic>
static std::atomic<long long> emu_poison{0};
inline bool emu_poisoned(const void* p, int bytes) {
    if (bytes == 4) { unsigned u; std::memcpy(&u, p, 4); return u == 0x7fdead01u; }
    unsigned long long u; std::memcpy(&u, p, 8); return u == 0x7ffdead00000be01ull;
}
extern "C" long long emu_poison_reads() { return emu_poison.exchange(0); }  // (and reset)
inline ta ld(const ti* p) {
    if (emu_poisoned(p, sizeof(ti))) ++emu_poison;
    return *p;
}
inline void st(ti* p, ta x) { *p = x; }
template <int TOTAL, int NTH, typename L, typename S>
inline void staged(L load, S store) {  // common.cu's, one element at a time
    for (int idx = threadIdx.x; idx < TOTAL; idx += NTH) store(idx, load(idx));
}

#ifndef HI_TC
#define HI_TC 0
#endif
// (hi_read's tensor-core variant and hib_dq's held slots) vector types; asynchronous copies done at once
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline void cp_async16(void* dst, const void* src, bool valid) {
    if (valid) {
        for (int b = 0; b < 16; b += (int)sizeof(ta)) emu_poison += emu_poisoned((const char*)src + b, sizeof(ta));
        std::memcpy(dst, src, 16);
    } else {
        std::memset(dst, 0, 16);
    }
}
inline void cp_async_ta(ta* dst, const ta* src, bool valid) { *dst = valid ? ld(src) : (ta)0; }
inline void cp_async_commit() {}
inline void cp_async_wait_all() {}
#if HI_TC  // the tensor-core variant (-DHI_TC=1, TA float): mma and shuffles emulated per warp
#include "cuda_emu_mma.h"
inline float __shfl_xor_sync(unsigned, float x, int o) {  // through the warp's mma exchange (cuda_emu_mma.h)
    EmuWarp& W = emu_warps[threadIdx.x >> 5];
    const int lane = threadIdx.x & 31;
    W.b[lane][0] = __float_as_uint(x);
    W.bar.arrive_and_wait();
    const float r = __uint_as_float(W.b[lane ^ o][0]);
    W.bar.arrive_and_wait();
    return r;
}
#endif

#include KERNEL

static void launch(unsigned gx, unsigned gy, unsigned gz, unsigned smem, const std::function<void()>& body, int nt = NT) {
    emu_smem = smem;
    emu_launch(gx, gy, gz, body, nt);
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

// hi_read's launch: grid (n nrb, BH), HI_RNT threads.
extern "C" void run_read(const ta* q, const ta* lam, const ta* a, const ta* lden, const ta* lnum, const ta* msnap,
                         const ta* wz, const ta* wn, const ta* wS, ta* out, int T, int DK, int DV, int L, i64 p, i64 F,
                         int n, int n_old, int NLC, ta alo, int BH, int ncb, unsigned smem, ta* ltot, ta* outf) {
    const int nrb = (DV + 63) / 64;
    launch(n * nrb, BH, 1, smem, [=] { hi_read(q, lam, a, lden, lnum, msnap, wz, wn, wS, out, T, DK, DV, L, p, F, n, n_old, NLC, alo, ncb, nrb, ltot, outf); }, HI_RNT);
}
