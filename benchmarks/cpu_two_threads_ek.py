"""Two threads against one for `exp_kernel_attention` / `log_attention` on numba at B = 8, T = 4096, d = 64,
float32 (issue 20; benchmarks/NOTES.md, session 13, s13g20): the conditions that could make the roofline's
two-thread row slower than half the one-thread time, alternated call by call in one process.

    python benchmarks/cpu_two_threads_ek.py [--repeat 15]        # on the quiet machine (wall clock)

Per operator and condition: the best wall time of ``--repeat`` calls (ms), the process CPU time of that
call (all threads; ~2x wall when both threads work throughout), and the fraction of the float32 2048^3
matmul rate measured first (the roofline's denominator). Conditions, each set up before every timed call:

- ``roofline``: the public call right after a 2048^3 matmul (NumPy's OpenBLAS threads spin for ~0.1 s
  after it: the roofline times the exp-kernel row there);
- ``after-sleep``: the public call after 0.3 s of sleep (those threads asleep again; Numba's too);
- ``back-to-back``: the public call right after the previous one (the roofline's best-of loop);
- ``prologue-pass``: as back-to-back with the prologue's own finiteness pass before the kernel
  (``checks_inputs`` off: the path before session 12's in-kernel check);
- ``kick``: as back-to-back, with an empty two-iteration ``prange`` just before the call (Numba's worker
  awake when the call starts: the pass's side effect without its work);
- ``kernel``: ``ek_chunked`` alone on preallocated arrays (no prologue, no allocation).

Then the back-to-back public call in subprocesses: ``NUMBA_NUM_THREADS=1`` (the one-thread reference,
wall = CPU), and two threads with ``OMP_WAIT_POLICY=ACTIVE`` / ``PASSIVE`` (the OpenMP worker spinning or
sleeping between parallel regions; Numba's default threading layer here is ``omp``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def setup():
    import numpy as np

    import lsattn
    from lsattn.backends import _numba_chunked as KC
    from lsattn.backends import numba_cpu
    from lsattn.exp_kernel import _minus_inf

    B, T, d = 8, 4096, 64
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((B, T, d)).astype(np.float32) for _ in range(3))
    lo = _minus_inf(np, np.float32)
    (qf, kf, vf), rows = numba_cpu._inputs((q, 2), (k, 2), (v, 2))
    seg = np.array([0, T], np.int64)
    m0 = np.full((B, d), lo, np.float32)
    S0, z0 = np.zeros((B, d, d), np.float32), np.zeros((B, d), np.float32)
    out = np.empty((B, T, d), np.float32)
    m1, n1, S1, z1 = (np.empty_like(x) for x in (m0, m0, S0, z0))
    ops = {}
    for name, lv, fwd in (("exp_kernel_attention", False, numba_cpu.exp_forward),
                          ("log_attention", True, numba_cpu.log_forward)):
        public = getattr(lsattn, name)
        ops[name] = dict(
            public=lambda public=public: public(q, k, v, backend="numba"),
            kernel=lambda lv=lv: KC.ek_chunked(qf, kf, vf, rows, seg, m0, m0, S0, z0, lv, lo, KC.chunk_for(d, d),
                                               KC.parts(B), out, m1, n1, S1, z1),
            fwd=fwd)
    a = rng.standard_normal((2048, 2048)).astype(np.float32)
    return ops, a, 4 * B * T * d * d


def _kick():
    """An empty parallel loop (wakes Numba's worker threads), compiled."""
    import numba
    import numpy as np

    @numba.njit(parallel=True)
    def kick(x):
        for i in numba.prange(x.shape[0]):
            x[i] = i

    buf = np.zeros(numba.get_num_threads())
    kick(buf)
    return lambda: kick(buf)


def timed(f):
    w0, c0 = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - w0, time.process_time() - c0


def child(args):
    """Back-to-back public calls in this process's thread setting; one JSON line {op: [wall, cpu]}."""
    ops, _, _ = setup()
    res = {}
    for name, o in ops.items():
        o["public"]()
        res[name] = min((timed(o["public"]) for _ in range(args.repeat)), key=lambda x: x[0])
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    import numba

    ops, a, flops = setup()
    kick = _kick()
    for o in ops.values():
        o["public"]()  # compile or load from the cache; starts Numba's threads
    mm = 2 * 2048 ** 3 / min(timed(lambda: a @ a)[0] for _ in range(5)) / 1e9
    print(f"float32 matmul 2048^3 {mm:.1f} GFLOP/s; Numba {numba.get_num_threads()} threads, layer "
          f"{numba.threading_layer()}; load {os.getloadavg()[0]:.2f}", flush=True)
    conds = {
        "roofline": lambda: a @ a,
        "after-sleep": lambda: time.sleep(0.3),
        "back-to-back": lambda: None,
        "prologue-pass": lambda: None,
        "kick": kick,
        "kernel": lambda: None,
    }
    best = {}
    for _ in range(args.repeat):
        for name, o in ops.items():
            for cond, before in conds.items():
                f = o["kernel"] if cond == "kernel" else o["public"]
                o["fwd"].checks_inputs = cond != "prologue-pass"
                f()  # the previous call (back-to-back), compile / cache load on the first round
                before()
                w, c = timed(f)
                o["fwd"].checks_inputs = True
                if (name, cond) not in best or w < best[name, cond][0]:
                    best[name, cond] = (w, c)
    for (name, cond), (w, c) in best.items():
        print(f"{name:22s} {cond:14s} wall {w * 1e3:6.2f} ms  cpu {c * 1e3:6.2f} ms  "
              f"{100 * flops / w / 1e9 / mm:5.1f}% of matmul", flush=True)
    for env in ({"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}, {"OMP_WAIT_POLICY": "ACTIVE"},
                {"OMP_WAIT_POLICY": "PASSIVE"}):
        out = subprocess.run([sys.executable, __file__, "--child", "--repeat", str(args.repeat)],
                             env=dict(os.environ, **env), check=True, capture_output=True, text=True)
        res = json.loads(out.stdout.splitlines()[-1])
        print(" ".join(f"{k}={v}" for k, v in env.items()) + ": " + ", ".join(
            f"{name} wall {w * 1e3:.2f} / cpu {c * 1e3:.2f} ms ({100 * flops / w / 1e9 / mm:.1f}%)"
            for name, (w, c) in res.items()), flush=True)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
