"""The float64 oracles against values worked out by hand, and against independent recurrences."""
import numpy as np
from hypothesis import given

from lsattn import reference as ref

from helpers import asarray, assert_close, to_numpy
from strategies import batch_shapes, head_dims, normal, seeds, seq_lens

LOG = np.log


def A(xp, x):
    return asarray(xp, x)


def check(out, expected):
    out = to_numpy(out)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-15)


# ---- exp-kernel attention ------------------------------------------------------------------

def test_exp_kernel_T1_is_v(xp):
    q, k, v = A(xp, [[3.0, -1.0]]), A(xp, [[0.5, 2.0]]), A(xp, [[-7.0, 2.0, 0.0]])
    check(ref.exp_kernel_attention(q, k, v), [[-7.0, 2.0, 0.0]])


def test_exp_kernel_T2_hand_worked(xp):
    # w(1,0) = e^0 = 1, w(1,1) = e^{log 3} = 3:  y_1 = (1*1 + 3*5) / 4 = 4;  y_0 = 1 causally.
    q, k, v = A(xp, [[0.0], [0.0]]), A(xp, [[0.0], [LOG(3)]]), A(xp, [[1.0], [5.0]])
    check(ref.exp_kernel_attention(q, k, v), [[1.0], [4.0]])
    check(ref.exp_kernel_attention(q, k, v, causal=False), [[4.0], [4.0]])
    check(ref.log_attention(q, k, A(xp, LOG([[1.0], [5.0]]))), LOG([[1.0], [4.0]]))


def test_exp_kernel_T2_two_features_negative_values(xp):
    # w(1,0) = e^0 + e^0 = 2, w(1,1) = e^{log 2} + e^{log 4} = 6:  y_1 = (2*2 + 6*(-1)) / 8 = -1/4
    q, k, v = A(xp, [[0.0, 0.0], [0.0, 0.0]]), A(xp, [[0.0, 0.0], [LOG(2), LOG(4)]]), A(xp, [[2.0], [-1.0]])
    check(ref.exp_kernel_attention(q, k, v), [[2.0], [-0.25]])


def test_exp_kernel_T3_noncausal_rectangular(xp):
    # one query against three keys: w = (1, 2, 5)/8 after normalising
    q, k = A(xp, [[0.0]]), A(xp, [[0.0], [LOG(2)], [LOG(5)]])
    v = A(xp, [[8.0, 1.0], [0.0, 1.0], [-8.0, 1.0]])
    check(ref.exp_kernel_attention(q, k, v, causal=False), [[(8 - 40) / 8, 1.0]])


def test_log_attention_huge_magnitudes_stay_finite():
    q = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    k = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    # w(1,0) = e^0 + e^1000, w(1,1) = e^-1000 + e^2000: the s = 1 term outweighs s = 0 by e^1000
    out = ref.log_attention(q, k, np.log([[1.0], [2.0]]))
    check(out, [[0.0], [np.log(2.0)]])  # y_1 is dominated by s = 1 to far below rounding


# ---- log-linear Mamba-2 ----------------------------------------------------------------------

A3 = [0.0, LOG(0.5), LOG(0.5)]          # decays e^{a_1} = e^{a_2} = 1/2
LAM3 = [[1.0, 10.0, 100.0]] * 3         # lambda[t, level]: level 0 -> 1, 1 -> 10, 2 -> 100


def test_hierarchical_mask_T3_hand_worked(xp):
    # levels: (1,0) -> 1, (2,0) -> 2, (2,1) -> 2
    M = ref.hierarchical_mask(A(xp, A3), A(xp, LAM3))
    check(M, [[1, 0, 0], [10 * 0.5, 1, 0], [100 * 0.25, 100 * 0.5, 1]])


