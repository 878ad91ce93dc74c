// The CUDA threads of one block as fibers for the CPU emulations (tests/cuda_emu*.{h,cpp}): each thread a ucontext
// with a stack of its own, all on the calling OS thread, switched only where a thread waits at a barrier
// (emu_barrier: __syncthreads, the warps' exchanges), so a block costs no OS threads, no futex wake-ups and no
// scheduler (a std::thread per CUDA thread spent more system time than kernel time, NOTES session 12).
// A phase between two barriers runs its threads one after another in block order (even blocks of a launch) or in
// reverse (odd blocks): a read of a value another thread writes in the same phase (a missing barrier) sees the old
// value in one of the two orders, so such a race changes some output deterministically. A barrier that some thread
// never reaches (the GPU would hang) aborts with a message instead of hanging.
// Per-thread variables of an emulation (cp.async's queues) are registered with EMU_FIBER_LOCAL: swapped in and out
// with their thread. threadIdx / blockIdx / gridDim are the running thread's.
// Everything here has internal linkage (an unnamed namespace): g++ gives inline variables and the static members of a
// named class the binding STB_GNU_UNIQUE, which the dynamic loader makes one object across every library of the
// process, RTLD_LOCAL or not; a test process loads several emulation builds, whose fiber locals then shared one
// `saved` and one registry, every switch rotating the locals through all loaded builds (cp.async's queues handed
// to other threads: session 16, NOTES).
#pragma once
#include <sys/mman.h>
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

namespace {
struct emu_idx { unsigned x, y, z; };
inline emu_idx threadIdx, blockIdx, gridDim;

struct EmuFiber {
    ucontext_t ctx;
    bool done;
};
inline std::vector<EmuFiber> emu_fibers;
inline ucontext_t emu_main_ctx;
inline int emu_cur, emu_live, emu_dir, emu_stall;
inline const std::function<void()>* emu_body;
inline char* emu_stacks;
inline size_t emu_nstacks;
constexpr size_t EMU_STACK = 256 * 1024, EMU_GUARD = 4096;  // a stack per thread, a guard page below it

// EMU_FIBER_LOCAL(v): v (a default-constructible global) is per thread: one copy per fiber, swapped into v while its
// fiber runs (each block's threads start from T{}).
// (v holds the running fiber's copy; saved[f] the others', and the launcher's value while f runs)
struct EmuFiberLocal {
    void (*swap)(int);  // v <-> fiber f's saved copy (swapping in and out alike)
    void (*reset)(int);  // nt fresh copies
};
inline std::vector<EmuFiberLocal> emu_locals;
#define EMU_FIBER_LOCAL(v)                                                                              \
    namespace {                                                                                         \
    struct emu_fl_type_##v {                                                                            \
        static inline std::vector<std::remove_reference_t<decltype(v)>> saved;                          \
        emu_fl_type_##v() {                                                                             \
            emu_locals.push_back({[](int f) { std::swap(v, saved[f]); }, [](int nt) { saved.assign(nt, {}); }}); \
        }                                                                                               \
    } emu_fl_##v;                                                                                       \
    }

inline int emu_next_live() {
    const int n = (int)emu_fibers.size();
    for (int s = 1; s <= n; ++s) {
        const int f = ((emu_cur + emu_dir * s) % n + n) % n;
        if (!emu_fibers[f].done) return f;
    }
    return -1;
}

// Leave the running fiber (saved in `from`, or not at all: a finished one) for fiber f (or the launcher: f < 0).
inline void emu_switch(ucontext_t* from, int f) {
    for (auto& l : emu_locals) l.swap(emu_cur);
    if (f < 0) {
        if (from) swapcontext(from, &emu_main_ctx);
        else setcontext(&emu_main_ctx);
        return;
    }
    emu_cur = f;
    threadIdx = {(unsigned)f, 0, 0};
    for (auto& l : emu_locals) l.swap(f);
    if (from) swapcontext(from, &emu_fibers[f].ctx);
    else setcontext(&emu_fibers[f].ctx);
}

// A waiting thread gives way to the next one; a whole round of waits without an arrival anywhere is a deadlock.
inline void emu_yield() {
    if (++emu_stall > 2 * emu_live + 2) {
        std::fprintf(stderr, "cuda emulation: deadlock in block (%u, %u, %u): a barrier some thread never reaches\n",
                     blockIdx.x, blockIdx.y, blockIdx.z);
        std::abort();
    }
    const int me = emu_cur, f = emu_next_live();
    if (f != me) emu_switch(&emu_fibers[me].ctx, f);
    // (resumed: emu_switch of another fiber set emu_cur, threadIdx and the fiber locals back to this one's)
}

// std::barrier's arrive_and_wait for fibers: the last arrival completes the phase and runs on.
struct emu_barrier {
    int n, arrived = 0;
    unsigned phase = 0;
    explicit emu_barrier(int count) : n(count) {}
    void arrive_and_wait() {
        emu_stall = 0;
        if (++arrived == n) {
            arrived = 0;
            ++phase;
            return;
        }
        const unsigned p = phase;
        while (phase == p) emu_yield();
    }
};

inline void emu_fiber_entry() {
    (*emu_body)();
    emu_fibers[emu_cur].done = true;
    --emu_live;
    emu_stall = 0;
    emu_switch(nullptr, emu_next_live());  // (never returns here: its stack is reused)
}

// Run one block of nt threads (each calls body() with threadIdx set) to completion; `reverse`: the reverse order.
inline void emu_run_block(int nt, const std::function<void()>& body, bool reverse) {
    if (emu_nstacks < (size_t)nt) {
        if (emu_stacks) munmap(emu_stacks, emu_nstacks * (EMU_STACK + EMU_GUARD));
        emu_nstacks = (size_t)nt;
        void* m = mmap(nullptr, emu_nstacks * (EMU_STACK + EMU_GUARD), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) std::abort();
        emu_stacks = static_cast<char*>(m);
        for (size_t f = 0; f < emu_nstacks; ++f) mprotect(emu_stacks + f * (EMU_STACK + EMU_GUARD), EMU_GUARD, PROT_NONE);
    }
    emu_fibers.assign(nt, EmuFiber{});
    for (int f = 0; f < nt; ++f) {
        EmuFiber& F = emu_fibers[f];
        getcontext(&F.ctx);
        F.ctx.uc_stack.ss_sp = emu_stacks + f * (EMU_STACK + EMU_GUARD) + EMU_GUARD;
        F.ctx.uc_stack.ss_size = EMU_STACK;
        F.ctx.uc_link = nullptr;
        makecontext(&F.ctx, emu_fiber_entry, 0);
    }
    for (auto& l : emu_locals) l.reset(nt);
    emu_body = &body;
    emu_live = nt;
    emu_stall = 0;
    emu_dir = reverse ? -1 : 1;
    const int first = reverse ? nt - 1 : 0;
    emu_cur = first;
    threadIdx = {(unsigned)first, 0, 0};
    for (auto& l : emu_locals) l.swap(first);
    swapcontext(&emu_main_ctx, &emu_fibers[first].ctx);  // back when the last thread finishes
}
}  // namespace
