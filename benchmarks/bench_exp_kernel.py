"""Benchmark log_attention / exp_kernel_attention on CPU against the paper's published formulation
and torch's scaled_dot_product_attention, T = 2^8 .. 2^16 (batch 1, one head, d_k = d_v = 64, float32).

Contenders (time of one causal call, and peak extra memory):

- lsattn ``log_attention`` and ``exp_kernel_attention`` on NumPy (array-API path), on NumPy through
  the Numba CPU backend (if it imports and runs), and on torch tensors (array-API path);
- the paper's published formulation (Heinsen 2024), written here in torch: every latent state
  materialised, ``log S_t = logcumsumexp_s (k_s[:, None] + log_v_s[None, :])`` of shape
  ``(T, d_k, d_v)``, ``log z_t = logcumsumexp_s k_s`` and
  ``log y_t = logsumexp_i (q_ti + log S_t) - logsumexp_i (q_ti + log z_t)``. Same function as
  ``log_attention``; memory ``T d_k d_v``. Skipped ("does not fit") where its estimated working
  set, three ``(T, d_k, d_v)`` float32 tensors, exceeds ``--paper-cap-gib``;
- ``torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)``: softmax
  attention ``softmax(q k^T / sqrt(d)) v``, a *different* kernel (dot-product, not exp-kernel
  similarity), timed as the speed peer a model builder would otherwise call. Its cost is
  ``T^2 d`` time (CPU flash kernel: O(T) memory); it runs up to ``--sdpa-max``.

Timing: every library is limited to ``--threads`` threads (default 1: the benchmark machine has 2
cores shared with other jobs), best of ``--repeat`` calls after one warm-up call per contender,
clock = process CPU time (user + system: time other processes hold the cores is not counted)
unless ``--clock wall``. Memory: NumPy array-API paths with tracemalloc (peak traced bytes of one
call, output included); Numba and torch paths (whose allocations tracemalloc does not see) by the
growth of the peak resident set size (``VmHWM``) over one call, in a fresh subprocess per case
after a tiny warm-up call (a lower bound when the allocator reuses freed memory), at the T of
``--mem-T``.

    python benchmarks/bench_exp_kernel.py               # about 5 minutes on the shared 2 cores
    python benchmarks/bench_exp_kernel.py --max-log2 12 --mem-T 1024 4096   # quick

Writes benchmarks/results/exp_kernel_cpu.md (tables) and exp_kernel_cpu.png (time vs T, log-log).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

from _common import (CLOCKS, RESULTS, best_of, md_table, proc_status_bytes, pyplot, sweep_parser, today, traced_peak,
                     write_text)

D = 64

#: contender -> (label, namespace, how its memory is measured)
CONTENDERS = {
    "log_np": ("log_attention, NumPy (array API)", "numpy", "tracemalloc"),
    "exp_np": ("exp_kernel_attention, NumPy (array API)", "numpy", "tracemalloc"),
    "log_numba": ("log_attention, NumPy (numba)", "numpy", "rss"),
    "exp_numba": ("exp_kernel_attention, NumPy (numba)", "numpy", "rss"),
    "log_torch": ("log_attention, torch (array API)", "torch", "rss"),
    "exp_torch": ("exp_kernel_attention, torch (array API)", "torch", "rss"),
    "paper": ("paper's form (torch, materialised states)", "torch", "rss"),
    "sdpa": ("torch SDPA causal (softmax q k^T / sqrt d)", "torch", "rss"),
}


def parse():
    ap = sweep_parser(__doc__, min_log2=8, max_log2=16, repeat=3)
    ap.add_argument("--threads", type=int, default=1, help="threads for BLAS, torch and numba (default 1)")
    ap.add_argument("--clock", choices=list(CLOCKS), default="cpu")
    ap.add_argument("--paper-cap-gib", type=float, default=2.0,
                    help="skip the paper's form where 3 (T, d_k, d_v) float32 tensors exceed this (GiB)")
    ap.add_argument("--sdpa-max", type=int, default=65536, help="largest T for torch SDPA (T^2 d time)")
    ap.add_argument("--mem-T", type=int, nargs="*", default=[1024, 4096, 16384, 65536],
                    help="T at which peak memory is measured")
    ap.add_argument("--only", nargs="*", default=None, help="contenders to run (default all)")
    ap.add_argument("--mem-child", nargs=2, metavar=("CONTENDER", "T"), help=argparse.SUPPRESS)
    return ap.parse_args()


ARGS = parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)  # before numpy / torch / numba are imported

import numpy as np  # noqa: E402

import lsattn  # noqa: E402

CLOCK = CLOCKS[ARGS.clock]


def paper_log_attention(q, k, log_v):
    """Heinsen (2024)'s published causal formulation: q, k (T, d_k), log_v (T, d_v) torch tensors.
    Materialises every latent state: (T, d_k, d_v) for S, (T, d_k) for z."""
    import torch

    log_S = torch.logcumsumexp(k[:, :, None] + log_v[:, None, :], dim=0)  # (T, d_k, d_v)
    log_z = torch.logcumsumexp(k, dim=0)  # (T, d_k)
    return torch.logsumexp(q[:, :, None] + log_S, dim=1) - torch.logsumexp(q + log_z, dim=1)[:, None]


def paper_fits(T):
    return 3 * T * D * D * 4 <= ARGS.paper_cap_gib * 2**30


def runnable(name, T):
    """None if ``name`` runs at T, else the reason it does not."""
    if name == "paper" and not paper_fits(T):
        return "does not fit"
    if name == "sdpa" and T > ARGS.sdpa_max:
        return "not run"
    return None


def make_call(name, T, seed=0):
    """A zero-argument callable running contender ``name`` on fresh inputs of length T."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((T, D), dtype=np.float32) for _ in range(3))
    op = lsattn.log_attention if name.startswith("log") or name == "paper" else lsattn.exp_kernel_attention
    if name.endswith("_np"):
        return lambda: op(q, k, v, backend="array_api")
    if name.endswith("_numba"):
        return lambda: op(q, k, v, backend="numba")
    import torch

    torch.set_num_threads(ARGS.threads)
    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
    if name.endswith("_torch"):
        return lambda: op(tq, tk, tv)
    if name == "paper":
        return lambda: paper_log_attention(tq, tk, tv)
    if name == "sdpa":
        sd = torch.nn.functional.scaled_dot_product_attention
        # (batch, heads, T, d): 4-D inputs get torch's CPU flash kernel (O(T) memory); 3-D ones
        # fall back to the math path, which materialises T x T (836 MiB at T = 8192)
        return lambda: sd(tq[None, None], tk[None, None], tv[None, None], is_causal=True)
    raise ValueError(name)


