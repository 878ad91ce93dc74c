// The CUDA source of the packed streams' kernels (lsattn/backends/cupy/loglinear_streams.cu:
// ll_pk_read, ll_pk_state, hi_pk_read, hi_pk_state) compiled as C++ for the CPU on the emulation of cuda_emu.h (a fiber
// per CUDA thread, blocks one after another, __shared__ static, dynamic shared memory one buffer);
// the rest of common.cu that the kernels use is restated (cuda_emu_mm.h, cuda_emu_reduce.h). tests/test_varlen.py builds it with
//   g++ -std=c++20 -shared -fPIC -DTA=float|double -DDKP=.. -DDVP=.. -DKERNEL='"<loglinear_streams.cu>"'
// and drives it through the host logic (lsattn.backends.cupy.loglinear.run_streams) on NumPy arrays.
#include "cuda_emu.h"
template <int N> inline void ldv(const ta* p, ta (&o)[N]) {
    for (int u = 0; u < N; ++u) o[u] = p[u];
}
#include "cuda_emu_mm.h"
#include "cuda_emu_reduce.h"
#include KERNEL

extern "C" void run_read(const ta* x, const ta* a, const ta* lam, const ta* old, ta* out, const i64* seg, const i64* tiles,
                         int T, int DK, int DV, int L, int N, int L_old, int ntiles, int BH, unsigned smem) {
    emu_smem = smem;
    check_smem(smem);
    emu_launch(ntiles, BH, (DV + DVP - 1) / DVP, [=] { ll_pk_read(x, a, lam, old, out, seg, tiles, T, DK, DV, L, N, L_old, ntiles); });
}

extern "C" void run_state(const ta* y, const ta* v, const ta* a, const ta* tot, const ta* old, ta* lev, const i64* seg,
                          const i64* rng, int T, int DK, int DV, int N, int L_old, int L_new, int BH, unsigned smem) {
    emu_smem = smem;
    check_smem(smem);
    emu_launch(N * L_new, BH, (DV + DVP - 1) / DVP, [=] { ll_pk_state(y, v, a, tot, old, lev, seg, rng, T, DK, DV, N, L_old, L_new); });
}

extern "C" void run_hier_read(const ta* q, const ta* a, const ta* lam, const ta* om, const ta* on, const ta* oS,
                              const ta* oz, const ta* pr, const ta* pden, const ta* py, ta* out, const i64* seg,
                              const i64* tiles, int T, int DK, int DV, int L, int N, int L_old, int ntiles, int BH,
                              unsigned smem) {
    emu_smem = smem;
    check_smem(smem);
    emu_launch(ntiles, BH, (DV + DVP - 1) / DVP, [=] {
        hi_pk_read(q, a, lam, om, on, oS, oz, pr, pden, py, out, seg, tiles, T, DK, DV, L, N, L_old, ntiles);
    });
}

extern "C" void run_hier_state(const ta* k, const ta* lv, const ta* a, const ta* om, const ta* on, const ta* oS,
                               const ta* oz, ta* nm, ta* nn, ta* nS, ta* nz, const i64* seg, const i64* rng, int T,
                               int DK, int DV, int N, int L_old, int L_new, int BH, unsigned smem) {
    emu_smem = smem;
    check_smem(smem);
    emu_launch(N * L_new, BH, (DV + DVP - 1) / DVP, [=] {
        hi_pk_state(k, lv, a, om, on, oS, oz, nm, nn, nS, nz, seg, rng, T, DK, DV, N, L_old, L_new);
    });
}
