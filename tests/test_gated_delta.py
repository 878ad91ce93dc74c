"""loglinear_gated_delta (log-linear Gated DeltaNet): chunkwise form vs recurrent form vs
lsattn.reference, on every namespace.

Tolerances (max |out - ref| / max |ref|, per call, against the float64 reference):

- float64 inputs: 1e-10 for both forms, normalised keys with beta in [0, 1] and unnormalised keys
  (std up to 1, beta in [0, 1]: transitions up to ~5x expansive per step); the forms agree with
  each other to the same bound. Observed: about 1e-14 at worst.
- float32 inputs: 1e-5 for normalised keys with beta in [0, 1], and for unnormalised keys of std
  up to 0.5 (observed about 1e-6). Streamed outputs and states match one call to these bounds.
"""

import array_api_compat
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lsattn
from lsattn import gated_delta as gd
from lsattn import reference as ref
from lsattn.fenwick import bucket, levels_of_position
from lsattn.state import State

from conftest import namespace
from helpers import assert_close, on, property_tests, to_numpy, traced_peak
from strategies import batch_shapes, decays, head_dims, log_decay, magnitudes, seeds, seq_lens, split_points

F64, F32 = 1e-10, 1e-5
chunk_sizes = st.sampled_from([1, 2, 4, 8, 16, 32, 64])
weight_kinds = st.sampled_from(["random", "ones", "negative"])
#: keys: L2-normalised with beta in [0, 1] (the usual use), or unnormalised of std ``key_scale``
key_kinds = st.sampled_from(["normalised", "raw"])
FORMS = {"chunk": gd._chunkwise, "recurrent": gd._recurrent}

