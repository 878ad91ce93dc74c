// A check of cuda_emu_fiber.h itself (tests/test_cupy_gated_delta.py, test_fiber_locals_per_build): a block whose
// threads each queue their index in an EMU_FIBER_LOCAL variable (as cp.async's queues in cuda_emu_gd_scan.cpp),
// wait at a barrier (every other thread runs meanwhile) and read their queue back. Built twice (-DBUILD=1, 2) and
// both loaded in one process: each build's fiber locals must stay its own threads'.
//   g++ -std=c++20 -shared -fPIC -DBUILD=.. cuda_emu_fiber_check.cpp
#include <vector>

#include "cuda_emu_fiber.h"

thread_local std::vector<int> emu_check_q;
EMU_FIBER_LOCAL(emu_check_q);

// The threads (of nt) that read back anything but their own index (0 when the locals are per thread).
extern "C" int run_check(int nt, int reverse) {
    int bad = 0;
    emu_barrier bar(nt);
    const std::function<void()> body = [&] {
        emu_check_q.push_back((int)threadIdx.x * 10 + BUILD);
        bar.arrive_and_wait();
        if (emu_check_q.size() != 1 || emu_check_q[0] != (int)threadIdx.x * 10 + BUILD) ++bad;
        emu_check_q.clear();
    };
    emu_run_block(nt, body, reverse != 0);
    return bad;
}
