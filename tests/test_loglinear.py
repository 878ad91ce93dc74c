"""loglinear_attention (log-linear Mamba-2) against lsattn.reference, on every namespace.

Tolerances (max |out - ref| / max |ref|, per call, against the float64 reference):
float64 inputs 1e-12; float32 inputs 1e-5 (observed <= 2e-6 in 400 random cases with T <= 80 and
at T = 8192; stated in docs/loglinear.md). Streamed outputs and states match one call to the same
bounds.
"""

import array_api_compat
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lsattn
from lsattn import reference as ref
from lsattn.fenwick import bucket, levels_of_position
from lsattn.state import State

from conftest import namespace
from helpers import JIT_JAX, assert_close, jax_jit, jitting, on, property_tests, to_numpy, traced_peak
from strategies import batch_shapes, decays, head_dims, log_decay, magnitudes, seeds, seq_lens, split_points

F64, F32 = 1e-12, 1e-5
chunk_sizes = st.sampled_from([1, 2, 4, 8, 16, 64])
weight_kinds = st.sampled_from(["random", "ones", "negative"])


#: JAX compiles every op for every new shape when run eagerly (seconds per call), so its property
#: runs draw fewer examples; NumPy, array-api-strict and torch get the profile's full count.
JAX_EXAMPLES = max(2, settings.default.max_examples // 6)  # 2 in the ci profile (CI time)


#: JAX property runs go through jax.jit (helpers.jitting); test_jax_fixed_cases runs JAX eagerly.
every_namespace = property_tests(JAX_EXAMPLES, jax_context=jitting)


def make(seed, batch, T, dk, dv, *, scale=1.0, decay="moderate", weights="random", extra_levels=0, offset=0):
    """NumPy float64 inputs: q, k, v, log_decay, level_weights (levels for offset + T, plus extra)."""
    rng = np.random.default_rng(seed)
    q, k = (rng.standard_normal(batch + (T, dk)) * scale for _ in range(2))
    v = rng.standard_normal(batch + (T, dv))
    a = log_decay(rng, batch + (T,), decay)
    L = lsattn.num_levels(offset + T) + extra_levels
    lam = {
        "random": rng.standard_normal(batch + (T, L)),
        "ones": np.ones(batch + (T, L)),
        "negative": -rng.random(batch + (T, L)) - 0.5,
    }[weights]
    return q, k, v, a, lam


def call(xp, arrays, dtype="float64", **kw):
    if JIT_JAX[0]:
        return jax_jit(lsattn.loglinear_attention, "loglinear_attention", on(xp, arrays, dtype), **kw)
    return lsattn.loglinear_attention(*on(xp, arrays, dtype), **kw)


# ---- against the reference -----------------------------------------------------------------

@every_namespace(
    batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunk_sizes, scale=magnitudes,
    decay=decays, weights=weight_kinds, extra=st.integers(0, 2), seed=seeds,
)
def _matches_reference_float64(xp, batch, T, dk, dv, C, scale, decay, weights, extra, seed):
    arrays = make(seed, batch, T, dk, dv, scale=scale, decay=decay, weights=weights, extra_levels=extra)
    out = call(xp, arrays, chunk_size=C)
    assert out.dtype == xp.float64 and tuple(out.shape) == batch + (T, dv)
    assert_close(out, ref.loglinear_attention(*arrays), F64, what=f"T={T} C={C}")


test_matches_reference_float64, test_matches_reference_float64_jax = _matches_reference_float64


@every_namespace(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunk_sizes, decay=decays, seed=seeds)
def _float32_bound(xp, batch, T, dk, dv, C, decay, seed):
    arrays = make(seed, batch, T, dk, dv, decay=decay)
    arrays32 = [x.astype(np.float32) for x in arrays]
    out = call(xp, arrays32, "float32", chunk_size=C)
    assert out.dtype == xp.float32
    assert_close(out, ref.loglinear_attention(*[x.astype(np.float64) for x in arrays32]), F32)


test_float32_bound, test_float32_bound_jax = _float32_bound


@every_namespace(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunk_sizes, seed=seeds)
def _unit_weights_is_mamba2(xp, batch, T, dk, dv, C, seed):
    """lambda == 1: the same code computes Mamba-2; checked against the reference and the recurrence
    S_t = exp(a_t) S_{t-1} + k_t v_t^T, o_t = S_t^T q_t."""
    q, k, v, a, lam = make(seed, batch, T, dk, dv, weights="ones")
    out = call(xp, (q, k, v, a, lam), chunk_size=C)
    assert_close(out, ref.loglinear_attention(q, k, v, a, lam), F64)
    S = np.zeros(batch + (dk, dv))
    rec = []
    for t in range(T):
        S = np.exp(a[..., t])[..., None, None] * S + k[..., t, :, None] * v[..., t, None, :]
        rec.append(np.einsum("...i,...ij->...j", q[..., t, :], S))
    assert_close(out, np.stack(rec, axis=-2), F64)


test_unit_weights_is_mamba2, test_unit_weights_is_mamba2_jax = _unit_weights_is_mamba2


@every_namespace(batch=batch_shapes, T=st.integers(1, 80), seed=seeds, decay=decays)
def _chunk_size_invariance(xp, batch, T, seed, decay):
    arrays = make(seed, batch, T, 3, 2, decay=decay)
    outs = [to_numpy(call(xp, arrays, chunk_size=C)) for C in (1, 4, 16, 128)]
    for o in outs[1:]:
        assert_close(o, outs[0], F64)


test_chunk_size_invariance, test_chunk_size_invariance_jax = _chunk_size_invariance


@pytest.mark.parametrize(
    "T,C",
    [(1, 64), (1, 1), (63, 64), (65, 64), (65, 16), (129, 32), (257, 8), (100, 64), (17, 4), (33, 2)],
)
def test_edge_lengths(xp_eager, T, C):
    """T = 1, T not a multiple of C, T just above a power of two."""
    xp = xp_eager
    arrays = make(T * 7 + C, (2,), T, 4, 3)
    assert_close(call(xp, arrays, chunk_size=C), ref.loglinear_attention(*arrays), F64, what=f"T={T} C={C}")


def test_strong_decay_and_zero_decay(xp_eager):
    xp = xp_eager
    for decay in ("zero", "strong"):
        arrays = make(5, (2,), 70, 4, 3, decay=decay)
        out = call(xp, arrays, chunk_size=8)
        assert_close(out, ref.loglinear_attention(*arrays), F64, what=decay)
    # decay so strong that every off-diagonal weight underflows: o_t = lambda[t, 0] (q_t . k_t) v_t
    q, k, v, _, lam = make(6, (), 40, 3, 2)
    a = np.full(40, -2000.0)
    expected = lam[:, :1] * np.sum(q * k, axis=-1, keepdims=True) * v
    assert_close(call(xp, (q, k, v, a, lam), chunk_size=8), expected, F64)


def test_negative_level_weights(xp_eager):
    xp = xp_eager
    arrays = make(11, (3,), 50, 4, 4, weights="negative")
    assert_close(call(xp, arrays, chunk_size=4), ref.loglinear_attention(*arrays), F64)


def test_extra_levels_ignored(xp_eager):
    xp = xp_eager
    q, k, v, a, lam = make(3, (2,), 21, 3, 3, extra_levels=4)
    needed = lsattn.num_levels(21)
    full = call(xp, (q, k, v, a, lam), chunk_size=4)
    trimmed = call(xp, (q, k, v, a, lam[..., :needed]), chunk_size=4)
    assert_close(full, trimmed, 0.0)


# ---- streaming -----------------------------------------------------------------------------

@every_namespace(
    batch=batch_shapes, T=st.integers(2, 80), C=chunk_sizes, decay=decays, data=st.data(), seed=seeds,
)
def _stream_split_invariance(xp, batch, T, C, decay, data, seed):
    """Any cut points: concatenated outputs equal one call, and so does the final state."""
    arrays = make(seed, batch, T, 3, 2, decay=decay)
    cuts = [0] + data.draw(split_points(T)) + [T]
    whole, whole_state = call(xp, arrays, chunk_size=C, return_state=True)
    state, outs = None, []
    for i0, i1 in zip(cuts[:-1], cuts[1:]):
        piece = [x[..., i0:i1, :] if x.ndim > a_ndim(arrays) else x[..., i0:i1] for x in arrays]
        o, state = call(xp, piece, chunk_size=C, state=state, return_state=True)
        outs.append(to_numpy(o))
    streamed = np.concatenate(outs, axis=-2)
    assert_close(streamed, ref.loglinear_attention(*arrays), F64, what=f"cuts {cuts}")
    assert_close(streamed, whole, F64)
    assert state.offset == T and whole_state.offset == T
    assert_close(state.tensors["levels"], whole_state.tensors["levels"], F64, what="state levels")


test_stream_split_invariance, test_stream_split_invariance_jax = _stream_split_invariance


def a_ndim(arrays):
    return arrays[3].ndim  # log_decay: (..., T)


def slice_tokens(arrays, i0, i1):
    q, k, v, a, lam = arrays
    return q[..., i0:i1, :], k[..., i0:i1, :], v[..., i0:i1, :], a[..., i0:i1], lam[..., i0:i1, :]


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


@given(p=st.integers(1, 200), T=st.integers(1, 40), C=chunk_sizes, seed=seeds)
def test_state_levels_are_the_fenwick_buckets(p, T, C, seed):
    """Slot l-1 of the state at offset p is sum_{s in B_p^l} exp(a_{s+1} + ... + a_{p-1}) k_s v_s^T."""
    q, k, v, a, lam = make(seed, (2,), p + T, 3, 2)
    _, s1 = lsattn.loglinear_attention(*slice_tokens((q, k, v, a, lam), 0, p), chunk_size=C, return_state=True)
    _, s2 = lsattn.loglinear_attention(*slice_tokens((q, k, v, a, lam), p, p + T), chunk_size=C, state=s1, return_state=True)
    for state, end in ((s1, p), (s2, p + T)):
        levels = to_numpy(state.tensors["levels"])
        assert levels.shape == (2, end.bit_length(), 3, 2) and state.offset == end
        for l in range(1, end.bit_length() + 1):
            want = np.zeros((2, 3, 2))
            if l in levels_of_position(end):
                lo, hi = bucket(end, l)
                for s in range(lo, hi):
                    w = np.exp(a[:, s + 1 : end].sum(axis=-1))
                    want += w[:, None, None] * k[:, s, :, None] * v[:, s, None, :]
            np.testing.assert_allclose(levels[:, l - 1], want, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(want).max()))


