"""``lsattn.backends._numba_simd``'s register-blocked products (mm, mmt) against NumPy's float64 products on
random shapes (rows not a multiple of the 4-row tile, columns not a multiple of a 64-byte vector, strided and
transposed operands, accumulation) in float32 and float64."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

numba = pytest.importorskip("numba")
from lsattn.backends._numba_simd import mm, mmt  # noqa: E402

TOL = {np.float32: 2e-6, np.float64: 1e-14}  # x 4, of |a| |b| summed over the reduction (>= kk eps for kk <= 70)


@numba.njit
def _mm(a, b, c, acc, trans_a):  # (x = a[0, 0] - a[0, 0]: a zero of a's dtype; "* 0" would promote float32 to float64)
    m, n = c.shape
    kk = b.shape[0]
    ra, ca = (1, a.shape[1]) if trans_a else (a.shape[1], 1)  # a stored (kk, m) when trans_a
    mm(m, n, kk, a.ctypes.data, ra, ca, b.ctypes.data, b.shape[1], c.ctypes.data, c.shape[1], acc, a[0, 0] - a[0, 0])


@numba.njit
def _mmt(a, b, c, tri):
    m, kk = a.shape
    mmt(m, b.shape[0], kk, a.ctypes.data, kk, b.ctypes.data, kk, c.ctypes.data, c.shape[1], tri, a[0, 0] - a[0, 0])


@settings(deadline=None, max_examples=25)
@given(m=st.integers(1, 21), n=st.integers(1, 37), kk=st.integers(1, 70), acc=st.booleans(), trans_a=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31 - 1))
def test_mm_matches_numpy(m, n, kk, acc, trans_a, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((kk, m) if trans_a else (m, kk)).astype(dtype)
    b = rng.standard_normal((kk, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy()
    a_in, b_in = a.copy(), b.copy()
    _mm(a, b, c, acc, trans_a)
    A = (a.T if trans_a else a).astype(np.float64)
    want = A @ b.astype(np.float64) + (c0 if acc else 0)
    scale = np.abs(A) @ np.abs(b.astype(np.float64)) + (np.abs(c0) if acc else 0)
    assert np.all(np.abs(c - want) <= TOL[dtype] * (scale + 1e-30) * 4)
    assert np.array_equal(a, a_in) and np.array_equal(b, b_in)  # inputs untouched


@settings(deadline=None, max_examples=25)
@given(m=st.integers(1, 21), n=st.integers(1, 21), kk=st.integers(1, 70), tri=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31 - 1))
def test_mmt_matches_numpy(m, n, kk, tri, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, kk)).astype(dtype), rng.standard_normal((n, kk)).astype(dtype)
    c = np.full((m, n), 7.0, dtype)
    _mmt(a, b, c, tri)
    want = a.astype(np.float64) @ b.astype(np.float64).T
    scale = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)).T
    keep = np.tril(np.ones((m, n), bool)) if tri else np.ones((m, n), bool)
    assert np.all(np.abs(c - want)[keep] <= TOL[dtype] * scale[keep] * 4)
    assert np.all(c[~keep] == 7.0)  # tri: the upper triangle unwritten
