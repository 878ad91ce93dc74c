// The CUDA source of gd_scan (lsattn/backends/cupy/gated_delta.cu) compiled as C++ for the CPU on
// the emulation of cuda_emu.h (a fiber per CUDA thread, blocks one after another); the rest
// of common.cu that gated_delta.cu uses is restated here. tests/test_cupy_gated_delta.py builds it with
//   g++ -std=c++20 -shared -fPIC -DTA=float|double -DCH=.. -DDKP=.. -DKERNEL='"<path of the .cu>"'
// and drives it through the backend's host logic, so the kernel's own index arithmetic, shared
// tiles and barriers are checked without a GPU (vector loads abort when misaligned).
#include "cuda_emu.h"
#include <cstring>
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
struct double2 { double x, y; };
struct uint2 { unsigned x, y; };  // gd_scan's W as tf32 pairs
template <typename V, typename T>
inline V vload(const T* p) {
    if (reinterpret_cast<uintptr_t>(p) % sizeof(V)) std::abort();  // the GPU faults on a misaligned vector load
    return *reinterpret_cast<const V*>(p);
}
template <int N> inline void ldv(const float* p, float (&o)[N]) {
    if constexpr (N % 4 == 0) {
        for (int u = 0; u < N; u += 4) { float4 t = vload<float4>(p + u); o[u] = t.x; o[u + 1] = t.y; o[u + 2] = t.z; o[u + 3] = t.w; }
    } else if constexpr (N % 2 == 0) {
        for (int u = 0; u < N; u += 2) { float2 t = vload<float2>(p + u); o[u] = t.x; o[u + 1] = t.y; }
    } else {
        for (int u = 0; u < N; ++u) o[u] = p[u];
    }
}
template <int N> inline void ldv(const double* p, double (&o)[N]) {
    if constexpr (N % 2 == 0) {
        for (int u = 0; u < N; u += 2) { double2 t = vload<double2>(p + u); o[u] = t.x; o[u + 1] = t.y; }
    } else {
        for (int u = 0; u < N; ++u) o[u] = p[u];
    }
}

// common.cu's staged<> as it is: batches of loads issued before their stores
template <int TOTAL, int NTH, typename L, typename S>
inline void staged(L load, S store) {
    using V = decltype(load(0));
    constexpr int N = (TOTAL + NTH - 1) / NTH;
    constexpr int BW = 64 / (int)sizeof(V) < 1 ? 1 : (64 / (int)sizeof(V) > 16 ? 16 : 64 / (int)sizeof(V));
    constexpr int B = N < BW ? N : BW;
    for (int u0 = 0; u0 < N; u0 += B) {
        V r[B];
        for (int u = 0; u < B; ++u) {
            const int idx = threadIdx.x + (u0 + u) * NTH;
            r[u] = (u0 + u < N && idx < TOTAL) ? load(idx) : V();
        }
        for (int u = 0; u < B; ++u) {
            const int idx = threadIdx.x + (u0 + u) * NTH;
            if (u0 + u < N && idx < TOTAL) store(idx, r[u]);
        }
    }
}

// cp.async as the hardware may run it: a copy is queued at issue (its source read then) and lands
// in shared memory only when a wait_group retires its commit group, so a read of a buffer before
// its wait sees stale data. 16-byte copies abort when misaligned (the GPU faults).
struct emu_copy { void* dst; unsigned char bytes[16]; int size; };
thread_local std::vector<std::vector<emu_copy>> emu_groups;  // committed groups, oldest first
thread_local std::vector<emu_copy> emu_open;                 // issued, not yet committed
EMU_FIBER_LOCAL(emu_groups);  // (per CUDA thread: cuda_emu_fiber.h)
EMU_FIBER_LOCAL(emu_open);
inline void emu_queue(void* dst, const void* src, int size, bool valid) {
    emu_copy e{dst, {}, size};
    if (valid) std::memcpy(e.bytes, src, size);
    emu_open.push_back(e);
}
template <typename T>
inline void cp_async_ta(T* dst, const T* src, bool valid) { emu_queue(dst, src, (int)sizeof(T), valid); }
inline void cp_async16(void* dst, const void* src, bool valid) {
    if (reinterpret_cast<uintptr_t>(dst) % 16 || (valid && reinterpret_cast<uintptr_t>(src) % 16)) std::abort();
    emu_queue(dst, src, 16, valid);
}
inline void cp_async_commit() { emu_groups.push_back(std::move(emu_open)); emu_open.clear(); }
template <int N>
inline void cp_async_wait() {
    while ((int)emu_groups.size() > N) {
        for (const emu_copy& e : emu_groups.front()) std::memcpy(e.dst, e.bytes, e.size);
        emu_groups.erase(emu_groups.begin());
    }
}