def test_stream_offsets_near_powers_of_two(xp_eager):
    """Splits right around 2^k, so states cross many levels at once."""
    xp = xp_eager
    T = 70
    arrays = make(9, (), T, 2, 3)
    expected = ref.loglinear_attention(*arrays)
    for cuts in ([0, 31, 32, 33, 70], [0, 15, 64, 65, 70], [0, 1, 2, 3, 4, 63, 70], [0, 63, 64, 70]):
        state, outs = None, []
        for i0, i1 in zip(cuts[:-1], cuts[1:]):
            o, state = call(xp, slice_tokens(arrays, i0, i1), chunk_size=16, state=state, return_state=True)
            outs.append(to_numpy(o))
        assert_close(np.concatenate(outs, axis=-2), expected, F64, what=f"cuts {cuts}")


def test_empty_call_keeps_the_state(xp_eager):
    xp = xp_eager
    arrays = make(2, (2,), 9, 3, 2)
    _, state = call(xp, arrays, return_state=True)
    out, same = call(xp, slice_tokens(arrays, 0, 0), state=state, return_state=True)
    assert tuple(out.shape) == (2, 0, 2) and same.offset == 9


# ---- dtypes, validation ----------------------------------------------------------------------

def test_jax_fixed_cases(xp_jax):
    """The fixed edge cases once on JAX (the property tests run there too, with fewer examples)."""
    xp = xp_jax
    arrays = make(0, (2,), 65, 3, 2)
    assert_close(call(xp, arrays, chunk_size=64), ref.loglinear_attention(*arrays), F64)
    q, k, v, _, lam = make(6, (), 9, 3, 2)
    a = np.full(9, -2000.0)
    assert_close(call(xp, (q, k, v, a, lam), chunk_size=4), lam[:, :1] * np.sum(q * k, -1, keepdims=True) * v, F64)
    state, outs = None, []
    for i0, i1 in ((0, 31), (31, 33), (33, 65)):
        o, state = call(xp, slice_tokens(arrays, i0, i1), chunk_size=16, state=state, return_state=True)
        outs.append(to_numpy(o))
    assert_close(np.concatenate(outs, axis=-2), ref.loglinear_attention(*arrays), F64)
    with pytest.raises(ValueError, match="need.*8"):
        call(xp, list(arrays[:4]) + [arrays[4][..., :6]])


