"""Host (Python) time of public calls on CUDA torch tensors: cProfile of 20 calls each, top
functions by cumulative and own time. The calls of the packed benchmark (bench_varlen_gpu.py) and a
plain B=2, H=16, T=8192 bf16 call of each operator. Run from the repo root on a GPU machine."""
import cProfile
import pstats
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "benchmarks")
import lsattn  # noqa: E402
from bench_varlen_gpu import doc_lengths, make_inputs  # noqa: E402

lens = doc_lengths(16, 65536, 0)
cu = np.concatenate([[0], np.cumsum(lens)])
x = make_inputs(torch, 65536, 16, 64, torch.bfloat16, "cuda", 0)
cu_dev = torch.as_tensor(cu, device="cuda")
g = torch.Generator(device="cuda").manual_seed(0)
B, H, T, d = 2, 16, 8192, 64
q, k = (torch.randn((B, H, T, d), generator=g, device="cuda", dtype=torch.bfloat16) * d**-0.5 for _ in range(2))
v = torch.randn((B, H, T, d), generator=g, device="cuda", dtype=torch.bfloat16)
a = torch.nn.functional.logsigmoid(torch.randn((B, H, T), device="cuda") + 3).to(torch.bfloat16)
beta = torch.sigmoid(torch.randn((B, H, T), device="cuda")).to(torch.bfloat16)
lam = (torch.rand((B, H, T, lsattn.num_levels(T)), device="cuda") + 0.5).to(torch.bfloat16)
kn = k / k.float().norm(dim=-1, keepdim=True).to(k.dtype)
calls = {
    "packed_cuda_offsets": lambda: lsattn.loglinear_attention(*x, cu_seqlens=cu_dev),
    "unpacked_64K": lambda: lsattn.loglinear_attention(*x),
    "loglinear_8K": lambda: lsattn.loglinear_attention(q, k, v, a, lam),
    "exp_kernel_8K": lambda: lsattn.exp_kernel_attention(q, k, v),
    "log_attention_8K": lambda: lsattn.log_attention(q, k, v),
    "gated_delta_8K": lambda: lsattn.loglinear_gated_delta(q, kn, v, a, beta, lam),
    "hierarchical_8K": lambda: lsattn.loglinear_log_attention(q, k, v, lam.log(), log_decay=a),
}
for name, fn in calls.items():
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        fn()
    host = time.perf_counter() - t
    torch.cuda.synchronize()
    wall = time.perf_counter() - t
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    pr.disable()
    print(f"==== {name}: host {1e3 * host / 20:.3f} ms/call, wall {1e3 * wall / 20:.3f} ms/call", flush=True)
    st = pstats.Stats(pr)
    st.sort_stats("tottime").print_stats(14)
    st.sort_stats("cumtime").print_stats(22)
