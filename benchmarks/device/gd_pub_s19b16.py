"""The public bf16 loglinear_gated_delta forward (B=2, H=16, d=64, CUDA torch tensors, no backend=; bench_gpu_gated_delta's
inputs) with the tree's kernels ("on") against the same with the named gd_forms switches off ("off": each `#define X 1`
of the sources turned to 0), interleaved rounds in one process: per T, ms medians of ROUNDS rounds of the latency (one
call from an idle GPU, CUDA events) and the pipelined time (10 calls back to back / 10), and whether the outputs are
equal bit for bit (s19b16's switches keep the sums).

    python benchmarks/device/gd_pub_s19b16.py [T[,T...]] [ROUNDS] [SWITCH,SWITCH...]   (default GF_S64,GF_OD4)
"""
import os
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

Ts = [int(t) for t in (sys.argv[1] if len(sys.argv) > 1 else "8192,32768").split(",")]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
SWITCHES = (sys.argv[3] if len(sys.argv) > 3 else "GF_S64,GF_OD4").split(",")
_source = cc._source
MODE = ["on"]


def patched(name):
    text = _source(name)
    if MODE[0] == "off":
        for x in SWITCHES:
            text = text.replace(f"#define {x} 1", f"#define {x} 0")
    return text


cc._source = patched


def use(mode):
    MODE[0] = mode
    cc._kernels.cache_clear()
    cc._launch.cache_clear()
    cgd._TORCH_PLANS.clear()


def timed(x, n):
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    torch.cuda.synchronize()
    ev[0].record()
    for _ in range(n):
        lsattn.loglinear_gated_delta(*x)
    ev[1].record()
    ev[1].synchronize()
    return ev[0].elapsed_time(ev[1]) / n


for x in SWITCHES:
    assert any(f"#define {x} 1" in _source(f) for f in cc._SOURCES["gated_delta"]), x
for T in Ts:
    x = inputs(T, torch.bfloat16)
    res, outs = {m: ([], []) for m in ("on", "off")}, {}
    for r in range(ROUNDS + 1):
        for mode in ("on", "off"):
            use(mode)
            outs[mode] = lsattn.loglinear_gated_delta(*x)  # (the plan, the kernels)
            lat, pipe = timed(x, 1), timed(x, 10)
            if r:
                res[mode][0].append(lat), res[mode][1].append(pipe)
    use("on")
    same = torch.equal(outs["on"], outs["off"])
    m = {k: (statistics.median(a), statistics.median(b)) for k, (a, b) in res.items()}
    print(f"T={T} bf16 public fwd: on latency {m['on'][0]:.3f} pipelined {m['on'][1]:.3f} ms | {'+'.join(SWITCHES)} off "
          f"latency {m['off'][0]:.3f} pipelined {m['off'][1]:.3f} ms | outputs {'equal' if same else 'DIFFERENT'}", flush=True)
