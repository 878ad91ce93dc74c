"""Benchmark loglinear_log_attention against T (NumPy float32, array-API path), beside the operators
it combines (log_attention, loglinear_attention) and the quadratic float64 reference.

    python benchmarks/bench_hierarchical.py            # short run (about a minute on 2 cores)
    python benchmarks/bench_hierarchical.py --max-log2 15

Writes benchmarks/results/hierarchical_cpu.md (table) and hierarchical_cpu.png (time vs T, log-log).
"""
from __future__ import annotations

import numpy as np

import lsattn
from _common import (RESULTS, best_of, cpu_name, md_table, plot_vs_T, print_row, python_numpy, sweep_parser,
                     write_text)
from lsattn import reference


def main():
    ap = sweep_parser(__doc__, min_log2=8, max_log2=13, d=32, heads=2, repeat=2)
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
        print_row(row)

    names = [n for n in rows[0] if n != "T"]
    lines = [
        "# loglinear_log_attention vs T (NumPy float32, array-API backend)",
        "",
        f"{args.heads} heads, d_k = d_v = {args.d}, best of {args.repeat}; {cpu_name()}, {python_numpy()}. "
        "Command: `python benchmarks/bench_hierarchical.py`. Times in ms; the machine was shared "
        "(2 cores, other jobs running), so compare columns, not absolute values.",
        "",
    ]
    cells = [[r["T"]] + ["-" if r[n] is None else f"{r[n] * 1e3:.1f}" for n in names]
             + [f"{r['loglinear_log_attention'] / r['log_attention']:.2f}"] for r in rows]
    lines += md_table(["T"] + names + ["hierarchical / log_attention"], cells)
    write_text(RESULTS / "hierarchical_cpu.md", lines)
    plot_vs_T(rows, names, f"NumPy float32, {args.heads} heads, d = {args.d}", RESULTS / "hierarchical_cpu.png")


if __name__ == "__main__":
    main()