def test_loglinear_T3_hand_worked(xp):
    q = k = A(xp, [[1.0], [1.0], [1.0]])
    v = A(xp, [[1.0], [2.0], [4.0]])
    check(ref.loglinear_attention(q, k, v, A(xp, A3), A(xp, LAM3)), [[1.0], [7.0], [129.0]])
    # weights 1: Mamba-2, o_2 = 1/4 * 1 + 1/2 * 2 + 4
    check(ref.loglinear_attention(q, k, v, A(xp, A3), A(xp, np.ones((3, 3)))), [[1.0], [2.5], [5.25]])


def test_loglinear_T1(xp):
    q, k, v = A(xp, [[2.0, 1.0]]), A(xp, [[3.0, -1.0]]), A(xp, [[1.0, -2.0]])
    check(ref.loglinear_attention(q, k, v, A(xp, [0.7]), A(xp, [[0.5]])), [[0.5 * 5 * 1.0, 0.5 * 5 * -2.0]])


def mamba2_recurrence(q, k, v, a):
    """S_t = e^{a_t} S_{t-1} + k_t v_t^T,  o_t = S_t^T q_t  (one sequence, NumPy)."""
    S, out = np.zeros((q.shape[-1], v.shape[-1])), []
    for t in range(q.shape[0]):
        S = np.exp(a[t]) * S + np.outer(k[t], v[t])
        out.append(S.T @ q[t])
    return np.array(out)


@given(T=seq_lens, dk=head_dims, dv=head_dims, seed=seeds)
def test_loglinear_with_unit_weights_is_mamba2(T, dk, dv, seed):
    q, k, v = normal(seed, (T, dk)), normal(seed + 1, (T, dk)), normal(seed + 2, (T, dv))
    a = -np.abs(normal(seed + 3, (T,)))
    lam = np.ones((T, 1 + (T - 1).bit_length() + 2))  # extra levels are ignored
    assert_close(ref.loglinear_attention(q, k, v, a, lam), mamba2_recurrence(q, k, v, a), 1e-12)


# ---- log-linear Gated DeltaNet -----------------------------------------------------------

def test_gated_delta_T2_hand_worked(xp):
    # scalar keys: A_1 = e^0 (1 - 0.5) = 0.5;  o_1 = 0.5 * 1 * 2 + 0.5 * 0.5 * 1 = 1.25
    one = A(xp, [[1.0], [1.0]])
    out = ref.loglinear_gated_delta(one, one, A(xp, [[1.0], [2.0]]), A(xp, [0.0, 0.0]), A(xp, [0.5, 0.5]), A(xp, np.ones((2, 2))))
    check(out, [[0.5], [1.25]])


def test_gated_delta_T2_projection(xp):
    # k_1 = e1, beta_1 = 1: A_1 = diag(0, 1) removes the e1 part of k_0 = (1, 1) before q_1 reads it.
    q, k = A(xp, [[1.0, 0.0], [1.0, 1.0]]), A(xp, [[1.0, 1.0], [1.0, 0.0]])
    out = ref.loglinear_gated_delta(q, k, A(xp, [[1.0], [2.0]]), A(xp, [0.0, 0.0]), A(xp, [1.0, 1.0]), A(xp, np.ones((2, 2))))
    check(out, [[1.0], [1 * 2.0 + 1 * 1.0]])


def test_gated_delta_T3_levels_hand_worked(xp):
    # A_1 = A_2 = 0.5 (1 - 0.5) = 0.25
    # o_1 = 1 * 0.5*2 + 10 * 1*0.25*1 = 3.5;  o_2 = 0.5*4 + 100*0.5*0.25*2 + 100*1*0.0625*1 = 33.25
    one = A(xp, [[1.0], [1.0], [1.0]])
    out = ref.loglinear_gated_delta(one, one, A(xp, [[1.0], [2.0], [4.0]]), A(xp, A3), A(xp, [1.0, 0.5, 0.5]), A(xp, LAM3))
    check(out, [[1.0], [3.5], [33.25]])


