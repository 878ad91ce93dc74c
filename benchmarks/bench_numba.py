"""Numba CPU backend vs the array-API path on NumPy: batch 8, d_k = d_v = 64, float32 and float64.

Writes benchmarks/results/numba_cpu.md (table, machine, date) and numba_cpu.png. Compile time is
excluded (one warm-up call per operator and dtype before timing); each cell is the best of
``--repeat`` runs. Default T = 1024 .. 4096 (a few minutes on 2 cores); ``--max-T 65536`` for the
full range of issue 7.

    python benchmarks/bench_numba.py [--max-T 4096] [--repeat 2] [--ops exp_kernel_attention,...]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import numpy as np

import lsattn

HERE = os.path.dirname(os.path.abspath(__file__))
B, D = 8, 64


def inputs(op, T, dtype, rng):
    q = rng.standard_normal((B, T, D)).astype(dtype)
    k = rng.standard_normal((B, T, D)).astype(dtype)
    v = rng.standard_normal((B, T, D)).astype(dtype)
    if op in ("exp_kernel_attention", "log_attention"):
        return (q, k, v), {}
    L = lsattn.num_levels(T)
    a = -rng.uniform(0.0, 0.1, (B, T)).astype(dtype)
    lam = rng.uniform(0.5, 1.0, (B, T, L)).astype(dtype)
    if op == "loglinear_attention":
        return (q, k, v, a, lam), {}
    k = (k / np.linalg.norm(k, axis=-1, keepdims=True)).astype(dtype)
    beta = rng.uniform(0.0, 1.0, (B, T)).astype(dtype)
    return (q, k, v, a, beta, lam), {}


def best(f, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-T", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ops", default="exp_kernel_attention,log_attention,loglinear_attention,loglinear_gated_delta")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "numba_cpu"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    Ts = [T for T in (1024, 2048, 4096, 8192, 16384, 32768, 65536) if T <= args.max_T]
    rows = []
    for op in args.ops.split(","):
        f = getattr(lsattn, op)
        for dtype in (np.float32, np.float64):
            warm, kw = inputs(op, 16, dtype, rng)
            f(*warm, backend="numba", **kw)  # compile (or load from the cache) outside the timings
            for T in Ts:
                x, kw = inputs(op, T, dtype, rng)
                tn = best(lambda: f(*x, backend="numba", **kw), args.repeat)
                ta = best(lambda: f(*x, backend="array_api", **kw), args.repeat)
                err = float(np.max(np.abs(f(*x, backend="numba") - f(*x, backend="array_api"))))
                rows.append((op, np.dtype(dtype).name, T, tn, ta, ta / tn, err))
                print(f"{op:24s} {np.dtype(dtype).name:8s} T={T:6d} numba {tn*1e3:9.1f} ms  array_api {ta*1e3:9.1f} ms  "
                      f"x{ta/tn:5.1f}  max|diff| {err:.1e}", flush=True)
    write(rows, args, Ts)


def machine():
    cpus = os.cpu_count()
    try:
        import numba

        nb = f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads"
    except Exception:  # pragma: no cover
        nb = "numba ?"
    return f"{platform.processor() or platform.machine()}, {cpus} logical CPUs (shared with other jobs), {platform.python_implementation()} {platform.python_version()}, NumPy {np.__version__}, {nb}"


def write(rows, args, Ts):
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    lines = [
        "# Numba CPU backend vs array-API path (NumPy)",
        "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {machine()}.",
        f"Batch {B}, d_k = d_v = {D}, T = {Ts[0]} .. {Ts[-1]} (capped at --max-T {args.max_T} to run in a few minutes here),",
        f"best of {args.repeat}, compile time excluded. Command: `python benchmarks/bench_numba.py --max-T {args.max_T}`.",
        "",
        "| operator | dtype | T | numba (ms) | array_api (ms) | speed-up | max abs diff |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for op, dt, T, tn, ta, s, err in rows:
        lines.append(f"| {op} | {dt} | {T} | {tn*1e3:.1f} | {ta*1e3:.1f} | {s:.1f}x | {err:.1e} |")
    with open(args.out + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for op in dict.fromkeys(r[0] for r in rows):
        for dt, style in (("float32", "-o"), ("float64", "--s")):
            pts = [(r[2], r[5]) for r in rows if r[0] == op and r[1] == dt]
            if pts:
                ax.plot(*zip(*pts), style, label=f"{op} {dt}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("T")
    ax.set_ylabel("speed-up of numba over array_api (NumPy)")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_title(f"batch {B}, d = {D}; {datetime.date.today().isoformat()}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=110)


if __name__ == "__main__":
    main()
