"""Training and evaluation of one MQAR model (one mixer, one cell, one learning rate)."""
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .data import IGNORE, mqar_batch
from .models import LM


def _batch(rng, batch, cell, vocab, device):
    x, y = mqar_batch(rng, batch, cell["seq_len"], cell["n_pairs"], vocab)
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
def evaluate(model, cell, cfg, device, n_seq=None, seed=10_000):
    """Accuracy at the query positions on a fixed, seeded test set of ``n_seq`` sequences."""
    rng = np.random.default_rng(seed)
    n_seq = n_seq or cfg["eval_seqs"]
    model.eval()
    hits = total = 0
    for start in range(0, n_seq, cfg["batch"]):
        x, y = _batch(rng, min(cfg["batch"], n_seq - start), cell, cfg["vocab"], device)
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


def train(kind, cell, cfg, lr, steps, device, seed=0):
    """Train mixer ``kind`` on one cell for ``steps`` steps with peak learning rate ``lr``.

    Returns a dict: ``acc`` (test accuracy at the query positions), ``loss`` (last training
    loss), ``train_s`` (wall time of the training steps) and ``tokens_per_s`` (training
    throughput, ``B * T * steps / train_s``).
    """
    model = make_model(kind, cfg, cell["seq_len"], device, seed)
    opt = make_opt(model, lr)
    rng = np.random.default_rng(seed)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        loss = train_step(model, opt, *_batch(rng, cfg["batch"], cell, cfg["vocab"], device))
    sync()
    train_s = time.perf_counter() - t0
    loss = float(loss.detach())
    acc = evaluate(model, cell, cfg, device) if math.isfinite(loss) else 0.0
    return {"acc": acc, "loss": loss, "train_s": train_s,
            "tokens_per_s": cfg["batch"] * cell["seq_len"] * steps / train_s}


def step_time(kind, cell, cfg, device, reps=2):
    """Seconds per training step of mixer ``kind`` on ``cell`` (after one warm-up step)."""
    model = make_model(kind, cfg, cell["seq_len"], device)
    opt = make_opt(model, 1e-4)
    rng = np.random.default_rng(0)
    x, y = _batch(rng, cfg["batch"], cell, cfg["vocab"], device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    train_step(model, opt, x, y)
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        train_step(model, opt, x, y)
    sync()
    return (time.perf_counter() - t0) / reps