def mem_child(name, T):
    """In a fresh process: growth of the peak RSS over one call, after a tiny warm-up call."""
    make_call(name, 8)()  # imports, compilation, allocator set-up
    fn = make_call(name, T)
    base = proc_status_bytes("VmHWM")
    fn()
    print(json.dumps({"extra": proc_status_bytes("VmHWM") - base}))


def measure_memory(name, T):
    if CONTENDERS[name][2] == "tracemalloc":
        fn = make_call(name, T)
        fn()
        return traced_peak(fn)
    cmd = [sys.executable, __file__, "--threads", str(ARGS.threads), "--mem-child", name, str(T)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])["extra"]


def accuracy(Ts=(1024,)):
    """Max |log y_paper - log y_ours| and ours vs the float64 reference (log_attention), one T."""
    from lsattn import reference

    T = Ts[0]
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((T, D), dtype=np.float32) for _ in range(3))
    ref = reference.log_attention(*(x.astype(np.float64) for x in (q, k, v)))
    ours = np.asarray(lsattn.log_attention(q, k, v, backend="array_api"), dtype=np.float64)
    out = {"ours (array API)": float(np.abs(ours - ref).max())}
    try:
        import torch

        paper = paper_log_attention(*(torch.from_numpy(x) for x in (q, k, v))).double().numpy()
        out["paper's form"] = float(np.abs(paper - ref).max())
    except ImportError:
        pass
    return T, out