def test_half_precision_in_half_out():
    arrays = [x.astype(np.float16) for x in make(4, (2,), 20, 4, 4)]
    out = lsattn.loglinear_attention(*arrays)
    assert out.dtype == np.float16
    assert_close(out, ref.loglinear_attention(*[x.astype(np.float64) for x in arrays]), 2e-3)


def test_inputs_not_modified():
    arrays = make(4, (2,), 20, 4, 4)
    copies = [x.copy() for x in arrays]
    lsattn.loglinear_attention(*arrays, chunk_size=4, return_state=True)
    for x, c in zip(arrays, copies):
        np.testing.assert_array_equal(x, c)


def test_too_few_levels_says_how_many(xp_eager):
    xp = xp_eager
    q, k, v, a, lam = make(0, (), 9, 2, 2)  # num_levels(9) = 5
    with pytest.raises(ValueError, match="need.*5"):
        call(xp, (q, k, v, a, lam[..., :4]))
    # streaming: the levels needed count the offset
    _, state = call(xp, (q, k, v, a, lam), return_state=True)
    q2, k2, v2, a2, lam2 = make(1, (), 8, 2, 2)  # offset 9 + 8 = 17 -> num_levels 6
    with pytest.raises(ValueError, match="6"):
        lsattn.loglinear_attention(*on(xp, (q2, k2, v2, a2, lam2[..., :5])), state=state)


