// The CUDA sources of gd_scan and gd_scan_bwd (lsattn/backends/cupy/gated_delta.cu,
// gated_delta_bwd.cu + gated_delta_bwd_scan.cu) compiled as C++ for the CPU: the emulation of cuda_emu_gd_scan.cpp (a
// fiber per CUDA thread, __syncthreads a barrier; it includes gated_delta.cu through
// KERNEL and defines run(), gd_scan's launch) plus what the backward uses besides: the
// warp shuffle (every thread of a block calls it the same number of times, so an exchange through
// a block-wide buffer between two barriers is exact). tests/test_cupy_gated_delta_grad.py builds it with
//   g++ -std=c++20 -shared -fPIC -DTA=.. -DCH=.. -DDKP=.. -DKERNEL='"<gated_delta.cu>"' -DBWD_KERNEL='"<gated_delta_bwd.cu + gated_delta_bwd_scan.cu>"'
#include "cuda_emu_gd_scan.cpp"

static ta emu_shfl[NT];
inline ta __shfl_xor_sync(unsigned, ta v, int lane_mask, int width) {
    const int t = threadIdx.x;
    if (lane_mask >= width) std::abort();  // the kernel only exchanges within groups of width lanes
    emu_shfl[t] = v;
    __syncthreads();
    const ta r = emu_shfl[t ^ lane_mask];
    __syncthreads();
    return r;
}

#include BWD_KERNEL

// gd_scan_bwd's launch: grid (BH, ceil(DV / GDB_BV)), NT threads per block, smem bytes; x1: gd_scan_bwd_x1 (1xTF32 products);
// -DGD_S16=1: qe, ek, ph, Hc as bfloat16 patterns (gd_e)
extern "C" void run_bwd(const gd_e* qe, const gd_e* ek, const gd_e* ph, const gd_e* Hc, const ta* gc, const ta* lam,
                        const ta* dout, const ta* oldc, ta* sv, ta* dS, ta* dqe, ta* dek, ta* dph, ta* dH, ta* dg,
                        ta* dlam, int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old, int NLC,
                        int merge_last, int BH, int x1, unsigned smem) {
    emu_smem = smem;  // the host's Config.smem("gd_scan_bwd"): the kernel checks its layout against it
    emu_launch(BH, (DV + GDB_BV - 1) / GDB_BV, 1, [=] {
        if (x1)
            gd_scan_bwd_x1(qe, ek, ph, Hc, gc, lam, dout, oldc, sv, dS, dqe, dek, dph, dH, dg, dlam, T, DK, DV, L, p, F, n,
                           n_old, NLC, merge_last);
        else
            gd_scan_bwd(qe, ek, ph, Hc, gc, lam, dout, oldc, sv, dS, dqe, dek, dph, dH, dg, dlam, T, DK, DV, L, p, F, n,
                        n_old, NLC, merge_last);
        for (const auto& grp : emu_groups)
            if (!grp.empty()) std::abort();  // copies never waited for
        if (!emu_open.empty()) std::abort();  // or never committed
    });
    emu_smem = sizeof(smem_raw);
}
