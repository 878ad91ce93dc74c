"""The ``lsattn`` command (also ``python -m lsattn``).

Subcommands:
  demo   run every implemented operator on NumPy at realistic sizes: error against the float64
         reference, time and peak memory; then a streaming run showing the per-token state and time.
  info   the backend table: which backends exist here, which are available and why not;
         ``--warm`` compiles the numba kernels into Numba's on-disk cache (first calls then load them).
  audit  numerical stability audit: every formulation and dtype against float64 (see docs/audit.md).
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import tracemalloc

import numpy as np

from . import backends
from ._version import __version__
from .fenwick import bucket, level_matrix, levels_of_position, num_levels

#: Operator demo cases: ``(name, make) -> make(rng) -> (fn, args, kwargs, ref_fn, ref_args)``.
#: Operators append to this list in their own modules (see ``register_demo``).
DEMO_CASES = []
#: Streaming demo cases: ``(name, make_stream)``; ``make_stream(rng) -> (step, state_nbytes)``.
STREAM_CASES = []


def register_demo(name, make):
    """Add an operator to ``lsattn demo``: ``make(rng, T)`` returns a dict with keys
    ``fn, args, kwargs, ref, ref_args`` (ref computed on a prefix ``ref_T`` if given)."""
    DEMO_CASES.append((name, make))


def register_stream(name, make):
    """Add a streaming run: ``make(rng)`` returns ``(step, nbytes)`` where ``step(state, n)`` feeds
    ``n`` tokens and returns the new state, and ``nbytes(state)`` its size in bytes."""
    STREAM_CASES.append((name, make))


def _rel_err(out, ref):
    out, ref = np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), np.finfo(np.float64).tiny))


def _measure(fn, *args, **kwargs):
    """(result, seconds, peak traced bytes) of one call."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, dt, peak


def _table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*["-" * w for w in widths]))
    for r in rows:
        print(line.format(*r))


def _show_fenwick(T=16, t=13):
    print(f"Fenwick levels level(t, s) for T = {T}  (num_levels({T}) = {num_levels(T)}; '.' where s > t)")
    lev = level_matrix(T)
    for row in range(T):
        print(f"  t={row:2d}  " + " ".join("." if x < 0 else str(int(x)) for x in lev[row]))
    parts = [f"level 0: [{t}]"]
    for l in levels_of_position(t):
        lo, hi = bucket(t, l)
        parts.append(f"level {l}: [{lo}, {hi})")
    print(f"Buckets of t = {t} (binary {t:b}), partitioning [0, {t}]: " + ", ".join(parts))
    print()


def demo(args):
    rng = np.random.default_rng(0)
    _show_fenwick()
    if not DEMO_CASES:
        print("No operators are implemented yet; the references are in lsattn.reference.")
        return 0
    rows = []
    for name, make in DEMO_CASES:
        case = make(rng, args.T)
        fn, fargs = case["fn"], case["args"]
        ref = case["ref"](*case["ref_args"])
        shape = "x".join(str(s) for s in fargs[0].shape)
        auto = backends.resolve(name, np, fargs[0]).name
        for backend in dict.fromkeys([auto, "array_api"]):  # the automatic choice, then the array-API path
            kw = {**case.get("kwargs", {}), "backend": backend}
            fn(*fargs, **kw)  # warm-up: JIT compilation and caches are not what we time
            out, dt, peak = _measure(fn, *fargs, **kw)
            out = out[0] if isinstance(out, tuple) else out
            err = _rel_err(out[..., : case.get("ref_T", out.shape[-2]), :], ref)
            label = f"{backend} (auto)" if backend == auto else backend
            rows.append((name, shape, label, f"{err:.2e}", f"{dt * 1e3:.1f} ms", f"{peak / 2**20:.1f} MiB"))
    print("Operators on NumPy float32 (error: max |out - ref| / max |ref| against lsattn.reference in float64)")
    _table(rows, ("operator", "shape (B,H,T,d)", "backend", "rel. error", "time", "peak memory"))
    print()
    for name, make in STREAM_CASES:
        step, nbytes = make(rng)
        print(f"Streaming {name}: one token at a time")
        rows, state, fed = [], None, 0
        for target in (2**p for p in range(4, args.stream_log2 + 1)):
            n = target - fed
            t0 = time.perf_counter()
            state = step(state, n)
            dt = (time.perf_counter() - t0) / n
            fed = target
            rows.append((f"{fed}", f"{nbytes(state)} B", f"{dt * 1e6:.0f} us"))
        _table(rows, ("tokens seen", "state size", "time per token"))
        print()
    return 0


def info(args):
    rows = [(n, "yes" if ok else "no", reason, ", ".join(ops) or "-") for n, ok, reason, ops in backends.available()]
    _table(rows, ("backend", "available", "status", "operators"))
    if args.warm:
        if not backends.get("numba").status()[0]:
            print("\n--warm: the numba backend is not available here; nothing to compile")
            return 0
        from .backends import numba_cpu

        print("\nCompiling the numba kernels (or loading them from Numba's cache) ...")
        rows = [(kernel, dtype, f"{seconds:.2f} s") for kernel, dtype, seconds in numba_cpu.warm()]
        _table(rows, ("kernel", "dtype", "time"))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lsattn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lsattn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run every operator, check it against the reference, show streaming")
    p.add_argument("--T", type=int, default=4096, help="sequence length of the operator table (default 4096)")
    p.add_argument("--stream-log2", type=int, default=12, help="stream up to 2**N tokens (default 12)")
    p.set_defaults(run=demo)
    p = sub.add_parser("info", help="list backends and whether they are available here")
    p.add_argument("--warm", action="store_true",
                   help="also compile every numba kernel for float32 and float64 into Numba's on-disk cache")
    p.set_defaults(run=info)
    from .audit import add_parser as add_audit_parser

    add_audit_parser(sub)  # `lsattn audit`: the numerical stability audit (lsattn/audit/)
    args = parser.parse_args(argv)
    importlib.import_module(f"{__package__}._demo_cases")  # registers the demo cases of the implemented operators

    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
