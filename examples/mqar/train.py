"""Training and evaluation of one MQAR model (one mixer, one learning rate): trained on a
mixture of cells (sequence length, number of key-value pairs), as Zoology trains on a mixture of
configurations, and evaluated on each cell."""
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .data import IGNORE, mqar_batch
from .models import LM


def _batch(rng, batch, seq_len, pairs, vocab, device):
    """``(inputs, targets)``, each ``(batch, seq_len)`` on ``device``: the rows are split as
    evenly as possible between the numbers of key-value pairs in ``pairs``."""
    parts = [mqar_batch(rng, len(rows), seq_len, n, vocab)
             for n, rows in zip(pairs, np.array_split(np.arange(batch), len(pairs))) if len(rows)]
    x, y = (np.concatenate(a) for a in zip(*parts))
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def make_model(kind, cfg, seq_len, device, seed=0):
    """The model of mixer ``kind`` for sequences up to ``seq_len``, initialised from ``seed``."""
    torch.manual_seed(seed)
    return LM(kind, cfg["vocab"], cfg["d_model"], cfg["n_heads"], seq_len).to(device)


def lr_at(step, steps, lr):
    """The schedule every mixer shares: linear warm-up over 10% of the steps, then cosine to 0."""
    warm = max(1, steps // 10)
    if step < warm:
        return lr * (step + 1) / warm
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


@torch.no_grad()
def evaluate(model, seq_len, n_pairs, cfg, device, seed=10_000):
    """Accuracy at the query positions on a fixed, seeded test set of ``cfg["eval_seqs"]``
    sequences of length ``seq_len`` with ``n_pairs`` key-value pairs."""
    rng = np.random.default_rng(seed)
    model.eval()
    hits = total = 0
    for start in range(0, cfg["eval_seqs"], cfg["batch"]):
        x, y = _batch(rng, min(cfg["batch"], cfg["eval_seqs"] - start), seq_len, [n_pairs],
                      cfg["vocab"], device)
        pred = model(x).argmax(-1)
        mask = y != IGNORE
        hits += int((pred[mask] == y[mask]).sum())
        total += int(mask.sum())
    model.train()
    return hits / total


def train_step(model, opt, x, y):
    """One AdamW step on the cross-entropy of the query positions; returns the loss."""
    logits = model(x)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss


def make_opt(model, lr):
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.98))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(kind, cells, cfg, lr, steps, device, seed=0, deadline=None):
    """Train mixer ``kind`` on the cells ``cells`` (a list of ``(seq_len, n_pairs)``) for
    ``steps`` steps with peak learning rate ``lr``; then evaluate it on each cell.

    Step ``i`` takes a batch of the ``i % len(lengths)``-th of the distinct lengths, its rows
    split evenly between the cells of that length (Zoology trains on such a mixture too). With
    ``deadline`` (a ``time.perf_counter()`` value) training stops at the first tenth step that
    ends past it (the schedule stays the one of ``steps`` steps). Returns a dict: ``acc`` (test
    accuracy at the query positions, one per cell), ``loss`` (last training loss),
    ``steps_done``, ``train_s`` (wall time of the training steps) and ``tokens_per_s``
    (training throughput, tokens of the batches trained on / ``train_s``).
    """
    lengths = sorted({T for T, _ in cells})
    pairs = {T: [n for TT, n in cells if TT == T] for T in lengths}
    model = make_model(kind, cfg, lengths[-1], device, seed)
    opt = make_opt(model, lr)
    rng = np.random.default_rng(seed)
    _sync(device)
    t0 = time.perf_counter()
    done = tokens = 0
    while done < steps:
        T = lengths[done % len(lengths)]
        for g in opt.param_groups:
            g["lr"] = lr_at(done, steps, lr)
        loss = train_step(model, opt, *_batch(rng, cfg["batch"], T, pairs[T], cfg["vocab"], device))
        done, tokens = done + 1, tokens + cfg["batch"] * T
        if deadline is not None and done % 10 == 0:
            _sync(device)
            if time.perf_counter() > deadline:
                break
    _sync(device)
    train_s = time.perf_counter() - t0
    loss = float(loss.detach())
    accs = [evaluate(model, T, n, cfg, device) if math.isfinite(loss) else 0.0 for T, n in cells]
    return {"acc": accs, "loss": loss, "steps_done": done, "train_s": train_s,
            "tokens_per_s": tokens / train_s}


def step_time(kind, seq_len, pairs, cfg, device, max_len=None, reps=2):
    """Seconds per training step of mixer ``kind`` at length ``seq_len`` with the pair counts
    ``pairs`` (the model made for ``max_len``, default ``seq_len``), making the batch included,
    after one warm-up step (which compiles whatever the first call compiles)."""
    model = make_model(kind, cfg, max_len or seq_len, device)
    opt = make_opt(model, 1e-4)
    rng = np.random.default_rng(0)
    train_step(model, opt, *_batch(rng, cfg["batch"], seq_len, pairs, cfg["vocab"], device))
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        train_step(model, opt, *_batch(rng, cfg["batch"], seq_len, pairs, cfg["vocab"], device))
    _sync(device)
    return (time.perf_counter() - t0) / reps
