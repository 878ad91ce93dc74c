"""GPU per-token decoding through ``lsattn.stepper`` on CUDA torch tensors (issue 18), in one run,
for both GPU steps: the automatic choice (the CuPy backend's fused one-launch step,
``lsattn/backends/cupy/step.cu``, where CuPy works) and the array-API step (``backend="array_api"``):

1. B x H = 2 x 16 = 32 sequences, d_k = d_v = 64, float32, offsets 1K .. 1M, for
   ``loglinear_attention``, ``exp_kernel_attention``, ``loglinear_gated_delta`` and
   ``loglinear_log_attention`` (``--ops``): wall time per step of the eager step
   (``step(...)``, synchronised at the end of ``--steps`` steps), of the same step captured once in
   a ``torch.cuda.CUDAGraph`` and replayed, and of the plain call with ``state=..., return_state=True``
   (what a user did before the stepper). Targets: <= 40 us per step; flat in the offset for
   exp-kernel attention, growing as log T for log-linear attention.
2. Batched step: ``--batched`` sequences (default 4096 = 256 x 16) at two offsets (64K: one level
   occupied, and 0xFF00: eight), graph replay time per step against the copy bandwidth measured in
   the same run (``torch.clone`` of a buffer of as many bytes). Bytes counted: what the step must
   move, averaged over the replayed offsets (token inputs, output, and per row: exp-kernel
   ``m, S, z`` read and written; log-linear the occupied level slots read, and those plus the merged
   slot written; Gated DeltaNet the same (its second read of a slot, for the transition after
   ``k^T S``, is not counted); hierarchical the occupied summaries ``S, m, n, z`` read, the folded
   and merged ones written, the kept ones' ``m`` written (decay)). The array-API step reads and rewrites every slot: its column ``state GB/s``
   counts 2 x the state's bytes as before. Target: >= 50% of the copy bandwidth.

States at large offsets are built directly (random level matrices in the occupied slots of the
offset, zeros elsewhere; an exp-kernel state from a short prefill with its offset set), so no
1M-token prefill is run: the step's cost depends on the state's shapes, not on how it was filled;
hierarchical summaries get random shifts and positive ``S, z``).

    python benchmarks/bench_stepper_gpu.py [--out DIR] [--steps 200] [--batched 4096] [--ops a,b]

Writes ``DIR/stepper_gpu_<date>.json`` and ``.md`` (device name, date, versions).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from _common import md_table, today, utc_now, write_json, write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

B, H, D = 2, 16, 64
OPS = ("loglinear_attention", "exp_kernel_attention", "loglinear_gated_delta", "loglinear_log_attention")
OFFSETS = tuple(1 << e for e in range(10, 21, 2))  # 1K, 4K, 16K, 64K, 256K, 1M


def make_state(op, batch, offset, torch):
    """A State of ``op`` at ``offset`` on the GPU (see the module docstring)."""
    import lsattn
    from lsattn.state import State

    gen = torch.Generator(device="cuda").manual_seed(0)
    randn = lambda *shape: torch.randn(*shape, device="cuda", generator=gen)  # noqa: E731
    if op == "exp_kernel_attention":
        q, k, v = (randn(*batch, 16, D) for _ in range(3))
        _, st = lsattn.exp_kernel_attention(q, k, v, return_state=True)
        return State(op, offset, st.batch_shape, st.d_k, st.d_v, st.dtype, st.tensors)
    n = offset.bit_length()
    occupied = torch.tensor([(offset >> j) & 1 for j in range(n)], device="cuda", dtype=torch.float32)
    if op == "loglinear_log_attention":
        lo = -torch.finfo(torch.float32).max / 8
        occ = occupied.bool()
        m = torch.where(occ[:, None], randn(*batch, n, D), lo)
        nv = torch.where(occ[:, None], randn(*batch, n, D), lo)
        S = torch.rand(*batch, n, D, D, device="cuda", generator=gen) * occupied[:, None, None]
        z = (1 + torch.rand(*batch, n, D, device="cuda", generator=gen)) * occupied[:, None]
        return State(op, offset, tuple(batch), D, D, torch.float32, {"m": m, "n": nv, "S": S, "z": z})
    levels = 0.01 * randn(*batch, n, D, D) * occupied[:, None, None]
    return State(op, offset, tuple(batch), D, D, torch.float32, {"levels": levels})


def token_inputs(op, batch, offset, torch):
    """One token's inputs (T axis of length 1) for ``op`` at ``offset``: (positional, keyword)."""
    import lsattn

    q, k, v = (torch.randn(*batch, 1, D, device="cuda") for _ in range(3))
    k = k / k.norm(dim=-1, keepdim=True)
    if op == "exp_kernel_attention":
        return [q, k, v], {}
    a = -0.01 * torch.rand(*batch, 1, device="cuda")
    lam = torch.rand(*batch, 1, lsattn.num_levels(offset + 4096), device="cuda")
    if op == "loglinear_gated_delta":
        return [q, k, v, a, torch.rand(*batch, 1, device="cuda"), lam], {}
    if op == "loglinear_log_attention":
        return [q, k, v, lam], {"log_decay": a}
    return [q, k, v, a, lam], {}


