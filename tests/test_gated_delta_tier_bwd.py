"""The two-tier Gated DeltaNet scan's backward as a composition of per-kernel backwards (issue 16, session 24 s24c's
design for replacing gd_scan_bwd's serial walk): the float64 NumPy twin ``gd_tier_twin`` against torch autograd (CPU,
float64) of the same twin's forward and of ``lsattn.reference``.

Tolerances (max |difference| / max |reference| per output, all float64):
- the twin's forward (intra-chunk output + the two tiers' reads) against lsattn.reference: 1e-9 (observed ~1e-14;
  strong decays: exp(-30) a step);
- the twin's backward (dqe, dek, dph, dH, dg, dlam) against torch autograd of the twin's forward: 1e-10 (the same
  products in another order; observed ~1e-15);
- end to end, the twin's scan gradients carried through torch autograd of the array-API WY forms (what gd_forms_bwd
  computes) against torch autograd of lsattn.reference, for q, k, v, log_decay, beta, level_weights: 1e-8 (observed
  ~1e-13);
and each deliberate error in one piece (``gd_tier_twin.backward``'s ``mutate``) exceeds 1e-3."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import lsattn
from lsattn import gated_delta as gd
from lsattn import reference as ref
from lsattn._chunktree import chunk_layout, from_chunks, to_chunks

import gd_tier_twin as tw
from strategies import DECAYS, seeds

torch = pytest.importorskip("torch")

FWD, BWD, E2E, MUTANT = 1e-9, 1e-10, 1e-8, 1e-3
#: decay regimes: the shared ones, and hard resets (-inf at ~15% of the tokens, on top of moderate decays)
REGIMES = dict(DECAYS, reset=lambda rng, shape: np.where(rng.random(shape) < 0.15, -np.inf, -rng.random(shape)))


def make(seed, B, T, dk, dv, decay):
    """NumPy float64 inputs q, k (normalised), v, log_decay, beta, level_weights (num_levels(T) columns)."""
    rng = np.random.default_rng(seed)
    q, v = rng.standard_normal((B, T, dk)), rng.standard_normal((B, T, dv))
    k = rng.standard_normal((B, T, dk))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    a = REGIMES[decay](rng, (B, T))
    beta = rng.random((B, T))
    lam = rng.random((B, T, lsattn.num_levels(T))) + 0.25
    return q, k, v, a, beta, lam


def forms(xp, q, k, v, a, beta, lam, C):
    """The scan's inputs (qe, ek, ph, H, g) and the intra-chunk output (B, n, C, d_v), as gd_forms computes them."""
    lay = chunk_layout(0, q.shape[-2], C)
    Qc, Kc, Vc = (to_chunks(xp, x, lay, -2) for x in (q, k, v))
    ch = gd._chunk_forms(xp, Qc, Kc, Vc, to_chunks(xp, a, lay, -1), to_chunks(xp, beta, lay, -1), transition=False)
    intra = gd._masked_intra(xp, ch["attn"], Vc, to_chunks(xp, lam, lay, -2))
    return (ch["qeff"], ch["eGK"], ch["phi"], ch["H"], ch["g"]), intra, lay


def rel(x, y):
    return float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-300))


def twin_vs_autograd(seed, B, T, dk, dv, C, decay, mutate=None, grouped=False):
    """The twin's scan gradients against torch autograd of the twin's forward: the six relative errors."""
    q, k, v, a, beta, lam = make(seed, B, T, dk, dv, decay)
    (qe, ek, ph, H, g), _, lay = forms(np, q, k, v, a, beta, lam, C)
    dout = np.random.default_rng(seed + 1).standard_normal((B, lay.n_chunks, C, dv))
    ins = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (qe, ek, ph, H, g, lam)]
    out = tw.forward(torch, *ins)
    got = torch.autograd.grad(out, ins, torch.tensor(dout), allow_unused=True) if out.requires_grad else [None] * 6
    want = [np.zeros(x.shape) if gr is None else gr.numpy() for x, gr in zip(ins, got)]
    mine = tw.backward(qe, ek, ph, H, g, lam, dout, mutate, grouped)
    assert all(np.all(np.isfinite(x)) for x in mine)
    return [rel(x, y) if np.max(np.abs(y)) > 0 else float(np.max(np.abs(x))) for x, y in zip(mine, want)]


#: shapes with several periods and coarse levels: (T, C) -> n chunks, nP periods, NCL coarse levels
SHAPES = st.sampled_from([(37, 4), (70, 2), (64, 2), (129, 4), (33, 1), (150, 2), (100, 8), (150, 1)])


@given(seed=seeds, B=st.integers(1, 2), TC=SHAPES, dk=st.integers(1, 4), dv=st.integers(1, 4),
       decay=st.sampled_from(list(REGIMES)))
