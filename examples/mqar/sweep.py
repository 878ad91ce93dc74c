"""The MQAR sweep: every mixer on a grid of (sequence length, key-value pairs) cells, a few peak
learning rates per cell with the best kept, fitted into a wall-clock budget; JSON, markdown
table and plot of the results."""
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from .models import MIXERS
from .train import make_model, step_time, train

QUICK = {"vocab": 32, "d_model": 64, "n_heads": 2, "batch": 32, "eval_seqs": 256,
         "lengths": [24], "pairs": [3], "lrs": [1e-2], "steps": 300, "min_steps": 50,
         "max_steps": 300}
FULL = {"vocab": 8192, "d_model": 128, "n_heads": 2, "batch": 64, "eval_seqs": 512,
        "lengths": [256, 512, 1024], "pairs": [16, 32, 64], "lrs": [3e-3, 1e-3, 1e-2],
        "steps": None, "min_steps": 150, "max_steps": 5000}


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def plan(cfg, mixers, cells, budget_s, times):
    """Steps per run, learning rates kept and cells kept so that the runs fit ``budget_s``.

    ``times[(mixer, seq_len)]`` is a measured step time; a run costs ``steps`` of them plus its
    set-up and evaluation (counted as ``ceil(eval_seqs / batch) + 2`` step times, a forward pass
    being cheaper than a step). Every run (mixer, cell, learning rate) gets the same number of
    steps. Learning rates are cut first (the first of ``cfg["lrs"]`` is kept last), then the
    cells with the longest sequences and most pairs, until runs get ``cfg["min_steps"]``.
    Returns ``(steps, lrs, cells, cut)``; ``cut`` lists in words what did not fit.
    """
    lrs, cells, cut = list(cfg["lrs"]), sorted(cells), []
    extra = -(-cfg["eval_seqs"] // cfg["batch"]) + 2

    def steps_for(cells_, lrs_):
        per_step = len(lrs_) * sum(times[(m, T)] for m in mixers for T, _ in cells_)
        return budget_s / per_step - extra

    while len(lrs) > 1 and steps_for(cells, lrs) < cfg["min_steps"]:
        cut.append(f"learning rate {lrs.pop()}")
    while len(cells) > 1 and steps_for(cells, lrs) < cfg["min_steps"]:
        T, n = cells.pop()
        cut.append(f"cell T={T} pairs={n}")
    steps = int(min(cfg["max_steps"], max(cfg["min_steps"], steps_for(cells, lrs))))
    return steps, lrs, cells, cut


def run(cfg, mixers, device, budget_s=None, out=None, log=print):
    """Run the sweep (``cfg``: QUICK or FULL, possibly edited) and write its results under ``out``.

    With ``budget_s`` the number of steps comes from measured step times (``plan``) and runs
    that would end past the budget are skipped (and listed); without it ``cfg["steps"]`` is used.
    Returns the results dict (also written as JSON when ``out`` is given).
    """
    t_start = time.perf_counter()
    cells = [(T, n) for T in cfg["lengths"] for n in cfg["pairs"] if 4 * n <= T]
    params = {}
    for m in mixers:
        total, body = make_model(m, cfg, max(cfg["lengths"]), "cpu").param_counts()
        params[m] = {"total": total, "non_embedding": body}
        log(f"{m:18s} parameters {total:9,d} (without the embedding {body:8,d})")
    times = {}
    if budget_s is not None:
        for T in cfg["lengths"]:
            cell = {"seq_len": T, "n_pairs": min(cfg["pairs"])}
            for m in mixers:
                times[(m, T)] = step_time(m, cell, cfg, device)
                log(f"step time {m:18s} T={T:5d}: {1e3 * times[(m, T)]:8.1f} ms")
        left = budget_s - (time.perf_counter() - t_start)
        steps, lrs, cells, cut = plan(cfg, mixers, cells, 0.95 * left, times)   # 5%: files
    else:
        steps, lrs, cut = cfg["steps"], list(cfg["lrs"]), []
    log(f"plan: {steps} steps per run, learning rates {lrs}, {len(cells)} cells; cut: {cut or 'nothing'}")
    runs = []
    for T, n in cells:
        for lr in lrs:
            for m in mixers:
                est = steps * times.get((m, T), 0.0)           # the run must end in budget
                if budget_s is not None and time.perf_counter() - t_start + est > budget_s:
                    cut.append(f"run {m} T={T} pairs={n} lr={lr} (out of budget)")
                    continue
                r = train(m, {"seq_len": T, "n_pairs": n}, cfg, lr, steps, device)
                runs.append({"mixer": m, "seq_len": T, "n_pairs": n, "lr": lr, "steps": steps, **r})
                log(f"T={T:5d} pairs={n:3d} lr={lr:.0e} {m:18s} acc {r['acc']:.3f} "
                    f"loss {r['loss']:.3f} {r['tokens_per_s']:10,.0f} tok/s")
    res = {"device": device_name(device), "date": datetime.date.today().isoformat(),
           "torch": torch.__version__, "config": {k: v for k, v in cfg.items()},
           "budget_s": budget_s, "wall_s": time.perf_counter() - t_start, "steps": steps,
           "cut": cut, "params": params,
           "step_time_s": {f"{m} T={T}": t for (m, T), t in times.items()}, "runs": runs}
    if out is not None:
        write(res, Path(out))
    return res


def best(res):
    """``{(mixer, seq_len, n_pairs): best run over the learning rates}``."""
    b = {}
    for r in res["runs"]:
        key = (r["mixer"], r["seq_len"], r["n_pairs"])
        if key not in b or r["acc"] > b[key]["acc"]:
            b[key] = r
    return b


def table(res):
    """The markdown table: best accuracy per mixer per cell, throughput, parameter counts."""
    b = best(res)
    cells = sorted({(T, n) for _, T, n in b})
    mixers = [m for m in MIXERS if any(k[0] == m for k in b)]
    lines = [f"# MQAR: accuracy at the query positions (best of learning rates {res['config']['lrs']})",
             "", f"{res['device']}, {res['date']}, torch {res['torch']}; {res['steps']} steps per run, "
             f"batch {res['config']['batch']}, vocabulary {res['config']['vocab']}, d_model "
             f"{res['config']['d_model']}, {res['config']['n_heads']} heads, 2 layers; wall "
             f"{res['wall_s']:.0f} s" + (f" of a {res['budget_s']:.0f} s budget" if res["budget_s"] else ""),
             "", "| mixer | params (non-emb.) | " + " | ".join(f"T={T} N={n}" for T, n in cells)
             + " | train tokens/s |", "|---|---|" + "---|" * len(cells) + "---|"]
    for m in mixers:
        accs = [f"{b[(m, T, n)]['acc']:.3f}" if (m, T, n) in b else "-" for T, n in cells]
        tps = [r["tokens_per_s"] for r in res["runs"] if r["mixer"] == m]
        p = res["params"][m]
        lines.append(f"| {m} | {p['total']:,} ({p['non_embedding']:,}) | " + " | ".join(accs)
                     + f" | {sum(tps) / len(tps):,.0f} (mean of runs) |")
    lines += ["", "Cut to fit the budget: " + ("; ".join(res["cut"]) if res["cut"] else "nothing"), ""]
    return "\n".join(lines)


def plot(res, path):
    """Accuracy against pairs, one line per mixer, one panel per sequence length."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    b = best(res)
    lengths = sorted({T for _, T, _ in b})
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 3.6), squeeze=False,
                             sharey=True)
    for ax, T in zip(axes[0], lengths):
        for m in MIXERS:
            pts = sorted((n, r["acc"]) for (mm, TT, n), r in b.items() if mm == m and TT == T)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=m)
        ax.set(title=f"T = {T}", xlabel="key-value pairs", ylim=(-0.02, 1.02))
        ax.set_xscale("log", base=2)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"MQAR, {res['steps']} steps per run: {res['device']}, {res['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(res, out):
    """``mqar_<date>.json``, ``.md`` and ``.png`` under the folder ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"mqar_{res['date']}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1))
    stem.with_suffix(".md").write_text(table(res))
    plot(res, stem.with_suffix(".png"))
