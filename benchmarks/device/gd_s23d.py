"""Session 23, s23d16 (issue 16): the two-tier scan's kernel switches of s23d in one process, interleaved rounds; the
public bf16 forward B=2 H=16 d=64 from chunk 0 without state (bench_gpu_gated_delta's inputs; CUDA torch tensors).
Builds (the sources patched, the kernels recompiled: CuPy's disk cache after the first round):
  new   this tree: gd_tier1x's Z tf32-rounded (GD_ZR_SET) and the coarse chains' Z fragments without a cvt
        (GD_CAX_SET); gd_coarse's / gd_coarse_g's state tf32-rounded (GD_CSR_SET), their slots stored from the
        registers (GD_CPR_SET); (no switch left) the walks' shared accesses by column pairs
  main  the coarse switches off (session 22's coarse chains; batch 2's main also had the walks' accesses element by
        element, its c0 the pairs: the two differ by the pairs alone)
(Batch 1 at f6bafd0: new, main, c32, s0, p2, p3, with gd_coarse at 64 columns and the walks' slots tf32-rounded; batch
2 at c3ae90c: new, main, c0, q0 (pairs off), rv (gd_tier3's blocks in decreasing chunk order), w16 (gd_coarse at 16
columns); the losing forms are removed, benchmarks/NOTES.md "Session 23 — s23d16".)
- kernels: ms per call of each CUDA kernel (torch.profiler over 3 calls, bench_gpu.kernel_ms), medians of ROUNDS
- public: the scan span (CUDA events on torch's stream around CupyOps.gd_tiers: from gd_forms' end to the scan's end,
  one call from an idle GPU), latency (one call from an idle GPU, CUDA events around it) and pipelined (10 calls back to
  back / 10), medians of ROUNDS; max |out_b - out_x| / max |out_x| (bf16 outputs) for x = main, new
    python benchmarks/device/gd_s23d.py warm|kernels|public [T,T] [ROUNDS] [b,b,..]"""
import os
import statistics
import sys
from collections import defaultdict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import cupy  # noqa: E402
import lsattn  # noqa: E402
from bench_gpu import events_ms as timed, kernel_ms  # noqa: E402
from bench_gpu_gated_delta import inputs  # noqa: E402
from lsattn.backends.cupy import _compile as cc  # noqa: E402
from lsattn.backends.cupy import gated_delta as cgd  # noqa: E402

SWITCHES = {"zr": "#define GD_ZR_SET 1", "csr": "#define GD_CSR_SET 1", "cpr": "#define GD_CPR_SET 1"}
_source, CUR = cc._source, [None]
for d in SWITCHES.values():
    assert sum(_source(f).count(d) for f in cc._SOURCES["gated_delta"]) == 1, d
BUILDS = {"new": {}, "main": {"zr": 0, "csr": 0, "cpr": 0}}


def patched(name):
    text = _source(name)
    for k, v in BUILDS[CUR[0] or "new"].items():
        text = text.replace(SWITCHES[k], SWITCHES[k].rsplit(" ", 1)[0] + f" {v}")
    return text


cc._source = patched
SPANS, REC = [], [False]
_real = cc.CupyOps.gd_tiers


def _recorded(self, *a, **k):
    if not REC[0]:
        return _real(self, *a, **k)
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    e0.record()
    r = _real(self, *a, **k)
    e1.record()
    SPANS.append((e0, e1))
    return r


cc.CupyOps.gd_tiers = _recorded


def use(b):
    if b != CUR[0]:
        CUR[0] = b
        cc._kernels.cache_clear()
        cc._launch.cache_clear()
    cgd._TORCH_PLANS.clear()


def fwd(x):
    return lsattn.loglinear_gated_delta(*x)


def scan_ms(f):
    torch.cuda.synchronize()
    SPANS.clear()
    REC[0] = True
    f()
    REC[0] = False
    torch.cuda.synchronize()
    (e0, e1), = SPANS
    return cupy.cuda.get_elapsed_time(e0, e1)


def main():
    MODE = sys.argv[1] if len(sys.argv) > 1 else "public"
    Ts = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "8192,32768").split(",")]
    ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    names = (sys.argv[4] if len(sys.argv) > 4 else "new,main").split(",")
    for T in Ts:
        run(MODE, T, ROUNDS, names)


def run(MODE, T, ROUNDS, names):
    x = inputs(T, torch.bfloat16)
    if MODE == "warm":
        for b in names:
            use(b)
            fwd(x)
        torch.cuda.synchronize()
        print(f"compiled T={T} builds {names}", flush=True)
    elif MODE == "kernels":
        res = {b: defaultdict(list) for b in names}
        for r in range(ROUNDS):
            for b in names:
                use(b)
                for k, v in kernel_ms(lambda: fwd(x)).items():
                    res[b][k].append(v)
        med = {b: {k: statistics.median(v) for k, v in d.items()} for b, d in res.items()}
        gd = sorted({k for d in med.values() for k in d if k.startswith("gd_")}, key=lambda k: -med[names[0]].get(k, 0))
        tot = [sum(med[b].get(k, 0.0) for k in gd) for b in names]
        print(f"T={T} kernels ms, medians of {ROUNDS}, builds {' / '.join(names)}: gd_ total "
              f"{' / '.join(f'{t:.4f}' for t in tot)}", flush=True)
        for k in gd:
            print(f"  {k[:14]:14s} {' / '.join(f'{med[b].get(k, 0.0):.4f}' for b in names)}", flush=True)
    else:
        res, outs = {b: ([], [], []) for b in names}, {}
        for r in range(ROUNDS + 1):
            for b in names:
                use(b)
                outs[b] = fwd(x)
                s = scan_ms(lambda: fwd(x))
                lat, pipe = timed(lambda: fwd(x), 1), timed(lambda: fwd(x), 10)
                if r:
                    for lst, v in zip(res[b], (s, lat, pipe)):
                        lst.append(v)
        bases = [outs[x].double() for x in ("main", "new") if x in outs]
        print(f"T={T} bf16, ms medians of {ROUNDS}: scan span | latency | pipelined | diff vs main, new", flush=True)
        for b in names:
            s, lat, pipe = (statistics.median(v) for v in res[b])
            d = " / ".join(f"{float((outs[b].double() - x).abs().max() / x.abs().max()):.1e}" for x in bases)
            print(f"  {b:5s} scan {s:.4f} | latency {lat:.4f} | pipelined {pipe:.4f} | diff {d}"
                  f"  (scan min {min(res[b][0]):.4f}, latency min {min(res[b][1]):.4f})", flush=True)


if __name__ == "__main__":
    main()
