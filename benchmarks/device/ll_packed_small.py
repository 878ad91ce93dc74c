"""Small packed (cu_seqlens) log-linear calls on the cupy kernels (for compute-sanitizer, issue 19,
s13f19): the three log-linear operators, fp32 and bf16, d = 40 / 64, segments of length 0 and 1 and
across chunk edges, offsets as a list and as a CUDA tensor (the same tensor changed in place: the
plan keyed by its values), a NaN at one token (the one-read check's fallback, poison in its segment).
Prints the max difference to the per-segment calls. ``DEV=cpu``: the same on CPU torch tensors.
"""
import os

import torch

import lsattn

sys_path = __import__("sys").path
sys_path.insert(0, "benchmarks")
from bench_varlen_gpu import make_inputs, op_call  # noqa: E402

DEV = os.environ.get("DEV", "cuda")
lens = [1, 70, 0, 63, 64, 65, 2, 100]
off = [0]
for n in lens:
    off.append(off[-1] + n)
T = off[-1]


def loop(f, x, cu):
    return torch.cat([f(*(y[..., a:b] if y.ndim == 3 else y[..., a:b, :] for y in x)) for a, b in zip(cu[:-1], cu[1:])
                      if b > a], dim=-2)


def rel(a, b):
    fin = torch.isfinite(b)
    assert torch.equal(fin, torch.isfinite(a)), "non-finite rows differ"
    return ((torch.where(fin, a.float() - b.float(), 0)).abs().max() / torch.where(fin, b.float(), 0).abs().max()).item()


for op in ("loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"):
    f = op_call(lsattn, op)
    for dtype in (torch.float32, torch.bfloat16):
        for d in (40, 64):
            x = make_inputs(torch, T, 2, d, dtype, DEV, 0, op)
            cu_dev = torch.tensor(off, device=DEV)
            p_list, p_dev = f(*x, cu_seqlens=off), f(*x, cu_seqlens=cu_dev)
            ref = loop(f, x, off)
            other = [0, 3, 3, 140, T - 5, T - 5, T - 5, T - 5, T]
            cu_dev.copy_(torch.tensor(other))  # in place: other offsets, the plan of the first ones must not answer
            moved = rel(f(*x, cu_seqlens=cu_dev), loop(f, x, other))
            bad = [y.clone() for y in x]
            bad[0][:, :, 75] = float("nan")  # a query of segment 2 (tokens 71..133 hold segments 2-4)
            p_bad = f(*bad, cu_seqlens=off)
            nan_rows = (~torch.isfinite(p_bad)).any(-1)[0, 0].nonzero().flatten().tolist()
            print(f"{op} {dtype} d={d}: list {rel(p_list, ref):.2e}, CUDA {rel(p_dev, ref):.2e}, changed in place "
                  f"{moved:.2e}; NaN query at 75 poisons rows {nan_rows}, rest {rel(p_bad, loop(f, bad, off)):.2e}", flush=True)
if DEV == "cuda":
    torch.cuda.synchronize()
print("done")