def wall_per_call(fn, n, torch):
    """Wall seconds per call of ``fn`` over ``n`` calls, synchronised before and after."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def captured(step, xs, kw, torch):
    """(graph, output) of one step captured after one warm-up step on a side stream."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step(*xs, **kw)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step(*xs, **kw)
    return graph, out


def per_step(op, batch, offset, steps, torch, backend=None, plain=True):
    """Times (seconds per step) of the eager step, the graph replay and the plain ``state=`` call;
    ``moved_bytes``: bytes a fused step moves, averaged over the replayed offsets."""
    import lsattn
    from lsattn._steps import level_slots

    fn = getattr(lsattn, op)
    st = make_state(op, batch, offset, torch)
    xs, kw = token_inputs(op, batch, offset, torch)
    limit = offset + 3 * steps + 16
    eager = lsattn.stepper(op, st, max_tokens=limit, backend=backend)
    for _ in range(3):
        eager(*xs, **kw)
    row = {"op": op, "backend": eager.backend, "sequences": int(torch.tensor(batch).prod()), "offset": offset,
           "eager_s": wall_per_call(lambda: eager(*xs, **kw), steps, torch)}
    graphed = lsattn.stepper(op, st, max_tokens=limit, backend=backend)
    graph, _ = captured(graphed, xs, kw, torch)
    graph.replay()
    first = graphed.state.offset
    row["graph_s"] = wall_per_call(graph.replay, steps, torch)
    if plain:
        box = [st]

        def call():
            _, box[0] = fn(*xs, **kw, state=box[0], return_state=True)

        call()
        row["plain_s"] = wall_per_call(call, max(steps // 10, 5), torch)
    rows = row["sequences"]
    mat = D * D * 4
    io = rows * 4 * (4 * D + sum(x.shape[-1] for x in list(xs[3:]) + list(kw.values())))  # q, k, v, out, scalars, lam
    if op == "exp_kernel_attention":
        row["state_bytes"] = rows * (mat + 2 * D * 4)
        row["moved_bytes"] = 2 * row["state_bytes"] + io
    else:
        row["state_bytes"] = sum(t.numel() * t.element_size() for t in graphed._impl.buf.values())
        slot = row["state_bytes"] / (rows * level_slots(st, limit))  # bytes per level slot and row
        offs = range(first, first + steps)
        if op == "loglinear_log_attention":  # occupied slots read; folded and merged written; kept: m only
            per = [slot * (bin(p).count("1") + (p ^ (p + 1)).bit_length())
                   + 4 * D * (bin(p).count("1") - (p ^ (p + 1)).bit_length() + 1) for p in offs]
        else:  # occupied slots read and written, the merged one written
            per = [slot * (2 * bin(p).count("1") + 1) for p in offs]
        row["moved_bytes"] = rows * sum(per) / len(per) + io
    return row


def copy_bandwidth(nbytes, torch, reps=50):
    """Bytes per second moved (read + written) by ``torch.clone`` of a ``nbytes`` buffer."""
    buf = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    t = wall_per_call(lambda: buf.clone(), reps, torch)
    return 2 * nbytes / t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batched", type=int, default=4096, help="sequences of the batched step (a multiple of 16)")
    ap.add_argument("--batched-offset", type=int, default=1 << 16)
    ap.add_argument("--ops", default=",".join(OPS), help="operators, comma-separated")
    args = ap.parse_args()
    ops = args.ops.split(",")
    import torch

    assert torch.cuda.is_available(), "needs a CUDA device"
    device = torch.cuda.get_device_name()
    rows = []
    for op in ops:
        for offset in OFFSETS:
            for backend in (None, "array_api"):
                row = per_step(op, (B, H), offset, args.steps, torch, backend, plain=backend is None)
                rows.append(row)
                print({k: (f"{v * 1e6:.1f} us" if k.endswith("_s") else v) for k, v in row.items()}, flush=True)
    batched = []
    for op in ops:
        for offset in (args.batched_offset, 0xFF00):
            for backend in (None, "array_api"):
                row = per_step(op, (args.batched // H, H), offset, args.steps, torch, backend, plain=False)
                moved = row["moved_bytes"] if row["backend"] == "cupy" else 2 * row["state_bytes"]
                bw = copy_bandwidth(int(moved) // 2, torch)
                row["copy_bandwidth_Bps"] = bw
                row["step_bandwidth_Bps"] = moved / row["graph_s"]
                row["state_bandwidth_Bps"] = 2 * row["state_bytes"] / row["graph_s"]
                row["fraction_of_copy"] = row["step_bandwidth_Bps"] / bw
                batched.append(row)
                print(row, flush=True)

    meta = {"device": device, "date": utc_now(), "torch": torch.__version__, "B": B, "H": H, "d": D,
            "steps": args.steps, "dtype": "float32"}
    stem = os.path.join(args.out, f"stepper_gpu_{today()}" + ("" if tuple(ops) == OPS else "_" + "-".join(ops)))
    write_json(stem + ".json", {"meta": meta, "per_step": rows, "batched": batched})
    us = lambda s: f"{s * 1e6:.1f}"  # noqa: E731
    lines = ["# Per-token decoding on the GPU: `lsattn.stepper` on CUDA torch tensors", "",
             f"Device: {device}; {meta['date']}; torch {meta['torch']}; float32, d_k = d_v = {D}, "
             f"B x H = {B} x {H} = {B * H} sequences; wall time per step (us), {args.steps} steps, "
             "synchronised at the ends.", "",
             "Columns: `step` is the backend stepping (`cupy`: the automatic choice, one fused kernel per token; "
             "`array_api`: forced); `eager` is `step(...)`; `graph` a replay of the step captured in a "
             "`torch.cuda.CUDAGraph`; `plain state=` the operator called with `state=..., return_state=True`. "
             "Targets (issue 18): <= 40 us; flat in the offset for exp_kernel_attention, ~log T for "
             "the log-linear operators.", ""]
    lines += md_table(["operator", "offset", "step", "eager (us)", "graph replay (us)", "plain state= (us)"],
                      [[r["op"], str(r["offset"]), r["backend"], us(r["eager_s"]), us(r["graph_s"]),
                        us(r["plain_s"]) if "plain_s" in r else ""] for r in rows],
                      ["---", "---:", "---", "---:", "---:", "---:"])
    lines += ["", f"## Batched step: {args.batched} sequences", "",
              "Graph replay per step. `moved (MB)`: the bytes the step moves (cupy: inputs, output, the state "
              "rows and occupied level slots it reads and writes, averaged over the replayed offsets; "
              "array_api: 2 x the state's bytes, every slot read and rewritten); `step GB/s` = moved / time; "
              "`copy GB/s`: `torch.clone` of half as many bytes (read + written) in the same run; "
              "`state GB/s`: 2 x state bytes / time (the previous run's measure). Target: fraction >= 50%.", ""]
    lines += md_table(["operator", "offset", "step", "state (MB)", "moved (MB)", "step (us)", "step GB/s", "copy GB/s",
                       "fraction", "state GB/s"],
                      [[r["op"], str(r["offset"]), r["backend"], f"{r['state_bytes'] / 1e6:.1f}",
                        f"{(r['moved_bytes'] if r['backend'] == 'cupy' else 2 * r['state_bytes']) / 1e6:.1f}",
                        us(r["graph_s"]), f"{r['step_bandwidth_Bps'] / 1e9:.0f}",
                        f"{r['copy_bandwidth_Bps'] / 1e9:.0f}", f"{r['fraction_of_copy']:.0%}",
                        f"{r['state_bandwidth_Bps'] / 1e9:.0f}"] for r in batched],
                      ["---", "---:", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"])
    lines += ["", "Command: `python benchmarks/bench_stepper_gpu.py " + " ".join(sys.argv[1:]) + "`"]
    write_text(stem + ".md", lines)
    print("wrote", stem + ".json", stem + ".md")


if __name__ == "__main__":
    main()