@example(seed=3, B=1, TC=(150, 2), dk=3, dv=2, decay="reset")  # 75 chunks, 19 periods, 5 coarse levels
@example(seed=4, B=2, TC=(129, 4), dk=2, dv=3, decay="strong")
@settings(max_examples=8)
def test_twin_forward_is_the_reference(seed, B, TC, dk, dv, decay):
    """intra + the two tiers' reads == lsattn.reference (T not a multiple of C, several periods and levels)."""
    T, C = TC
    q, k, v, a, beta, lam = make(seed, B, T, dk, dv, decay)
    (qe, ek, ph, H, g), intra, lay = forms(np, q, k, v, a, beta, lam, C)
    out = from_chunks(np, intra + tw.forward(np, qe, ek, ph, H, g, lam), lay, -2)
    want = ref.loglinear_gated_delta(q, k, v, a, beta, lam)
    assert rel(out, want) < FWD


@given(seed=seeds, B=st.integers(1, 2), TC=SHAPES, dk=st.integers(1, 4), dv=st.integers(1, 4),
       decay=st.sampled_from(list(REGIMES)), grouped=st.booleans())
@example(seed=5, B=1, TC=(150, 2), dk=3, dv=2, decay="reset", grouped=True)
@example(seed=6, B=2, TC=(37, 4), dk=4, dv=1, decay="strong", grouped=False)
@example(seed=9, B=1, TC=(150, 1), dk=2, dv=3, decay="zero", grouped=True)  # 38 periods, 6 coarse levels
@settings(max_examples=10)
def test_twin_backward_is_autograd(seed, B, TC, dk, dv, decay, grouped):
    """tier3_bwd -> coarse_bwd (per level chains or grouped) -> tier1x_bwd, tier1_bwd == torch autograd of the twin's
    forward, all six gradients."""
    T, C = TC
    errs = twin_vs_autograd(seed, B, T, dk, dv, C, decay, grouped=grouped)
    assert max(errs) < BWD, errs


@pytest.mark.parametrize("piece, decay", [("tier3", "moderate"), ("coarse", "zero"), ("coarse_g", "zero"),
                                          ("tier1x", "moderate"), ("tier1", "moderate")])
def test_twin_backward_mutant_fails(piece, decay):
    """Each piece's backward matters: one deliberate error in it (tier3: the read weight dropped; coarse: Z for Z^T,
    under zero decays, where the coarse slots carry most; coarse_g: P_4 for P_4^T in the grouped form's chain;
    tier1x: the decay e^g dropped; tier1: a merge's adjoint not passed to the merged slots) breaks the comparison
    that the test above makes."""
    C = 1 if piece == "coarse_g" else 2  # (38 periods at C = 1: group chains of several steps)
    errs = twin_vs_autograd(7, 1, 150, 3, 2, C, decay, mutate=piece, grouped=piece == "coarse_g")
    assert max(errs) > MUTANT, errs


@given(seed=seeds, TC=st.sampled_from([(37, 4), (70, 2), (45, 2)]), dk=st.integers(1, 3), dv=st.integers(1, 3),
       decay=st.sampled_from(list(REGIMES)))
@example(seed=8, TC=(70, 2), dk=2, dv=2, decay="reset")
@settings(max_examples=4)
def test_twin_end_to_end_is_reference_autograd(seed, TC, dk, dv, decay):
    """The twin's scan gradients carried through the WY forms' autograd (what gd_forms_bwd does) == torch autograd of
    lsattn.reference for every input."""
    T, C = TC
    xs = make(seed, 1, T, dk, dv, decay)
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    dout = np.random.default_rng(seed + 2).standard_normal((1, T, dv))
    want = torch.autograd.grad(ref.loglinear_gated_delta(*ts), ts, torch.tensor(dout))
    from lsattn.loglinear import _ns

    (qe, ek, ph, H, g), intra, lay = forms(_ns(ts[0]), *ts, C)
    dch = to_chunks(np, dout, lay, -2)
    scan_in = [x.detach().numpy() for x in (qe, ek, ph, H, g)]
    dqe, dek, dph, dH, dg, dlam = tw.backward(*scan_in, xs[5], dch)
    got = torch.autograd.grad([intra, qe, ek, ph, H, g], ts,
                              [torch.tensor(x) for x in (dch, dqe, dek, dph, dH, dg)], allow_unused=True)
    got = [np.zeros(x.shape) if gr is None else gr.numpy() for x, gr in zip(xs, got)]
    got[5] = got[5] + dlam
    for name, x, y in zip(["q", "k", "v", "log_decay", "beta", "lam"], got, want):
        y = y.numpy()
        assert np.all(np.isfinite(x)) and rel(x, y) < E2E, (name, rel(x, y))
