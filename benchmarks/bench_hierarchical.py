"""Benchmark loglinear_log_attention against T (NumPy float32, array-API path), beside the operators
it combines (log_attention, loglinear_attention) and the quadratic float64 reference.

    python benchmarks/bench_hierarchical.py            # short run (about a minute on 2 cores)
    python benchmarks/bench_hierarchical.py --max-log2 15

Writes benchmarks/results/hierarchical_cpu.md (table) and hierarchical_cpu.png (time vs T, log-log).
"""
from __future__ import annotations

import argparse
import pathlib
import platform
import time

import numpy as np

import lsattn
from lsattn import reference

RESULTS = pathlib.Path(__file__).parent / "results"


def best_of(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-log2", type=int, default=8)
    ap.add_argument("--max-log2", type=int, default=13)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ref-max", type=int, default=1024, help="largest T for the quadratic reference")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for p in range(args.min_log2, args.max_log2 + 1):
        T, H, d = 2**p, args.heads, args.d
        q, k, lv = (rng.standard_normal((H, T, d)).astype(np.float32) for _ in range(3))
        lam = rng.standard_normal((H, T, lsattn.num_levels(T))).astype(np.float32)
        a = (-0.05 * rng.random((H, T))).astype(np.float32)
        be = "array_api"
        row = {"T": T}
        row["loglinear_log_attention"] = best_of(
            lambda: lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a, backend=be), args.repeat)
        row["log_attention"] = best_of(lambda: lsattn.log_attention(q, k, lv, backend=be), args.repeat)
        row["loglinear_attention"] = best_of(
            lambda: lsattn.loglinear_attention(q, k, lv, a, np.exp(lam), backend=be), args.repeat)
        row["reference (float64)"] = (
            best_of(lambda: reference.loglinear_log_attention(q, k, lv, lam, a), 1) if T <= args.ref_max else None)
        rows.append(row)
        print(", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)

    names = [n for n in rows[0] if n != "T"]
    RESULTS.mkdir(exist_ok=True)
    lines = [
        "# loglinear_log_attention vs T (NumPy float32, array-API backend)",
        "",
        f"{args.heads} heads, d_k = d_v = {args.d}, best of {args.repeat}; {platform.processor() or platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}, NumPy {np.__version__}. "
        "Command: `python benchmarks/bench_hierarchical.py`. Times in ms; the machine was shared "
        "(2 cores, other jobs running), so compare columns, not absolute values.",
        "",
        "| T | " + " | ".join(names) + " | hierarchical / log_attention |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for r in rows:
        cells = ["-" if r[n] is None else f"{r[n] * 1e3:.1f}" for n in names]
        lines.append(f"| {r['T']} | " + " | ".join(cells) + f" | {r['loglinear_log_attention'] / r['log_attention']:.2f} |")
    (RESULTS / "hierarchical_cpu.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: table only")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in names:
        pts = [(r["T"], r[n]) for r in rows if r[n] is not None]
        ax.loglog([p[0] for p in pts], [p[1] * 1e3 for p in pts], "o-", label=n)
    ax.set_xlabel("T (tokens)")
    ax.set_ylabel("time (ms)")
    ax.set_title(f"NumPy float32, {args.heads} heads, d = {args.d}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "hierarchical_cpu.png", dpi=110)


if __name__ == "__main__":
    main()