def gated_delta_recurrence(q, k, v, a, beta):
    """S_t = e^{a_t}(I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,  o_t = S_t^T q_t."""
    dk = q.shape[-1]
    S, out = np.zeros((dk, v.shape[-1])), []
    for t in range(q.shape[0]):
        S = np.exp(a[t]) * (np.eye(dk) - beta[t] * np.outer(k[t], k[t])) @ S + beta[t] * np.outer(k[t], v[t])
        out.append(S.T @ q[t])
    return np.array(out)


@given(T=seq_lens, dk=head_dims, dv=head_dims, seed=seeds)
def test_gated_delta_with_unit_weights_is_gated_deltanet(T, dk, dv, seed):
    q, v = normal(seed, (T, dk)), normal(seed + 2, (T, dv))
    k = normal(seed + 1, (T, dk))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    a, beta = -np.abs(normal(seed + 3, (T,))), np.random.default_rng(seed).uniform(0, 1, T)
    lam = np.ones((T, 1 + (T - 1).bit_length()))
    assert_close(ref.loglinear_gated_delta(q, k, v, a, beta, lam), gated_delta_recurrence(q, k, v, a, beta), 1e-12)


def test_gated_delta_beta_zero_is_zero(xp):
    rng = np.random.default_rng(0)
    q, k, v = (A(xp, rng.standard_normal((2, 9, 3))) for _ in range(3))
    out = ref.loglinear_gated_delta(q, k, v, A(xp, -rng.random((2, 9))), A(xp, np.zeros((2, 9))), A(xp, rng.random((2, 9, 5))))
    assert np.all(to_numpy(out) == 0.0)


# ---- hierarchical exp-kernel attention ----------------------------------------------------

def test_hierarchical_T2_hand_worked(xp):
    # q = k = 0: kernel 1.  w(1,0) = 3 (level 1 weight), w(1,1) = 1:  y_1 = (3*1 + 5) / 4 = 2
    zero, log_v = A(xp, [[0.0], [0.0]]), A(xp, LOG([[1.0], [5.0]]))
    loglam = A(xp, [[0.0, LOG(3)], [0.0, LOG(3)]])
    check(ref.loglinear_log_attention(zero, zero, log_v, loglam), LOG([[1.0], [2.0]]))
    # decay e^{a_1} = 1/3 cancels the weight: y_1 = (1 + 5) / 2 = 3
    check(ref.loglinear_log_attention(zero, zero, log_v, loglam, log_decay=A(xp, [0.0, -LOG(3)])), LOG([[1.0], [3.0]]))


@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, seed=seeds)
def test_hierarchical_zero_weights_no_decay_is_causal_log_attention(batch, T, dk, dv, seed):
    q, k, log_v = normal(seed, batch + (T, dk)), normal(seed + 1, batch + (T, dk)), normal(seed + 2, batch + (T, dv))
    zeros = np.zeros(batch + (T, 1 + (T - 1).bit_length()))
    assert_close(ref.loglinear_log_attention(q, k, log_v, zeros), ref.log_attention(q, k, log_v), 1e-13)


def test_hierarchical_zero_weights_no_decay_T3_hand_worked(xp):
    # all weights e^0 = 1 and kernel 1: plain causal averages of v = (1, 2, 6): 1, 3/2, 3
    zero = A(xp, [[0.0], [0.0], [0.0]])
    out = ref.loglinear_log_attention(zero, zero, A(xp, LOG([[1.0], [2.0], [6.0]])), A(xp, np.zeros((3, 3))))
    check(out, LOG([[1.0], [1.5], [3.0]]))


# ---- common behaviour -------------------------------------------------------------------------

def test_references_return_float64_and_batch(xp):
    rng = np.random.default_rng(3)
    q = A(xp, rng.standard_normal((2, 3, 5, 4)))
    out = ref.exp_kernel_attention(q, q, q)
    assert out.shape == (2, 3, 5, 4) and to_numpy(out).dtype == np.float64


def test_references_accept_float32(xp):
    q = xp.asarray(np.ones((3, 2)), dtype=xp.float32)
    out = ref.log_attention(q, q, q)
    np.testing.assert_allclose(to_numpy(out), np.ones((3, 2)), rtol=1e-15)
