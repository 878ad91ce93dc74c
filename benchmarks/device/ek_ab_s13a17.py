"""Session 13, branch s13a17 (issue 17): the exp-kernel / log_attention backward before / after in one run
(a development aid; results in NOTES.md).

    python benchmarks/device/ek_ab_s13a17.py BASE_DIR T1,T2 DTYPES [ROUNDS]
        # fwd+bwd of the public calls (B=2, H=16, d=64; ``out.float().square().mean()``), log_attention
        # and exp_kernel_attention, DTYPES (fp32,bf16), with exp_kernel_bwd.cu and exp_kernel_bwd_tc.cu from
        # BASE_DIR ("base": the code before this branch, saved there as <name>.txt; its shared memory as
        # that code's Config.smem computed it) and the tree's ("new"); the variants alternate ROUNDS
        # times (3), each a median of 5 calls; then the median over rounds and new / base; then the
        # backward's kernels of one call per variant (torch.profiler, us per call)
"""
import os
import statistics
import sys

import torch

sys.path[:0] = ["benchmarks", "benchmarks/device"]
from bench_gpu import cuda_time  # noqa: E402
from lsattn.backends.cupy import _compile  # noqa: E402
from ek_log_s12e17 import _calls, per_kernel  # noqa: E402

FILES = ("exp_kernel_bwd.cu", "exp_kernel_bwd_tc.cu")
source, smem = _compile._source, _compile.Config.smem


def base_smem(cfg, kernel):
    """The base code's shared memory of the backward kernels (session 12's Config.smem), else the tree's."""
    CH, DKP, DVP, QLD, es = cfg.CH, cfg.DKP, cfg.DVP, cfg.QLD, cfg.itemsize
    lv, lo = (DVP, CH * DVP) if cfg.logv else (0, 0)
    if kernel == "ekb_dq":
        return (4 * CH * DKP + 2 * DVP * QLD + CH * DVP + CH * QLD + DVP * DKP + 2 * DKP + 2 * CH + lo + 2 * lv) * es
    if kernel == "ekb_dkdv":
        return (3 * CH * DKP + DKP * QLD + 2 * DVP * QLD + CH * DVP + 2 * CH * QLD + 2 * DKP * DVP + 2 * DKP
                + 2 * CH + lo + lv) * es
    if kernel in ("ekb_dq_tc", "ekb_dkdv_tc"):
        LDK, LDV = DKP + 8, DVP + 8
        bt, ft = (4 * CH * LDK + 2 * CH * LDV + DKP * LDV + 2 * lo // DVP * LDV) * 2, lo + 4 * DKP + 5 * CH + 256 + 4 * DVP
        if kernel == "ekb_dkdv_tc":
            prod = (2 * CH * LDK + DKP * LDV + 2 * lo // DVP * LDV) * 2
            bt, ft = (2 * CH * LDK + 2 * CH * LDV) * 2 + max(prod, CH * (DKP + DVP) * 4), lo + 3 * DKP + 4 * CH + 128 + 2 * DVP
        return bt + ft * 4 + CH * 4
    return smem(cfg, kernel)


def use(base_dir):
    """The backward's sources from ``base_dir`` (None: the tree's); compiled kernels dropped."""
    def src(name):
        if base_dir is None or name not in FILES:
            return source(name)
        with open(os.path.join(base_dir, name + ".txt")) as f:
            return f.read()

    _compile._source = src
    _compile.Config.smem = smem if base_dir is None else base_smem
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()


def calls(T, dtype):
    """fwd+bwd of log_attention and exp_kernel_attention (ek_log_s12e17's calls)."""
    c = _calls(T, dtype)
    return {"log": c["log train"], "exp": c["exp train"]}


def main():
    base_dir, Ts, dts = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], sys.argv[3].split(",")
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    print(torch.cuda.get_device_name(0), " ".join(sys.argv[1:]), flush=True)
    variants = {"base": base_dir, "new": None}
    res = {}
    for T in Ts:
        for dt in dts:
            fns = calls(T, {"fp32": torch.float32, "bf16": torch.bfloat16}[dt])
            for r in range(rounds):
                for name, d in variants.items():
                    use(d)
                    for op, fn in fns.items():
                        res.setdefault((T, dt, op, name), []).append(cuda_time(fn, warmup=2, reps=5))
            for op in fns:
                b, n = (statistics.median(res[(T, dt, op, v)]) for v in variants)
                print(f"T={T} {dt} {op} fwd+bwd  base {b:8.3f} ms  new {n:8.3f} ms  new/base {n / b:6.3f}", flush=True)
            for name, d in variants.items():
                use(d)
                per = per_kernel(fns["log"], n=2, match=lambda s: s.startswith("ekb"))
                print(f"    {name:5s} log " + "  ".join(f"{k} {us:8.1f}" for k, (us, _) in sorted(per.items())), flush=True)
            del fns
            torch.cuda.empty_cache()
    use(None)


if __name__ == "__main__":
    main()
