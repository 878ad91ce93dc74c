// hierarchical_bwd.cu's and hierarchical_bwd_{chunk,dq,dkdv}.cu's kernels (hib_blocks, hib_bmerge; hib_dq, hib_dkdv) compiled as C++ for the CPU, on top of
// cuda_emu_hier.cpp (the emulation of hierarchical.cu, whose device helpers the backward uses).
// tests/test_cupy_hierarchical_grad.py builds it with
//   g++ -std=c++20 -shared -fPIC -DTA=float|double -DCH=.. -DDKP=.. -DDVP=.. [-DHIB_TC=1] -DKERNEL='"<hierarchical.cu>"'
//       -DKERNEL_BWD='"<hierarchical_bwd.cu + _chunk.cu + _dq.cu + _dkdv.cu>"'
#include "cuda_emu_hier.cpp"

// common.cu's vector loads as scalar ones (alignment checked), then its register-tiled product
template <int N> inline void ldv(const ta* p, ta (&o)[N]) {
    constexpr int V = (N % 4 == 0 && sizeof(ta) == 4) ? 4 : (N % 2 == 0 ? 2 : 1);
    if (reinterpret_cast<uintptr_t>(p) % (V * sizeof(ta))) std::abort();
    for (int u = 0; u < N; ++u) o[u] = p[u];
}
#include "cuda_emu_mm.h"
#if HIB_TC  // the products on bf16 tensor cores (-DHIB_TC=1, TA float): mma emulated per warp
#include "cuda_emu_mma.h"
#endif

#if !HI_TC  // the warp shuffle (hib_rred: every thread of the block calls it alike, so an exchange through a
            // block-wide buffer between two barriers is exact)
static ta emu_shfl[NT];
inline ta __shfl_xor_sync(unsigned, ta v, int lane_mask) {
    const int t = threadIdx.x;
    emu_shfl[t] = v;
    __syncthreads();
    const ta r = emu_shfl[t ^ lane_mask];
    __syncthreads();
    return r;
}
#endif

#include KERNEL_BWD

// hib_dq's launch: grid (n, BH).
extern "C" void run_dq(const ta* q, const ta* k, const ta* lv, const ta* lam, const ta* a, const ta* gm, const ta* om,
                       ta* delta, const ta* lden0, const ta* msnap, const ta* wz, const ta* wn, const ta* wS,
                       ta* lden, ta* dq, ta* dlam, ta* Pg, ta* Dg, ta* Fg, ta* dsum, int T, int DK, int DV, int L, i64 p,
                       i64 F, int n, int n_old, int NLC, ta alo, int ncb, int BH, unsigned smem) {
    launch(n, BH, 1, smem, [=] {
        hib_dq(q, k, lv, lam, a, gm, om, delta, lden0, msnap, wz, wn, wS, lden, dq, dlam, Pg, Dg, Fg, dsum, T, DK, DV, L, p,
               F, n, n_old, NLC, alo, ncb);
    });
}

// hib_blocks' launch: grid (items, BH) (hierarchical_bwd.pieces).
extern "C" void run_blocks(const ta* q, const ta* lam, const ta* a, const ta* gm, const ta* om, const ta* delta,
                           const ta* lden, const ta* gch, ta* U, ta* Z, ta* M, ta* W, ta* gt, ta* Up, ta* Zp, ta* Mp,
                           ta* Wp, ta* gp, int T, int DK, int DV, int L, i64 p, i64 F, int n, ta alo, int items, int slots,
                           int BH, unsigned smem) {
    launch(items, BH, 1, smem, [=] {
        hib_blocks(q, lam, a, gm, om, delta, lden, gch, U, Z, M, W, gt, Up, Zp, Mp, Wp, gp, T, DK, DV, L, p, F, n, alo, slots);
    });
}

// hib_bmerge's launch: grid (split, BH).
extern "C" void run_bmerge(const ta* Up, const ta* Zp, const ta* Mp, const ta* Wp, const ta* gp, ta* U, ta* Z, ta* M,
                           ta* W, ta* gt, int DK, int DV, i64 F, int n, int split, int slots, int BH, unsigned smem) {
    launch(split, BH, 1, smem, [=] { hib_bmerge(Up, Zp, Mp, Wp, gp, U, Z, M, W, gt, DK, DV, F, n, slots); });
}

// hib_dkdv's launch: grid (n, BH).
extern "C" void run_dkdv(const ta* q, const ta* k, const ta* lv, const ta* lam, const ta* a, const ta* gm, const ta* om,
                         const ta* delta, const ta* lden, const ta* U, const ta* Z, const ta* M, const ta* W, const ta* gt,
                         const ta* Pg, const ta* Dg, const ta* Fg, ta* dk, ta* dlv, ta* dsum, int T, int DK, int DV,
                         int L, i64 p, i64 F, int n, ta alo, int BH, unsigned smem) {
    launch(n, BH, 1, smem, [=] {
        hib_dkdv(q, k, lv, lam, a, gm, om, delta, lden, U, Z, M, W, gt, Pg, Dg, Fg, dk, dlv, dsum, T, DK, DV, L, p, F, n, alo);
    });
}
