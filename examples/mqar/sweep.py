"""The MQAR sweep: one model per mixer and peak learning rate, trained on a mixture of the grid's
cells (sequence length x number of key-value pairs) and evaluated on each, the best learning
rate kept per cell; fitted into a wall-clock budget; JSON, markdown table and plot of the
results, rewritten after every run."""
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from .models import MIXERS
from .train import make_model, step_time, train

# vocab 256 and peak lr 1e-2 learn MQAR in a few hundred steps (docs/examples.md has the trials)
QUICK = {"vocab": 32, "d_model": 64, "n_heads": 2, "batch": 32, "eval_seqs": 256,
         "lengths": [24], "pairs": [3], "lrs": [1e-2], "steps": 300, "min_steps": 50,
         "max_steps": 300}
SMALL = {"vocab": 256, "d_model": 128, "n_heads": 2, "batch": 64, "eval_seqs": 256,
         "lengths": [128, 256], "pairs": [8, 16, 32], "lrs": [1e-2], "steps": 2000,
         "min_steps": 200, "max_steps": 4000}
FULL = {"vocab": 8192, "d_model": 128, "n_heads": 2, "batch": 64, "eval_seqs": 512,
        "lengths": [256, 512, 1024], "pairs": [16, 32, 64], "lrs": [3e-3, 1e-3, 1e-2],
        "steps": 5000, "min_steps": 150, "max_steps": 20000}


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def pairs_at(cfg, seq_len):
    """The numbers of pairs of ``cfg["pairs"]`` that fit sequences of length ``seq_len``."""
    return [n for n in cfg["pairs"] if 4 * n <= seq_len]


