// The CUDA source of gd_forms (lsattn/backends/cupy/gated_delta_forms.cu) compiled as C++ for the
// CPU: the emulation of cuda_emu_gd_scan.cpp (a fiber per CUDA thread, __syncthreads a
// barrier, shared memory one static buffer; it includes gated_delta.cu through KERNEL and
// defines run(), gd_scan's launch) plus the helpers of common.cu that gd_forms uses besides, restated.
// tests/test_cupy_gated_delta.py builds it with
//   g++ -std=c++20 -shared -fPIC -DTA=.. -DTI_BF16=0|1 -DCH=.. -DDKP=.. -DKERNEL='"<gated_delta.cu>"' -DFORMS_KERNEL='"<gated_delta_forms_tc.cu + gated_delta_forms.cu>"'

#include "cuda_emu_gd_scan.cpp"

// (ti, ld, st: cuda_emu_gd_scan.cpp)
inline int fen_level(i64 t, i64 s) { return bitlen64(t ^ s); }
#include "cuda_emu_mm.h"
// __syncwarp: the warp's barrier of cuda_emu.h (gd_forms calls it with all 32 lanes of a warp)
inline void emu_gf_syncwarp() { emu_warp_bar[threadIdx.x >> 5]->arrive_and_wait(); }
#define __syncwarp(...) emu_gf_syncwarp()

#include FORMS_KERNEL

// gd_forms' launch: grid (n, BH), NT threads per block, smem bytes of dynamic shared memory.
extern "C" void run_forms(const ti* q, const ti* k, const ti* v, const ti* a, const ti* bt, const ti* lam, gd_e* qe, gd_e* ek,
                          gd_e* ph, gd_e* Hc, ta* gc, gd_o* out, ta* lamw, int* bad, int T, int DK, int DV, int L, i64 p, i64 F,
                          int n, int BH, unsigned smem) {
    emu_smem = smem;  // the host's Config.smem("gd_forms"): check_smem aborts below the kernel's need
    emu_launch(n, BH, 1, [=] {
        gd_forms(q, k, v, a, bt, lam, qe, ek, ph, Hc, gc, out, lamw, bad, T, DK, DV, L, p, F, n
#if GF_XO
                 , nullptr
#endif
        );
    });
}
#if GF_XO
// -DGF_XO=1 (the training forward's build with gated_delta_bwd.FORMS_X_SAVED): gd_forms writing each chunk's X into xo
// (null: as run_forms)
extern "C" void run_forms_xo(const ti* q, const ti* k, const ti* v, const ti* a, const ti* bt, const ti* lam, gd_e* qe,
                             gd_e* ek, gd_e* ph, gd_e* Hc, ta* gc, gd_o* out, ta* lamw, int* bad, int T, int DK, int DV,
                             int L, i64 p, i64 F, int n, int BH, unsigned smem, ta* xo) {
    emu_smem = smem;
    emu_launch(n, BH, 1, [=] { gd_forms(q, k, v, a, bt, lam, qe, ek, ph, Hc, gc, out, lamw, bad, T, DK, DV, L, p, F, n, xo); });
}
#endif
