// The CUDA source of the stepper's fused steps (lsattn/backends/cupy/step.cu: ek_step, ll_step,
// gd_step, hier_step) compiled as C++ for the CPU on the emulation of cuda_emu.h (a fiber
// per CUDA thread, blocks one after another, in-kernel __shared__ variables static): a warp shuffle
// an exchange between two barriers of the warp's 32 threads (hier_step's warps reduce over
// different numbers of slots), the device offset's ticket an atomic add. Inputs in the compute
// type (ti = ta); the rest of common.cu that step.cu uses is restated. tests/test_cupy_step.py builds it with
//   g++ -std=c++20 -shared -fPIC -DTA=float|double -DKERNEL='"<step.cu>"'
// and drives it through the stepper's host logic, so the kernels' own index arithmetic, shared
// memory, barriers and offset bookkeeping are checked without a GPU.
#include "cuda_emu.h"
typedef TA ti;
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
#include "cuda_emu_reduce.h"
inline ta ld(const ti* p) { return *p; }
inline void st(ti* p, ta x) { *p = x; }

#include KERNEL

// One launch of grid (gx, gy) with smem bytes of dynamic shared memory.
template <typename F>
static void launch(unsigned gx, unsigned gy, unsigned smem, F kernel) {
    if (smem > sizeof(smem_raw)) std::abort();
    emu_launch(gx, gy, 1, kernel);
}
extern "C" void run_ek(const ta* q, const ta* k, const ta* v, i64 sq, i64 sk, i64 sv, ta* m, ta* S, ta* z, ta* out,
                       i64* off, int DK, int DV, int B, unsigned smem) {
    launch(B, 1, smem, [=] { ek_step(q, k, v, sq, sk, sv, m, S, z, out, off, DK, DV); });
}
extern "C" void run_ll(const ta* q, const ta* k, const ta* v, const ta* a, const ta* lam, i64 sq, i64 sk, i64 sv, i64 sa,
                       i64 sl, ta* S, ta* out, i64* off, int DK, int DV, int L, int K, int B, unsigned smem) {
    launch((DV + 31) / 32, B, smem, [=] { ll_step(q, k, v, a, lam, sq, sk, sv, sa, sl, S, out, off, DK, DV, L, K); });
}
extern "C" void run_gd(const ta* q, const ta* k, const ta* v, const ta* a, const ta* beta, const ta* lam, i64 sq, i64 sk,
                       i64 sv, i64 sa, i64 sb, i64 sl, ta* S, ta* out, i64* off, int DK, int DV, int L, int K, int B,
                       unsigned smem) {
    launch((DV + 31) / 32, B, smem,
           [=] { gd_step(q, k, v, a, beta, lam, sq, sk, sv, sa, sb, sl, S, out, off, DK, DV, L, K); });
}
extern "C" void run_hier(const ta* q, const ta* k, const ta* lv, const ta* lam, const ta* a, i64 sq, i64 sk, i64 sv,
                         i64 sl, i64 sa, ta* m, ta* n, ta* S, ta* z, ta* out, i64* off, int DK, int DV, int L, int K,
                         int B, unsigned smem) {
    launch(B, 1, smem, [=] { hier_step(q, k, lv, lam, a, sq, sk, sv, sl, sa, m, n, S, z, out, off, DK, DV, L, K); });
}
