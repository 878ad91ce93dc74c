"""Packed variable-length streams on the CPU (issue 19): a packed call with ``state=`` and
``return_state=True`` (each segment continuing its own stream) against one call on the packed
length, the packed call without state, and the per-segment loop (what the prologue ran before the
numba backend computed packed streams itself), for every operator, on ``numba`` and ``array_api``.

Shape: 16 segments whose lengths follow a long-tailed (Pareto) distribution and sum to ``--totals``
tokens (16K and 64K), packed along T, ``--heads`` heads, d_k = d_v = ``--d``, float32 NumPy arrays.
The incoming state: a packed prefill of a quarter of each segment's length (so the streams continue
at different offsets); "one call + state" continues one stream at the sum of those. Times are
wall-clock (``--clock process``: CPU time of the process, for a shared machine), best of ``--repeat``
after a warm-up call; ``--decode P``: a decoding step of ``--docs`` streams at offset ``P`` instead;
``--count-calls`` adds the number of Python and C function calls of each run
(the array operations and the host work around them, independent of the load).

    python benchmarks/bench_varlen_cpu.py            # writes benchmarks/results/varlen_cpu.{md,json}

``--smoke``: 512 tokens, d = 16, one repeat (CI runs it with ``--out`` a temporary folder,
``tests/test_varlen.py``).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _common import RESULTS, best_of, cpu_name, md_table, python_numpy, utc_now, write_json, write_text  # noqa: E402
from bench_varlen_gpu import doc_lengths  # noqa: E402

OPS = ["log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"]


def make_inputs(op, H, T, d, L, seed=0):
    """float32 inputs of ``op`` ``(H, T, ...)`` in its positional order (hierarchical: log_decay last)."""
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal((H,) + s).astype(np.float32)  # noqa: E731
    q, k, v = f(T, d) * d**-0.5, f(T, d) * d**-0.5, f(T, d)
    if op in ("log_attention", "exp_kernel_attention"):
        return [q, k, v]
    a = np.log(rng.uniform(0.9, 1.0, (H, T))).astype(np.float32)
    lam = rng.uniform(0.5, 1.5, (H, T, L)).astype(np.float32)
    if op == "loglinear_attention":
        return [q, k, v, a, lam]
    if op == "loglinear_gated_delta":
        k = k / np.linalg.norm(k, axis=-1, keepdims=True)
        return [q, k, v, a, rng.uniform(0, 1, (H, T)).astype(np.float32), lam]
    return [q, k, v, np.log(lam), a]


def call(lsattn, op, x, **kw):
    f = getattr(lsattn, op)
    return f(*x[:4], log_decay=x[4], **kw) if op == "loglinear_log_attention" else f(*x, **kw)


def tokens(x, s0, s1):
    return [y[..., s0:s1] if y.ndim == 2 else y[..., s0:s1, :] for y in x]


def bench(args, lsattn, op, backend, total):
    from lsattn import _varlen

    if args.decode:  # one new token per stream, every stream at offset args.decode
        lens, pre = np.ones(args.docs, np.int64), np.full(args.docs, args.decode, np.int64)
    else:
        lens = doc_lengths(args.docs, total, args.seed)
        pre = np.maximum(lens // 4, 0)
    cu, cu_pre = (np.concatenate([[0], np.cumsum(n)]) for n in (lens, pre))
    L = lsattn.num_levels(int(cu_pre[-1]) + total)  # the one-stream call with state reads up to there
    x = make_inputs(op, args.heads, total, args.d, L, args.seed)
    xp_ = make_inputs(op, args.heads, int(cu_pre[-1]), args.d, L, args.seed + 1)
    _, st0 = call(lsattn, op, xp_, cu_seqlens=cu_pre, return_state=True, backend=backend)
    _, st1 = call(lsattn, op, xp_, return_state=True, backend=backend)  # one stream at offset sum(pre)
    spec = SimpleNamespace(name=op)

    def loop():  # the per-segment calls the prologue made before (split, call, merge)
        olds = _varlen.split(st0, spec, (args.heads,), args.docs)
        res = [call(lsattn, op, tokens(x, s0, s1), state=o, return_state=True, backend=backend)
               for o, s0, s1 in zip(olds, cu[:-1].tolist(), cu[1:].tolist())]
        return np.concatenate([r[0] for r in res], axis=-2), _varlen.merge([r[1] for r in res], (args.heads,))

    runs = {
        "one call (T)": lambda: call(lsattn, op, x, return_state=True, backend=backend),
        "one call + state (T)": lambda: call(lsattn, op, x, state=st1, return_state=True, backend=backend),
        "packed": lambda: call(lsattn, op, x, cu_seqlens=cu, backend=backend),
        "packed + state": lambda: call(lsattn, op, x, cu_seqlens=cu, state=st0, return_state=True, backend=backend),
        "loop + state": loop,
    }
    clock = time.process_time if args.clock == "process" else time.perf_counter
    out = {name: 1e3 * best_of(fn, args.repeat, clock=clock) for name, fn in runs.items()}
    calls = {name: python_calls(fn) for name, fn in runs.items()} if args.count_calls else {}
    a, b = runs["packed + state"](), loop()
    err = float(np.max(np.abs(a[0] - b[0])) / max(1e-30, float(np.max(np.abs(b[0])))))
    return out, err, calls


def python_calls(fn):
    """Function calls (Python and C, ``sys.setprofile`` events) during one call of ``fn()``: the
    count of array operations and of the host work around them, independent of the machine's load."""
    count = [0]

    def prof(frame, event, arg):
        if event in ("call", "c_call"):
            count[0] += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--totals", type=int, nargs="+", default=[16384, 65536])
    ap.add_argument("--docs", type=int, default=16)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ops", nargs="+", default=OPS)
    ap.add_argument("--backends", nargs="+", default=["numba", "array_api"])
    ap.add_argument("--out", type=pathlib.Path, default=RESULTS)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--clock", choices=["wall", "process"], default="wall",
                    help="process: time.process_time (CPU seconds of this process, all threads; a shared machine)")
    ap.add_argument("--count-calls", action="store_true", help="also count the Python and C function calls of each run")
    ap.add_argument("--decode", type=int, default=0, metavar="P",
                    help="a decoding step instead: --docs streams at offset P, one new token each (T = --docs)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.totals, args.repeat, args.d = [512], 1, 16
    if args.decode:
        args.totals = [args.docs]
    import lsattn

    names = ["one call (T)", "one call + state (T)", "packed", "packed + state", "loop + state"]
    rows, records = [], []
    for total in args.totals:
        for backend in args.backends:
            for op in args.ops:
                ms, err, calls = bench(args, lsattn, op, backend, total)
                ratio = ms["packed + state"] / ms["one call + state (T)"]
                row = [op, backend, str(total)] + [f"{ms[n]:.1f}" for n in names] + [f"{ratio:.2f}", f"{ms['loop + state'] / ms['packed + state']:.2f}", f"{err:.1e}"]
                if calls:
                    row += ["/".join(str(calls[n]) for n in names)]
                print(" | ".join(row), flush=True)
                rows.append(row)
                records.append({"op": op, "backend": backend, "T": total, "ms": ms, "rel_diff_vs_loop": err, "calls": calls})
    header = ["operator", "backend", "T"] + [f"{n} ms" for n in names] + ["packed+state / one+state", "loop / packed+state",
                                                                         "max rel diff"]
    if args.count_calls:
        header += ["function calls (same order)"]
    lines = [f"# Packed streams on the CPU ({utc_now()})", "",
             f"{cpu_name()}; {python_numpy()}; `python benchmarks/bench_varlen_cpu.py {' '.join(argv or sys.argv[1:])}`", "",
             f"{args.docs} segments, Pareto lengths summing to T, {args.heads} heads, d = {args.d}, float32; incoming "
             "states at a quarter of each segment's length (one call + state: one stream at their sum); "
             f"{'wall clock' if args.clock == 'wall' else 'CPU time of the process (time.process_time)'}, best of "
             f"{args.repeat} (a machine shared with other jobs: compare within a row).", "",
             *md_table(header, rows)]
    res = {"when": utc_now(), "cpu": cpu_name(), "args": {**vars(args), "out": str(args.out)}, "rows": records}
    write_text(args.out / "varlen_cpu.md", lines)
    write_json(args.out / "varlen_cpu.json", res)
    return res


if __name__ == "__main__":
    main()
