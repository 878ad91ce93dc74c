"""Benchmark loglinear_gated_delta against T (NumPy float32, array-API path): the chunkwise form, the
recurrent form and the quadratic float64 reference, beside log-linear Mamba-2 (loglinear_attention)
for scale; then the decode cost per token against the stream offset.

    python benchmarks/bench_gated_delta.py             # short run (a minute or two on 2 cores)
    python benchmarks/bench_gated_delta.py --max-log2 17 --d 128

Writes benchmarks/results/gated_delta_cpu.md (tables) and gated_delta_cpu.png (time vs T, log-log).
"""
from __future__ import annotations

import time

import numpy as np

import lsattn
from _common import (RESULTS, best_of, cpu_name, md_table, plot_vs_T, print_row, python_numpy, sweep_parser,
                     write_text)
from lsattn import gated_delta, reference


def inputs(rng, H, T, d, offset=0):
    """float32 q, k (L2-normalised), v, log_decay, beta in [0, 1], level weights."""
    q, k, v = (rng.standard_normal((H, T, d)).astype(np.float32) for _ in range(3))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    a = (-0.05 * rng.random((H, T))).astype(np.float32)
    b = rng.random((H, T)).astype(np.float32)
    lam = rng.standard_normal((H, T, lsattn.num_levels(offset + T))).astype(np.float32)
    return q, k, v, a, b, lam


def form(name, C):
    """One form of the array-API implementation, called directly (inputs are already valid)."""
    fn = {"chunk": gated_delta._chunkwise, "recurrent": gated_delta._recurrent}[name]
    return lambda *x: fn(*x, C, None, False)[0]


def against_T(args, rng):
    rows = []
    for p in range(args.min_log2, args.max_log2 + 1):
        T, H, d = 2**p, args.heads, args.d
        x = inputs(rng, H, T, d)
        row = {"T": T}
        row["chunkwise"] = best_of(lambda: form("chunk", args.chunk)(*x), args.repeat)
        row["recurrent"] = best_of(lambda: form("recurrent", args.chunk)(*x), 1) if T <= args.rec_max else None
        row["reference (float64)"] = best_of(lambda: reference.loglinear_gated_delta(*x), 1) if T <= args.ref_max else None
        row["loglinear_attention (Mamba-2)"] = best_of(
            lambda: lsattn.loglinear_attention(x[0], x[1], x[2], x[3], x[5], chunk_size=args.chunk, backend="array_api"),
            args.repeat,
        )
        rows.append(row)
        print_row(row)
    return rows


def decode(args, rng):
    """Per-token time of the recurrent form (T = 1 calls) after a chunkwise prefill of p tokens."""
    rows = []
    H, d = args.heads, args.d
    for p in range(8, args.decode_max_log2 + 1, 2):
        P = 2**p
        _, state = gated_delta._chunkwise(*inputs(rng, H, P, d), args.chunk, None, True)
        steps = [inputs(rng, H, 1, d, offset=P + i) for i in range(args.decode_steps)]
        t0 = time.perf_counter()
        s = state
        for x in steps:
            _, s = gated_delta._recurrent(*x, args.chunk, s, True)
        dt = (time.perf_counter() - t0) / args.decode_steps
        rows.append({"offset": P, "levels": state.tensors["levels"].shape[-3], "state bytes": state.nbytes, "per token": dt})
        print(rows[-1], flush=True)
    return rows


def write(args, rows, drows):
    names = [n for n in rows[0] if n != "T"]
    lines = [
        "# loglinear_gated_delta vs T (NumPy float32, array-API path)",
        "",
        f"{args.heads} heads, d_k = d_v = {args.d}, chunk {args.chunk}, normalised keys, beta in [0, 1]; best of "
        f"{args.repeat} (recurrent and reference: one run); {cpu_name()}, {python_numpy()}. "
        "Command: `python benchmarks/bench_gated_delta.py`. Times in ms; the machine was shared "
        "(2 cores, other jobs running), so compare columns, not absolute values.",
        "",
    ]
    cells = []
    for r in rows:
        ratio = "-" if r["recurrent"] is None else f"{r['recurrent'] / r['chunkwise']:.1f}"
        cells.append([r["T"]] + ["-" if r[n] is None else f"{r[n] * 1e3:.1f}" for n in names]
                     + [ratio, f"{r['chunkwise'] / r['loglinear_attention (Mamba-2)']:.1f}"])
    lines += md_table(["T"] + names + ["recurrent / chunkwise", "chunkwise / Mamba-2"], cells)
    lines += [
        "",
        f"## Decoding: recurrent form, one token per call, after a prefill of `offset` tokens "
        f"(mean of {args.decode_steps} tokens)",
        "",
    ]
    lines += md_table(
        ["offset", "levels in the state", "state size", "time per token"],
        [[r["offset"], r["levels"], f"{r['state bytes'] / 1024:.0f} KiB", f"{r['per token'] * 1e6:.0f} us"] for r in drows],
    )
    write_text(RESULTS / "gated_delta_cpu.md", lines)
    plot_vs_T(rows, names, f"loglinear_gated_delta, NumPy float32, {args.heads} heads, d = {args.d}",
              RESULTS / "gated_delta_cpu.png")


def main():
    ap = sweep_parser(__doc__, min_log2=6, max_log2=16, d=64, heads=2, chunk=64, repeat=2)
    ap.add_argument("--ref-max", type=int, default=2048, help="largest T for the quadratic reference")
    ap.add_argument("--rec-max", type=int, default=8192, help="largest T for the recurrent form")
    ap.add_argument("--decode-max-log2", type=int, default=16)
    ap.add_argument("--decode-steps", type=int, default=64)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = against_T(args, rng)
    drows = decode(args, rng)
    write(args, rows, drows)


if __name__ == "__main__":
    main()
