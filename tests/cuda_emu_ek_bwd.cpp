// The tensor-core exp-kernel backward (lsattn/backends/cupy/exp_kernel_bwd_tc.cu: ekb_dq_tc, ekb_dkdv_tc,
// both modes) compiled as C++ for the CPU: every CUDA thread of a block a fiber (cuda_emu_fiber.h), __syncthreads a
// barrier, the warp operations (__shfl_xor_sync, __syncwarp, mma.sync: cuda_emu_mma.h) barriers of
// 32 lanes, shared memory one static buffer (blocks run one after another). The subset of common.cu the
// kernels use is restated (cp.async tiles as plain copies; ldmatrix.trans by its fragment layout).
// tests/test_cupy_log_attention.py builds it with
//   g++ -std=c++20 -shared -fPIC -DCH=64 -DDKP=.. -DDVP=.. -DLOGV=0|1 -DKERNEL='"<exp_kernel_bwd_tc.cu>"'
//       -DCAPS='"<the lines of exp_kernel_bwd.cu that define its exponent caps>"'
// and drives it through the backward's host logic (exp_kernel.backward with half='bf16').
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
using std::max;
using std::min;
typedef float ta;
typedef unsigned short ti;
typedef unsigned short bf;
typedef long long i64;
#define TI_BF16 1
#define NT 256
#define NTC 128
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __restrict__
#define __align__(x) __attribute__((aligned(x)))
#include "cuda_emu_fiber.h"
static emu_barrier* emu_bar;
inline void __syncthreads() { emu_bar->arrive_and_wait(); }
#include "cuda_emu_sync.h"
alignas(16) unsigned char smem_b[256 * 1024];
static unsigned emu_smem = 0;  // the launch's dynamic shared memory (the host's Config.smem)
inline void check_smem(unsigned need) { if (need > emu_smem || need > sizeof(smem_b)) std::abort(); }
#include "cuda_emu_mma.h"

inline float __expf(float x) { return std::exp(x); }
inline float fex(float x) { return std::exp(x); }
template <typename T> inline T __ldg(const T* p) { return *p; }
inline float from_bf(bf x) { return __uint_as_float(((unsigned)x) << 16); }
inline bf to_bf(float x) { return emu_to_bf(x); }
inline void st(ti* p, ta x) { *p = emu_to_bf(x); }
inline ta neg_big() { return -3.0e38f; }
inline ta lo_v() { return -3.4028234663852886e38f / 8; }
#include CAPS  // exp_kernel_bwd.cu's caps (ex_capv, ex_capr, ex_cap), their lines as they stand there

