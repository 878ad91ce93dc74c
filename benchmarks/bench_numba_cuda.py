"""Numba CUDA backend vs the array-API path on CuPy (and the cupy RawKernel backend where it has the
operator): batch 8, d_k = d_v = 64, float32, T = 1024 .. 65536, on one GPU.

Every cell is the median of CUDA-event timings of one public call (inputs already on the GPU,
outputs left there) after a warm-up call that also compiles; repeats stop at ``--repeat`` or once
a cell has taken ``--budget`` seconds; a backend whose call passes ``--max-call`` seconds is not
timed at larger T. The "rel diff" column is max |out - out_array_api| / max |out_array_api| of
the float32 outputs. ``--sweep`` also times numba_cuda block shapes (value columns per block of 32
threads) at one T. Writes <out>.md (table, device, date, command), <out>.png and <out>.json.

    python benchmarks/bench_numba_cuda.py [--out benchmarks/results/numba_cuda_DATE] [--max-T 65536]
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import lsattn  # noqa: E402
from _common import pyplot, utc_now, write_json, write_text  # noqa: E402
from lsattn.backends import numba_cuda as nc  # noqa: E402

B, D = 8, 64
OPS = ["exp_kernel_attention", "log_attention", "loglinear_attention", "loglinear_gated_delta"]
CUPY_OPS = {"exp_kernel_attention", "loglinear_attention"}


def inputs(cp, op, T, seed=0):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    q, k, v = (rng.standard_normal((B, T, D)).astype(f32) for _ in range(3))
    if op in ("exp_kernel_attention", "log_attention"):
        return [cp.asarray(x) for x in (q, k, v)]
    L = lsattn.num_levels(T)
    a = -rng.uniform(0.0, 0.1, (B, T)).astype(f32)
    lam = rng.uniform(0.5, 1.0, (B, T, L)).astype(f32)
    if op == "loglinear_attention":
        return [cp.asarray(x) for x in (q, k, v, a, lam)]
    k = (k / np.linalg.norm(k, axis=-1, keepdims=True)).astype(f32)
    beta = rng.uniform(0.0, 1.0, (B, T)).astype(f32)
    return [cp.asarray(x) for x in (q, k, v, a, beta, lam)]


def timed(cp, fn, repeat, budget):
    """(median seconds, last output) of CUDA-event timings after one warm-up call."""
    out = fn()
    cp.cuda.get_current_stream().synchronize()
    times, start = [], time.perf_counter()
    for _ in range(repeat):
        e0, e1 = cp.cuda.Event(), cp.cuda.Event()
        e0.record()
        out = fn()
        e1.record()
        e1.synchronize()
        times.append(cp.cuda.get_elapsed_time(e0, e1) / 1e3)
        if time.perf_counter() - start > budget:
            break
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-T", type=int, default=65536)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--budget", type=float, default=4.0, help="seconds of repeats per cell")
    ap.add_argument("--max-call", type=float, default=3.0, help="a backend slower than this is not timed at larger T")
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--sweep", type=int, default=0, help="T of the block-shape sweep (0: none)")
    ap.add_argument("--decode", type=int, default=0, help="offset of the decode-step timing (0: none)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", f"numba_cuda_{datetime.date.today():%Y-%m-%d}"))
    args = ap.parse_args()
    import cupy as cp

    dev = cp.cuda.runtime.getDeviceProperties(0)
    device = dev["name"].decode() if isinstance(dev["name"], bytes) else str(dev["name"])
    Ts = [T for T in (1024, 2048, 4096, 8192, 16384, 32768, 65536) if T <= args.max_T]
    rows, sweep, decode = [], [], []
    for op in args.ops.split(","):
        f = getattr(lsattn, op)
        names = ["numba_cuda", "array_api"] + (["cupy"] if op in CUPY_OPS else [])
        dropped = set()
        for T in Ts:
            x = inputs(cp, op, T)
            cell = {}
            for name in names:
                if name in dropped:
                    continue
                t, out = timed(cp, lambda: f(*x, backend=name), args.repeat, args.budget)
                cell[name] = (t, out)
                if t > args.max_call:
                    dropped.add(name)
            base = cell.get("array_api", (None, None))[1]
            for name, (t, out) in cell.items():
                rel = None
                if base is not None and name != "array_api":
                    rel = float(cp.abs(out - base).max() / cp.abs(base).max())
                rows.append(dict(op=op, T=T, backend=name, seconds=t, rel_diff=rel))
                print(f"{op:24s} T={T:6d} {name:10s} {t*1e3:10.2f} ms" + (f"  rel diff {rel:.1e}" if rel is not None else ""),
                      flush=True)
            del x, cell, base
            cp.get_default_memory_pool().free_all_blocks()
        if args.sweep:
            x = inputs(cp, op, args.sweep)
            for cols in (1, 2, 4, 8, 16):
                nc.COLUMNS = cols
                t, _ = timed(cp, lambda: f(*x, backend="numba_cuda"), 3, args.budget)
                sweep.append(dict(op=op, T=args.sweep, columns=cols, seconds=t))
                print(f"sweep {op:24s} T={args.sweep} columns/block {cols:2d} {t*1e3:9.2f} ms", flush=True)
            nc.COLUMNS = None
        if args.decode:  # one token with the state of a prefix: per-token latency when generating
            P = args.decode
            x = inputs(cp, op, P + 1)
            for name in names:
                try:
                    _, st = f(*(t[:, :P] for t in x), return_state=True, backend=name)
                    step = [t[:, P:P + 1] for t in x]
                    t, _ = timed(cp, lambda: f(*step, state=st, backend=name), 30, args.budget)
                except Exception as exc:  # noqa: BLE001  keep the rest of the run
                    print(f"decode {op} {name} failed: {type(exc).__name__}: {exc}", flush=True)
                    continue
                decode.append(dict(op=op, offset=P, backend=name, seconds=t))
                print(f"decode {op:24s} offset={P} {name:10s} {t*1e6:9.1f} us", flush=True)
        save(args, cp, device, rows, sweep, Ts, decode)  # after every operator: a cut-short run keeps what it has


def save(args, cp, device, rows, sweep, Ts, decode=()):
    meta = dict(device=device, date=utc_now(),
                command="python " + " ".join(sys.argv), cupy=cp.__version__,
                numba=__import__("numba").__version__, batch=B, d=D, dtype="float32")
    write_json(args.out + ".json", dict(meta=meta, rows=rows, sweep=sweep, decode=list(decode)))
    write_md(args.out, meta, rows, sweep, Ts, decode)
    plot(args.out, meta, rows)


def write_md(out, meta, rows, sweep, Ts, decode=()):
    lines = ["# Numba CUDA backend vs array-API on CuPy (and the cupy backend)", "",
             f"Device: {meta['device']}; date: {meta['date']}; CuPy {meta['cupy']}, Numba {meta['numba']}.",
             f"batch {meta['batch']}, d_k = d_v = {meta['d']}, {meta['dtype']}; median of CUDA-event timed calls after a "
             "warm-up call; `rel diff` = max |out - out_array_api| / max |out_array_api|.", "",
             f"Command: `{meta['command']}`", "",
             "| op | T | numba_cuda ms | array_api ms | cupy ms | array_api / numba_cuda | rel diff (numba_cuda) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    by = {(r["op"], r["T"], r["backend"]): r for r in rows}
    for op in dict.fromkeys(r["op"] for r in rows):
        for T in Ts:
            n, a, c = (by.get((op, T, b)) for b in ("numba_cuda", "array_api", "cupy"))
            if not (n or a or c):
                continue
            ms = lambda r: f"{r['seconds']*1e3:.2f}" if r else "-"  # noqa: E731
            ratio = f"{a['seconds'] / n['seconds']:.1f}x" if (n and a) else "-"
            rel = f"{n['rel_diff']:.1e}" if (n and n["rel_diff"] is not None) else "-"
            lines.append(f"| {op} | {T} | {ms(n)} | {ms(a)} | {ms(c)} | {ratio} | {rel} |")
    if sweep:
        lines += ["", f"Block shapes (numba_cuda; value columns per block of 32 threads, the rest row groups), T = {sweep[0]['T']}:",
                  "", "| op | columns/block | ms |", "|---|---:|---:|"]
        lines += [f"| {s['op']} | {s['columns']} | {s['seconds']*1e3:.2f} |" for s in sweep]
    if decode:
        lines += ["", f"Decode step (one token with the state of {decode[0]['offset']} tokens; median of 30, microseconds):",
                  "", "| op | numba_cuda us | array_api us | cupy us |", "|---|---:|---:|---:|"]
        dby = {(d["op"], d["backend"]): d["seconds"] * 1e6 for d in decode}
        for op in dict.fromkeys(d["op"] for d in decode):
            cells = [f"{dby[op, b]:.0f}" if (op, b) in dby else "-" for b in ("numba_cuda", "array_api", "cupy")]
            lines.append(f"| {op} | " + " | ".join(cells) + " |")
    write_text(out + ".md", lines)
    print("\n".join(lines))


def plot(out, meta, rows):
    plt = pyplot()
    if plt is None:
        return
    ops = list(dict.fromkeys(r["op"] for r in rows))
    fig, axes = plt.subplots(1, len(ops), figsize=(4.2 * len(ops), 3.8), squeeze=False)
    for ax, op in zip(axes[0], ops):
        for name, style in (("numba_cuda", "o-"), ("array_api", "s--"), ("cupy", "^:")):
            pts = [(r["T"], r["seconds"] * 1e3) for r in rows if r["op"] == op and r["backend"] == name]
            if pts:
                ax.loglog(*zip(*pts), style, label=name, base=2)
        ax.set_title(op, fontsize=10)
        ax.set_xlabel("T")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("ms per call")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{meta['device']}, {meta['date']}: batch {meta['batch']}, d={meta['d']}, {meta['dtype']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=110)


if __name__ == "__main__":
    main()