def run():
    names = [n for n in CONTENDERS if ARGS.only is None or n in ARGS.only]
    Ts = [2**p for p in range(ARGS.min_log2, ARGS.max_log2 + 1)]
    times = {n: {} for n in names}
    mem = {n: {} for n in names}
    failed = {}
    for name in names:
        try:
            make_call(name, 64)()  # warm-up: imports, numba compilation, torch start-up
        except Exception as exc:  # e.g. numba missing or broken: reported, not fatal
            failed[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
            print(f"{name}: skipped ({failed[name]})", flush=True)
            continue
        for T in Ts:
            why = runnable(name, T)
            times[name][T] = why if why else best_of(make_call(name, T), ARGS.repeat, warmup=False, clock=CLOCK)
            if T in ARGS.mem_T:
                try:
                    mem[name][T] = why if why else measure_memory(name, T)
                except Exception as exc:
                    mem[name][T] = f"error ({exc})"[:80]
            t = times[name][T]
            print(f"{name} T={T}: {t if isinstance(t, str) else f'{t:.4f} s'}"
                  f"{'' if T not in mem[name] or isinstance(mem[name][T], str) else f', {mem[name][T] / 2**20:.1f} MiB'}",
                  flush=True)
    return names, Ts, times, mem, failed


def fmt_t(x):
    return x if isinstance(x, str) else (f"{x * 1e3:.2f}" if x < 0.1 else f"{x * 1e3:.0f}")


def fmt_m(x):
    return x if isinstance(x, str) else f"{x / 2**20:.1f}"


def ratio(a, b):
    return f"{a / b:.1f}x" if isinstance(a, float) and isinstance(b, float) and b > 0 else "-"


def summary(live, Ts, times, mem):
    """A few sentences computed from the tables."""
    out = []
    f = lambda n, T, d=times: d.get(n, {}).get(T) if n in live else None
    num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
    fits = [T for T in Ts if num(f("paper", T)) and num(f("log_torch", T))]
    if fits:
        T = fits[-1]
        out.append(f"- Paper's form vs `log_attention` on torch (same function, same framework): "
                   f"{f('paper', fits[0]) / f('log_torch', fits[0]):.0f}x slower at T = {fits[0]}, "
                   f"{f('paper', T) / f('log_torch', T):.0f}x at T = {T} ({f('paper', T):.2f} s vs {f('log_torch', T):.3f} s); "
                   f"it does not fit the cap beyond T = {T}.")
    mfits = [T for T in mem.get("paper", {}) if num(f("paper", T, mem)) and num(f("log_torch", T, mem))]
    if mfits:
        T = max(mfits)
        out.append(f"- Memory at T = {T}: paper's form {f('paper', T, mem) / 2**20:.0f} MiB, "
                   f"`log_attention` on torch {f('log_torch', T, mem) / 2**20:.0f} MiB, on NumPy "
                   f"{f('log_np', T, mem) / 2**20:.0f} MiB (output {T * D * 4 / 2**20:g} MiB included).")
    both = [T for T in Ts if num(f("sdpa", T)) and num(f("log_torch", T))]
    slower = [T for T in both if f("sdpa", T) > f("log_torch", T)]
    if both:
        T = both[-1]
        out.append(f"- torch SDPA (softmax attention, a different kernel, O(T^2)): faster below T = "
                   f"{slower[0] if slower else '-'}; at T = {T} {f('sdpa', T):.2f} s vs {f('log_torch', T):.3f} s for "
                   f"`log_attention` and {f('exp_torch', T):.3f} s for `exp_kernel_attention` on torch.")
    if num(f("log_numba", Ts[-1])):
        T = Ts[-1]
        out.append(f"- At T = {T}: `log_attention` {f('log_np', T) * 1e3:.0f} ms (NumPy, array API), "
                   f"{f('log_torch', T) * 1e3:.0f} ms (torch), {f('log_numba', T) * 1e3:.0f} ms (numba); "
                   f"`exp_kernel_attention` {f('exp_np', T) * 1e3:.0f} / {f('exp_torch', T) * 1e3:.0f} / "
                   f"{f('exp_numba', T) * 1e3:.0f} ms. Time grows linearly in T for every lsattn path.")
    return out


def write(names, Ts, times, mem, failed, elapsed, acc):
    import torch

    live = [n for n in names if n not in failed]
    cmd = "python benchmarks/bench_exp_kernel.py " + " ".join(sys.argv[1:])
    try:  # the code measured: the numba backend in particular changes between commits
        git = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             cwd=pathlib.Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        git = "unknown"
    lines = [
        "# log_attention / exp_kernel_attention on CPU against the paper's form and torch SDPA",
        "",
        f"Date: {today()}. Machine: {platform.machine()}, {os.cpu_count()} logical CPUs shared "
        f"with other jobs, {platform.system()}; Python {platform.python_version()}, NumPy {np.__version__}, "
        f"torch {torch.__version__}; lsattn at git {git}. Command: `{cmd.strip()}` ({elapsed / 60:.1f} min).",
        "",
        f"Batch 1, one head, d_k = d_v = {D}, float32, causal. Every library limited to {ARGS.threads} thread(s); "
        f"times are the best of {ARGS.repeat} calls after a warm-up, "
        + ("process CPU time (user + system; the 2 cores were shared, so wall time would count other jobs)."
           if ARGS.clock == "cpu" else "wall time."),
        "",
        "Contenders: lsattn on NumPy (array-API path and the Numba CPU backend) and on torch tensors",
        "(array-API path); the paper's published formulation (Heinsen 2024: logcumsumexp over all",
        "materialised `(T, d_k, d_v)` states, written in torch in the script; the same function as",
        f"`log_attention`), skipped where three `(T, d_k, d_v)` float32 tensors exceed {ARGS.paper_cap_gib:g} GiB",
        "(\"does not fit\"); torch `scaled_dot_product_attention(is_causal=True)`, which computes",
        "`softmax(q k^T / sqrt d) v` - ordinary softmax attention, a different kernel, timed as the speed",
        f"peer (O(T^2 d) time; run up to T = {ARGS.sdpa_max}, \"not run\" above). SDPA gets 4-D inputs",
        "`(1, 1, T, d)`, which select torch's CPU flash kernel (O(T) memory); with 3-D inputs torch takes",
        "its math path and materialises `T x T` (measured 836 MiB extra at T = 8192).",
    ]
    if failed:
        lines += ["", "Not measured: " + "; ".join(f"{CONTENDERS[n][0]}: {why}" for n, why in failed.items()) + "."]
    lines += ["", "## Summary", ""] + summary(live, Ts, times, mem)
    lines += ["", "## Time per call (ms)", ""]
    lines += md_table(["T"] + [CONTENDERS[n][0] for n in live],
                      [[T] + [fmt_t(times[n].get(T, "-")) for n in live] for T in Ts], "---:")

    ours = "log_torch" if "log_torch" in live else None
    if ours:
        lines += ["", "## Ratios (time of the peer / time of lsattn `log_attention` on torch, same inputs)", ""]
        ratios = []
        for T in Ts:
            o = times[ours].get(T)
            cells = [ratio(times.get(n, {}).get(T), o) if n in live else "-" for n in ("paper", "sdpa", "log_np", "log_numba")]
            for i, n in enumerate(("paper", "sdpa")):
                if n in live and isinstance(times[n].get(T), str):
                    cells[i] = times[n][T]
            ratios.append([T] + cells)
        lines += md_table(["T", "paper's form / ours", "SDPA / ours", "ours NumPy array API / ours torch",
                           "ours numba / ours torch"], ratios, "---:")

    lines += ["", "## Peak extra memory of one call (MiB)", "",
              "NumPy array-API columns: tracemalloc peak (every NumPy allocation of the call, output",
              "included). Numba and torch columns: growth of the process's peak RSS (`VmHWM`) over one",
              "call in a fresh subprocess after a tiny warm-up call (page granularity; a lower bound when",
              "the allocator reuses memory freed earlier). Inputs q, k, v take "
              + ", ".join(f"{3 * T * D * 4 / 2**20:g} MiB at T = {T}" for T in ARGS.mem_T[:2]) + ", ...; "
              f"one `(T, d_k, d_v)` float32 tensor takes T x {D * D * 4 // 1024} KiB (1 GiB at T = 65536).",
              ""]
    lines += md_table(["T"] + [f"{CONTENDERS[n][0]} [{CONTENDERS[n][2]}]" for n in live],
                      [[T] + [fmt_m(mem[n].get(T, "-")) for n in live] for T in ARGS.mem_T if T in Ts], "---:")
    T_acc, errs = acc
    lines += ["", f"Accuracy at T = {T_acc} (float32 inputs, max |log y - log y_ref| against the float64 reference): "
              + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()) + "."]
    write_text(RESULTS / "exp_kernel_cpu.md", lines)
    plt = pyplot()
    if plt is None:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    styles = {"log_np": "o-", "exp_np": "o--", "log_numba": "s-", "exp_numba": "s--", "log_torch": "D-",
              "exp_torch": "D--", "paper": "^-", "sdpa": "v-"}
    for n in live:
        pts = [(T, t) for T, t in times[n].items() if isinstance(t, float)]
        if pts:
            ax1.plot(*zip(*pts), styles[n], label=CONTENDERS[n][0])
        mp = [(T, m / 2**20) for T, m in mem[n].items() if isinstance(m, (int, float)) and m > 0]
        if mp:
            ax2.plot(*zip(*mp), styles[n], label=CONTENDERS[n][0])
    for ax, title, ylabel in ((ax1, "time per causal call", "seconds (best of %d)" % ARGS.repeat),
                              (ax2, "peak extra memory of one call", "MiB")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T (tokens)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}, d_k = d_v = {D}, float32, {ARGS.threads} thread(s)")
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "exp_kernel_cpu.png", dpi=110)
    print(f"wrote {RESULTS / 'exp_kernel_cpu.md'} and {RESULTS / 'exp_kernel_cpu.png'}")


def main():
    if ARGS.mem_child:
        mem_child(ARGS.mem_child[0], int(ARGS.mem_child[1]))
        return
    t0 = time.perf_counter()
    res = run()
    write(*res, time.perf_counter() - t0, accuracy())


if __name__ == "__main__":
    main()
