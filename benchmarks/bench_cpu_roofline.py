"""CPU kernels against the machine's own matmul rate (issue 20), in one process.

Each operator on ``backend="numba"`` and ``backend="array_api"`` for B in ``--B``, T in ``--T``,
d_k = d_v = ``--d``, float32 and float64, against the float32 matmul rate of NumPy's BLAS (``--mm`` x
``--mm`` x ``--mm``), measured **interleaved** (one warm-up call of each first: compile or on-disk cache
load excluded): ``--repeat`` pairs, each the best of ``--inner`` matmuls, ``--settle`` seconds idle,
then the best of ``--inner`` operator calls; the fraction of each pair (the operator's GFLOP/s with
the flop count below over that pair's matmul GFLOP/s) and **the median of those fractions** ("of
matmul"). The matmul's own rate drifts on this kind of machine by far more than any kernel change
between runs of one command (143-202 GFLOP/s in six quiet runs, benchmarks/NOTES.md, session 16 lead):
a rate measured once at the start and compared with an operator timed a minute later measures the
drift as much as the operator; a pair's two timings are a second apart. Also printed: the best
operator time, its GFLOP/s, and "best / best" (the best operator call over the best matmul of the
row: the method before session 17, kept for comparison). Then B = 1, T = ``--threads-T`` on
``numba``, one thread against two, interleaved in one process (``numba.set_num_threads``; the
kernels split one sequence into ``parts(B)`` = the thread count read at the call): ``--repeat``
pairs of the best of ``--inner`` calls at each count (the order alternating between pairs), **the
median of the pairs' speed-ups**; ``--threads-subprocess``: each count in its own process under
``NUMBA_NUM_THREADS`` (best of ``--repeat``; the method before session 17).

Flop count (per batch element and token; the work of the token-by-token recurrence, whatever the
kernel does; multiply and add count 2):

- ``exp_kernel_attention``, ``log_attention``: ``4 d_k d_v`` (state update ``k v^T``, 2 d_k d_v;
  read ``q^T S``, 2 d_k d_v). Exponentials, the intra-chunk products of a chunked kernel and the
  denominators are not counted.
- ``loglinear_attention``: ``(2 + 2 P) d_k d_v``: the write ``k v^T`` plus one read ``q^T S`` per
  occupied Fenwick level, ``P`` = the mean number of occupied levels (popcount of t) over the call.
- ``loglinear_gated_delta``: ``(2 + 6 P) d_k d_v``: per occupied level ``k^T S`` and the rank-1
  projection update (4 d_k d_v) and the read (2 d_k d_v).
- ``loglinear_log_attention``: ``(2 + 2 P) d_k d_v`` as ``loglinear_attention`` (the summary
  ``exp(k)^T exp(log v)`` and one read per occupied level). The chunked kernel runs about that
  many in its products (per token ``2 d_k (d_v + 1)`` summary, ``2 P_c d_k (d_v + 1)`` slot reads,
  ``P_c`` the occupied chunk levels, about ``P - log2 C / 2``, and ``2 C (d_k + d_v + 1)`` for the
  pairs inside a chunk) plus ~``C + 3 d_k + d_v`` exponentials and ``d_v`` logarithms, not counted.

The fraction is of the *float32* matmul rate for both dtypes (the machine's ceiling for the
float32 target of issue 20). The machine is shared: other jobs run on the same cores, timings are
noisy (bests of ``--inner``, medians of ``--repeat`` pairs).
Each operator's calls start ``--settle`` seconds after the pair's matmul (default 0.3): NumPy's
OpenBLAS threads spin for ~0.1 s after a multithreaded product (the matmul, an array-API row), and a
Numba row timed inside that window shares the two cores with them (session 13, s13g20: exp-kernel
17% of the matmul rate right after the matmul against 31% back to back; `benchmarks/cpu_two_threads_ek.py`).

    python benchmarks/bench_cpu_roofline.py [--quick] [--ops a,b] [--T 4096,65536] [--B 1,8]

``--cpu-time``: the work on one core, robust to other jobs on the machine: Numba and OpenBLAS held
to one thread (set before NumPy is imported), every time in seconds of ``time.process_time`` and
the matmul rate re-measured before each operator (best of ``--repeat`` each); fractions of that
one-core rate. Prints only (numba rows; no thread table):

    python benchmarks/bench_cpu_roofline.py --cpu-time --B 8 --T 4096 --dtypes float32 --repeat 5

``--threads-only``: only the one- against two-thread table (no matmul, no rows; prints only), e.g. for
one operator with the load average before and after:

    python benchmarks/bench_cpu_roofline.py --threads-only --ops exp_kernel_attention --repeat 9

``--split-tasks``: on one thread, the tasks of the two-part split of one sequence (exp / log attention, the
hierarchical kernel), thread CPU time: the critical path and the ideal two-thread ratio (``split_tasks``):

    python benchmarks/bench_cpu_roofline.py --split-tasks --ops exp_kernel_attention,loglinear_log_attention --repeat 7
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys

import _common as C

OPS = ("exp_kernel_attention", "log_attention", "loglinear_attention", "loglinear_gated_delta",
       "loglinear_log_attention")
OUT = C.RESULTS / "cpu_roofline"


def mean_popcount(T):
    """Mean number of set bits of t over t = 0 .. T-1 (occupied Fenwick levels)."""
    total, bit = 0, 1
    while bit < T:  # bit b is set in floor(T / 2^(b+1)) 2^b + max(0, T mod 2^(b+1) - 2^b) of them
        period = bit * 2
        total += (T // period) * bit + max(0, T % period - bit)
        bit = period
    return total / T


def flops(op, B, T, d):
    """The documented flop count of one call (see the module docstring)."""
    P = mean_popcount(T)
    per = {"exp_kernel_attention": 4.0, "log_attention": 4.0, "loglinear_attention": 2 + 2 * P,
           "loglinear_gated_delta": 2 + 6 * P, "loglinear_log_attention": 2 + 2 * P}[op]
    return per * d * d * B * T


def inputs(op, B, T, d, dtype, seed=0):
    """Arguments and keywords of one call (as benchmarks/bench_numba.py)."""
    import numpy as np

    import lsattn

    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((B, T, d)).astype(dtype) for _ in range(3))
    if op in ("exp_kernel_attention", "log_attention"):
        return (q, k, v), {}
    L = lsattn.num_levels(T)
    a = -rng.uniform(0.0, 0.1, (B, T)).astype(dtype)
    if op == "loglinear_log_attention":
        return (q, k, v, rng.uniform(-1.0, 0.0, (B, T, L)).astype(dtype)), {"log_decay": a}
    lam = rng.uniform(0.5, 1.0, (B, T, L)).astype(dtype)
    if op == "loglinear_attention":
        return (q, k, v, a, lam), {}
    k = (k / np.linalg.norm(k, axis=-1, keepdims=True)).astype(dtype)
    return (q, k, v, a, rng.uniform(0.0, 1.0, (B, T)).astype(dtype), lam), {}


def op_call(op, backend, B, T, d, dtype):
    """The public call of one row, as a function of no arguments."""
    import lsattn

    f = getattr(lsattn, op)
    x, kw = inputs(op, B, T, d, dtype)
    return lambda: f(*x, backend=backend, **kw)


def time_op(op, backend, B, T, d, dtype, repeat, clock=C.CLOCKS["wall"], settle=0.0):
    import time

    fn = op_call(op, backend, B, T, d, dtype)
    time.sleep(settle)  # the previous row's BLAS threads asleep again (module docstring)
    return C.best_of(fn, repeat, clock=clock)


def pairs(fa, fb, repeat, inner, settle=0.0, alternate=False):
    """``repeat`` pairs (best of ``inner`` calls of fa, then ``settle`` seconds idle and the best of
    ``inner`` calls of fb; fb first in every other pair when ``alternate``), wall seconds; one
    untimed call of each first. Returns the two lists of bests, pair by pair."""
    import time

    def best(fn):
        ts = []
        for _ in range(inner):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return min(ts)

    fa(), fb()
    ta, tb = [], []
    for r in range(repeat):
        if alternate and r % 2:
            tb.append(best(fb))
            ta.append(best(fa))
        else:
            ta.append(best(fa))
            time.sleep(settle)  # the matmul's BLAS threads asleep again (module docstring)
            tb.append(best(fb))
    return ta, tb


def _median(xs):
    import statistics

    return statistics.median(xs)


def blas_cores():
    """``"NumPy's OpenBLAS: Haswell, SciPy's: Haswell"``: the kernel set each loaded OpenBLAS chose at
    load (``*openblas_get_corename*``; the chunked Numba kernels call SciPy's, the matmul NumPy's), and
    the CPU's model name. Issue 20's fractions depend on it: on an AVX-512 host where OpenBLAS picks
    Haswell (no small-matrix kernels, every product packed) the matmul and the kernels' products both
    run at AVX2 rates (benchmarks/NOTES.md, s15g20)."""
    import ctypes

    names = []
    try:
        with open("/proc/self/maps") as fh:
            libs = sorted({line.split()[-1] for line in fh if "openblas" in line and line.split()[-1].endswith(".so")})
        for path in libs:
            lib = ctypes.CDLL(path)
            for sym in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                        "openblas_get_corename"):
                if hasattr(lib, sym):
                    fn = getattr(lib, sym)
                    fn.restype = ctypes.c_char_p
                    who = "NumPy's" if "numpy" in path else "SciPy's" if "scipy" in path else os.path.basename(path)
                    names.append(f"{who} OpenBLAS: {fn().decode()}")
                    break
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        return "OpenBLAS core unknown"
    return ", ".join(names + ([f"CPU {model}"] if model else [])) or "OpenBLAS core unknown"


def matmul_call(n):
    """NumPy's float32 n x n x n matmul, as a function of no arguments."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    return lambda: a @ a


