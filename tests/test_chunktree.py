"""The chunk Fenwick tree against brute-force bucket sums built from lsattn.fenwick."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from lsattn import _chunktree as ct
from lsattn.fenwick import bucket, fenwick_level, levels_of_position

from conftest import namespace
from helpers import asarray, to_numpy


@pytest.fixture(params=["numpy", "array_api_strict"], scope="module")
def xp_quick(request):
    """The property tests run on NumPy and array-api-strict (which proves only the standard is
    used); torch and JAX run the fixed cases below and every test of the operators built on this."""
    return namespace(request.param)

first_chunks = st.one_of(st.integers(0, 70), st.sampled_from([2**20 - 1, 2**20, 2**33 - 3, 2**40 + 5]))
chunk_counts = st.one_of(st.integers(1, 40), st.sampled_from([64, 65]))
small_batches = st.lists(st.integers(1, 2), min_size=0, max_size=2).map(tuple)


def expected_reads(c0, n):
    """{level: [(j, lo, hi)]}: chunk j = c - c0 reads the chunks [lo, hi) (clipped to c0) at level."""
    out = {}
    for c in range(c0, c0 + n):
        for l in levels_of_position(c):
            lo, hi = bucket(c, l)
            if hi > c0:
                out.setdefault(l, []).append((c - c0, max(lo, c0), hi))
    return out


def run_tree(xp, summaries, combine, identity, c0, bn):
    got = {}
    for lev in ct.tree_levels(xp, summaries, combine, identity, first_chunk=c0, batch_ndim=bn):
        got[lev.level] = (lev.chunks.copy(), [to_numpy(a) for a in lev.bucket], [to_numpy(a) for a in lev.prefix])
    return got


def check_levels_match(got, want):
    assert sorted(got) == sorted(want), f"levels {sorted(got)} != {sorted(want)}"
    for l, rows in want.items():
        np.testing.assert_array_equal(got[l][0], [j for j, _, _ in rows], err_msg=f"chunks reading at level {l}")


@given(c0=first_chunks, n=chunk_counts, batch=small_batches, seed=st.integers(0, 2**32 - 1))
def test_additive_summaries_equal_bucket_sums(xp_quick, c0, n, batch, seed):
    xp = xp_quick
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(batch + (n, 3))
    y = rng.standard_normal(batch + (n, 2, 2))
    bn = len(batch)
    add = lambda e, l: tuple(a + b for a, b in zip(e, l))
    ident = (asarray(xp, np.zeros(3)), asarray(xp, np.zeros((2, 2))))
    got = run_tree(xp, (asarray(xp, x), asarray(xp, y)), add, ident, c0, bn)
    want = expected_reads(c0, n)
    check_levels_match(got, want)
    for l, rows in want.items():
        _, (bx, by), (px, py) = got[l]
        for i, (j, lo, hi) in enumerate(rows):
            c = c0 + j
            np.testing.assert_allclose(bx[..., i, :], x[..., lo - c0 : hi - c0, :].sum(axis=-2), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(by[..., i, :, :], y[..., lo - c0 : hi - c0, :, :].sum(axis=-3), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(px[..., i, :], x[..., hi - c0 : c - c0, :].sum(axis=-2), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(py[..., i, :, :], y[..., hi - c0 : c - c0, :, :].sum(axis=-3), rtol=1e-12, atol=1e-12)


def first_last_count(xp):
    """An exact, associative, non-commutative monoid: (first chunk, last chunk, how many)."""

    def combine(e, l):
        (fe, le, ne), (fl, ll, nl) = e, l
        return (xp.where(ne > 0, fe, fl), xp.where(nl > 0, ll, le), ne + nl)

    zero = asarray(xp, np.zeros(()))
    return combine, (zero, zero, zero)


@given(c0=first_chunks, n=chunk_counts, batch=small_batches)
def test_noncommutative_combine_keeps_order_exactly(xp_quick, c0, n, batch):
    xp = xp_quick
    combine, ident = first_last_count(xp)
    idx = np.broadcast_to(np.arange(c0, c0 + n, dtype=np.float64), batch + (n,)).copy()
    summaries = (asarray(xp, idx), asarray(xp, idx), asarray(xp, np.ones(batch + (n,))))
    got = run_tree(xp, summaries, combine, ident, c0, len(batch))
    want = expected_reads(c0, n)
    check_levels_match(got, want)
    for l, rows in want.items():
        _, (bf, bl, bn_), (pf, pl, pn) = got[l]
        for i, (j, lo, hi) in enumerate(rows):
            c = c0 + j
            assert np.all(bf[..., i] == lo) and np.all(bl[..., i] == hi - 1) and np.all(bn_[..., i] == hi - lo)
            assert np.all(pn[..., i] == c - hi)
            if c > hi:
                assert np.all(pf[..., i] == hi) and np.all(pl[..., i] == c - 1)


@given(c0=first_chunks, n=st.integers(1, 24), seed=st.integers(0, 2**32 - 1))
def test_matrix_products_in_order(xp_quick, c0, n, seed):
    """combine(e, l) = l @ e: a bucket's summary is the ordered product of its chunks' matrices."""
    xp = xp_quick
    rng = np.random.default_rng(seed)
    m = np.eye(3) + 0.3 * rng.standard_normal((n, 3, 3))
    got = run_tree(xp, (asarray(xp, m),), lambda e, l: (l[0] @ e[0],), (asarray(xp, np.eye(3)),), c0, 0)
    want = expected_reads(c0, n)
    check_levels_match(got, want)

    def product(lo, hi):
        out = np.eye(3)
        for c in range(lo, hi):
            out = m[c - c0] @ out
        return out

    for l, rows in want.items():
        _, (b,), (p,) = got[l]
        for i, (j, lo, hi) in enumerate(rows):
            np.testing.assert_allclose(b[i], product(lo, hi), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(p[i], product(hi, c0 + j), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c0,n", [(5, 19), (2**33 - 3, 7)])
def test_every_namespace_fixed_cases(xp, c0, n):
    combine, ident = first_last_count(xp)
    idx = np.broadcast_to(np.arange(c0, c0 + n, dtype=np.float64), (2, n)).copy()
    summaries = (asarray(xp, idx), asarray(xp, idx), asarray(xp, np.ones((2, n))))
    got = run_tree(xp, summaries, combine, ident, c0, 1)
    want = expected_reads(c0, n)
    check_levels_match(got, want)
    for l, rows in want.items():
        _, (bf, bl, bn_), (_, _, pn) = got[l]
        for i, (j, lo, hi) in enumerate(rows):
            assert np.all(bf[:, i] == lo) and np.all(bl[:, i] == hi - 1) and np.all(bn_[:, i] == hi - lo)
            assert np.all(pn[:, i] == c0 + j - hi)


def test_buckets_and_chunk_partition_the_range():
    """Every earlier chunk of the call is read by exactly one level (the chunk itself by none)."""
    for c0 in (0, 1, 5, 7, 8, 1023):
        for n in (1, 2, 3, 9, 17):
            cover = {j: [] for j in range(n)}
            for l, rows in expected_reads(c0, n).items():
                for j, lo, hi in rows:
                    cover[j].extend(range(lo, hi))
            for j in range(n):
                assert sorted(cover[j]) == list(range(c0, c0 + j))


def test_gather_expand(xp):
    c0, n = 3, 7
    x = asarray(xp, np.arange(2 * n * 2, dtype=np.float64).reshape(2, n, 2))
    seen = 0
    ident = (asarray(xp, np.zeros(2)),)
    for lev in ct.tree_levels(xp, (x,), lambda e, l: (e[0] + l[0],), ident, first_chunk=c0, batch_ndim=1):
        g = lev.gather(x)
        assert g.shape == (2, len(lev.chunks), 2)
        full = to_numpy(lev.expand(g))
        mask = np.zeros(n, bool)
        mask[lev.chunks] = True
        np.testing.assert_array_equal(full[:, mask], to_numpy(x)[:, mask])
        np.testing.assert_array_equal(full[:, ~mask], 0)
        seen += 1
    assert seen == len(expected_reads(c0, n))


@pytest.mark.parametrize("offset,T,C", [(0, 1, 1), (0, 5, 4), (3, 1, 4), (3, 9, 4), (13, 3, 16), (64, 64, 64), (65, 200, 8)])
def test_chunk_layout_roundtrip(xp, offset, T, C):
    lay = ct.chunk_layout(offset, T, C)
    assert lay.first_chunk == offset // C and lay.pad_left == offset % C
    assert lay.pad_left + T + lay.pad_right == lay.n_chunks * C and 0 <= lay.pad_right < C
    x = asarray(xp, np.arange(1, 2 * T * 3 + 1, dtype=np.float64).reshape(2, T, 3))
    a = asarray(xp, np.arange(1, 2 * T + 1, dtype=np.float64).reshape(2, T))
    xc, ac = ct.to_chunks(xp, x, lay, -2), ct.to_chunks(xp, a, lay, -1)
    assert xc.shape == (2, lay.n_chunks, C, 3) and ac.shape == (2, lay.n_chunks, C)
    flat = to_numpy(ac).reshape(2, -1)
    # token at absolute position offset + i sits at flat index (offset + i) - first_chunk * C
    np.testing.assert_array_equal(flat[:, lay.pad_left : lay.pad_left + T], to_numpy(a))
    assert flat.sum() == to_numpy(a).sum()  # the padding is zeros
    np.testing.assert_array_equal(to_numpy(ct.from_chunks(xp, xc, lay, -2)), to_numpy(x))
    np.testing.assert_array_equal(to_numpy(ct.from_chunks(xp, ac, lay, -1)), to_numpy(a))


def test_chunk_layout_rejects_non_powers_of_two():
    with pytest.raises(ValueError, match="power of two"):
        ct.chunk_layout(0, 5, 3)


@given(p=st.one_of(st.integers(0, 300), st.integers(2**40, 2**40 + 300)), T=st.integers(1, 40))
def test_state_read_levels_match_fenwick(p, T):
    table = ct.state_read_levels(p, T)
    assert table.shape == (T, p.bit_length())
    for l in levels_of_position(p):
        lo, hi = bucket(p, l)
        for i in range(T):
            t = p + i
            for s in {lo, hi - 1, (lo + hi) // 2}:
                assert fenwick_level(t, s) == table[i, l - 1]


@given(p=st.one_of(st.integers(0, 300), st.integers(2**40, 2**40 + 300)), T=st.integers(1, 70))
def test_state_merge_plan_matches_fenwick(p, T):
    plan = ct.state_merge_plan(p, T)
    q = p + T
    assert plan.n_old == p.bit_length() and plan.n_new == q.bit_length()
    # old bucket l moves to level l above h, to level h below it
    for l in levels_of_position(p):
        lo, hi = bucket(p, l)
        target = l if l > plan.h else plan.h
        assert l != plan.h
        tlo, thi = bucket(q, target)
        assert tlo <= lo and hi <= thi
    # new tokens: slices are the new levels' buckets clipped to [p, q), partitioning it
    covered = []
    for l, lo, hi in plan.slices:
        assert l <= plan.h
        blo, bhi = bucket(q, l)
        assert (lo + p, hi + p) == (max(blo, p), bhi)
        covered.extend(range(lo, hi))
    assert covered == list(range(T))
    assert {l for l, _, _ in plan.slices} == {l for l in levels_of_position(q) if l <= plan.h}