#include "cuda_emu_mma.h"  // tf32_split, mma_tf32 (common.cu's tensor-core helpers of gd_scan)

// the read adds of gd_scan's chains (the block's threads run concurrently)
template <typename T>
inline T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
inline float2 atomicAdd(float2* p, float2 v) {  // sm_90's vector add (gd_tier1's low walks): 8-byte aligned
    if (reinterpret_cast<uintptr_t>(p) % sizeof(float2)) std::abort();
    return float2{atomicAdd(&p->x, v.x), atomicAdd(&p->y, v.y)};
}

// sm_90's red.global.add.noftz.bf16 / .bf16x2 (gated_delta.cu's gd_red, GD_O16): n bfloat16 addends (v's halves) added
// into p[0 .. n) (4-byte aligned when n = 2), each sum rounded to nearest even
inline void emu_bf16_add(unsigned short* p, int n, unsigned v) {
    if (n == 2 && reinterpret_cast<uintptr_t>(p) % 4) std::abort();
    for (int e = 0; e < n; ++e) {
        std::atomic_ref<unsigned short> a(p[e]);
        const float add = __uint_as_float(((v >> (16 * e)) & 0xffffu) << 16);
        unsigned short old = a.load(), nw;
        do {
            unsigned u = __float_as_uint(__uint_as_float((unsigned)old << 16) + add);
            u += 0x7fffu + ((u >> 16) & 1u);  // (finite sums)
            nw = (unsigned short)(u >> 16);
        } while (!a.compare_exchange_weak(old, nw));
    }
}

#if TI_BF16  // bfloat16 inputs as 16-bit patterns (common.cu's ld, st: gd_forms' inputs, gd_tier3's o16)
typedef unsigned short ti;
inline ta ld(const ti* p) { return (ta)__uint_as_float(((unsigned)*p) << 16); }
inline void st(ti* p, ta x) {
    unsigned u = __float_as_uint((float)x);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) { *p = (ti)((u >> 16) | 0x40u); return; }  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    *p = (ti)(u >> 16);
}
#else
typedef ta ti;
inline ta ld(const ti* p) { return *p; }
inline void st(ti* p, ta x) { *p = x; }
#endif

#include KERNEL

// gd_scan's launch: a 1-D grid of nblocks (chains x sequences x column blocks), NT threads per block,
// smem bytes of dynamic shared memory (the host's Config.smem("gd_scan")).
extern "C" void run(const ta* qe, const ta* ek, const ta* ph, const ta* Hc, const ta* gc, const ta* lam, ta* out, ta* lev,
                    ta* oldc, int T, int DK, int DV, int L, i64 p, i64 F, int n, int n_old, int NLC, int merge_last, int keep,
                    int BH, int G, unsigned nblocks, unsigned smem) {
    emu_smem = smem;
    emu_launch(nblocks, 1, 1, [=] {
        gd_scan(qe, ek, ph, Hc, gc, lam, out, lev, oldc, T, DK, DV, L, p, F, n, n_old, NLC, merge_last, keep, BH, G);
        for (const auto& grp : emu_groups)
            if (!grp.empty()) std::abort();  // copies never waited for
        if (!emu_open.empty()) std::abort();  // or never committed
    });
    emu_smem = sizeof(smem_raw);
}