def matmul_rate(n, repeat, clock=C.CLOCKS["wall"]):
    """GFLOP/s of NumPy's float32 n x n x n matmul."""
    return 2 * n ** 3 / C.best_of(matmul_call(n), repeat, clock=clock) / 1e9


def cpu_time(args):
    """--cpu-time: each operator on numba in CPU seconds on one thread, beside the one-thread float32
    matmul rate measured just before it (the environment is set in main before NumPy is imported)."""
    import numpy as np

    import numba

    assert numba.get_num_threads() == 1
    clock = C.CLOCKS["cpu"]
    for op in args.ops:
        for dt in args.dtypes.split(","):
            for B in map(int, args.B.split(",")):
                for T in map(int, args.T.split(",")):
                    mm = matmul_rate(args.mm, args.repeat, clock)
                    t = time_op(op, "numba", B, T, args.d, np.dtype(dt), args.repeat, clock)
                    gf = flops(op, B, T, args.d) / t / 1e9
                    C.print_row(dict(op=op, dtype=dt, B=B, T=T, cpu_ms=t * 1e3, gflops=gf, matmul_1core=mm,
                                     frac=gf / mm))
    print(blas_cores())


def child(args):
    """--child: time the ops on numba at B = 1, T = --threads-T, float32; print one JSON line."""
    import numpy as np

    import numba

    res = {op: time_op(op, "numba", 1, args.threads_T, args.d, np.float32, args.repeat) for op in args.ops}
    print(json.dumps({"threads": numba.config.NUMBA_NUM_THREADS, "seconds": res}))


