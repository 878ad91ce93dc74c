"""The MQAR example (examples/mqar): its data, one training step of every mixer, the budgeted
sweep (plan, deadline, files), and a short CPU training run that must learn (accuracy far above
chance), so a wrong gradient fails here."""
import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from examples.mqar.data import IGNORE, mqar_batch  # noqa: E402
from examples.mqar.models import MIXERS  # noqa: E402
from examples.mqar.sweep import QUICK, SMALL, plan, run  # noqa: E402
from examples.mqar.train import _batch, make_model, make_opt, train, train_step  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture
def one_thread():
    """Tiny tensors: more threads only add overhead (10x on a loaded 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("T,n,vocab", [(24, 3, 32), (64, 16, 64), (256, 5, 8192)])
def test_mqar_batch_queries_ask_for_the_paired_value(T, n, vocab):
    x, y = mqar_batch(np.random.default_rng(T), 8, T, n, vocab)
    assert x.shape == y.shape == (8, T) and x.min() >= 1 and x.max() < vocab
    for row_x, row_y in zip(x, y):
        keys, values = row_x[:2 * n:2], row_x[1:2 * n:2]
        assert len(set(keys.tolist())) == n and (keys < vocab // 2).all() and (values >= vocab // 2).all()
        pos = np.flatnonzero(row_y != IGNORE)
        assert len(pos) == n and (pos >= 2 * n).all()
        pairs = dict(zip(keys.tolist(), values.tolist()))
        assert sorted(row_x[pos].tolist()) == sorted(keys.tolist())          # every key asked once
        assert all(pairs[row_x[p]] == row_y[p] for p in pos)
    x2, y2 = mqar_batch(np.random.default_rng(T), 8, T, n, vocab)
    assert (x2 == x).all() and (y2 == y).all()                               # seeded


def test_mqar_batch_rejects_too_many_pairs():
    with pytest.raises(ValueError, match="seq_len"):
        mqar_batch(np.random.default_rng(0), 1, 16, 5, 64)
    with pytest.raises(ValueError, match="n_pairs"):
        mqar_batch(np.random.default_rng(0), 1, 64, 16, 32)


def test_mixed_batch_splits_rows_between_pair_counts():
    x, y = _batch(np.random.default_rng(0), 7, 32, [2, 4, 8], 64, CPU)
    assert x.shape == y.shape == (7, 32)
    queries = (y != IGNORE).sum(1).tolist()
    assert queries == [2, 2, 2, 4, 4, 8, 8]                                  # array_split order


def test_parameter_budgets_match():
    counts = {m: make_model(m, QUICK, 1024, CPU).param_counts() for m in MIXERS}
    for i in (0, 1):                                                         # total, non-embedding
        lo, hi = min(c[i] for c in counts.values()), max(c[i] for c in counts.values())
        assert hi <= 1.1 * lo, counts


@pytest.mark.parametrize("kind", MIXERS)
def test_one_step_every_mixer(kind):
    """Every mixer: finite loss, a gradient for every parameter, and the step lowers the loss on
    the same batch (a tiny learning rate)."""
    model = make_model(kind, QUICK, 24, CPU)
    x, y = (torch.from_numpy(a) for a in mqar_batch(np.random.default_rng(0), 4, 24, 3, 32))
    opt = make_opt(model, 1e-3)
    loss0 = float(train_step(model, opt, x, y).detach())
    grads = {n: p.grad for n, p in model.named_parameters()}
    missing = [n for n, g in grads.items() if g is None or not torch.isfinite(g).all()]
    assert not missing, missing
    with torch.no_grad():
        loss1 = float(torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten(),
                                                        ignore_index=IGNORE))
    assert np.isfinite(loss0) and loss1 < loss0


def test_plan_fits_the_budget_and_says_what_it_cut():
    cfg = dict(QUICK, lengths=[24, 48], pairs=[3, 6], lrs=[1e-2, 3e-3], min_steps=100,
               max_steps=10_000)
    times = {(m, T): 0.01 * T / 24 for m in ("a", "b") for T in (24, 48)}
    steps, lrs, lengths, cut = plan(cfg, ["a", "b"], 4.01, times)
    assert lrs == [1e-2] and lengths == [24] and cut == ["learning rate 0.003", "length T=48"]
    per_step = sum(times[(m, 24)] for m in ("a", "b"))                       # both runs
    spent = (steps + 2 * 256 // 32 + 1) * per_step                           # 2 counts x 8 batches
    assert 100 <= steps and spent <= 4.01 < spent + per_step                 # one more step: over
    steps, lrs, lengths, cut = plan(cfg, ["a", "b"], 1e4, times)            # plenty: nothing cut
    assert (steps, lrs, lengths, cut) == (10_000, [1e-2, 3e-3], [24, 48], [])


def test_train_stops_at_the_deadline():
    r = train("softmax", [(16, 2), (16, 3)], dict(QUICK, batch=4, eval_seqs=4), 1e-2, 1000, CPU,
              deadline=time.perf_counter())
    assert r["steps_done"] == 10 and len(r["acc"]) == 2                     # checked every 10 steps


def test_budgeted_run_ends_in_budget_and_writes_every_run(tmp_path, one_thread):
    """Two mixers, two lengths, two pair counts (one of which does not fit the shorter length):
    steps come from the budget, every run's accuracies land in the JSON and markdown, and the
    whole run (timing included) ends in it."""
    cfg = dict(SMALL, vocab=32, d_model=32, batch=8, eval_seqs=16, lengths=[8, 16], pairs=[2, 3],
               min_steps=5, max_steps=20)
    t0 = time.perf_counter()
    res = run(cfg, ["softmax", "mamba2"], CPU, budget_s=60.0, out=tmp_path, log=lambda _: None,
              t_start=t0)
    wall = time.perf_counter() - t0
    assert wall <= 60.0 and res["wall_s"] <= wall
    assert 5 <= res["steps"] <= 20 and len(res["step_time_s"]) == 4
    saved = json.loads(next(tmp_path.glob("mqar_*.json")).read_text())
    cells = [[8, 2], [16, 2], [16, 3]]
    assert [(r["mixer"], r["cells"], len(r["acc"])) for r in saved["runs"]] == [
        ("softmax", cells, 3), ("mamba2", cells, 3)]
    md = next(tmp_path.glob("mqar_*.md")).read_text()
    assert "T=16 N=3" in md and "| mamba2 |" in md and next(tmp_path.glob("mqar_*.png"))


@pytest.mark.slow
def test_quick_run_learns(one_thread):
    """The --quick cell, one linear-time mixer: chance is 1 / 16 (values are half the vocabulary)."""
    r = train("mamba2", [(QUICK["lengths"][0], QUICK["pairs"][0])], QUICK, QUICK["lrs"][0],
              QUICK["steps"], CPU)
    assert r["acc"][0] > 0.4, r                  # a wrong gradient stays near 1 / 16
