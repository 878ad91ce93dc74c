"""Run every CPU benchmark of this folder, one subprocess each, at the script's default settings.

    python benchmarks/run_all.py                 # all CPU benchmarks (make bench); tens of minutes
    python benchmarks/run_all.py --list          # what would run, and how to run the GPU ones
    python benchmarks/run_all.py --only hierarchical,gated_delta

Each script writes its own tables and plots into benchmarks/results/ (the files the docs cite:
``<name>_cpu.md`` / ``.png``, ``numba_cpu.md``, ``dask_cpu.*``), so a run replaces the recorded
results with this machine's. A script whose optional dependency is missing is skipped with the
reason; the run fails (exit 1) when any script that ran failed. The GPU benchmarks need a CUDA
device and are never run from here: ``--list`` prints their commands.
"""
from __future__ import annotations

import argparse
import importlib.util
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: CPU benchmarks: name -> (script, modules it needs beyond lsattn's own, what it writes).
CPU = {
    "hierarchical": ("bench_hierarchical.py", [], "hierarchical_cpu.md/.png"),
    "gated_delta": ("bench_gated_delta.py", [], "gated_delta_cpu.md/.png"),
    "loglinear": ("bench_loglinear.py", [], "loglinear_cpu.md/.png"),
    "exp_kernel": ("bench_exp_kernel.py", ["torch"], "exp_kernel_cpu.md/.png"),
    "numba": ("bench_numba.py", ["numba"], "numba_cpu.md/.png"),
    "dask": ("bench_dask.py", ["dask", "distributed"], "dask_cpu_table.md, dask_cpu.json/.png"),
}
#: GPU benchmarks: script -> how to run it on a machine with a CUDA device.
GPU = {
    "bench_gpu.py": "CuPy RawKernel backend vs fla / torch SDPA / the paper's form (needs cupy-cuda12x or "
                    "cupy-cuda13x: pip install -e '.[cupy13]'): python benchmarks/bench_gpu.py bench --out "
                    "benchmarks/results; 'check' and 'sanitize' modes; benchmarks/gpu_session.sh runs a whole session",
    "bench_numba_cuda.py": "Numba CUDA backend vs the array-API path on CuPy (needs numba-cuda and CuPy): "
                           "python benchmarks/bench_numba_cuda.py --out benchmarks/results/numba_cuda_$(date +%F)",
}
#: Modules every benchmark imports for its plot.
COMMON = ["matplotlib"]


def missing(modules):
    return [m for m in modules + COMMON if importlib.util.find_spec(m) is None]


def describe():
    print("CPU benchmarks (python benchmarks/run_all.py runs them; results in benchmarks/results/):")
    for name, (script, needs, writes) in CPU.items():
        lack = missing(needs)
        status = f"skipped: {', '.join(lack)} not installed" if lack else "runs"
        print(f"  {name:<13} python benchmarks/{script:<22} -> {writes}  [{status}]")
    print("GPU benchmarks (not run here; on a machine with a CUDA device):")
    for script, how in GPU.items():
        print(f"  {script}: {how}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the benchmarks and commands, run nothing")
    ap.add_argument("--only", help=f"comma-separated names among {', '.join(CPU)}")
    args = ap.parse_args(argv)
    if args.list:
        describe()
        return 0
    names = list(CPU) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CPU]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {list(CPU)}")
    RESULTS.mkdir(exist_ok=True)
    rows, failed = [], []
    for name in names:
        script, needs, writes = CPU[name]
        lack = missing(needs)
        if lack:
            print(f"=== {name}: skipped ({', '.join(lack)} not installed: pip install -e '.[bench]')", flush=True)
            rows.append((name, "skipped", "-", "missing " + ", ".join(lack)))
            continue
        cmd = [sys.executable, str(HERE / script)]
        print(f"=== {name}: {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=HERE.parent)
        dt = time.perf_counter() - t0
        rows.append((name, "ok" if rc == 0 else f"failed (exit {rc})", f"{dt:.0f} s", "benchmarks/results/" + writes))
        if rc != 0:
            failed.append(name)
    print()
    print(f"{'benchmark':<13} {'status':<18} {'time':>7}  results")
    for name, status, dt, what in rows:
        print(f"{name:<13} {status:<18} {dt:>7}  {what}")
    print()
    print("GPU benchmarks were not run (they need a CUDA device):")
    for script, how in GPU.items():
        print(f"  {script}: {how}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