def threads_check(args):
    """B = 1, T = --threads-T, float32 on numba: one thread against two, interleaved in this process
    (module docstring); {1: {op: best s}, 2: {op: best s}, "speedup": {op: median of the pairs'}}."""
    import numpy as np

    import numba

    if args.threads_subprocess:
        return threads_subprocess(args)
    n0 = numba.get_num_threads()
    rows = {1: {}, 2: {}, "speedup": {}}
    for op in args.ops:
        fn = op_call(op, "numba", 1, args.threads_T, args.d, np.float32)

        def at(n, fn=fn):
            return lambda: (numba.set_num_threads(n), fn())

        try:
            t1, t2 = pairs(at(1), at(min(2, n0)), args.repeat, args.inner, alternate=True)
        finally:
            numba.set_num_threads(n0)
        rows[1][op], rows[2][op] = min(t1), min(t2)
        rows["speedup"][op] = _median([a / b for a, b in zip(t1, t2)])
        print(f"{op} B=1 T={args.threads_T}: 1 thread {min(t1) * 1e3:.1f} ms, {min(2, n0)} threads {min(t2) * 1e3:.1f} ms "
              f"(bests); speed-up {rows['speedup'][op]:.2f}x (median of {args.repeat} interleaved pairs: "
              f"{' '.join(f'{a / b:.2f}' for a, b in zip(t1, t2))})", flush=True)
    return rows


