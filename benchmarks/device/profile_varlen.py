"""Where the packed (cu_seqlens) loglinear_attention call spends its time on the GPU, against the
unpacked call of the same total length: wall time per call with the offsets as a CUDA tensor (a
device-to-host read, as fla's) and as a Python list (no read-back), the host time per call (launches
queued without waiting), and torch-profiler tables of both calls (``--cprofile``: instead, cProfile of
10 calls of each form, the host functions by own time). Prints dicts and tables. Run from the repo
root on a GPU machine."""
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
import lsattn  # noqa: E402
from lsattn import _varlen  # noqa: E402
from bench_varlen_gpu import doc_lengths, make_inputs  # noqa: E402


def ms(fn, reps=20):
    """Wall time per call, the GPU drained before and after (ms)."""
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - t) / reps


def host_ms(fn, reps=20):
    """Host time per call: the loop's time before the final drain (ms)."""
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    h = time.perf_counter() - t
    torch.cuda.synchronize()
    return 1e3 * h / reps


lens = doc_lengths(16, 65536, 0)
cu = np.concatenate([[0], np.cumsum(lens)])
x = make_inputs(torch, 65536, 16, 64, torch.bfloat16, "cuda", 0)
cu_dev = torch.as_tensor(cu, device="cuda")
T_pad = _varlen.layout(cu)[0]
calls = {
    "packed_cuda_offsets": lambda: lsattn.loglinear_attention(*x, cu_seqlens=cu_dev),
    "packed_host_offsets": lambda: lsattn.loglinear_attention(*x, cu_seqlens=cu.tolist()),
    "unpacked": lambda: lsattn.loglinear_attention(*x),
}
res = {"T": 65536, "T_pad": T_pad, "lengths": lens.tolist(),
       "layout_host_ms": ms(lambda: _varlen.token_map(cu)),
       "wall_ms": {n: ms(f) for n, f in calls.items()},
       "host_ms": {n: host_ms(f) for n, f in calls.items()}}
print(res, flush=True)

if "--cprofile" in sys.argv:  # where the host time goes (session 11, s11g19)
    import cProfile
    import io
    import pstats

    for name, fn in calls.items():
        fn()
        torch.cuda.synchronize()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(10):
            fn()
        pr.disable()
        torch.cuda.synchronize()
        out = io.StringIO()
        pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(22)
        print(f"==== {name} (10 calls, by own time)\n" + "\n".join(out.getvalue().splitlines()[6:]), flush=True)
    sys.exit(0)

from torch.profiler import ProfilerActivity, profile  # noqa: E402

for name, fn in calls.items():
    if name == "packed_host_offsets":
        continue
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
    print(f"==== {name}")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15), flush=True)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15), flush=True)
