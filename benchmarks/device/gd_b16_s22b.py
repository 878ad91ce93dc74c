"""Session 22, s22b16 (issue 16): gd_forms' GF_B16 (bf16 mma.sync m16n8k16 for its products after the solve, the float32
operand rounded to bfloat16; a bit per product, gated_delta_forms_tc.cu) at several masks in one process, interleaved
rounds; the public bf16 forward B=2 H=16 d=64 (bench_gpu_gated_delta's inputs; CUDA torch tensors, no backend=).
Builds: the sources with `#define GF_B16 15` turned to `#define GF_B16 M` for each mask M (0: 1xTF32, main's kernel);
suffix "a": GF_ALDM 0 (the A operands from float32 tiles, K16's loads and roundings): 15a is K16 alone. (Batches 1 / 2
at 33a66ba / 73970b5 also had GF_VQ, since removed: batch 1's "15v" meant VQ off, "0v" main's kernel; batch 2's "15v"
VQ on.)
- kernels: ms per call of each CUDA kernel (torch.profiler over 3 calls, as gd_s16_s21a.py), medians of ROUNDS rounds
- public: latency (one call from an idle GPU, CUDA events around it, bench_gpu.cuda_time's measure) and pipelined
  (10 calls back to back / 10), medians of ROUNDS; max |out_M - out_0| / max |out_0| (bf16 outputs)
    python benchmarks/device/gd_b16_s22b.py warm|kernels|public [T,T] [ROUNDS] [M,M,..]"""
import os
import statistics
import sys
from collections import defaultdict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import lsattn  # noqa: E402
from bench_gpu import events_ms as timed, kernel_ms  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

DEF = "#define GF_B16 15"
_source, CUR = cc._source, [None]
assert any(all(d in _source(f) for d in (DEF, "#define GF_ALDM 1")) for f in cc._SOURCES["gated_delta"])


def patched(name):
    text = _source(name)
    if CUR[0] in (None, "15"):
        return text
    text = text.replace(DEF, f"#define GF_B16 {CUR[0].rstrip('a')}")
    return text.replace("#define GF_ALDM 1", "#define GF_ALDM 0") if "a" in CUR[0] else text


cc._source = patched


def use(m):
    if m != CUR[0]:
        CUR[0] = m
        cc._kernels.cache_clear()
        cc._launch.cache_clear()
    cgd._TORCH_PLANS.clear()


def fwd(x):
    return lsattn.loglinear_gated_delta(*x)


def main():
    MODE = sys.argv[1] if len(sys.argv) > 1 else "public"
    Ts = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "8192,32768").split(",")]
    ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    MASKS = (sys.argv[4] if len(sys.argv) > 4 else "15,0").split(",")
    for T in Ts:
        run(MODE, T, ROUNDS, MASKS)


def run(MODE, T, ROUNDS, MASKS):
    x = inputs(T, torch.bfloat16)
    if MODE == "warm":
        for m in MASKS:
            use(m)
            fwd(x)
        torch.cuda.synchronize()
        print(f"compiled T={T} masks {MASKS}", flush=True)
    elif MODE == "kernels":
        res = {m: defaultdict(list) for m in MASKS}
        for r in range(ROUNDS):
            for m in MASKS:
                use(m)
                for k, v in kernel_ms(lambda: fwd(x)).items():
                    res[m][k].append(v)
        med = {m: {k: statistics.median(v) for k, v in d.items()} for m, d in res.items()}
        names = sorted(set().union(*med.values()), key=lambda k: -max(d.get(k, 0) for d in med.values()))
        print(f"T={T} kernels ms, medians of {ROUNDS}, GF_B16 = {' / '.join(map(str, MASKS))}: total "
              f"{' / '.join(f'{sum(med[m].values()):.3f}' for m in MASKS)}", flush=True)
        for k in names[:7]:
            print(f"  {k[:30]:30s} {' / '.join(f'{med[m].get(k, 0.0):.4f}' for m in MASKS)}", flush=True)
    else:
        res, outs = {m: ([], []) for m in MASKS}, {}
        for r in range(ROUNDS + 1):
            for m in MASKS:
                use(m)
                outs[m] = fwd(x)
                lat, pipe = timed(lambda: fwd(x), 1), timed(lambda: fwd(x), 10)
                if r:
                    res[m][0].append(lat), res[m][1].append(pipe)
        base = outs[MASKS[-1]].double()
        line = " | ".join(f"{m}: {statistics.median(a):.3f} / {statistics.median(b):.3f} "
                          f"(diff {float((outs[m].double() - base).abs().max() / base.abs().max()):.1e})"
                          for m, (a, b) in res.items())
        print(f"public T={T} bf16, GF_B16 latency / pipelined ms, medians of {ROUNDS} (diff vs {MASKS[-1]}): {line}",
              flush=True)


if __name__ == "__main__":
    main()
