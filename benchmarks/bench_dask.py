"""One long sequence through the Dask backend on a LocalCluster, against one in-memory NumPy call.

    python benchmarks/bench_dask.py [--T 1048576] [--d 64] [--block 65536] [--workers 2]
                                    [--ops loglinear_attention,exp_kernel_attention] [--out benchmarks/results]

Inputs are float32, ``(T, d)``, generated lazily by ``dask.array.random`` (seeded) so that workers
make their own blocks; the in-memory call gets the same numbers computed to NumPy. To keep the
result small on the client, both sides reduce the output to ``sum_j out[t, j]^2`` (``T`` numbers),
and the two reductions are compared (max relative difference).

Measured: wall time of the in-memory call and of the Dask compute (graph building included);
peak memory of the in-memory call (tracemalloc peak above the inputs: NumPy reports its buffers
to tracemalloc) and of every Dask worker (peak RSS of the worker process, which includes the
Python interpreter and imported libraries, ~150-250 MB). Writes ``dask_cpu.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def inputs(op, T, d, block, seed=0):
    """Lazy float32 inputs of ``op`` chunked into blocks of ``block`` tokens."""
    import dask.array as da

    import lsattn

    rng = da.random.default_rng(seed)
    x = lambda *s: rng.standard_normal(s, chunks=(block,) + s[1:], dtype=np.float32)
    q, k, v = x(T, d), x(T, d) * np.float32(d**-0.5), x(T, d)
    if op in ("log_attention", "exp_kernel_attention"):
        return [q, k, v]
    a = -rng.random((T,), chunks=(block,), dtype=np.float32) * np.float32(0.1)
    lam = rng.random((T, lsattn.num_levels(T)), chunks=(block, -1), dtype=np.float32)
    if op == "loglinear_attention":
        return [q, k, v, a, lam]
    beta = rng.random((T,), chunks=(block,), dtype=np.float32)
    return [q, k, v, a, beta, lam]


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def warm(op):
    """One tiny in-memory call: JIT compilation (Numba) is not part of the timings."""
    import dask

    import lsattn

    getattr(lsattn, op)(*dask.compute(*inputs(op, 64, 8, 64), scheduler="sync"))


def run(op, T, d, block, workers):
    import dask
    import distributed

    import lsattn

    f = getattr(lsattn, op)
    lazy = inputs(op, T, d, block)
    row = {"op": op, "T": T, "d": d, "block": block, "workers": workers}

    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40,
        memory_limit=0,
    ) as cluster, distributed.Client(cluster) as client:
        client.run(warm, op)
        t0 = time.perf_counter()
        out = f(*lazy)
        red = client.compute((out * out).sum(axis=-1), sync=True)
        row["dask_s"] = time.perf_counter() - t0
        row["worker_peak_mb"] = sorted(client.run(peak_rss_mb).values())

    warm(op)
    arrays = dask.compute(*lazy, scheduler="threads")
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    ref = f(*arrays)
    row["mem_s"] = time.perf_counter() - t0
    row["mem_peak_mb"] = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    tracemalloc.stop()
    ref_red = np.sum(ref.astype(np.float64) ** 2, axis=-1)
    row["max_rel_diff"] = float(np.max(np.abs(red - ref_red)) / np.max(np.abs(ref_red)))
    row["input_mb"] = sum(a.nbytes for a in arrays) / 2**20
    return row


def table(rows):
    head = "| op | T | d | block | in-memory s | in-memory peak MB (above inputs) | Dask s | workers | worker peak RSS MB | inputs MB | max rel diff |\n"
    head += "|---|---|---|---|---|---|---|---|---|---|---|\n"
    for r in rows:
        head += (
            f"| {r['op']} | {r['T']} | {r['d']} | {r['block']} | {r['mem_s']:.1f} | {r['mem_peak_mb']:.0f} | "
            f"{r['dask_s']:.1f} | {r['workers']} | {', '.join(f'{m:.0f}' for m in r['worker_peak_mb'])} | "
            f"{r['input_mb']:.0f} | {r['max_rel_diff']:.1e} |\n"
        )
    return head


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=1 << 20)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--block", type=int, default=1 << 16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ops", default="loglinear_attention,exp_kernel_attention")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = ap.parse_args(argv)
    rows = []
    for op in args.ops.split(","):
        rows.append(run(op, args.T, args.d, args.block, args.workers))
        print(rows[-1], flush=True)
    import lsattn

    inner = lsattn.backends.select(rows[0]["op"], np, np.zeros((1, 1)), None)
    md = table(rows)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "dask_cpu_table.md")
    with open(path, "w") as fh:
        fh.write(f"<!-- {datetime.datetime.now().isoformat(timespec='seconds')}; in-memory implementation: {inner.__module__}.{inner.__name__}; "
                 f"command: python benchmarks/bench_dask.py {' '.join(argv or sys.argv[1:])} -->\n")
        fh.write(md)
    print(md)


if __name__ == "__main__":
    main()
