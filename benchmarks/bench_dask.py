"""One long sequence through the Dask backend on a LocalCluster, against one in-memory NumPy call.

    python benchmarks/bench_dask.py [--T 1048576,4194304] [--d 64] [--block 65536] [--workers 2]
                                    [--ops loglinear_attention,exp_kernel_attention] [--out benchmarks/results]

Inputs are float32, ``(T, d)``, generated lazily by ``dask.array.random`` (seeded) so that workers
make their own blocks; the in-memory call gets the same numbers computed to NumPy. To keep the
result small on the client, both sides reduce the output to ``sum_j out[t, j]^2`` (``T`` numbers),
and the two reductions are compared (max relative difference).

Measured:

- wall time of the Dask compute (graph building included) and of the in-memory call;
- every worker's peak RSS: ``VmHWM`` of the worker process (interpreter, Dask and Numba included),
  and its RSS just before the compute. Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the
  parent's peak over ``fork`` + ``exec`` into it, so workers started by a process that had held a
  large array reported that process's peak (the 1971 MB once recorded for exp-kernel workers was
  the benchmark process's peak after the previous operator's in-memory call);
- the in-memory call in a fresh subprocess: inputs computed, then the peak RSS counter reset
  (``/proc/self/clear_refs``), then the call; reported as the process's peak RSS and that peak
  minus the RSS before the call ("above inputs": everything the call allocates, Numba's
  working copies included, which tracemalloc would partly miss).

Writes ``dask_cpu_table.md`` and ``dask_cpu.json`` into ``--out`` after every row, and
``dask_cpu.png`` at the end (``--replot dask_cpu.json`` redraws table and plot from saved rows).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from _common import md_table, proc_status_bytes, pyplot, reset_peak_rss, write_json

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
    if op in ("loglinear_attention", "loglinear_log_attention"):
        return [q, k, v, a, lam]
    beta = rng.random((T,), chunks=(block,), dtype=np.float32)
    return [q, k, v, a, beta, lam]


def call(op, args):
    """``op`` on arguments in ``inputs`` order (the hierarchical operator takes log_decay by keyword)."""
    import lsattn

    f = getattr(lsattn, op)
    if op == "loglinear_log_attention":
        return f(*args[:3], args[4], log_decay=args[3])
    return f(*args)


def status_mb(key):
    """``VmHWM`` (peak RSS) or ``VmRSS`` of this process, MB."""
    return proc_status_bytes(key) / 2**20


def warm(op):
    """One tiny in-memory call: JIT compilation (Numba) is not part of the timings."""
    import dask

    call(op, dask.compute(*inputs(op, 64, 8, 64), scheduler="sync"))


def in_memory_child(op, T, d, block, path):
    """Subprocess body: inputs to NumPy, one call, its reduction to ``path``.npy and numbers to .json."""
    import dask

    import lsattn

    warm(op)
    arrays = dask.compute(*inputs(op, T, d, block), scheduler="threads")
    gc.collect()
    before = status_mb("VmRSS")
    reset_peak_rss()
    t0 = time.perf_counter()
    ref = call(op, arrays)
    secs = time.perf_counter() - t0
    peak = status_mb("VmHWM")
    np.save(path + ".npy", np.sum(ref.astype(np.float64) ** 2, axis=-1))
    inner = lsattn.backends.select(op, np, arrays[0], None)
    res = {"mem_s": secs, "mem_peak_mb": peak, "mem_above_mb": peak - before,
           "input_mb": sum(a.nbytes for a in arrays) / 2**20, "inner": f"{inner.__module__}.{inner.__name__}"}
    with open(path + ".json", "w") as fh:
        json.dump(res, fh)


def run(op, T, d, block, workers):
    import distributed

    row = {"op": op, "T": T, "d": d, "block": block, "workers": workers}
    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40,
        memory_limit=0,  # no spilling to disk: the RSS is what the graph needs
    ) as cluster, distributed.Client(cluster) as client:
        client.run(warm, op)
        client.run(gc.collect)
        client.run(reset_peak_rss)
        row["worker_base_mb"] = sorted(client.run(status_mb, "VmRSS").values())
        t0 = time.perf_counter()
        out = call(op, inputs(op, T, d, block))
        red = client.compute((out * out).sum(axis=-1), sync=True)
        row["dask_s"] = time.perf_counter() - t0
        row["worker_peak_mb"] = sorted(client.run(status_mb, "VmHWM").values())

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ref")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", op, str(T), str(d), str(block), path], check=True)
        with open(path + ".json") as fh:
            row.update(json.load(fh))
        ref_red = np.load(path + ".npy")
    row["max_rel_diff"] = float(np.max(np.abs(red - ref_red)) / np.max(np.abs(ref_red)))
    return row


def table(rows):
    header = ["op", "T", "block (blocks)", "in-memory s", "in-memory peak RSS MB (above inputs)", "inputs MB", "Dask s",
              "worker peak RSS MB (before compute)", "max rel diff"]
    cells = [
        [r["op"], r["T"], f"{r['block']} ({-(-r['T'] // r['block'])})", f"{r['mem_s']:.1f}",
         f"{r['mem_peak_mb']:.0f} ({r['mem_above_mb']:.0f})", f"{r['input_mb']:.0f}", f"{r['dask_s']:.1f}",
         f"{', '.join(f'{m:.0f}' for m in r['worker_peak_mb'])} ({', '.join(f'{m:.0f}' for m in r['worker_base_mb'])})",
         f"{r['max_rel_diff']:.1e}"]
        for r in rows
    ]
    return "\n".join(md_table(header, cells)) + "\n"


def plot(rows, path):
    """Peak memory (worker peak RSS vs the in-memory call's) and wall time against T, per operator."""
    plt = pyplot()
    if plt is None:
        return
    fig, (ax_m, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, op in enumerate(dict.fromkeys(r["op"] for r in rows)):
        rs = sorted((r for r in rows if r["op"] == op), key=lambda r: r["T"])
        T, c = [r["T"] for r in rs], f"C{i}"
        ax_m.plot(T, [r["mem_peak_mb"] for r in rs], "o--", color=c, label=f"{op}: in-memory process")
        ax_m.plot(T, [max(r["worker_peak_mb"]) for r in rs], "s-", color=c, label=f"{op}: Dask worker (max)")
        ax_t.plot(T, [r["mem_s"] for r in rs], "o--", color=c, label=f"{op}: in-memory")
        ax_t.plot(T, [r["dask_s"] for r in rs], "s-", color=c, label=f"{op}: Dask, {rs[0]['workers']} workers")
    for ax, what in ((ax_m, "peak RSS (MB)"), (ax_t, "wall time (s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T (tokens), d = 64, float32")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    ax_m.set_title(f"peak memory (block {rows[0]['block']} tokens)")
    ax_t.set_title("wall time")
    ax_m.legend(fontsize=6)
    ax_t.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        op, T, d, block, path = argv[1:]
        return in_memory_child(op, int(T), int(d), int(block), path)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", default=str(1 << 20), help="sequence lengths, comma-separated")
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--block", type=int, default=1 << 16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ops", default="loglinear_attention,exp_kernel_attention")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    ap.add_argument("--replot", help="a dask_cpu.json written by an earlier run: table and plot only")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.replot:
        with open(args.replot) as fh:
            rows = json.load(fh)
        plot(rows, os.path.join(args.out, "dask_cpu.png"))
        print(table(rows))
        return None
    path = os.path.join(args.out, "dask_cpu_table.md")
    started = datetime.datetime.now().isoformat(timespec="seconds")
    rows = []
    for op in args.ops.split(","):
        for T in (int(t) for t in args.T.split(",")):
            rows.append(run(op, T, args.d, args.block, args.workers))
            print(rows[-1], flush=True)
            with open(path, "w") as fh:
                fh.write(f"<!-- started {started}; d = {args.d}, float32, {args.workers} workers x 1 thread; "
                         f"in-memory: {', '.join(sorted({r['inner'] for r in rows}))}; "
                         f"command: python benchmarks/bench_dask.py {' '.join(argv)} -->\n")
                fh.write(table(rows))
            write_json(os.path.join(args.out, "dask_cpu.json"), rows)
    plot(rows, os.path.join(args.out, "dask_cpu.png"))
    print(table(rows))


if __name__ == "__main__":
    main()
