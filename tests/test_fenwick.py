import numpy as np
import pytest
from hypothesis import given, strategies as st

import lsattn
from lsattn.fenwick import bucket, levels_of_position

from helpers import to_numpy


def test_num_levels_hand_worked():
    assert [lsattn.num_levels(T) for T in (1, 2, 3, 4, 5, 8, 9, 1024, 1025)] == [1, 2, 3, 3, 4, 4, 5, 11, 12]


def test_level_matrix_hand_worked():
    expected = [
        [0, -1, -1, -1, -1],
        [1, 0, -1, -1, -1],
        [2, 2, 0, -1, -1],
        [2, 2, 1, 0, -1],
        [3, 3, 3, 3, 0],
    ]
    np.testing.assert_array_equal(lsattn.level_matrix(5), expected)


def test_fenwick_level_python_ints_any_size():
    assert lsattn.fenwick_level(7, 7) == 0
    assert lsattn.fenwick_level(6, 4) == 2
    assert lsattn.fenwick_level(2**100, 2**100 - 1) == 101
    assert lsattn.fenwick_level(2**100 + 5, 2**100 + 4) == 1
    assert lsattn.fenwick_level(3, 5) == -1


@given(t=st.integers(0, 2**12))
def test_buckets_partition_prefix(t):
    """Buckets of t, read off fenwick_level, partition [0, t] into contiguous power-of-two ranges."""
    levels = [lsattn.fenwick_level(t, s) for s in range(t + 1)]
    assert levels[t] == 0
    present = sorted(set(levels))
    assert len(present) == bin(t).count("1") + 1  # popcount(t) non-empty levels >= 1, plus level 0
    for l in range(1, t.bit_length() + 2):
        members = [s for s, ls in enumerate(levels) if ls == l]
        if (t >> (l - 1)) & 1:
            assert len(members) == 2 ** (l - 1)
            assert members == list(range(members[0], members[-1] + 1))  # contiguous
            assert bucket(t, l) == (members[0], members[-1] + 1)
        else:
            assert members == [] and bucket(t, l) is None
    assert levels_of_position(t) == [l for l in present if l > 0]


@given(T=st.integers(1, 70))
def test_level_matrix_matches_scalar_function(T):
    lev = lsattn.level_matrix(T)
    assert lev.shape == (T, T) and lev.dtype == np.int64
    expected = [[lsattn.fenwick_level(t, s) for s in range(T)] for t in range(T)]
    np.testing.assert_array_equal(lev, expected)


def test_level_matrix_in_every_namespace(xp):
    lev = lsattn.level_matrix(37, xp=xp)
    np.testing.assert_array_equal(to_numpy(lev), lsattn.level_matrix(37))


def test_fenwick_level_arrays_in_every_namespace(xp):
    rng = np.random.default_rng(1)
    t = rng.integers(0, 2**40, size=50)
    s = t - rng.integers(0, 2**20, size=50).clip(max=t)
    got = lsattn.fenwick_level(xp.asarray(t), xp.asarray(s))
    np.testing.assert_array_equal(to_numpy(got), [lsattn.fenwick_level(int(a), int(b)) for a, b in zip(t, s)])
    # broadcasting with a Python int
    got = lsattn.fenwick_level(xp.asarray(t), 0)
    np.testing.assert_array_equal(to_numpy(got), [int(a).bit_length() for a in t])


def test_bad_arguments():
    assert lsattn.num_levels(0) == 0  # T = 0 is a valid call of every operator
    with pytest.raises(ValueError, match="T must be >= 0"):
        lsattn.num_levels(-1)
    with pytest.raises(TypeError, match="not a bool"):
        lsattn.num_levels(True)
    with pytest.raises(TypeError, match="T must be an integer"):
        lsattn.num_levels(2.5)
    with pytest.raises(ValueError, match=">= 0"):
        lsattn.fenwick_level(-1, 0)
    with pytest.raises(TypeError, match="integers"):
        lsattn.fenwick_level(np.array([1.0]), np.array([0.0]))
