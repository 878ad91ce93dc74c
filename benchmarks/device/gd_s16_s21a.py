"""Session 21, s21a16 (issue 16): gated_delta.S16 (the GD_S16 build: bfloat16 inputs' two-tier scan on bfloat16
intermediates qeff, e^G K, phi, H, Qp) on / off in one process, interleaved rounds, B=2 H=16 d=64 bf16 from chunk 0
without state (bench_gpu_gated_delta's inputs; CUDA torch tensors, no backend=).
- kernels: per kernel of the forward, mean ms per call from torch.profiler over CALLS calls, medians over ROUNDS rounds
- public: the forward's latency (one call from an idle GPU) and pipelined time (10 calls back to back / 10), CUDA
  events, medians; fla's chunk_gated_delta_rule (bf16, pipelined) in the same rounds for the ratio; peak memory
  (bench_gpu.peak_mem) on / off; max |on - off| / max |off| of the outputs (and vs fla's float32 as a sanity check)
Builds (MODES, comma-separated): on (S16 and O16: the output's partial sums in bfloat16 too), s16 (S16, O16 False),
off (S16 False: float32 intermediates), on-SW (on with the switch SW's `#define SW 1` turned to 0 in the sources, e.g.
on-GD_T1X4_SET).
    python benchmarks/device/gd_s16_s21a.py warm [T,T] [MODES]           # compile the builds, fla's Triton (tests mode)
    python benchmarks/device/gd_s16_s21a.py kernels [T,T] [ROUNDS] [MODES]
    python benchmarks/device/gd_s16_s21a.py public [T,T] [ROUNDS] [MODES]"""
import os
import statistics
import sys
from collections import defaultdict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu import events_ms as timed, kernel_ms, peak_mem  # noqa: E402
from bench_gpu_gated_delta import fla_args, inputs  # noqa: E402
from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

MODE = sys.argv[1] if len(sys.argv) > 1 else "public"
Ts = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "8192,16384,32768").split(",")]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 and MODE != "warm" else 7
MODES = (sys.argv[-1] if len(sys.argv) > (3 if MODE == "warm" else 4) else "on,off").split(",")
_source, PATCH = cc._source, [None]


def patched(name):
    text = _source(name)
    if PATCH[0]:
        text = text.replace(f"#define {PATCH[0]} 1", f"#define {PATCH[0]} 0")
    return text


cc._source = patched
for m in MODES:
    if m.startswith("on-"):
        assert any(f"#define {m[3:]} 1" in _source(f) for f in cc._SOURCES["gated_delta"]), m
try:
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
except Exception as exc:  # noqa: BLE001
    print("fla not importable:", exc)
    chunk_gated_delta_rule = None


def use(mode):
    cgd.S16, cgd.O16 = mode != "off", mode not in ("off", "s16")
    patch = mode[3:] if mode.startswith("on-") else None
    if patch != PATCH[0]:
        PATCH[0] = patch
        cc._kernels.cache_clear()
        cc._launch.cache_clear()
    cgd._TORCH_PLANS.clear()


def fwd(x):
    return lsattn.loglinear_gated_delta(*x)


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


if MODE == "warm":
    for T in Ts:
        x = inputs(T, torch.bfloat16)
        for m in MODES:
            use(m)
            fwd(x)
        if chunk_gated_delta_rule is not None:
            chunk_gated_delta_rule(*fla_args(*x[:5]), scale=1.0)
        torch.cuda.synchronize()
        print(f"compiled T={T}", flush=True)
elif MODE == "kernels":
    for T in Ts:
        x = inputs(T, torch.bfloat16)
        res = {m: defaultdict(list) for m in MODES}
        for r in range(ROUNDS):
            for m in MODES:
                use(m)
                for k, v in kernel_ms(lambda: fwd(x)).items():
                    res[m][k].append(v)
        med = {m: {k: statistics.median(v) for k, v in d.items()} for m, d in res.items()}
        names = sorted(set().union(*med.values()), key=lambda k: -max(d.get(k, 0) for d in med.values()))
        print(f"T={T} kernels (ms, medians of {ROUNDS}; {' / '.join(MODES)}): total "
              f"{' / '.join(f'{sum(med[m].values()):.3f}' for m in MODES)}", flush=True)
        for k in names[:10]:
            print(f"  {k[:40]:40s} {' / '.join(f'{med[m].get(k, 0.0):7.3f}' for m in MODES)}", flush=True)
    use("on")
else:
    for T in Ts:
        x = inputs(T, torch.bfloat16)
        fx = fla_args(*x[:5]) if chunk_gated_delta_rule is not None else None
        res, outs = {k: ([], []) for k in MODES + ["fla"]}, {}
        for r in range(ROUNDS + 1):
            for m in MODES:
                use(m)
                outs[m] = fwd(x)
                lat, pipe = timed(lambda: fwd(x), 1), timed(lambda: fwd(x), 10)
                if r:
                    res[m][0].append(lat), res[m][1].append(pipe)
            if fx is not None:
                chunk_gated_delta_rule(*fx, scale=1.0)
                lat, pipe = timed(lambda: chunk_gated_delta_rule(*fx, scale=1.0), 1), \
                    timed(lambda: chunk_gated_delta_rule(*fx, scale=1.0), 10)
                if r:
                    res["fla"][0].append(lat), res["fla"][1].append(pipe)
        m = {k: (statistics.median(a), statistics.median(b)) if a else (float("nan"),) * 2 for k, (a, b) in res.items()}
        mem = {}
        for md in MODES:
            use(md)
            mem[md] = peak_mem(lambda: fwd(x)) / 1e9
        use("on")
        cells = [f"{md} {m[md][0]:.3f} / {m[md][1]:.3f} ({m[md][1] / m['fla'][1]:.2f}x fla, {mem[md]:.3f} GB"
                 + (f", vs off {rel(outs[md], outs['off']):.1e})" if md != "off" and "off" in outs else ")") for md in MODES]
        print(f"T={T} bf16 public fwd, latency / pipelined ms: {' | '.join(cells)} | fla {m['fla'][0]:.3f} / "
              f"{m['fla'][1]:.3f}", flush=True)
