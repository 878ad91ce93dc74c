"""Session 14, branch s14e17 (issue 17): where ``log_attention``'s fwd+bwd spends more than
``exp_kernel_attention``'s, per kernel, with the backward's sources before / after this branch in one run
(a development aid; results in NOTES.md).

    python benchmarks/device/ek_ab_s14e17.py BASE_DIR T DTYPES [ROUNDS]
        # B=2, H=16, d=64 public calls (ek_log_s12e17's fwd+bwd: ``out.float().square().mean()``), DTYPES
        # (fp32,bf16): exp_kernel_bwd.cu / exp_kernel_bwd_tc.cu from BASE_DIR (<name>.txt: the code before
        # this branch, "base") and the tree's ("new") alternate ROUNDS times (3), each a median of 5 calls;
        # then per kernel (torch.profiler, us per call, mean of 3 calls) exp and log under both variants
        # (the shared memory of both as the tree's Config.smem: it only grows on this branch)
"""
import statistics
import sys

import torch

sys.path[:0] = ["benchmarks", "benchmarks/device"]
from bench_gpu import cuda_time  # noqa: E402
from lsattn.backends.cupy import _compile  # noqa: E402
from ek_log_s12e17 import _calls, per_kernel  # noqa: E402
import ek_ab_s13a17  # noqa: E402


def use(base_dir):
    """The backward's sources from ``base_dir`` (None: the tree's; ``ek_ab_s13a17.use``), both with the tree's
    shared memory sizes (this branch only adds to them)."""
    ek_ab_s13a17.use(base_dir)
    _compile.Config.smem = ek_ab_s13a17.smem


def main():
    base_dir, T, dts = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    print(torch.cuda.get_device_name(0), " ".join(sys.argv[1:]), flush=True)
    variants = {"base": base_dir, "new": None}
    for dt in dts:
        c = _calls(T, {"fp32": torch.float32, "bf16": torch.bfloat16}[dt])
        fns = {"exp": c["exp train"], "log": c["log train"]}
        res = {}
        for _ in range(rounds):
            for name, d in variants.items():
                use(d)
                for op, fn in fns.items():
                    res.setdefault((name, op), []).append(cuda_time(fn, warmup=2, reps=5))
        med = {key: statistics.median(x) for key, x in res.items()}
        for name in variants:
            e, lg = med[(name, "exp")], med[(name, "log")]
            print(f"T={T} {dt} fwd+bwd {name:4s}  exp {e:8.3f} ms  log {lg:8.3f} ms  log/exp {lg / e:6.3f}", flush=True)
        per = {}
        for name, d in variants.items():
            use(d)
            for op, fn in fns.items():
                per[(name, op)] = per_kernel(fn, n=3)
        cols = [("base", "exp"), ("new", "exp"), ("base", "log"), ("new", "log")]
        names = sorted(set().union(*(p.keys() for p in per.values())), key=lambda k: -per[("new", "log")].get(k, (0, 0))[0])
        print("  per kernel (us per call)           " + "  ".join(f"{v}/{o:3s}" for v, o in cols), flush=True)
        for k in names:
            print(f"  {k[:34]:34s} " + "  ".join(f"{per[col].get(k, (0.0, 0))[0]:8.1f}" for col in cols), flush=True)
        print(f"  {'total':34s} " + "  ".join(f"{sum(us for us, _ in per[col].values()):8.1f}" for col in cols), flush=True)
        del c, fns
        torch.cuda.empty_cache()
    use(None)


if __name__ == "__main__":
    main()
