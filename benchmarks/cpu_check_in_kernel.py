"""One-thread CPU time of `log_attention` / `exp_kernel_attention` on `numba`, the non-finite check in the
chunked kernel (``KernelCheck``) against the prologue's own pass (``checks_inputs`` switched off), and the
backend function alone (benchmarks/NOTES.md, session 12, s12j20). ``time.process_time``, best of --repeat,
the variants alternated: meaningful on a loaded machine, unlike wall clock. Run with NUMBA_NUM_THREADS=1
OPENBLAS_NUM_THREADS=1."""
import argparse
import time

import numpy as np

import lsattn
from lsattn.backends import numba_cpu


def best(f, n):
    f()
    ts = []
    for _ in range(n):
        t0 = time.process_time()
        f()
        ts.append(time.process_time() - t0)
    return min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((a.B, a.T, a.d)).astype(np.float32) for _ in range(3))
    m = rng.standard_normal((2048, 2048)).astype(np.float32)
    rate = 2 * 2048**3 / best(lambda: m @ m, 3) / 1e9
    flops = 4 * a.B * a.T * a.d * a.d  # 4 d_k d_v per token (issue 20's count)
    print(f"matmul one thread {rate:.1f} GFLOP/s; B={a.B} T={a.T} d={a.d} float32, ms CPU (best of {a.repeat})")
    for name, pub, fwd in (("log", lsattn.log_attention, numba_cpu.log_forward),
                           ("exp", lsattn.exp_kernel_attention, numba_cpu.exp_forward)):
        for r in range(a.rounds):
            row = {}
            for variant in ("kernel-check", "prologue-pass", "backend-fn"):
                fwd.checks_inputs = variant == "kernel-check"
                if variant == "backend-fn":
                    t = best(lambda: fwd(q, k, v, True, None, False), a.repeat)
                else:
                    t = best(lambda: pub(q, k, v, backend="numba"), a.repeat)
                row[variant] = t
            fwd.checks_inputs = True
            print(name, r, "  ".join(f"{kk} {t * 1e3:.2f} ms ({flops / t / 1e9 / rate * 100:.1f}%)" for kk, t in row.items()))


if __name__ == "__main__":
    main()
