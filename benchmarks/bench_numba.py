"""Numba CPU backend vs the array-API path on NumPy: batch 8, d_k = d_v = 64, float32 and float64.

Writes benchmarks/results/numba_cpu.md (table, machine, date, command) and numba_cpu.png. Compile
time is excluded (one warm-up call per operator and dtype before timing: it compiles, or loads the
on-disk cache); each cell is the best of ``--repeat`` runs. T = 1024 .. ``--max-T`` for numba; the
array-API path is timed up to ``--max-T-array-api`` (it is slower, and a best-of-3 at T = 65536 takes
minutes on a small machine); cells beyond are left empty.

    python benchmarks/bench_numba.py [--max-T 65536] [--max-T-array-api 16384] [--repeat 3] [--ops ...]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import lsattn
from _common import best_of, cpu_name, md_table, pyplot, python_numpy, today, write_text

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
    if op == "loglinear_log_attention":  # v read as log v; log level weights in (-1, 0)
        return (q, k, v, rng.uniform(-1.0, 0.0, (B, T, L)).astype(dtype)), {"log_decay": a}
    lam = rng.uniform(0.5, 1.0, (B, T, L)).astype(dtype)
    if op == "loglinear_attention":
        return (q, k, v, a, lam), {}
    k = (k / np.linalg.norm(k, axis=-1, keepdims=True)).astype(dtype)
    beta = rng.uniform(0.0, 1.0, (B, T)).astype(dtype)
    return (q, k, v, a, beta, lam), {}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-T", type=int, default=65536)
    ap.add_argument("--max-T-array-api", type=int, default=16384)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ops", default="exp_kernel_attention,log_attention,loglinear_attention,loglinear_gated_delta,"
                    "loglinear_log_attention")
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
                tn = best_of(lambda: f(*x, backend="numba", **kw), args.repeat, warmup=False)
                ta = err = None
                if T <= args.max_T_array_api:
                    ta = best_of(lambda: f(*x, backend="array_api", **kw), args.repeat, warmup=False)
                    diff = f(*x, backend="numba", **kw).astype(np.float64) - f(*x, backend="array_api", **kw)
                    err = float(np.max(np.abs(diff[np.isfinite(diff)])))
                rows.append((op, np.dtype(dtype).name, T, tn, ta, err))
                print(f"{op:24s} {np.dtype(dtype).name:8s} T={T:6d} numba {tn*1e3:9.1f} ms  array_api "
                      f"{'-' if ta is None else f'{ta*1e3:9.1f}'} ms  x{'-' if ta is None else f'{ta/tn:5.1f}'}", flush=True)
    write(rows, args, Ts)


def machine():
    cpus = os.cpu_count()
    try:
        import numba

        nb = f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads"
    except Exception:  # pragma: no cover
        nb = "numba ?"
    return f"{cpu_name()}, {cpus} logical CPUs (shared with other jobs), {python_numpy()}, {nb}"


def write(rows, args, Ts):
    lines = [
        "# Numba CPU backend vs array-API path (NumPy)",
        "",
        f"Date: {today()}. Machine: {machine()}.",
        f"Batch {B}, d_k = d_v = {D}, T = {Ts[0]} .. {Ts[-1]}; the array-API path timed up to T = {args.max_T_array_api}"
        f" (empty cells: not run, too slow for a best-of-{args.repeat} here). Best of {args.repeat}, compile time excluded.",
        f"Command: `python benchmarks/bench_numba.py {' '.join(sys.argv[1:])}`.",
        "",
    ]
    cells = []
    for op, dt, T, tn, ta, err in rows:
        a_ms, sp, e = ("", "", "") if ta is None else (f"{ta*1e3:.1f}", f"{ta/tn:.1f}x", f"{err:.1e}")
        cells.append([op, dt, T, f"{tn*1e3:.1f}", a_ms, sp, e])
    lines += md_table(["operator", "dtype", "T", "numba (ms)", "array_api (ms)", "speed-up", "max abs diff"], cells,
                      ["---", "---"] + ["---:"] * 5)
    write_text(args.out + ".md", lines)
    plt = pyplot()
    if plt is None:
        return
    fig, (ax0, ax) = plt.subplots(1, 2, figsize=(13, 5))
    for i, op in enumerate(dict.fromkeys(r[0] for r in rows)):
        for dt, style in (("float32", "-o"), ("float64", "--s")):
            mine = [r for r in rows if r[0] == op and r[1] == dt]
            color = f"C{i}"
            ax0.plot([r[2] for r in mine], [r[3] * 1e3 for r in mine], style, color=color, label=f"{op} {dt} numba")
            both = [r for r in mine if r[4] is not None]
            ax0.plot([r[2] for r in both], [r[4] * 1e3 for r in both], style, color=color, alpha=0.35, lw=0.8)
            ax.plot([r[2] for r in both], [r[4] / r[3] for r in both], style, color=color, label=f"{op} {dt}")
    for a in (ax0, ax):
        a.set_xscale("log", base=2)
        a.set_xlabel("T")
    ax0.set_yscale("log")
    ax0.set_ylabel("ms (numba solid; array_api faint)")
    ax0.legend(fontsize=6)
    ax.set_ylabel("speed-up of numba over array_api (NumPy)")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_title(f"batch {B}, d = {D}; {today()} (shared 2-core machine)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=110)


if __name__ == "__main__":
    main()