def run_overhead(cfg, seq_len):
    """The evaluation of one run's cells of length ``seq_len``, counted in training-step times
    at that length (an evaluation batch being a forward pass, cheaper than a step), plus 1 for
    the set-up."""
    return len(pairs_at(cfg, seq_len)) * -(-cfg["eval_seqs"] // cfg["batch"]) + 1


def plan(cfg, mixers, budget_s, times):
    """Steps per run, learning rates kept and lengths kept so that the runs fit ``budget_s``.

    ``times[(mixer, seq_len)]`` is a measured step time; a run (mixer, learning rate) costs
    ``steps`` steps cycling through the lengths plus ``run_overhead`` at each length. Every run
    gets the same number of steps, at most ``cfg["max_steps"]``. Learning rates are cut first
    (the first of ``cfg["lrs"]`` is kept last), then the longest lengths, until runs get
    ``cfg["min_steps"]``. Returns ``(steps, lrs, lengths, cut)``; ``cut`` lists in words what
    did not fit.
    """
    lrs, lengths, cut = list(cfg["lrs"]), sorted(cfg["lengths"]), []

    def steps_for(lengths_, lrs_):
        fixed = sum(times[(m, T)] * run_overhead(cfg, T) for m in mixers for T in lengths_)
        per_step = sum(times[(m, T)] for m in mixers for T in lengths_) / len(lengths_)
        return (budget_s / len(lrs_) - fixed) / per_step

    while len(lrs) > 1 and steps_for(lengths, lrs) < cfg["min_steps"]:
        cut.append(f"learning rate {lrs.pop()}")
    while len(lengths) > 1 and steps_for(lengths, lrs) < cfg["min_steps"]:
        cut.append(f"length T={lengths.pop()}")
    steps = int(min(cfg["max_steps"], max(cfg["min_steps"], steps_for(lengths, lrs))))
    return steps, lrs, lengths, cut


def run(cfg, mixers, device, budget_s=None, out=None, log=print, t_start=None):
    """Run the sweep (``cfg``: QUICK, SMALL or FULL, possibly edited): for each learning rate,
    each mixer trains one model on all the cells (``train``); the results go under ``out``
    after every run, so a sweep killed part way still leaves the finished runs.

    With ``budget_s`` one training step of every mixer at every length is timed first (the
    time counts), the number of steps comes from ``plan``, and the whole sweep ends within
    ``budget_s``: a run that would not get ``cfg["min_steps"]`` steps is skipped, and training
    stops at a deadline that keeps the run's evaluation and files in budget (such a run is
    marked as stopped early). Without it ``cfg["steps"]`` is used. The clock starts at
    ``t_start`` (a ``time.perf_counter()`` value; default: now). Returns the results dict.
    """
    t_start = time.perf_counter() if t_start is None else t_start
    say = log

    def log(msg):
        say(f"[{time.perf_counter() - t_start:6.1f} s] {msg}")

    lengths = [T for T in cfg["lengths"] if pairs_at(cfg, T)]
    res = {"device": device_name(device), "date": datetime.date.today().isoformat(),
           "torch": torch.__version__, "config": dict(cfg), "mixers": list(mixers),
           "budget_s": budget_s, "params": {}, "step_time_s": {}, "steps": None, "cut": [],
           "runs": [], "wall_s": 0.0}
    for m in mixers:
        total, body = make_model(m, cfg, max(lengths), "cpu").param_counts()
        res["params"][m] = {"total": total, "non_embedding": body}
        log(f"{m:18s} parameters {total:9,d} (without the embedding {body:8,d})")
    times = {}
    if budget_s is not None:
        for T in lengths:
            for m in mixers:
                times[(m, T)] = step_time(m, T, pairs_at(cfg, T), cfg, device, max(lengths))
                res["step_time_s"][f"{m} T={T}"] = times[(m, T)]
                log(f"step time {m:18s} T={T:5d}: {1e3 * times[(m, T)]:8.1f} ms")
    t0 = time.perf_counter()
    _save(res, out)                            # the first save imports matplotlib: before the plan
    write_s = time.perf_counter() - t0
    if budget_s is not None:
        left = budget_s - (time.perf_counter() - t_start)
        steps, lrs, lengths, cut = plan(cfg, mixers, 0.9 * left, times)      # 10%: files, noise
    else:
        steps, lrs, cut = cfg["steps"], list(cfg["lrs"]), []
    cells = [(T, n) for T in lengths for n in pairs_at(cfg, T)]
    res.update(steps=steps, cut=cut)
    log(f"plan: {steps} steps per run, learning rates {lrs}, cells {cells}; cut: {cut or 'nothing'}")
    for lr in lrs:
        for m in mixers:
            deadline = None
            if budget_s is not None:
                step = sum(times[(m, T)] for T in lengths) / len(lengths)
                evals = sum(times[(m, T)] * run_overhead(cfg, T) for T in lengths)
                deadline = t_start + budget_s - evals - 10 * step - 2 * write_s
                if (deadline - time.perf_counter()) / step < cfg["min_steps"]:
                    cut.append(f"run {m} lr={lr} (out of budget)")
                    log(f"skipped: {cut[-1]}")
                    continue
            r = train(m, cells, cfg, lr, steps, device, deadline=deadline)
            res["runs"].append({"mixer": m, "lr": lr, "cells": cells, "steps": steps, **r})
            log(f"lr={lr:.0e} {m:18s} acc " + " ".join(
                f"T={T},N={n}:{a:.3f}" for (T, n), a in zip(cells, r["acc"]))
                + f" loss {r['loss']:.3f} steps {r['steps_done']} {r['tokens_per_s']:10,.0f} tok/s")
            t0 = time.perf_counter()
            res["wall_s"] = t0 - t_start
            _save(res, out)
            write_s = max(write_s, time.perf_counter() - t0)
    res["wall_s"] = time.perf_counter() - t_start
    _save(res, out)
    return res


def _save(res, out):
    if out is not None:
        write(res, Path(out))


def best(res):
    """``{(mixer, seq_len, n_pairs): (accuracy, run)}``, the best over the learning rates."""
    b = {}
    for r in res["runs"]:
        for (T, n), acc in zip(r["cells"], r["acc"]):
            key = (r["mixer"], T, n)
            if key not in b or acc > b[key][0]:
                b[key] = (acc, r)
    return b


def table(res):
    """The markdown table: best accuracy per mixer per cell, throughput, parameter counts."""
    cfg, b = res["config"], best(res)
    cells = sorted({(T, n) for _, T, n in b})
    mixers = [m for m in MIXERS if any(k[0] == m for k in b)]
    lines = [f"# MQAR: accuracy at the query positions (best of learning rates {cfg['lrs']})",
             "", f"{res['device']}, {res['date']}, torch {res['torch']}; {res['steps'] or '?'} steps per run, "
             f"batch {cfg['batch']}, vocabulary {cfg['vocab']}, d_model {cfg['d_model']}, "
             f"{cfg['n_heads']} heads, 2 layers; one model per mixer and learning rate, trained on "
             f"all the cells (the steps cycle through the lengths, each batch split evenly between "
             f"the pair counts of its length), evaluated on {cfg['eval_seqs']} sequences per "
             f"cell; chance about {2 / cfg['vocab']:.3g}; wall {res['wall_s']:.0f} s"
             + (f" of a {res['budget_s']:.0f} s budget" if res["budget_s"] else ""),
             "", "| mixer | params (non-emb.) | " + " | ".join(f"T={T} N={n}" for T, n in cells)
             + " | train tokens/s |",
             "|---|---|" + "---|" * len(cells) + "---|"]
    short = False
    for m in mixers:
        accs = []
        for T, n in cells:
            if (m, T, n) not in b:
                accs.append("-")
                continue
            acc, r = b[(m, T, n)]
            stopped = r["steps_done"] < r["steps"]
            short |= stopped
            accs.append(f"{acc:.3f}" + (f" ({r['steps_done']} steps)" if stopped else ""))
        tps = [r["tokens_per_s"] for r in res["runs"] if r["mixer"] == m]
        p = res["params"][m]
        lines.append(f"| {m} | {p['total']:,} ({p['non_embedding']:,}) | " + " | ".join(accs)
                     + f" | {sum(tps) / len(tps):,.0f} |")
    if short:
        lines += ["", "(k steps): the run was stopped by the budget's deadline after k steps."]
    lines += ["", "Cut to fit the budget: " + ("; ".join(res["cut"]) if res["cut"] else "nothing"), ""]
    return "\n".join(lines)


def plot(res, path):
    """Accuracy against pairs, one line per mixer, one panel per sequence length."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    b = best(res)
    lengths = sorted({T for _, T, _ in b}) or sorted(res["config"]["lengths"])
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 3.6), squeeze=False,
                             sharey=True)
    for ax, T in zip(axes[0], lengths):
        for m in MIXERS:
            pts = sorted((n, acc) for (mm, TT, n), (acc, _) in b.items() if mm == m and TT == T)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=m)
        ax.set(title=f"T = {T}", xlabel="key-value pairs", ylim=(-0.02, 1.02))
        ax.set_xscale("log", base=2)
    axes[0][0].set_ylabel("accuracy")
    if b:
        axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"MQAR, {res['steps'] or '?'} steps per run, vocabulary {res['config']['vocab']}: "
                 f"{res['device']}, {res['date']}", fontsize=9)
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