@pytest.mark.parametrize("C", [0, 3, 12, -4])
def test_chunk_size_must_be_power_of_two(C):
    with pytest.raises(ValueError, match="power of two"):
        lsattn.loglinear_attention(*make(0, (), 4, 2, 2), chunk_size=C)


def test_bad_inputs_name_the_argument():
    q, k, v, a, lam = make(0, (2,), 6, 3, 2)
    with pytest.raises(ValueError, match="^k "):
        lsattn.loglinear_attention(q, k[..., :2], v, a, lam)
    with pytest.raises(ValueError, match="^v "):
        lsattn.loglinear_attention(q, k, v[:, :5], a, lam)
    with pytest.raises(ValueError, match="log_decay"):
        lsattn.loglinear_attention(q, k, v, a[..., None], lam)
    with pytest.raises(ValueError, match="level_weights"):
        lsattn.loglinear_attention(q, k, v, a, np.concatenate([lam, lam[:1]]))  # batch 3 against 2
    with pytest.raises(TypeError, match="q must have a real floating dtype"):
        lsattn.loglinear_attention(q.astype(np.int64), k, v, a, lam)
    with pytest.raises(TypeError, match="chunk_size"):
        lsattn.loglinear_attention(q, k, v, a, lam, chunk_size=4.0)