def threads_subprocess(args):
    """--threads-subprocess: each thread count in its own process (NUMBA_NUM_THREADS), best of --repeat."""
    rows = {}
    for n in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(n))
        cmd = [sys.executable, __file__, "--child", "--ops", ",".join(args.ops), "--threads-T", str(args.threads_T),
               "--d", str(args.d), "--repeat", str(args.repeat)]
        res = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        rows[n] = res["seconds"]
        print(f"NUMBA_NUM_THREADS={n}: " + ", ".join(f"{op} {t * 1e3:.1f} ms" for op, t in res["seconds"].items()), flush=True)
    rows["speedup"] = {op: rows[1][op] / rows[2][op] for op in args.ops}
    return rows


def split_tasks(args):
    """--split-tasks: B = 1, T = --threads-T, float32, on ONE thread: the tasks of the two-part split of
    exp / log attention (``_ek_first`` / ``_ek_part``: pass 1 part 0 / 1, pass 2 part 0 / 1) and of the
    hierarchical kernel (``_keep_task``, HIER_KEEP's two passes; ``_stream``'s parts, its old split), each
    the best thread CPU time of --repeat rounds (robust to other jobs), against the one-part kernel: the
    critical path (the slower task of each pass), "ideal" = one part / critical path (the two-thread
    speed-up if both cores ran as one does) and "extra" = all tasks / one part (work done twice)."""
    import time

    import numba
    import numpy as np

    from lsattn.backends import _numba_chunked as KC, _numba_hier_chunked as KH
    from lsattn.backends._numba_kernels import level_table
    from lsattn.backends.numba_cpu import _minus_inf

    numba.set_num_threads(1)
    T, d, f32 = args.threads_T, args.d, np.float32
    lo = _minus_inf(np, np.dtype(f32))
    for op in args.ops:
        x, kw = inputs(op, 1, T, d, f32)
        q, k, v = (np.ascontiguousarray(a[0]) for a in x[:3])
        e = lambda *sh: np.zeros(sh, f32)  # noqa: E731
        out = np.empty((T, d), f32)
        if op in ("exp_kernel_attention", "log_attention"):
            lv, Cc = op == "log_attention", KC.chunk_for(d, d)
            bd = KC._part_bounds(-(-T // Cc), 2, KC.SUMMARY_COST[int(lv)], KC._keep_saved(q.itemsize, lv))
            st = (np.full(d, lo, f32), np.full(d, lo, f32), e(d, d), e(d))
            H = np.empty((2, d)), np.empty((2, d + 1)), np.empty((2, d, d + 1))
            fin, KX = (e(d), e(d), e(d, d), e(d)), e(-(-T // Cc), 2 * d)  # KX: the kept column maxima

            def first(j):
                return lambda: KC._ek_first(q, k, v, *st, lv, lo, Cc, j, bd, H[0][j], H[1][j], H[2][j], out, KX)

            def part(j, P=2):
                return lambda: KC._ek_part(q, k, v, *st, lv, lo, Cc, P, j, bd, *H, out, *fin, KX)

            groups = {"one part": {"": part(0, 1)}, "split": {"1.0": first(0), "1.1": first(1), "2.0": part(0), "2.1": part(1)}}
            note = f"bounds {[int(b) for b in bd]}"
        elif op == "loglinear_log_attention":
            lw, a = np.ascontiguousarray(x[3][0]), np.ascontiguousarray(kw["log_decay"][0])
            Cc, nlev = KH.chunk_for(d, d), T.bit_length()
            lev, nch = level_table(Cc), T // Cc
            st, fin = (e(0, d), e(0, d), e(0, d, d), e(0, d)), (e(0, d), e(0, d), e(0, d, d), e(0, d))
            bd = KH._keep_bounds(nch, 2, KH.KEEP_SUMMARY_COST, KH.KEEP_MERGE_COST)
            nk = bd[2] - bd[1]
            K = (np.empty((nlev, d)), np.empty((nlev, d)), np.empty((nlev, d, d)), np.empty((nlev, d)), e(nk, d, d + 1),
                 e(nk, Cc, d + 1), np.empty((nk, d)), np.empty((nk, d)), np.empty(nk))

            def stream(j, P=2):
                return lambda: KH._stream(q, k, v, lw, a, 0, nlev, *st, lo, Cc, lev, P, j, out, *fin)

            def task(j, pas):
                return lambda: KH._keep_task(q, k, v, lw, a, 0, nlev, *st, lo, Cc, lev, 2, j, pas, bd, out, *fin, *K)

            groups = {"one part": {"": stream(0, 1)}, "HIER_KEEP": {"1.0": task(0, 0), "1.1": task(1, 0), "2.0": task(0, 1),
                                                                     "2.1": task(1, 1)},
                      "old split": {"0": stream(0), "1": stream(1)}}
            note = (f"HIER_KEEP bounds {[int(b) for b in bd]}, old split starts "
                    f"{[int(b) for b in KH._part_starts(nch, 2, KH.SUMMARY_COST)]}")
        else:
            continue
        fns = {(g, n): f for g, fs in groups.items() for n, f in fs.items()}
        for f in fns.values():
            f()  # compile / warm
        best = {key: float("inf") for key in fns}
        for _ in range(args.repeat):
            for key, f in fns.items():
                t = time.thread_time()
                f()
                best[key] = min(best[key], time.thread_time() - t)
        one = best[("one part", "")]
        print(f"{op} B=1 T={T} one thread, thread CPU ms (best of {args.repeat}; load {os.getloadavg()[0]:.2f}): one part "
              f"{one * 1e3:.2f}; {note}", flush=True)
        for g, fs in groups.items():
            if g == "one part":
                continue
            ts = {n: best[(g, n)] for n in fs}
            passes = sorted({n.split(".")[0] for n in ts}) if "." in next(iter(ts)) else [None]
            cp = sum(max(t for n, t in ts.items() if p is None or n.startswith(p + ".")) for p in passes)
            print(f"  {g}: " + " ".join(f"{n} {t * 1e3:.2f}" for n, t in ts.items()) + f"; critical path {cp * 1e3:.2f}, "
                  f"ideal {one / cp:.3f}, extra {sum(ts.values()) / one:.3f}", flush=True)


def crossover(args):
    """Each of --ops with a chunked kernel (exp-kernel attention, log-linear Mamba-2 and Gated
    DeltaNet, hierarchical), float32 on numba, token-by-token vs chunked kernel, B in --B,
    T = 16 .. 2048."""
    import numpy as np

    from lsattn.backends import numba_cpu

    keep_ek, keep_ll, keep_h, rows = (numba_cpu.EK_CHUNKED_MIN_T, dict(numba_cpu.LL_CHUNKED_MIN_T),
                                      numba_cpu.HIER_CHUNKED_MIN_T, [])

    def threshold(op, min_t):
        if op == "exp_kernel_attention":
            numba_cpu.EK_CHUNKED_MIN_T = min_t
        elif op == "loglinear_log_attention":
            numba_cpu.HIER_CHUNKED_MIN_T = min_t
        else:
            numba_cpu.LL_CHUNKED_MIN_T[op] = min_t

    try:
        for op in (op for op in args.ops if op in ("exp_kernel_attention", "loglinear_log_attention") + tuple(keep_ll)):
            for B in map(int, args.B.split(",")):
                for T in (16, 32, 64, 128, 256, 512, 1024, 2048):
                    t = {}
                    for name, min_t in (("token", 1 << 62), ("chunked", 1)):
                        threshold(op, min_t)
                        t[name] = time_op(op, "numba", B, T, args.d, np.float32, max(args.repeat, 5))
                    rows.append(dict(op=op, B=B, T=T, token_ms=t["token"] * 1e3, chunked_ms=t["chunked"] * 1e3,
                                     load=os.getloadavg()[0]))
                    C.print_row(rows[-1])
    finally:
        numba_cpu.EK_CHUNKED_MIN_T, numba_cpu.HIER_CHUNKED_MIN_T = keep_ek, keep_h
        numba_cpu.LL_CHUNKED_MIN_T.update(keep_ll)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--B", default="1,8")
    ap.add_argument("--T", default="4096,65536")
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved pairs per row (module docstring)")
    ap.add_argument("--inner", type=int, default=3, help="calls per side of a pair, the best taken")
    ap.add_argument("--mm", type=int, default=2048, help="matmul size")
    ap.add_argument("--max-work-array-api", type=int, default=8 * 16384,
                    help="array_api is timed only where B * T <= this (it is slow at the largest sizes)")
    ap.add_argument("--threads-T", type=int, default=65536)
    ap.add_argument("--settle", type=float, default=0.3, help="seconds idle before each timed row (docstring)")
    ap.add_argument("--no-threads", action="store_true", help="skip the one- vs two-thread runs")
    ap.add_argument("--threads-only", action="store_true", help="only the one- vs two-thread runs of --ops (prints only)")
    ap.add_argument("--split-tasks", action="store_true",
                    help="one thread: the two-part split's tasks of exp / log / hierarchical at --threads-T (split_tasks)")
    ap.add_argument("--threads-subprocess", action="store_true",
                    help="one- vs two-thread runs in subprocesses under NUMBA_NUM_THREADS (the method before session 17)")
    ap.add_argument("--quick", action="store_true", help="B = 8, T = 4096, float32, one pair of single calls, threads at T = 16384")
    ap.add_argument("--crossover", action="store_true", help="token-by-token vs chunked kernels (exp-kernel, Mamba-2, Gated DeltaNet, hierarchical), T = 16 .. 2048")
    ap.add_argument("--cpu-time", action="store_true",
                    help="one thread, CPU seconds (time.process_time), numba only, prints only (see above)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--name", default=OUT.name, help="results file stem under benchmarks/results/ (default %(default)s)")
    args = ap.parse_args()
    args.ops = args.ops.split(",")
    if args.child:
        return child(args)
    if args.cpu_time:
        for var in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ[var] = "1"
        return cpu_time(args)
    if args.split_tasks:
        return split_tasks(args)
    if args.threads_only:
        print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
        threads_check(args)
        print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
        return None
    out = OUT.parent / args.name
    if args.crossover:
        rows = crossover(args)
        return None if args.no_write else C.write_json(str(out) + "_crossover.json", rows)
    if args.quick:
        args.B, args.T, args.dtypes, args.repeat, args.inner, args.threads_T = "8", "4096", "float32", 1, 1, 16384
    import numpy as np

    load = [os.getloadavg()]
    mmf, mm_flops = matmul_call(args.mm), 2 * args.mm ** 3
    mm = mm_flops / C.best_of(mmf, args.repeat) / 1e9
    importlib.import_module("scipy.linalg")  # the kernels' BLAS, loaded for blas_cores
    args.cores = blas_cores()
    print(f"float32 matmul {args.mm}^3: {mm:.1f} GFLOP/s (best of {args.repeat} at the start; {args.cores})", flush=True)
    rows = []
    for op in args.ops:
        for dt in args.dtypes.split(","):
            for B in map(int, args.B.split(",")):
                for T in map(int, args.T.split(",")):
                    for backend in ("numba", "array_api"):
                        if backend == "array_api" and B * T > args.max_work_array_api:
                            continue
                        fl = flops(op, B, T, args.d)
                        tm, to = pairs(mmf, op_call(op, backend, B, T, args.d, np.dtype(dt)), args.repeat, args.inner,
                                       settle=args.settle)
                        fr = [(fl / b) / (mm_flops / a) for a, b in zip(tm, to)]
                        t = min(to)
                        row = dict(op=op, backend=backend, dtype=dt, B=B, T=T, ms=t * 1e3, gflops=fl / t / 1e9,
                                   frac=_median(fr), frac_lo=min(fr), frac_hi=max(fr), matmul=mm_flops / min(tm) / 1e9,
                                   frac_best=fl / t / (mm_flops / min(tm)))
                        rows.append(row)
                        C.print_row(row)
    load.append(os.getloadavg())
    threads = None if args.no_threads else threads_check(args)
    load.append(os.getloadavg())
    if not args.no_write:
        write(args, mm, rows, threads, load, out)


def write(args, mm, rows, threads, load, stem):
    import numba

    head = [
        "# CPU kernels against the matmul rate (issue 20)",
        "",
        f"Date: {C.utc_now()}. Machine: {C.cpu_name()}, {os.cpu_count()} logical CPUs, **shared with other jobs**"
        f" (other engineers' tests and benchmarks may run at the same time: timings are noisy; {args.repeat} interleaved pairs per"
        f" row of the best of {args.inner} matmuls and, {args.settle} s later, the best of {args.inner} operator calls;"
        f" load average (1, 5, 15 min) before the table {_load(load[0])}, after it {_load(load[1])}, after the"
        f" thread runs {_load(load[2])}),"
        f" {C.python_numpy()}, Numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads).",
        f"Command: `python benchmarks/bench_cpu_roofline.py {' '.join(sys.argv[1:])}`.",
        "",
        f"NumPy float32 matmul {args.mm}^3 in the same process: {mm:.1f} GFLOP/s at the start (best of {args.repeat});"
        f" each row's fraction is the median over its pairs of the operator's GFLOP/s over the pair's matmul GFLOP/s"
        f" (\"range\": the pairs' lowest and highest; \"best / best\": the row's best operator call over its best matmul,"
        f" the method before session 17; {args.cores}).",
        "Flop counts (per batch element and token, d = d_k = d_v): exp-kernel / log attention 4 d^2; log-linear "
        "Mamba-2 and hierarchical (2 + 2P) d^2; Gated DeltaNet (2 + 6P) d^2, P = mean popcount of t (occupied "
        "Fenwick levels); see the script's docstring. Compile time excluded.",
        "",
    ]
    table = C.md_table(["operator", "backend", "dtype", "B", "T", "ms (best)", "GFLOP/s", "matmul (best)", "of matmul",
                        "range", "best / best"],
                       [[r["op"], r["backend"], r["dtype"], r["B"], r["T"], f"{r['ms']:.1f}", f"{r['gflops']:.2f}",
                         f"{r['matmul']:.1f}", f"{100 * r['frac']:.1f}%",
                         f"{100 * r['frac_lo']:.1f}-{100 * r['frac_hi']:.1f}%", f"{100 * r['frac_best']:.1f}%"]
                        for r in rows], align="---:")
    lines = head + table
    if threads:
        how = ("NUMBA_NUM_THREADS = 1 vs 2 (subprocesses, best of each)" if args.threads_subprocess else
               f"one thread vs two in one process, speed-up the median of {args.repeat} interleaved pairs")
        lines += ["", f"B = 1, T = {args.threads_T}, float32, numba, {how}:", ""]
        lines += C.md_table(["operator", "1 thread (ms, best)", "2 threads (ms, best)", "speed-up"],
                            [[op, f"{threads[1][op] * 1e3:.1f}", f"{threads[2][op] * 1e3:.1f}",
                              f"{threads['speedup'][op]:.2f}x"] for op in args.ops], align="---:")
    C.write_text(str(stem) + ".md", lines)
    C.write_json(str(stem) + ".json", {"date": C.utc_now(), "machine": C.cpu_name(), "cpus": os.cpu_count(),
                                      "shared_machine": True, "command": sys.argv[1:], "matmul_f32_gflops": mm,
                                      "rows": rows, "threads": threads, "load_average": load})
    plt = C.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels, vals, colors = [], [], []
    for r in rows:
        labels.append(f"{r['op'].replace('loglinear_', 'll_')} {r['backend'][:5]} {r['dtype'][-2:]} B{r['B']} T{r['T']}")
        vals.append(100 * r["frac"])
        colors.append("C0" if r["backend"] == "numba" else "C1")
    ax.barh(range(len(vals)), vals, color=colors)
    ax.set_yticks(range(len(vals)), labels, fontsize=5)
    ax.invert_yaxis()
    for x in (15, 30):
        ax.axvline(x, color="grey", lw=0.6, ls="--")
    ax.set_xlabel(f"% of the float32 matmul rate ({mm:.0f} GFLOP/s; blue numba, orange array_api)")
    ax.set_title(f"{C.utc_now()}, shared {os.cpu_count()}-core machine (noisy)", fontsize=9)
    fig.tight_layout()
    fig.savefig(str(stem) + ".png", dpi=120)


def _load(avg):
    return "/".join(f"{x:.2f}" for x in avg)


if __name__ == "__main__":
    main()