// the two-tier form's launches (CupyOps.gd_tiers): 1-D grids of nblocks, smem bytes each
extern "C" void run_tier1(const gd_e* qe, const gd_e* ek, const gd_e* ph, const gd_e* Hc, const ta* gc, const ta* lam, gd_o* out,
                          ta* Z, ta* Tot, gd_e* Qp, int T, int DK, int DV, int L, int n, int nP, int BH, unsigned nblocks,
                          unsigned smem) {
    emu_smem = smem;
    emu_launch(nblocks, 1, 1, [=] { gd_tier1(qe, ek, ph, Hc, gc, lam, out, Z, Tot, Qp, T, DK, DV, L, n, nP, BH); });
    emu_smem = sizeof(smem_raw);
}
extern "C" void run_tier1x(const gd_e* qe, const gd_e* ek, const gd_e* ph, const gd_e* Hc, const ta* gc, const ta* lam,
                           gd_o* out, ta* Z, ta* Tot, gd_e* Qp, int T, int DK, int DV, int L, int n, int nP, int BH, unsigned nblocks,
                           unsigned smem) {
    emu_smem = smem;
    emu_launch(nblocks, 1, 1, [=] { gd_tier1x(qe, ek, ph, Hc, gc, lam, out, Z, Tot, Qp, T, DK, DV, L, n, nP, BH); });
    emu_smem = sizeof(smem_raw);
}
extern "C" void run_cgroup(const ta* Z, const ta* Tot, ta* Pc, ta* Tg, int DK, int DV, int nP, int BH, unsigned nblocks,
                           unsigned smem) {
    emu_smem = smem;
    emu_launch(nblocks, 1, 1, [=] { gd_cgroup(Z, Tot, Pc, Tg, DK, DV, nP, BH); });
    emu_smem = sizeof(smem_raw);
}
extern "C" void run_coarse(const ta* Z, const ta* Tot, const ta* Pc, const ta* Tg, ta* Sb, int DK, int DV, int nP, int NCL,
                           int BH, unsigned nblocks, unsigned smem) {
    emu_smem = smem;
    emu_launch(nblocks, 1, 1, [=] { gd_coarse(Z, Tot, Pc, Tg, Sb, DK, DV, nP, NCL, BH); });
    emu_smem = sizeof(smem_raw);
}
extern "C" void run_coarse_g(const ta* Z, const ta* Tot, const ta* Pc, const ta* Tg, ta* Sb, int DK, int DV, int nP, int NCL,
                             int BH, unsigned nblocks, unsigned smem) {
    emu_smem = smem;
    emu_launch(nblocks, 1, 1, [=] { gd_coarse_g(Z, Tot, Pc, Tg, Sb, DK, DV, nP, NCL, BH); });
    emu_smem = sizeof(smem_raw);
}
extern "C" void run_cfill(const ta* Z, const ta* Pc, ta* Sb, int DK, int DV, int nP, int BH, unsigned nblocks, unsigned smem) {
    emu_smem = smem;
    emu_launch(nblocks, 1, 1, [=] {
        gd_cfill(Z, Pc, Sb, DK, DV, nP, BH);
        for (const auto& grp : emu_groups)
            if (!grp.empty()) std::abort();  // copies never waited for
    });
    emu_smem = sizeof(smem_raw);
}
#if GD_T3WALK_SET  // the timing build of session 13's gd_tier3 walks
extern "C" void run_tier3(const gd_e* qe, const gd_e* ek, const gd_e* ph, const gd_e* Hc, const ta* gc, const ta* lam,
                          ta* out, const ta* Sb, int T, int DK, int DV, int L, int n, int nP, int NPR, int BH, unsigned nblocks,
                          unsigned smem) {
    emu_smem = smem;
    emu_launch(nblocks, 1, 1, [=] { gd_tier3(qe, ek, ph, Hc, gc, lam, out, Sb, T, DK, DV, L, n, nP, NPR, BH); });
    emu_smem = sizeof(smem_raw);
}
#else
extern "C" void run_tier3(const gd_e* qe, const gd_e* Qp, const ta* lam, gd_o* out, const ta* Sb, ti* o16, const ta* Z,
                          const ta* Pc, int T, int DK, int DV, int L, int n, int nP, int BH, int fill, unsigned nblocks,
                          unsigned smem) {
    emu_smem = smem;
    emu_launch(nblocks, 1, 1, [=] {
        gd_tier3(qe, Qp, lam, out, Sb, o16, Z, Pc, T, DK, DV, L, n, nP, BH, fill);
        for (const auto& grp : emu_groups)
            if (!grp.empty()) std::abort();  // copies never waited for
    });
    emu_smem = sizeof(smem_raw);
}
#endif
