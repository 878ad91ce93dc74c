"""Where the packed (cu_seqlens) loglinear_attention call spends its time on the GPU: the public
call, the prologue's pack (index building + gathers), the kernels on the padded layout, the
finish gather, and the padded length. Prints one dict. Run from the repo root on a GPU machine."""
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
import lsattn  # noqa: E402
from lsattn import _varlen  # noqa: E402
from lsattn.loglinear import SPEC  # noqa: E402
from bench_varlen_gpu import doc_lengths, make_inputs  # noqa: E402


def ms(fn, reps=20):
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - t) / reps


lens = doc_lengths(16, 65536, 0)
cu = np.concatenate([[0], np.cumsum(lens)])
x = make_inputs(torch, 65536, 16, 64, torch.bfloat16, "cuda", 0)
cu_dev = torch.as_tensor(cu, device="cuda")
T_pad, src, back, starts = _varlen.layout(cu)
import array_api_compat  # noqa: E402

xp = array_api_compat.array_namespace(x[0])
run_op, args, finish, _, kw = _varlen.pack(SPEC, xp, list(x), cu, (1, 16))
out_pad = lsattn.loglinear_attention(*args)
res = {
    "T": 65536, "T_pad": T_pad, "lengths": lens.tolist(),
    "public_packed_ms": ms(lambda: lsattn.loglinear_attention(*x, cu_seqlens=cu_dev)),
    "public_unpacked_ms": ms(lambda: lsattn.loglinear_attention(*x)),
    "layout_host_ms": ms(lambda: _varlen.layout(cu)),
    "pack_ms": ms(lambda: _varlen.pack(SPEC, xp, list(x), cu, (1, 16))),
    "padded_call_ms": ms(lambda: lsattn.loglinear_attention(*args)),
    "padded_call_cupy_ms": ms(lambda: lsattn.loglinear_attention(*args, backend="cupy")),
    "finish_ms": ms(lambda: finish(out_pad)),
}
print(res, flush=True)

from torch.profiler import ProfilerActivity, profile  # noqa: E402

for name, fn in (("packed", lambda: lsattn.loglinear_attention(*x, cu_seqlens=cu_dev)),
                 ("unpacked", lambda: lsattn.loglinear_attention(*x))):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
    print(f"==== {name}")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18), flush=True)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12), flush=True)
