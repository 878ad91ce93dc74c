"""Where one-call time of the exp-kernel / log attention numba path goes (issue 20, branch s11h20):
wall time, best of ``--repeat``, of the public call, of the backend function without the prologue
(``numba_cpu.log_forward`` / ``exp_forward``: layout, allocation and the kernel) and of the
prologue's finiteness check alone (``_nonfinite._all_finite`` on q, k, v), at B = 8, T = 4096 and
B = 1, T = 65536, float32, d = 64, on the thread count Numba was started with.

    NUMBA_NUM_THREADS=2 python benchmarks/device/cpu_s11h20.py [--repeat 10]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import _common as C  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    import numba
    import numpy as np

    import lsattn
    from lsattn import _nonfinite
    from lsattn.backends import numba_cpu

    rng = np.random.default_rng(0)
    for B, T in ((8, 4096), (1, 65536)):
        q, k, v = (rng.standard_normal((B, T, 64)).astype(np.float32) for _ in range(3))
        for name, pub, fwd in (("exp", lsattn.exp_kernel_attention, numba_cpu.exp_forward),
                               ("log", lsattn.log_attention, numba_cpu.log_forward)):
            t_pub = C.best_of(lambda: pub(q, k, v), args.repeat)
            t_fwd = C.best_of(lambda: fwd(q, k, v, True, None, False), args.repeat)
            t_fin = C.best_of(lambda: _nonfinite._all_finite(np, [(q, False), (k, False), (v, name == "log")]),
                              args.repeat)
            print(f"threads={numba.get_num_threads()} {name} B={B} T={T}: public {t_pub * 1e3:.2f} ms, backend "
                  f"function {t_fwd * 1e3:.2f} ms, finiteness check {t_fin * 1e3:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