#: Eager JAX compiles every operation for every new shape (about a second per call of a form here;
#: jit is slower still: the recurrent form unrolls), so JAX's property runs draw fewer examples from
#: a few fixed shapes (compilations are then shared). NumPy, array-api-strict and torch get the
#: profile's full count over all shapes.
JAX_EXAMPLES = max(2, settings.default.max_examples // 6)  # 2 in the ci profile (CI time)
JAX_T = [1, 6, 19]
JAX_SHAPES = {
    "batch": st.just((2,)), "dk": st.just(3), "dv": st.just(2), "T": st.sampled_from(JAX_T),
    "C": st.sampled_from([1, 4]),
}


every_namespace = property_tests(JAX_EXAMPLES, jax_shapes=JAX_SHAPES)


def make(seed, batch, T, dk, dv, *, keys="normalised", key_scale=0.5, q_scale=1.0, decay="moderate",
         weights="random", betas="unit", extra_levels=0, offset=0):
    """NumPy float64 inputs: q, k, v, log_decay, beta, level_weights (levels for offset + T, plus extra)."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(batch + (T, dk)) * q_scale
    k = rng.standard_normal(batch + (T, dk))
    k = k / np.linalg.norm(k, axis=-1, keepdims=True) if keys == "normalised" else k * key_scale
    v = rng.standard_normal(batch + (T, dv))
    a = log_decay(rng, batch + (T,), decay)
    beta = {"unit": rng.random(batch + (T,)), "one": np.ones(batch + (T,))}[betas]
    L = lsattn.num_levels(offset + T) + extra_levels
    lam = {
        "random": rng.standard_normal(batch + (T, L)),
        "ones": np.ones(batch + (T, L)),
        "negative": -rng.random(batch + (T, L)) - 0.5,
    }[weights]
    return q, k, v, a, beta, lam


def call(xp, arrays, **kw):
    return lsattn.loglinear_gated_delta(*on(xp, arrays), **kw)


def run_form(form, xp_arrays, C=64, state=None, return_state=False):
    """One of the two forms directly (inputs already validated and in the compute dtype)."""
    out, new = FORMS[form](*xp_arrays, C, state, return_state)
    return (out, new) if return_state else out


def slice_tokens(arrays, i0, i1):
    q, k, v, a, b, lam = arrays
    return q[..., i0:i1, :], k[..., i0:i1, :], v[..., i0:i1, :], a[..., i0:i1], b[..., i0:i1], lam[..., i0:i1, :]


def gated_deltanet(q, k, v, a, beta):
    """Plain Gated DeltaNet, straight from S_t = A_t S_{t-1} + beta_t k_t v_t^T, o_t = S_t^T q_t."""
    S = np.zeros(q.shape[:-2] + (q.shape[-1], v.shape[-1]))
    out = []
    for t in range(q.shape[-2]):
        kt, bt = k[..., t, :], beta[..., t, None, None]
        S = np.exp(a[..., t])[..., None, None] * (S - bt * kt[..., :, None] * np.einsum("...i,...ij->...j", kt, S)[..., None, :])
        S = S + bt * kt[..., :, None] * v[..., t, None, :]
        out.append(np.einsum("...i,...ij->...j", q[..., t, :], S))
    return np.stack(out, axis=-2)


# ---- chunkwise vs recurrent vs reference -------------------------------------------------------

@every_namespace(
    batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunk_sizes, keys=key_kinds,
    key_scale=st.sampled_from([0.3, 0.6, 1.0]), q_scale=magnitudes, decay=decays, weights=weight_kinds,
    extra=st.integers(0, 2), seed=seeds,
)
def _forms_match_reference_float64(xp, batch, T, dk, dv, C, keys, key_scale, q_scale, decay, weights, extra, seed):
    arrays = make(seed, batch, T, dk, dv, keys=keys, key_scale=key_scale, q_scale=q_scale, decay=decay,
                  weights=weights, extra_levels=extra)
    expected = ref.loglinear_gated_delta(*arrays)
    chunk = run_form("chunk", on(xp, arrays), C)
    rec = run_form("recurrent", on(xp, arrays), C)
    for out in (chunk, rec):
        assert out.dtype == xp.float64 and tuple(out.shape) == batch + (T, dv)
    assert_close(chunk, expected, F64, what=f"chunkwise T={T} C={C}")
    assert_close(rec, expected, F64, what=f"recurrent T={T}")
    assert_close(chunk, rec, F64, what="chunkwise vs recurrent")
    assert_close(call(xp, arrays, chunk_size=C), expected, F64, what="public")


test_forms_match_reference_float64, test_forms_match_reference_float64_jax = _forms_match_reference_float64


@every_namespace(
    batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunk_sizes, keys=key_kinds,
    key_scale=st.sampled_from([0.1, 0.3, 0.5]), decay=decays, seed=seeds,
)
def _float32_bound(xp, batch, T, dk, dv, C, keys, key_scale, decay, seed):
    arrays32 = [x.astype(np.float32) for x in make(seed, batch, T, dk, dv, keys=keys, key_scale=key_scale, decay=decay)]
    expected = ref.loglinear_gated_delta(*[x.astype(np.float64) for x in arrays32])
    for form in FORMS:
        out = run_form(form, on(xp, arrays32, "float32"), C)
        assert out.dtype == xp.float32
        assert_close(out, expected, F32, what=form)


test_float32_bound, test_float32_bound_jax = _float32_bound


@every_namespace(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunk_sizes, keys=key_kinds,
       decay=decays, seed=seeds)
def _unit_weights_is_gated_deltanet(xp, batch, T, dk, dv, C, keys, decay, seed):
    """lambda == 1: both forms compute Gated DeltaNet, checked against its own recurrence."""
    q, k, v, a, b, lam = make(seed, batch, T, dk, dv, keys=keys, decay=decay, weights="ones")
    expected = gated_deltanet(q, k, v, a, b)
    assert_close(ref.loglinear_gated_delta(q, k, v, a, b, lam), expected, F64, what="reference")
    for form in FORMS:
        assert_close(run_form(form, on(xp, (q, k, v, a, b, lam)), C), expected, F64, what=form)


test_unit_weights_is_gated_deltanet, test_unit_weights_is_gated_deltanet_jax = _unit_weights_is_gated_deltanet


def test_hand_worked_two_tokens():
    """T = 2, d_k = d_v = 1: o_1 = lam[1,0] b_1 q_1 k_1 v_1 + lam[1,1] b_0 q_1 e^{a_1}(1 - b_1 k_1^2) k_0 v_0."""
    q, k, v = np.array([[0.5], [2.0]]), np.array([[1.5], [-0.5]]), np.array([[3.0], [-1.0]])
    a, b = np.array([-0.2, -0.7]), np.array([0.4, 0.9])
    lam = np.array([[2.0, 0.0], [-1.5, 0.25]])
    o0 = lam[0, 0] * b[0] * 0.5 * 1.5 * 3.0
    o1 = lam[1, 0] * b[1] * 2.0 * -0.5 * -1.0 + lam[1, 1] * b[0] * 2.0 * np.exp(-0.7) * (1 - 0.9 * 0.25) * 1.5 * 3.0
    for form in FORMS:
        np.testing.assert_allclose(run_form(form, [q, k, v, a, b, lam], 2)[:, 0], [o0, o1], rtol=1e-14)


@given(batch=batch_shapes, T=st.integers(1, 80), keys=key_kinds, decay=decays, seed=seeds)
def test_chunk_size_invariance(xp_eager, batch, T, keys, decay, seed):
    """Results do not depend on the chunk size (eager namespaces: on JAX every chunk size is a new
    set of compilations; the JAX property tests draw two)."""
    xp = xp_eager
    arrays = on(xp, make(seed, batch, T, 3, 2, keys=keys, decay=decay))
    outs = [to_numpy(run_form("chunk", arrays, C)) for C in (1, 4, 16, 128)]
    for o in outs[1:]:
        assert_close(o, outs[0], F64)



@pytest.mark.parametrize(
    "T,C",
    [(1, 64), (1, 1), (2, 1), (63, 64), (64, 64), (65, 64), (65, 16), (129, 32), (257, 8), (100, 64), (17, 4), (33, 2)],
)
def test_edge_lengths(xp_eager, T, C):
    """T = 1, T not a multiple of C, T just above a power of two."""
    xp = xp_eager
    arrays = make(T * 7 + C, (2,), T, 4, 3)
    expected = ref.loglinear_gated_delta(*arrays)
    assert_close(run_form("chunk", on(xp, arrays), C), expected, F64, what=f"T={T} C={C}")
    if T <= 65:
        assert_close(run_form("recurrent", on(xp, arrays), C), expected, F64, what=f"recurrent T={T}")


def test_special_transitions(xp_eager):
    """beta = 0: nothing is written, o = 0. Strong decay: only the token's own write survives,
    o_t = lambda[t, 0] beta_t (q_t . k_t) v_t. beta = 1 with normalised keys: projections."""
    xp = xp_eager
    q, k, v, a, b, lam = make(5, (2,), 40, 3, 2)
    for form in FORMS:
        zero = run_form(form, on(xp, (q, k, v, a, np.zeros_like(b), lam)), 8)
        assert_close(zero, np.zeros((2, 40, 2)), 0.0, atol=0.0)
        strong = run_form(form, on(xp, (q, k, v, np.full_like(a, -2000.0), b, lam)), 8)
        own = lam[..., :1] * b[..., None] * np.sum(q * k, axis=-1, keepdims=True) * v
        assert_close(strong, own, F64, what=f"{form} strong decay")
        arrays = make(6, (2,), 40, 3, 2, betas="one", decay="zero")
        assert_close(run_form(form, on(xp, arrays), 8), ref.loglinear_gated_delta(*arrays), F64, what=f"{form} beta=1")


def test_extra_levels_ignored(xp_eager):
    xp = xp_eager
    arrays = make(3, (2,), 21, 3, 3, extra_levels=4)
    trimmed = arrays[:5] + (arrays[5][..., : lsattn.num_levels(21)],)
    for form in FORMS:
        assert_close(run_form(form, on(xp, arrays), 4), run_form(form, on(xp, trimmed), 4), 0.0)


# ---- streaming ---------------------------------------------------------------------------------

@given(
    batch=batch_shapes, T=st.integers(2, 80), C=chunk_sizes, keys=key_kinds, decay=decays,
    forms=st.lists(st.sampled_from(list(FORMS)), min_size=5, max_size=5), data=st.data(), seed=seeds,
)
def test_stream_split_invariance(xp_eager, batch, T, C, keys, decay, forms, data, seed):
    """Any cut points, each piece by either form: the concatenated outputs equal one call and the
    reference, and the final state equals one call's state. (Eager namespaces; JAX streams through
    both forms in test_jax_fixed_cases.)"""
    xp = xp_eager
    arrays = make(seed, batch, T, 3, 2, keys=keys, decay=decay)
    cuts = [0] + data.draw(split_points(T)) + [T]
    whole, whole_state = run_form("chunk", on(xp, arrays), C, return_state=True)
    state, outs = None, []
    for form, (i0, i1) in zip(forms, zip(cuts[:-1], cuts[1:])):
        o, state = run_form(form, on(xp, slice_tokens(arrays, i0, i1)), C, state=state, return_state=True)
        outs.append(to_numpy(o))
    streamed = np.concatenate(outs, axis=-2)
    assert_close(streamed, ref.loglinear_gated_delta(*arrays), F64, what=f"cuts {cuts} forms {forms}")
    assert_close(streamed, whole, F64)
    assert state.offset == T and whole_state.offset == T
    assert_close(state.tensors["levels"], whole_state.tensors["levels"], F64, what="state levels")
    _, rec_state = run_form("recurrent", on(xp, arrays), C, return_state=True)
    assert_close(whole_state.tensors["levels"], rec_state.tensors["levels"], F64, what="chunkwise vs recurrent state")



@given(batch=batch_shapes, T=st.integers(2, 60), C=chunk_sizes, data=st.data(), seed=seeds)
def test_stream_float32(batch, T, C, data, seed):
    """float32 streaming through the public API (array-API path, both forms by length) stays within
    the float32 bound."""
    arrays = [x.astype(np.float32) for x in make(seed, batch, T, 4, 3)]
    cuts = [0] + data.draw(split_points(T, max_splits=6)) + [T]
    state, outs = None, []
    for i0, i1 in zip(cuts[:-1], cuts[1:]):
        o, state = lsattn.loglinear_gated_delta(
            *slice_tokens(arrays, i0, i1), chunk_size=C, state=state, return_state=True, backend="array_api")
        assert o.dtype == np.float32 and state.tensors["levels"].dtype == np.float32
        outs.append(o)
    expected = ref.loglinear_gated_delta(*[x.astype(np.float64) for x in arrays])
    assert_close(np.concatenate(outs, axis=-2), expected, F32, what=f"cuts {cuts}")


def test_token_by_token_decode_equals_one_call(xp_eager):
    xp = xp_eager
    T = 37
    arrays = make(1, (2,), T, 3, 4)
    whole = to_numpy(call(xp, arrays))
    state, outs = None, []
    for t in range(T):
        o, state = call(xp, slice_tokens(arrays, t, t + 1), state=state, return_state=True)
        outs.append(to_numpy(o))
        # JAX states keep a fixed number of level slots, the level weights' L (lsattn.state)
        slots = arrays[-1].shape[-1] if array_api_compat.is_jax_namespace(xp) else (t + 1).bit_length()
        assert tuple(state.tensors["levels"].shape) == (2, slots, 3, 4)
    assert_close(np.concatenate(outs, axis=-2), whole, F64)


def transition(k, a, b, r):
    """A_r (batch 0) as an explicit matrix."""
    return np.exp(a[r]) * (np.eye(k.shape[-1]) - b[r] * np.outer(k[r], k[r]))


@given(p=st.integers(1, 150), T=st.integers(1, 40), C=chunk_sizes, form=st.sampled_from(list(FORMS)), seed=seeds)
def test_state_levels_are_the_fenwick_buckets(p, T, C, form, seed):
    """Slot l-1 of the state at offset p is sum_{s in B_p^l} beta_s (A_{p-1} ... A_{s+1} k_s) v_s^T,
    built here from explicit d_k x d_k matrices."""
    q, k, v, a, b, lam = arrays = make(seed, (), p + T, 3, 2, keys="raw")
    _, s1 = run_form(form, slice_tokens(arrays, 0, p), C, return_state=True)
    _, s2 = run_form(form, slice_tokens(arrays, p, p + T), C, state=s1, return_state=True)
    for state, end in ((s1, p), (s2, p + T)):
        levels = to_numpy(state.tensors["levels"])
        assert levels.shape == (end.bit_length(), 3, 2) and state.offset == end
        for l in range(1, end.bit_length() + 1):
            want = np.zeros((3, 2))
            if l in levels_of_position(end):
                lo, hi = bucket(end, l)
                for s in range(lo, hi):
                    x = b[s] * k[s]
                    for r in range(s + 1, end):
                        x = transition(k, a, b, r) @ x
                    want += np.outer(x, v[s])
            np.testing.assert_allclose(levels[l - 1], want, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(want).max()))


def test_stream_offsets_near_powers_of_two(xp_eager):
    """Splits right around 2^k, so states cross many levels at once; both forms."""
    xp = xp_eager
    T = 70
    arrays = make(9, (), T, 2, 3, keys="raw")
    expected = ref.loglinear_gated_delta(*arrays)
    for form in FORMS:
        for cuts in ([0, 31, 32, 33, 70], [0, 15, 64, 65, 70], [0, 1, 2, 3, 4, 63, 70], [0, 63, 64, 70]):
            state, outs = None, []
            for i0, i1 in zip(cuts[:-1], cuts[1:]):
                o, state = run_form(form, on(xp, slice_tokens(arrays, i0, i1)), 16, state=state, return_state=True)
                outs.append(to_numpy(o))
            assert_close(np.concatenate(outs, axis=-2), expected, F64, what=f"{form} cuts {cuts}")


def test_empty_call_keeps_the_state(xp_eager):
    xp = xp_eager
    arrays = make(2, (2,), 9, 3, 2)
    _, state = call(xp, arrays, return_state=True)
    for form in FORMS:
        out, same = run_form(form, on(xp, slice_tokens(arrays, 0, 0)), 4, state=state, return_state=True)
        assert tuple(out.shape) == (2, 0, 2) and same.offset == 9


def test_public_call_picks_the_form_by_length(monkeypatch):
    seen = []
    for name in ("_recurrent", "_chunkwise"):
        real = getattr(gd, name)
        monkeypatch.setattr(gd, name, lambda *a, real=real, name=name: seen.append(name) or real(*a))
    arrays = make(0, (), 20, 2, 2)
    lsattn.loglinear_gated_delta(*slice_tokens(arrays, 0, gd.RECURRENT_MAX_T), backend="array_api")
    lsattn.loglinear_gated_delta(*slice_tokens(arrays, 0, gd.RECURRENT_MAX_T + 1), backend="array_api")
    assert seen == ["_recurrent", "_chunkwise"]


def test_jax_fixed_cases(xp_jax):
    """Fixed cases once on JAX (eager; the property tests run there too, with fewer examples and
    the same shapes): strong decay, a stream through both forms with state in and out, too few levels."""
    xp = xp_jax
    arrays = make(0, (2,), 19, 3, 2, keys="raw")
    expected = ref.loglinear_gated_delta(*arrays)
    q, k, v, a, b, lam = arrays
    own = lam[..., :1] * b[..., None] * np.sum(q * k, -1, keepdims=True) * v
    assert_close(run_form("chunk", on(xp, (q, k, v, np.full_like(a, -2000.0), b, lam)), 4), own, F64)
    state, outs = None, []
    for form, (i0, i1) in zip(("chunk", "recurrent", "chunk", "recurrent"), ((0, 6), (6, 7), (7, 13), (13, 19))):
        o, state = run_form(form, on(xp, slice_tokens(arrays, i0, i1)), 4, state=state, return_state=True)
        outs.append(to_numpy(o))
    assert_close(np.concatenate(outs, axis=-2), expected, F64)
    _, whole = run_form("chunk", on(xp, arrays), 4, return_state=True)
    assert_close(state.tensors["levels"], whole.tensors["levels"], F64)
    with pytest.raises(ValueError, match="need.*6"):
        call(xp, list(arrays[:5]) + [arrays[5][..., :5]])

# ---- dtypes, validation ------------------------------------------------------------------------

def test_half_precision_in_half_out():
    arrays = [x.astype(np.float16) for x in make(4, (2,), 20, 4, 4)]
    out = lsattn.loglinear_gated_delta(*arrays, backend="array_api")
    assert out.dtype == np.float16
    assert_close(out, ref.loglinear_gated_delta(*[x.astype(np.float64) for x in arrays]), 2e-3)


def test_inputs_not_modified():
    arrays = make(4, (2,), 20, 4, 4)
    copies = [x.copy() for x in arrays]
    _, state = lsattn.loglinear_gated_delta(*arrays, chunk_size=4, return_state=True, backend="array_api")
    lsattn.loglinear_gated_delta(*slice_tokens(arrays, 0, 1), state=state, backend="array_api")
    for x, c in zip(arrays, copies):
        np.testing.assert_array_equal(x, c)


def test_too_few_levels_says_how_many(xp_eager):
    xp = xp_eager
    q, k, v, a, b, lam = make(0, (), 9, 2, 2)  # num_levels(9) = 5
    with pytest.raises(ValueError, match="need.*5"):
        call(xp, (q, k, v, a, b, lam[..., :4]))
    _, state = call(xp, (q, k, v, a, b, lam), return_state=True)
    q2, k2, v2, a2, b2, lam2 = make(1, (), 8, 2, 2)  # offset 9 + 8 = 17 -> num_levels 6
    with pytest.raises(ValueError, match="6"):
        lsattn.loglinear_gated_delta(*on(xp, (q2, k2, v2, a2, b2, lam2[..., :5])), state=state)


@pytest.mark.parametrize("C", [0, 3, 12, -4])
def test_chunk_size_must_be_power_of_two(C):
    with pytest.raises(ValueError, match="power of two"):
        lsattn.loglinear_gated_delta(*make(0, (), 4, 2, 2), chunk_size=C)


def test_bad_inputs_name_the_argument():
    q, k, v, a, b, lam = make(0, (2,), 6, 3, 2)
    with pytest.raises(ValueError, match="^k "):
        lsattn.loglinear_gated_delta(q, k[..., :2], v, a, b, lam)
    with pytest.raises(ValueError, match="^v "):
        lsattn.loglinear_gated_delta(q, k, v[:, :5], a, b, lam)
    with pytest.raises(ValueError, match="log_decay"):
        lsattn.loglinear_gated_delta(q, k, v, a[..., None], b, lam)
    with pytest.raises(ValueError, match="^beta "):
        lsattn.loglinear_gated_delta(q, k, v, a, b[..., :5], lam)
    with pytest.raises(ValueError, match="level_weights"):
        lsattn.loglinear_gated_delta(q, k, v, a, b, np.concatenate([lam, lam[:1]]))  # batch 3 against 2
    with pytest.raises(TypeError, match="beta must have a real floating dtype"):
        lsattn.loglinear_gated_delta(q, k, v, a, b.astype(np.int64), lam)
    with pytest.raises(TypeError, match="chunk_size"):
        lsattn.loglinear_gated_delta(q, k, v, a, b, lam, chunk_size=4.0)


def test_bad_states_are_rejected():
    q, k, v, a, b, lam = make(0, (2,), 6, 3, 2)
    _, state = lsattn.loglinear_gated_delta(q, k, v, a, b, lam, return_state=True)
    _, mamba = lsattn.loglinear_attention(q, k, v, a, lam, return_state=True)
    with pytest.raises(ValueError, match="made by loglinear_attention"):
        lsattn.loglinear_gated_delta(q, k, v, a, b, lam, state=mamba)
    with pytest.raises(ValueError, match="d_v"):
        lsattn.loglinear_gated_delta(q, k, np.zeros((2, 6, 5)), a, b, lam, state=state)
    with pytest.raises(ValueError, match="float32"):
        lsattn.loglinear_gated_delta(*[x.astype(np.float32) for x in (q, k, v, a, b, lam)], state=state)
    with pytest.raises(ValueError, match="State"):
        lsattn.loglinear_gated_delta(q, k, v, a, b, lam, state={"levels": 0})
    with pytest.raises(ValueError, match="made by other_op"):
        lsattn.loglinear_gated_delta(q, k, v, a, b, lam, state=State("other_op", 6, (2,), 3, 2, np.float64, {}))


# ---- gradients and jit -----------------------------------------------------------------------

@pytest.mark.parametrize("form", list(FORMS))
def test_torch_gradcheck(form):
    """torch.autograd through either form, across a stream split (state in and out)."""
    torch = pytest.importorskip("torch")
    arrays = make(0, (1,), 7, 2, 2, keys="raw")
    q, k, v, a, b, lam = (torch.tensor(x, requires_grad=True) for x in arrays)
    f = FORMS[form]

    def streamed(q, k, v, a, b, lam):
        o1, s = f(q[:, :3], k[:, :3], v[:, :3], a[:, :3], b[:, :3], lam[:, :3], 2, None, True)
        o2, _ = f(q[:, 3:], k[:, 3:], v[:, 3:], a[:, 3:], b[:, 3:], lam[:, 3:], 2, s, False)
        return torch.cat([o1, o2], dim=-2)

    assert torch.autograd.gradcheck(streamed, (q, k, v, a, b, lam))
    if form == "chunk":  # the public call (T > RECURRENT_MAX_T: chunkwise)
        assert torch.autograd.gradcheck(lambda *x: lsattn.loglinear_gated_delta(*x, chunk_size=2), (q, k, v, a, b, lam))


def test_jax_grad_and_jit():
    """jax.grad of a sum through both forms (under jax.jit: one compilation instead of one per
    operation) equals torch autograd through the reference; jax.jit of the public call works."""
    jnp = namespace("jax")
    import jax

    torch = pytest.importorskip("torch")
    np_arrays = make(3, (2,), 9, 3, 2, keys="raw")
    arrays = [jnp.asarray(x) for x in np_arrays]
    tt = [torch.tensor(x, requires_grad=True) for x in np_arrays]
    torch.sum(ref.loglinear_gated_delta(*tt) ** 2).backward()
    theirs = [t.grad for t in tt]
    for form in FORMS:
        loss = lambda *x, form=form: jnp.sum(run_form(form, x, 4) ** 2)
        ours = jax.jit(jax.grad(loss, argnums=tuple(range(6))))(*arrays)
        for g, h in zip(ours, theirs):
            assert_close(g, h, 1e-10, what=form)
    jitted = jax.jit(lambda *x: lsattn.loglinear_gated_delta(*x, chunk_size=4))
    assert_close(jitted(*arrays), ref.loglinear_gated_delta(*np_arrays), F64)


# ---- memory ----------------------------------------------------------------------------------

def test_no_quadratic_memory_at_16384():
    """NumPy float32, T = 16384, array-API path: peak traced memory stays O(T (C + d_k + d_v + L) + (T/C) d_k (d_k + d_v)).

    A T x T float32 array alone would be 1 GiB, and T d_k d_v floats 64 MiB."""
    T, dk, dv, C = 16384, 32, 32, 64
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((T, d)).astype(np.float32) for d in (dk, dk, dv))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    a = -rng.random(T).astype(np.float32) * 0.1
    b = rng.random(T).astype(np.float32)
    lam = np.ones((T, lsattn.num_levels(T)), dtype=np.float32)
    out, peak = traced_peak(lambda: lsattn.loglinear_gated_delta(q, k, v, a, b, lam, chunk_size=C, backend="array_api"))
    assert out.shape == (T, dv)
    budget = 4 * (8 * T * (C + dk + dv + lam.shape[-1]) + 16 * (T // C) * dk * (dk + dv))
    assert peak < budget, f"peak {peak / 2**20:.0f} MiB > {budget / 2**20:.0f} MiB"
    assert peak < 4 * T * dk * dv / 2  # well below a single (T, d_k, d_v) tensor
