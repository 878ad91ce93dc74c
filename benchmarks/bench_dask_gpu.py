"""Dask arrays of CuPy blocks on one worker per GPU against one GPU holding the whole sequence.

    python benchmarks/bench_dask_gpu.py --out DIR [--T 1048576,2097152] [--block 131072] [--H 16] [--d 64]
                                        [--gpus 2] [--ops loglinear_attention,exp_kernel_attention]

float32 inputs ``(H, T, d)`` (per-token ``log_decay (H, T)`` and level weights ``(H, T, L)``),
generated block by block from seeds: the Dask run makes each block on the worker that needs it
(inputs never sit whole on any GPU), the single-GPU run concatenates the same blocks on GPU 0.
Both reduce the output to ``sum over heads and features of out^2`` (``T`` numbers), compared
(max relative difference), so nothing large is gathered.

Measured per (operator, T):

- ``single_s``: one CuPy call on GPU 0 (inputs made, call, reduction); ``single_call_s`` the
  call alone; ``OOM`` where the whole sequence does not fit;
- ``dask_s``: the same on a ``local_gpu_cluster(gpus)`` (dask-cuda's LocalCUDACluster when it
  imports, else one ``distributed`` worker pinned per GPU), graph building and input generation
  included; ``speedup = single_s / dask_s``;
- per-GPU peak memory: NVML ``used`` of every GPU sampled every 5 ms during the run, minus the
  value just before it (allocator pools emptied first), in MiB: what the run added on each GPU
  (its CUDA contexts excluded, the CuPy pool's high-water mark included).

Writes ``dask_gpu.json`` and ``dask_gpu.md`` (device, date, versions, table) into ``--out`` after
every row, and ``dask_gpu.png`` at the end. Kernels are compiled by a small warm-up run first.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np

from _common import md_table, pyplot, utc_now, write_json, write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def make_block(kind, i, H, n, d, L, seed):
    """Block ``i`` (``n`` tokens) of input ``kind``, as a CuPy float32 array on the current GPU."""
    import cupy as cp

    rng = cp.random.default_rng((seed * 1_000_003 + i) * 8 + "qkval".index(kind))
    if kind in "qkv":
        x = rng.standard_normal((H, n, d), dtype=cp.float32)
        return x * np.float32(d**-0.5) if kind == "k" else x
    if kind == "a":
        return -rng.random((H, n), dtype=cp.float32) * np.float32(0.1)
    return rng.random((H, n, L), dtype=cp.float32)


def kinds_of(op):
    return "qkv" if op == "exp_kernel_attention" else "qkval"


def tail(kind, d, L):
    return (d,) if kind in "qkv" else () if kind == "a" else (L,)


def dask_inputs(op, T, block, H, d, seed):
    import cupy as cp
    import dask
    import dask.array as da

    import lsattn

    L, nb = lsattn.num_levels(T), -(-T // block)
    out = []
    for kind in kinds_of(op):
        parts = []
        for i in range(nb):
            n = min(block, T - i * block)
            shape = (H, n) + tail(kind, d, L)
            task = dask.delayed(make_block, pure=True)(kind, i, H, n, d, L, seed)
            parts.append(da.from_delayed(task, shape=shape, dtype=np.float32, meta=cp.empty((0,) * len(shape), np.float32)))
        out.append(da.concatenate(parts, axis=1))
    return out


def single_inputs(op, T, block, H, d, seed):
    import cupy as cp

    import lsattn

    L, nb = lsattn.num_levels(T), -(-T // block)
    return [cp.concatenate([make_block(kind, i, H, min(block, T - i * block), d, L, seed) for i in range(nb)], axis=1)
            for kind in kinds_of(op)]


def energy(xp_sum, out):
    return xp_sum(out * out, axis=(0, 2))


class GpuMemory:
    """Peak NVML ``used`` bytes of every GPU above the value at ``start()``, sampled every 5 ms."""

    def __init__(self):
        import pynvml

        pynvml.nvmlInit()
        self.nvml = pynvml
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]

    def used(self):
        return [self.nvml.nvmlDeviceGetMemoryInfo(h).used for h in self.handles]

    def __enter__(self):
        self.base = self.used()
        self.peak = list(self.base)
        self.stop = threading.Event()

        def poll():
            while not self.stop.wait(0.005):
                self.peak = [max(p, u) for p, u in zip(self.peak, self.used())]

        self.thread = threading.Thread(target=poll, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = [max(p, u) for p, u in zip(self.peak, self.used())]
        self.mib = [round((p - b) / 2**20) for p, b in zip(self.peak, self.base)]


def free_pools():
    import cupy as cp

    cp.get_default_memory_pool().free_all_blocks()
    cp.get_default_pinned_memory_pool().free_all_blocks()
    return True


def call(op, args):
    import lsattn

    return getattr(lsattn, op)(*args)


def run_single(op, T, block, H, d, seed, mem):
    import cupy as cp

    free_pools()
    try:
        with mem:
            t0 = time.perf_counter()
            args = single_inputs(op, T, block, H, d, seed)
            cp.cuda.Device().synchronize()
            t1 = time.perf_counter()
            out = call(op, args)
            cp.cuda.Device().synchronize()
            t2 = time.perf_counter()
            e = energy(cp.sum, out)
            del out, args
            e = cp.asnumpy(e)
            t3 = time.perf_counter()
    except cp.cuda.memory.OutOfMemoryError:
        free_pools()
        return None, None, None, "OOM"
    free_pools()
    return e, t3 - t0, t2 - t1, mem.mib


def run_dask(client, op, T, block, H, d, seed, mem):
    import cupy as cp
    import dask.array as da

    client.run(free_pools)
    free_pools()
    with mem:
        t0 = time.perf_counter()
        e = energy(da.sum, call(op, dask_inputs(op, T, block, H, d, seed)))
        e = cp.asnumpy(client.compute(e, sync=True))
        t1 = time.perf_counter()
    client.run(free_pools)
    return e, t1 - t0, mem.mib


def write(out_dir, meta, rows):
    write_json(os.path.join(out_dir, "dask_gpu.json"), {"meta": meta, "rows": rows})
    header = ["op", "T", "block", "1 GPU s (call s)", "1 GPU peak MiB", f"{meta['gpus']} GPUs s", "per-GPU peak MiB", "speedup", "max rel diff"]
    lines = [f"# Dask + CuPy on {meta['gpus']} GPUs vs one GPU", "",
             f"{meta['device']}; {meta['date']}; {meta['versions']}; cluster: {meta['cluster']}", "",
             f"float32, H = {meta['H']}, d = {meta['d']}; times include making the inputs (see the script's docstring).", ""]
    fmt = lambda x, f: "-" if x is None else (x if isinstance(x, str) else f.format(x))
    lines += md_table(header, [[r["op"], r["T"], r["block"],
                                "OOM" if r["single_s"] is None else f"{r['single_s']:.2f} ({r['single_call_s']:.2f})",
                                r["single_mib"][0] if isinstance(r["single_mib"], list) else r["single_mib"], f"{r['dask_s']:.2f}", " / ".join(map(str, r["dask_mib"])),
                                fmt(r["speedup"], "{:.2f}x"), fmt(r["max_rel_diff"], "{:.1e}")] for r in rows])
    write_text(os.path.join(out_dir, "dask_gpu.md"), lines)


def plot(out_dir, rows):
    plt = pyplot()
    if plt is None:
        return
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    for op in sorted({r["op"] for r in rows}):
        rs = [r for r in rows if r["op"] == op]
        Ts = [r["T"] for r in rs]
        ax_t.plot(Ts, [r["dask_s"] for r in rs], "o-", label=f"{op} Dask, GPUs")
        ax_t.plot([r["T"] for r in rs if r["single_s"]], [r["single_s"] for r in rs if r["single_s"]], "s--", label=f"{op} 1 GPU")
        ax_m.plot(Ts, [max(r["dask_mib"]) for r in rs], "o-", label=f"{op} Dask, max per GPU")
        ax_m.plot([r["T"] for r in rs if isinstance(r["single_mib"], list)],
                  [r["single_mib"][0] for r in rs if isinstance(r["single_mib"], list)], "s--", label=f"{op} 1 GPU")
    for ax, what in ((ax_t, "seconds"), (ax_m, "peak MiB per GPU")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("T")
        ax.set_ylabel(what)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "dask_gpu.png"), dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--T", default="1048576,2097152")
    ap.add_argument("--block", type=int, default=131072)
    ap.add_argument("--H", type=int, default=16)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--ops", default="loglinear_attention,exp_kernel_attention")
    ap.add_argument("--no-single-above", type=int, default=0, help="skip the single-GPU run above this T (0: never skip)")
    args = ap.parse_args()
    import cupy as cp
    import dask
    import distributed

    from lsattn.backends.dask_backend import local_gpu_cluster

    os.makedirs(args.out, exist_ok=True)
    mem = GpuMemory()
    cluster, which = local_gpu_cluster(args.gpus)
    meta = {"device": f"{args.gpus} x {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}", "date": utc_now(),
            "versions": f"Python {sys.version.split()[0]}, CuPy {cp.__version__}, Dask {dask.__version__}, distributed {distributed.__version__}",
            "cluster": which, "gpus": args.gpus, "H": args.H, "d": args.d}
    print(meta, flush=True)
    rows = []
    with cluster, distributed.Client(cluster) as client:
        ops = args.ops.split(",")
        for op in ops:  # warm-up: compile the kernels in the client and on every worker
            run_single(op, 4 * 8192, 8192, 2, args.d, 1, mem)
            run_dask(client, op, 4 * 8192, 8192, 2, args.d, 1, mem)
        for T in map(int, args.T.split(",")):
            for op in ops:
                e_one, single_s, call_s, single_mib = (None, None, None, "skipped")
                if not args.no_single_above or T <= args.no_single_above:
                    e_one, single_s, call_s, single_mib = run_single(op, T, args.block, args.H, args.d, 0, mem)
                e_dask, dask_s, dask_mib = run_dask(client, op, T, args.block, args.H, args.d, 0, mem)
                diff = None if e_one is None else float(np.max(np.abs(e_dask - e_one) / np.maximum(np.abs(e_one), 1e-30)))
                rows.append({"op": op, "T": T, "block": args.block, "single_s": single_s, "single_call_s": call_s,
                             "single_mib": single_mib, "dask_s": dask_s, "dask_mib": dask_mib,
                             "speedup": None if single_s is None else single_s / dask_s, "max_rel_diff": diff})
                print(rows[-1], flush=True)
                write(args.out, meta, rows)
    plot(args.out, rows)


if __name__ == "__main__":
    main()