// ---- warp operations: a barrier of the warp's 32 lanes around an exchange ----
struct EmuLanes {
    emu_barrier bar{32};
    float v[32];
};
static EmuLanes emu_lanes[NT / 32];
inline void __syncwarp() { emu_lanes[threadIdx.x >> 5].bar.arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float x, int o) {
    EmuLanes& W = emu_lanes[threadIdx.x >> 5];
    const int lane = threadIdx.x & 31;
    W.v[lane] = x;
    W.bar.arrive_and_wait();
    const float r = W.v[lane ^ o];
    W.bar.arrive_and_wait();
    return r;
}
inline ta warp_sum(ta x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// ---- common.cu's staging and tiles ----
template <int TOTAL, int NTH, typename L, typename S>
inline void staged(L load, S store) {
    for (int idx = threadIdx.x; idx < TOTAL; idx += NTH) store(idx, load(idx));
}
template <int DP>
inline void tile_async(bf* X, int ldx, const bf* src, i64 g0, i64 T, int D, const int* = nullptr) {
    for (int idx = threadIdx.x; idx < CH * DP; idx += NTC) {
        const int r = idx / DP, c = idx % DP;
        X[r * ldx + c] = (g0 + r < T && c < D) ? src[(g0 + r) * D + c] : (bf)0;
    }
}
inline void cp_async_wait_all() {}
inline void cp_async16(void* dst, const void* src, bool valid) {  // 16 bytes, zero-filled when !valid
    if (valid) std::memcpy(dst, src, 16);
    else std::memset(dst, 0, 16);
}
inline unsigned emu_pair(const bf* p) { unsigned u; std::memcpy(&u, p, 4); return u; }
inline unsigned emu_pair2(bf lo, bf hi) { return (unsigned)lo | ((unsigned)hi << 16); }

// ---- common.cu's fragments (ldmatrix.trans by the layout it loads) ----
inline void frag_a(unsigned (&a)[4], const bf* X, int ld, int r0, int k0) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bf* p = X + (r0 + g) * ld + k0 + 2 * t;
    a[0] = emu_pair(p);
    a[1] = emu_pair(p + 8 * ld);
    a[2] = emu_pair(p + 8);
    a[3] = emu_pair(p + 8 * ld + 8);
}
inline void frag_b(unsigned& b0, unsigned& b1, const bf* Y, int ld, int n0, int k0) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bf* p = Y + (n0 + g) * ld + k0 + 2 * t;
    b0 = emu_pair(p);
    b1 = emu_pair(p + 8);
}
inline void frag_b_kn(unsigned& b0, unsigned& b1, const bf* X, int ld, int k0, int n0) {  // X [k][n]
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    auto at = [&](int k) { return X[(k0 + k) * ld + n0 + g]; };
    b0 = emu_pair2(at(2 * t), at(2 * t + 1));
    b1 = emu_pair2(at(2 * t + 8), at(2 * t + 9));
}
inline void frag_a_km(unsigned (&a)[4], const bf* X, int ld, int m0, int k0) {  // A = X^T, X [k][m]
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    auto at = [&](int m, int k) { return X[(k0 + k) * ld + m0 + m]; };
    a[0] = emu_pair2(at(g, 2 * t), at(g, 2 * t + 1));
    a[1] = emu_pair2(at(g + 8, 2 * t), at(g + 8, 2 * t + 1));
    a[2] = emu_pair2(at(g, 2 * t + 8), at(g, 2 * t + 9));
    a[3] = emu_pair2(at(g + 8, 2 * t + 8), at(g + 8, 2 * t + 9));
}
inline void store_pair(float* M, i64 o, float a, float b, bool, bool second) {
    M[o] = a;
    if (second) M[o + 1] = b;
}
inline void store_pair(bf* M, i64 o, float a, float b, bool, bool second) {
    M[o] = to_bf(a);
    if (second) M[o + 1] = to_bf(b);
}
template <typename OT>
inline void mma_state_kn(OT* M, const bf* X, int ldx, const bf* V, int ldv, int DK, int DV) {
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    for (int mt = w; mt < DKP / 16; mt += NTC / 32) {
        float acc[DVP / 8][4] = {};
        for (int kk = 0; kk < CH / 16; ++kk) {
            unsigned a[4];
            frag_a_km(a, X, ldx, 16 * mt, 16 * kk);
            for (int nt = 0; nt < DVP / 8; ++nt) {
                unsigned b0, b1;
                frag_b_kn(b0, b1, V, ldv, 16 * kk, 8 * nt);
                mma_bf16(acc[nt], a, b0, b1);
            }
        }
        for (int nt = 0; nt < DVP / 8; ++nt)
            for (int x = 0; x < 4; x += 2) {
                int i = 16 * mt + g + (x >= 2 ? 8 : 0), j = 8 * nt + 2 * t;
                if (i < DK && j < DV) store_pair(M, (i64)i * DV + j, acc[nt][x], acc[nt][x + 1], false, j + 1 < DV);
            }
    }
}
template <int NN>
inline void mma_rows(float (&acc)[NN / 8][4], const unsigned (&qa)[DKP / 16][4], const bf* Y, int ld) {
    for (int kk = 0; kk < DKP / 16; ++kk)
        for (int nt = 0; nt < NN / 8; ++nt) {
            unsigned b0, b1;
            frag_b(b0, b1, Y, ld, 8 * nt, 16 * kk);
            mma_bf16(acc[nt], qa[kk], b0, b1);
        }
}

#include KERNEL

// A launch of grid (gx, gy), NTC threads per block, the blocks one after another (every other in reverse order).
template <typename F>
void emu_launch(unsigned gx, unsigned gy, unsigned smem, F body) {
    emu_smem = smem;
    const std::function<void()> run = [&body] { body(); };
    unsigned i = 0;
    for (unsigned bx = 0; bx < gx; ++bx)
        for (unsigned by = 0; by < gy; ++by) {
            emu_barrier bar(NTC);
            emu_bar = &bar;
            blockIdx = {bx, by, 0};
            gridDim = {gx, gy, 1};
            emu_run_block(NTC, run, i++ % 2 == 1);
        }
}

// ekb_dq_tc's launch: grid (n, BH).
extern "C" void run_dq(const bf* q, const bf* k, const bf* v, const yt* y, const bf* dO, const float* m_in, float* S,
                       float* z, bf* dq, float* lden, float* dl, int T, int DK, int DV, int n, const float* n_in, float* Wc,
                       int BH, unsigned smem) {
    emu_launch(n, BH, smem, [=] { ekb_dq_tc(q, k, v, y, dO, m_in, S, z, dq, lden, dl, T, DK, DV, n, n_in, Wc); });
}

// ekb_dkdv_tc's launch: grid (n, BH).
extern "C" void run_dkdv(const bf* q, const bf* k, const bf* v, const bf* dO, const float* lden, const float* dl,
                         const float* U, const float* Z, const float* m_next, bf* dk, bf* dv, int T, int DK, int DV, int n,
                         const yt* y, const float* Wn, int BH, unsigned smem) {
    emu_launch(n, BH, smem, [=] { ekb_dkdv_tc(q, k, v, dO, lden, dl, U, Z, m_next, dk, dv, T, DK, DV, n, y, Wn); });
}