def test_bad_states_are_rejected():
    q, k, v, a, lam = make(0, (2,), 6, 3, 2)
    _, state = lsattn.loglinear_attention(q, k, v, a, lam, return_state=True)
    with pytest.raises(ValueError, match="made by other_op"):
        lsattn.loglinear_attention(q, k, v, a, lam, state=State("other_op", 6, (2,), 3, 2, np.float64, {}))
    with pytest.raises(ValueError, match="d_v"):
        lsattn.loglinear_attention(q, k, np.zeros((2, 6, 5)), a, lam, state=state)
    with pytest.raises(ValueError, match="float32"):
        lsattn.loglinear_attention(*[x.astype(np.float32) for x in (q, k, v, a, lam)], state=state)
    with pytest.raises(ValueError, match="State"):
        lsattn.loglinear_attention(q, k, v, a, lam, state={"levels": 0})


# ---- gradients and jit -----------------------------------------------------------------------

def test_torch_gradcheck():
    torch = pytest.importorskip("torch")
    q, k, v, a, lam = (torch.tensor(x, requires_grad=True) for x in make(0, (1,), 11, 2, 2, weights="random"))

    def f(q, k, v, a, lam):
        o1, s = lsattn.loglinear_attention(q[:, :6], k[:, :6], v[:, :6], a[:, :6], lam[:, :6], chunk_size=2, return_state=True)
        o2 = lsattn.loglinear_attention(q[:, 6:], k[:, 6:], v[:, 6:], a[:, 6:], lam[:, 6:], chunk_size=2, state=s)
        return torch.cat([o1, o2], dim=-2)

    assert torch.autograd.gradcheck(f, (q, k, v, a, lam))
    assert torch.autograd.gradcheck(lambda *x: lsattn.loglinear_attention(*x, chunk_size=4), (q, k, v, a, lam))


def test_jax_grad_and_jit():
    jnp = namespace("jax")
    import jax

    torch = pytest.importorskip("torch")
    np_arrays = make(3, (), 11, 2, 2)
    arrays = [jnp.asarray(x) for x in np_arrays]

    def loss(fn, *x):
        return (fn(*x) ** 2).sum()

    # ours under jit: eager JAX compiles each backward op separately (10 s here, 2 s jitted);
    # the reference builds its level matrix from concrete values, so it cannot be jitted: torch
    # autograd differentiates it (eager jax.grad compiles each of its operations, ~10 s)
    ours = jax.jit(jax.grad(lambda *x: loss(lambda *y: lsattn.loglinear_attention(*y, chunk_size=4), *x), argnums=(0, 1, 2, 3, 4)))(*arrays)
    tt = [torch.tensor(x, requires_grad=True) for x in np_arrays]
    loss(ref.loglinear_attention, *tt).backward()
    theirs = [t.grad for t in tt]
    for g, h in zip(ours, theirs):
        assert_close(g, h, 1e-11)
    jitted = jax.jit(lambda *x: lsattn.loglinear_attention(*x, chunk_size=4))
    assert_close(jitted(*arrays), ref.loglinear_attention(*arrays), F64)


# ---- memory ----------------------------------------------------------------------------------

def test_no_quadratic_memory_at_65536():
    """NumPy float32 through the array-API path, T = 65536: peak traced memory stays O(T (C + d_k + d_v + L) + (T/C) d_k d_v).

    A T x T float32 array alone would be 16 GiB, and T d_k d_v floats 256 MiB."""
    T, dk, dv, C = 65536, 32, 32, 64
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((T, d)).astype(np.float32) for d in (dk, dk, dv))
    a = -rng.random(T).astype(np.float32) * 0.1
    lam = np.ones((T, lsattn.num_levels(T)), dtype=np.float32)
    out, peak = traced_peak(lambda: lsattn.loglinear_attention(q, k, v, a, lam, chunk_size=C, backend="array_api"))
    assert out.shape == (T, dv)
    budget = 4 * (4 * T * (C + dk + dv + lam.shape[-1]) + 4 * (T // C) * dk * dv)  # measured: 80 of 162 MiB
    assert peak < budget, f"peak {peak / 2**20:.0f} MiB > {budget / 2**20:.0f} MiB"
    assert peak < 4 * T * dk * dv / 2  # well below a single (T, d_k, d_v) tensor
