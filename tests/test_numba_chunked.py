"""The chunked Numba CPU kernels (``lsattn.backends._numba_chunked``, ``_numba_ll_chunked``) against lsattn.reference, with
the bounds and strategies of tests/test_numba_backend.py. The chunk size is forced small (the
backend functions take ``chunk_size``; the public operators choose by size), so short hypothesis
cases cover T < C, T not a multiple of C, many segments of chunks, and the exact per-row fallback
(large magnitudes, log v = -inf)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lsattn
from lsattn import reference as ref
from helpers import TOL, assert_close
from strategies import batch_shapes, decays, magnitudes, seeds, split_points
from test_numba_backend import EK, LL, dims, ek_inputs, ek_tol, hier, hier_decays, hier_inputs, ll_inputs, small_T

pytest.importorskip("numba")
pytest.importorskip("scipy")  # Numba's np.dot calls SciPy's BLAS

from lsattn.backends import numba_cpu  # noqa: E402

chunks = st.sampled_from([1, 2, 3, 4, 8, 16])
FWD = {"exp": numba_cpu.exp_forward, "log": numba_cpu.log_forward}


def chunked(op, q, k, vals, C, state=None, return_state=False):
    """The numba backend's causal exp-kernel call in chunks of C tokens (out, state)."""
    return FWD[op](q, k, vals, True, state, return_state, chunk_size=C)


@pytest.mark.parametrize("op", ["exp", "log"])
@given(batch=batch_shapes, T=small_T, dk=dims, dv=dims, scale=magnitudes, C=chunks, seed=seeds)
def test_chunked_matches_reference(op, batch, T, dk, dv, scale, C, seed):
    q, k, vals = ek_inputs(seed, batch, T, dk, dv, scale)
    rtol, atol = ek_tol(op, q, k, "float64")
    assert_close(chunked(op, q, k, vals, C)[0], EK[op][1](q, k, vals), rtol, atol=atol)


@pytest.mark.parametrize("op", ["exp", "log"])
@given(T=small_T, C=chunks, seed=seeds, scale=st.sampled_from([1.0, 1e3]))
def test_chunked_float32_and_large_magnitudes(op, T, C, seed, scale):
    """scale 1e3: exponents far below the chunk's shift, so rows take the exact fallback."""
    q, k, vals = ek_inputs(seed, (2,), T, 4, 3, scale)
    rtol, atol = ek_tol(op, q, k, "float32")
    out, _ = chunked(op, *(x.astype(np.float32) for x in (q, k, vals)), C)
    assert out.dtype == np.float32
    assert_close(out, EK[op][1](*(x.astype(np.float32).astype(np.float64) for x in (q, k, vals))), rtol, atol=atol)


@given(T=small_T, C=chunks, seed=seeds)
def test_chunked_log_v_minus_inf(T, C, seed):
    """log v = -inf entries and whole -inf columns: log y = -inf exactly where nothing visible is non-zero."""
    q, k, lv = ek_inputs(seed, (), T, 3, 3, 1.0)
    rng = np.random.default_rng(seed)
    lv[:, 0] = -np.inf
    lv[rng.random(T) < 0.5, 1] = -np.inf
    out, _ = chunked("log", q, k, lv, C)
    want = ref.log_attention(q, k, lv)
    assert_close(out, want, TOL["float64"], atol=TOL["float64"])
    assert (np.isneginf(out) == np.isneginf(want)).all()


@pytest.mark.parametrize("op", ["exp", "log"])
@given(T=st.integers(2, 60), data=st.data(), seed=seeds)
def test_chunked_stream_handed_between_backends(op, T, data, seed):
    """A stream cut at random points, each piece on the chunked kernel (random C), the token-by-token
    kernel or the array-API path: the State layout is the same everywhere."""
    q, k, vals = ek_inputs(seed, (2,), T, 3, 4, 2.0)
    cuts = [0] + data.draw(split_points(T)) + [T]
    ways = data.draw(st.lists(st.sampled_from(["chunked", "numba", "array_api"]), min_size=len(cuts) - 1,
                              max_size=len(cuts) - 1))
    outs, state = [], None
    for (a, b), way in zip(zip(cuts[:-1], cuts[1:]), ways):
        piece = [x[..., a:b, :] for x in (q, k, vals)]
        if way == "chunked":
            o, state = chunked(op, *piece, data.draw(chunks), state=state, return_state=True)
        else:
            o, state = EK[op][0](*piece, state=state, return_state=True, backend=way)
        outs.append(o)
    rtol, atol = ek_tol(op, q, k, "float64")
    assert_close(np.concatenate(outs, axis=-2), EK[op][1](q, k, vals), rtol, atol=atol)
    assert state.offset == T


@pytest.mark.parametrize("op", ["exp", "log"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_state_equals_array_api_state(op, dtype):
    q, k, vals = (x.astype(dtype) for x in ek_inputs(3, (2, 1), 29, 3, 4, 1.0))
    _, a = chunked(op, q, k, vals, 8, return_state=True)
    _, b = EK[op][0](q, k, vals, return_state=True, backend="array_api")
    assert a.tensors.keys() == b.tensors.keys() and a.offset == b.offset == 29
    for name in a.tensors:
        assert a.tensors[name].dtype == dtype and a.tensors[name].shape == b.tensors[name].shape
        np.testing.assert_allclose(a.tensors[name], b.tensors[name], rtol=1e-12 if dtype == np.float64 else 1e-5,
                                   atol=1e-300, err_msg=name)


@pytest.mark.parametrize("op", ["exp", "log"])
def test_long_calls_run_chunked_and_match(op):
    """The public operator on numba chooses the chunked kernel from EK_CHUNKED_MIN_T tokens on (and
    the token-by-token kernel below); both meet the reference."""
    T = numba_cpu.EK_CHUNKED_MIN_T + 69
    q, k, vals = ek_inputs(11, (2,), T, 5, 3, 1.0)
    rtol, atol = ek_tol(op, q, k, "float64")
    f, r = EK[op]
    for n in (T, numba_cpu.EK_CHUNKED_MIN_T - 1):
        assert_close(f(q[:, :n], k[:, :n], vals[:, :n], backend="numba"), r(q[:, :n], k[:, :n], vals[:, :n]), rtol,
                     atol=atol)


@pytest.mark.parametrize("op", ["exp", "log"])
@given(T=st.integers(numba_cpu.EK_CHUNKED_MIN_T, 2 * numba_cpu.EK_CHUNKED_MIN_T + 5), dk=dims, dv=dims, seed=seeds,
       scale=st.sampled_from([1.0, 1e3]))
def test_default_chunk_float32(op, T, dk, dv, seed, scale):
    """The chunk size the backend picks (128 at these widths, in blocks of 16 rows: float32
    exponentials, the vectorised logarithms, a partial last chunk) against the reference, with the
    float32 bounds above."""
    from lsattn.backends import _numba_chunked as KC

    assert KC.chunk_for(dk, dv) == 128 and KC._tri_block(128) == 16
    q, k, vals = (x.astype(np.float32) for x in ek_inputs(seed, (2,), T, dk, dv, scale))
    rtol, atol = ek_tol(op, q, k, "float32")
    out, _ = chunked(op, q, k, vals, None)
    assert out.dtype == np.float32
    assert_close(out, EK[op][1](*(x.astype(np.float64) for x in (q, k, vals))), rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorised_exp_and_log(dtype):
    """``_exp_row`` against np.exp over the whole range it is called on (x <= 0, below the flush
    to zero too); ``_expw`` / ``_logw`` (``_map_exp_log``) in the input dtype against np.exp / np.log."""
    from lsattn.backends import _numba_chunked as KC

    rng = np.random.default_rng(0)
    fi = np.finfo(dtype)
    x = np.concatenate([-rng.uniform(0, 2 * np.log(1 / fi.tiny), 4000), -rng.uniform(0, 1, 1000), [0.0, -1e-300]])
    y = np.empty(x.shape, dtype)
    KC._exp_row(x.copy(), np.empty_like(x), y)
    want = np.exp(x)
    normal = want >= 2 * fi.tiny  # smaller ones may be flushed to 0
    np.testing.assert_allclose(y[normal], want[normal].astype(dtype), rtol=2 * fi.eps, atol=0)
    assert (y[~normal] <= 2 * fi.tiny).all() and (y[~normal] >= 0).all()
    # the chunked exp-kernel's scalar exp / log (in the input dtype): exp within 2 ulp (float32
    # flushed to 0 below -87), log within 2 ulp of its value plus 2 ulp of 1 (near x = 1)
    z = np.exp(rng.uniform(-0.9, 0.9, 4000) * np.log(fi.max)).astype(dtype)
    xs = np.concatenate([x.astype(dtype), z, 1 + rng.uniform(-0.01, 0.01, 200).astype(dtype)])
    ey, ly = np.empty_like(xs), np.empty_like(xs)
    KC._map_exp_log(xs, ey, ly)
    neg = xs <= 0
    want = np.exp(xs[neg].astype(np.float64))
    normal = want >= (np.exp(-87.0) if dtype == np.float32 else 2 * fi.tiny)
    np.testing.assert_allclose(ey[neg][normal], want[normal], rtol=2 * fi.eps, atol=0)
    assert (ey[neg][~normal] <= 2 * fi.tiny).all() and (ey[neg][~normal] >= 0).all()
    wl = np.log(xs[~neg].astype(np.float64))
    assert (np.abs(ly[~neg] - wl) <= 2 * fi.eps * (np.abs(wl) + 1)).all()


def test_warm_compiles_the_chunked_kernel_once_per_dtype():
    """``lsattn info --warm`` compiles (or loads) ek_chunked for float32 and float64; read-only inputs
    (broadcast views) and a read-only state then compile nothing more."""
    from lsattn.backends import _numba_chunked as KC

    rows = numba_cpu.warm()
    assert {dt for name, dt, _ in rows if name == "ek_chunked"} == {"float32", "float64"}
    before = len(KC.ek_chunked.signatures)
    assert before == 2
    rng = np.random.default_rng(0)
    for dt in ("float32", "float64"):
        q, k, v = (np.broadcast_to(rng.standard_normal((1, 9, 2)).astype(dt), (2, 9, 2)) for _ in range(3))
        _, st = chunked("log", q, k, v, 4, return_state=True)
        for t in st.tensors.values():
            t.flags.writeable = False
        chunked("exp", q, k, v, 4, state=None)
        chunked("log", q, k, v, 4, state=st)
    assert len(KC.ek_chunked.signatures) == before


def ro(x):
    """``x`` read-only and C-contiguous, as the backend hands the kernels what they only read (Numba
    types read-only arrays apart: a writable one would compile a second specialisation)."""
    return numba_cpu._ro(np.ascontiguousarray(x))


@given(T=small_T, C=chunks, P=st.integers(1, 5), log_values=st.booleans(), seed=seeds)
def test_chunked_parts_of_one_sequence(T, C, P, log_values, seed):
    """A sequence split into P parallel parts (two passes: part 0's first chunks beside the other
    parts' summaries of their pieces, then each part's own chunks from the merged state) gives the
    reference output and the array-API final state, whatever P (the backend picks P from the
    thread count, so it is driven directly here)."""
    from lsattn.backends import _numba_chunked as KC

    op = "log" if log_values else "exp"
    q, k, vals = ek_inputs(seed, (1,), T, 3, 2, 1.0)
    lo = -np.finfo(np.float64).max / 8
    # what the kernel only reads is read-only, as the backend passes it: its specialisation, no other
    m0, n0 = ro(np.full((1, 3), lo)), ro(np.full((1, 2), lo))
    out, m1, n1, S1, z1 = np.empty((1, T, 2)), np.empty((1, 3)), np.empty((1, 2)), np.empty((1, 3, 2)), np.empty((1, 3))
    rows = ro(np.zeros((3, 1), np.int64))  # batch element 0 of q, k, vals: their row 0
    seg = ro(np.array([0, T], np.int64))  # one stream
    KC.ek_chunked(ro(q), ro(k), ro(vals), rows, seg, m0, n0, ro(np.zeros((1, 3, 2))), ro(np.zeros((1, 3))), log_values, lo,
                  C, P, out, m1, n1, S1, z1)
    rtol, atol = ek_tol(op, q, k, "float64")
    assert_close(out, EK[op][1](q, k, vals), rtol, atol=atol)
    _, want = EK[op][0](q, k, vals, return_state=True, backend="array_api")
    for name, got in (("m", m1), ("S", S1), ("z", z1)) + ((("n", n1),) if log_values else ()):
        np.testing.assert_allclose(got, want.tensors[name], rtol=1e-12, atol=1e-300, err_msg=name)


@pytest.mark.parametrize("log_values", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_parts_wide_summary_products(dtype, log_values):
    """Parts of one sequence at the backend's chunk (d_k = d_v = 64: chunk 128): a summary-only chunk takes
    ``E^T V`` in products of 64 rows (two per chunk, not the full chunk's eight blocks of 16): T = 933 (8
    chunks, the last partial) in 2 parts (part 1 summarises chunks 1-4) and in 3 (chunks 1-2 and 3-5); outputs
    against the reference at the dtype's bounds, the final state against the unsplit kernel's."""
    from lsattn.backends import _numba_chunked as KC

    op = "log" if log_values else "exp"
    T, d, C = 933, 64, KC.chunk_for(64, 64)
    q, k, vals = (x.astype(dtype) for x in ek_inputs(5, (1,), T, d, d, 1.0))
    lo = -float(np.finfo(dtype).max) / 8
    res = {}
    for P in (1, 2, 3):
        out, m1, n1, S1, z1 = (np.empty(s, dtype) for s in ((1, T, d), (1, d), (1, d), (1, d, d), (1, d)))
        KC.ek_chunked(ro(q), ro(k), ro(vals), ro(np.zeros((3, 1), np.int64)), ro(np.array([0, T], np.int64)),
                      ro(np.full((1, d), lo, dtype)), ro(np.full((1, d), lo, dtype)), ro(np.zeros((1, d, d), dtype)),
                      ro(np.zeros((1, d), dtype)), log_values, lo, C, P, out, m1, n1, S1, z1)
        res[P] = out, S1, z1
    name = np.dtype(dtype).name
    rtol, atol = ek_tol(op, q, k, name)
    want = EK[op][1](*(x.astype(np.float64) for x in (q, k, vals)))
    for P in (1, 2, 3):
        assert_close(res[P][0], want, rtol, atol=atol)
        for got, base in zip(res[P][1:], res[1][1:]):  # of the largest entry: S's entries cancel (v of both signs)
            assert np.abs(got - base).max() <= (1e-12 if dtype == np.float64 else 1e-5) * np.abs(base).max()


def _parts_own_maxima(KC, q, k, vals, m0, n0, S0, z0, log_values, lo, C, P):
    """ek_chunked's two passes over one stream in P parts (its bounds and merges), every chunk computing its
    own column maxima (``_ek_chunks`` with ``kept`` False: the path before the kept maxima): out, m, S, z."""
    T, dk, dv = q.shape[0], q.shape[1], vals.shape[1]
    bd = KC._part_bounds(-(-T // C), P, KC.SUMMARY_COST[int(log_values)], KC._keep_saved(q.itemsize, log_values))
    out, KX = np.empty((T, dv), q.dtype), np.empty((0, dk + dv), q.dtype)
    H = [(np.empty(dk), np.empty(dv + 1), np.empty((dk, dv + 1))) for _ in range(P)]
    for j, (m, n, Ss) in enumerate(H):  # pass 1: part 0's first chunks, the others' summaries
        if j == 0:
            KC._ek_load(m0, n0, S0, z0, log_values, m, n, Ss)
        else:
            KC._ek_fresh(log_values, lo, m, n, Ss)
        assert KC._ek_chunks(q, k, vals, bd[j], bd[j + 1], j == 0, m, n, Ss, z0, log_values, lo, C, out, KX, False) == 0
    for j in range(P):  # pass 2: part j's own chunks from the merged state
        m, n, Ss = (x.copy() for x in H[0])
        for i in range(1, j + 1):
            KC._ek_merge(m, n, Ss, *H[i])
        assert KC._ek_chunks(q, k, vals, bd[j + 1], bd[j + 2], True, m, n, Ss, z0, log_values, lo, C, out, KX, False) == 0
    return out, m, Ss[:, :dv], Ss[:, dv]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(T=st.integers(1, 200), C=chunks, P=st.integers(2, 5), log_values=st.booleans(), scale=st.sampled_from([1.0, 1e3]),
       neg=st.booleans(), seed=seeds)
def test_chunked_kept_maxima_equal_own(dtype, T, C, P, log_values, scale, neg, seed):
    """A sequence in P parts: the chunks a later part summarised run in full from the column maxima that
    part kept (``KX``) instead of their own pass over k and vals; outputs and final state bit-equal to every
    chunk computing its own (scale 1e3: exact rows; ``neg``: -inf log values, whole and partial columns),
    from an incoming state."""
    from lsattn.backends import _numba_chunked as KC

    q, k, vals = (x[0].astype(dtype) for x in ek_inputs(seed, (1,), T + 3, 3, 2, scale))
    if neg and log_values:
        vals[:, 0] = -np.inf
        vals[np.random.default_rng(seed).random(T + 3) < 0.5, 1] = -np.inf
    lo = -float(np.finfo(dtype).max) / 8
    _, st0 = EK["log" if log_values else "exp"][0](q[:3], k[:3], vals[:3], return_state=True, backend="array_api")
    q, k, vals = q[3:], k[3:], vals[3:]
    t = st0.tensors
    m0, S0, z0 = (ro(np.asarray(t[x], dtype)) for x in ("m", "S", "z"))
    n0 = ro(np.asarray(t["n"], dtype) if log_values else np.full(2, lo, dtype))
    out, m1, n1, S1, z1 = (np.empty(s, dtype) for s in ((1, T, 2), (1, 3), (1, 2), (1, 3, 2), (1, 3)))
    assert KC.ek_chunked(ro(q[None]), ro(k[None]), ro(vals[None]), ro(np.zeros((3, 1), np.int64)),
                         ro(np.array([0, T], np.int64)), m0[None], n0[None], S0[None], z0[None], log_values, lo, C, P,
                         out, m1, n1, S1, z1) == 0
    want, m, S, z = _parts_own_maxima(KC, ro(q), ro(k), ro(vals), m0, n0, S0, z0, log_values, lo, C, P)
    np.testing.assert_array_equal(out[0], want)
    np.testing.assert_array_equal(m1[0], m.astype(dtype))
    np.testing.assert_array_equal(S1[0], S.astype(dtype))
    np.testing.assert_array_equal(z1[0], z.astype(dtype))


@given(T=small_T.filter(lambda T: T > 0), C=chunks, P=st.integers(1, 5), log_values=st.booleans(), seed=seeds,
       data=st.data())
def test_chunked_counts_non_finite_inputs(T, C, P, log_values, seed, data):
    """ek_chunked's count of non-finite input entries (the prologue's ``KernelCheck``, read by the
    kernel instead of a pass of its own): 0 for finite inputs (the outputs then unchanged), at least
    1 for NaN or +-inf at a random entry of q, k or vals, in any part of the sequence, except ``-inf``
    log values (a zero value: counted 0, and the outputs those of the reference)."""
    from lsattn.backends import _numba_chunked as KC

    q, k, vals = ek_inputs(seed, (1,), T, 3, 2, 1.0)
    arg, s = data.draw(st.integers(0, 2)), data.draw(st.integers(0, T - 1))
    value = data.draw(st.sampled_from([None, np.nan, np.inf, -np.inf]))
    x = [q, k, vals][arg]
    if value is not None:
        x[0, s, data.draw(st.integers(0, x.shape[-1] - 1))] = value
    lo = -np.finfo(np.float64).max / 8
    m0, n0 = ro(np.full((1, 3), lo)), ro(np.full((1, 2), lo))
    out, m1, n1, S1, z1 = np.empty((1, T, 2)), np.empty((1, 3)), np.empty((1, 2)), np.empty((1, 3, 2)), np.empty((1, 3))
    rows, seg = ro(np.zeros((3, 1), np.int64)), ro(np.array([0, T], np.int64))
    bad = KC.ek_chunked(ro(q), ro(k), ro(vals), rows, seg, m0, n0, ro(np.zeros((1, 3, 2))), ro(np.zeros((1, 3))),
                        log_values, lo, C, P, out, m1, n1, S1, z1)
    # -inf in q or k counts: the prologue clamps it (a kernel reading it as it is would meet -inf - -inf)
    passes = value is None or (value == -np.inf and arg == 2 and log_values)
    assert (bad == 0) == passes, (bad, value, arg, s)
    if passes:
        op = "log" if log_values else "exp"
        rtol, atol = ek_tol(op, q, k, "float64")
        assert_close(out, EK[op][1](q, k, vals), rtol, atol=atol)


# ---- log-linear Mamba-2 and Gated DeltaNet (ll_chunked) ---------------------------------------------
#
# Bounds of tests/test_numba_backend.py (test_loglinear.py, test_gated_delta.py): 1e-12 (float64),
# 1e-10 (Gated DeltaNet, keys of std up to 1), 1e-5 (float32), relative to max |ref|. Forced chunk
# sizes from 1 token up: short cases cover chunks after unaligned heads, tails, groups of chunks cut
# by the call's ends, one chunk only and none.

ll_chunks = st.sampled_from([1, 2, 4, 8, 16])
LLF = {"mamba2": numba_cpu.loglinear_forward, "gated": numba_cpu.gated_delta_forward}
STRONG = [-1e3, -1e4, -1e6, -np.inf]


def ll_chunked(op, args, C, state=None, return_state=False):
    """The numba backend's log-linear call with the chunked kernel in chunks of C (out, state)."""
    return LLF[op](*args, 64, state, return_state, kernel_chunk=C)


def spiky(args, seed, T):
    """Weak decays (-0.05 .. 0) with a few of -1e3 .. -1e6 and hard resets (-inf) anywhere."""
    rng = np.random.default_rng(seed)
    a = -0.05 * rng.random(args[3].shape)
    for _ in range(rng.integers(1, 4)):
        a[..., rng.integers(T)] = rng.choice(STRONG)
    return args[:3] + [a] + args[4:]


def cut(args, a, b):
    return [x[..., a:b, :] if x.ndim == args[0].ndim else x[..., a:b] for x in args]


@pytest.mark.parametrize("op", ["mamba2", "gated"])
@given(batch=batch_shapes, T=small_T, dk=dims, dv=dims, extra=st.integers(0, 2), decay=decays, C=ll_chunks,
       seed=seeds)
def test_ll_chunked_matches_reference(op, batch, T, dk, dv, extra, decay, C, seed):
    _, r, gated = LL[op]
    args = ll_inputs(seed, batch, T, dk, dv, L=lsattn.num_levels(T) + extra, gated=gated, decay=decay)
    assert_close(ll_chunked(op, args, C)[0], r(*args), TOL["float64"])


@given(T=small_T, key_scale=st.sampled_from([0.3, 0.6, 1.0]), decay=decays, C=ll_chunks, seed=seeds)
def test_gd_chunked_unnormalised_keys(T, key_scale, decay, C, seed):
    args = ll_inputs(seed, (2,), T, 4, 3, gated=True, decay=decay, key_scale=key_scale)
    assert_close(ll_chunked("gated", args, C)[0], ref.loglinear_gated_delta(*args), 1e-10)


@pytest.mark.parametrize("op", ["mamba2", "gated"])
@given(T=small_T, decay=decays, C=ll_chunks, seed=seeds)
def test_ll_chunked_float32(op, T, decay, C, seed):
    _, r, gated = LL[op]
    args = ll_inputs(seed, (2,), T, 4, 3, gated=gated, decay=decay, key_scale=0.5 if seed % 2 else None)
    out, _ = ll_chunked(op, [x.astype(np.float32) for x in args], C)
    assert out.dtype == np.float32
    assert_close(out, r(*(x.astype(np.float32).astype(np.float64) for x in args)), TOL["float32"])


@pytest.mark.parametrize("op", ["mamba2", "gated"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(T=st.integers(2, 60), C=ll_chunks, seed=seeds, data=st.data())
def test_ll_chunked_strong_decays_and_resets(op, dtype, T, C, seed, data):
    """Decays of -1e3 .. -1e6 and hard resets among weak ones, anywhere in a chunk, streamed or not:
    the bounds of tests/test_nonfinite.py (1e-12 float64, 1e-5 float32), finite outputs."""
    _, r, gated = LL[op]
    args = [x.astype(dtype) for x in spiky(ll_inputs(seed, (2,), T, 4, 4, gated=gated), seed, T)]
    cuts = [0] + data.draw(split_points(T, max_splits=2)) + [T]
    outs, state = [], None
    for a, b in zip(cuts[:-1], cuts[1:]):
        o, state = ll_chunked(op, cut(args, a, b), C, state, True)
        outs.append(o)
    out = np.concatenate(outs, axis=-2)
    assert np.isfinite(out).all()
    assert_close(out, r(*(x.astype(np.float64) for x in args)), TOL[dtype])


@pytest.mark.parametrize("op", ["mamba2", "gated"])
@given(T=st.integers(2, 80), data=st.data(), decay=decays, seed=seeds)
def test_ll_chunked_stream_handed_between_backends(op, T, data, decay, seed):
    """A stream cut at random points, each piece on the chunked kernel (random C), the token-by-token
    kernel or the array-API path: same outputs, and the final state equals the array-API one."""
    f, r, gated = LL[op]
    args = ll_inputs(seed, (2,), T, 3, 5, gated=gated, decay=decay)
    cuts = [0] + data.draw(split_points(T)) + [T]
    ways = data.draw(st.lists(st.sampled_from(["chunked", "numba", "array_api"]), min_size=len(cuts) - 1,
                              max_size=len(cuts) - 1))
    outs, state = [], None
    for (a, b), way in zip(zip(cuts[:-1], cuts[1:]), ways):
        if way == "chunked":
            o, state = ll_chunked(op, cut(args, a, b), data.draw(ll_chunks), state, True)
        else:
            o, state = f(*cut(args, a, b), state=state, return_state=True, backend=way)
        outs.append(o)
    assert_close(np.concatenate(outs, axis=-2), r(*args), TOL["float64"])
    _, want = f(*args, return_state=True, backend="array_api")
    assert state.offset == T
    assert_close(state.tensors["levels"], want.tensors["levels"], TOL["float64"])


@pytest.mark.parametrize("op", ["mamba2", "gated"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ll_chunked_state_equals_token_kernel_state(op, dtype):
    """From an offset that is not a multiple of C: the state in and out equals the token kernel's."""
    f, _, gated = LL[op]
    args = [x.astype(dtype) for x in ll_inputs(3, (2, 1), 61, 3, 4, gated=gated)]
    _, st0 = f(*cut(args, 0, 13), return_state=True, backend="numba")
    o1, a = ll_chunked(op, cut(args, 13, 61), 8, st0, True)
    o2, b = f(*cut(args, 13, 61), state=st0, return_state=True, backend="numba")
    assert a.offset == b.offset == 61 and a.tensors["levels"].dtype == dtype
    tol = TOL[np.dtype(dtype).name]
    assert_close(a.tensors["levels"], b.tensors["levels"], tol)
    assert_close(o1, o2, tol)


@pytest.mark.parametrize("op", ["mamba2", "gated"])
def test_ll_long_calls_run_chunked_and_match(op, monkeypatch):
    """The public operator on numba chooses the chunked kernel from LL_CHUNKED_MIN_T tokens on (and
    the token-by-token kernel below); both meet the reference."""
    from lsattn.backends import _numba_ll_chunked as KC

    f, r, gated = LL[op]
    calls = []
    kernel = KC.ll_chunked
    monkeypatch.setattr(KC, "ll_chunked", lambda *a: (calls.append(a[0].shape[1]), kernel(*a)))
    least = numba_cpu.LL_CHUNKED_MIN_T[f.__name__]
    T = least + 69
    args = ll_inputs(11, (2,), T, 5, 3, gated=gated)
    for n in (T, least - 1):
        assert_close(f(*cut(args, 0, n), backend="numba"), r(*cut(args, 0, n)), TOL["float64"])
    assert calls == [T]


@pytest.mark.parametrize("op", ["mamba2", "gated"])
@given(T=small_T, C=ll_chunks, parts=st.integers(1, 4), seed=seeds)
def test_ll_chunked_split_or_not(op, T, C, parts, seed):
    """Every schedule of ll_chunked (one parallel loop over the batch; for parts > 1 loops over batch
    x chunks and over batch x parts of the value columns, some parts empty, and for Gated DeltaNet at
    parts = 2 the pipeline ``_gd_pipeline``; the backend picks by batch and thread count, so it is
    driven directly here) from an offset: the reference outputs and the array-API final levels."""
    from lsattn.backends import _numba_ll_chunked as KC

    f, r, gated = LL[op]
    args = ll_inputs(seed, (3,), T + 5, 3, 3, gated=gated)  # 3 value columns: parts of 1 and 2 of them
    q, k, v, a = args[:4]
    beta, lam = (args[4], args[5]) if gated else (args[3], args[4])
    _, st0 = f(*cut(args, 0, 5), return_state=True, backend="array_api")
    out, lev1 = np.empty((3, T, 3)), np.empty((3, (T + 5).bit_length(), 3, 3))
    rows = ro(np.tile(np.arange(3), (6, 1)))  # batch element b of each input: its row b
    seg, offs = ro(np.array([0, T], np.int64)), ro(np.array([5], np.int64))  # one stream, at offset 5
    KC.ll_chunked(*(ro(x[:, 5:]) for x in (q, k, v, a, beta, lam)), rows, seg, offs,
                  (T + 5).bit_length(), ro(st0.tensors["levels"]), gated, C, parts, out, lev1)
    assert_close(np.concatenate([f(*cut(args, 0, 5), backend="array_api"), out], axis=-2), r(*args), TOL["float64"])
    _, want = f(*args, return_state=True, backend="array_api")
    assert_close(lev1, want.tensors["levels"], TOL["float64"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@given(T=st.integers(1, 300), p=st.integers(0, 70), C=st.sampled_from([4, 8, 16]), decay=decays, seed=seeds)
def test_gd_pipeline_equals_one_lane(dtype, T, p, C, decay, seed):
    """Gated DeltaNet's two-lane pipeline (parts = 2, ``GD_PIPE``: groups cut by the call's ends, an
    unaligned head, incoming levels) runs ``_ll_row``'s functions on ``_ll_row``'s groups: outputs and
    final levels bit-equal to the one-lane path (parts = 1), two sequences."""
    from lsattn.backends import _numba_ll_chunked as KC

    f = LL["gated"][0]
    args = [x.astype(dtype) for x in ll_inputs(seed, (2,), p + T, 3, 4, gated=True, decay=decay)]
    _, st0 = f(*cut(args, 0, p), return_state=True, backend="array_api")
    n = (p + T).bit_length()
    lev0 = st0.tensors["levels"] if p else np.zeros((2, 0, 3, 4), dtype)
    rows = ro(np.tile(np.arange(2), (6, 1)))
    seg, offs = ro(np.array([0, T], np.int64)), ro(np.array([p], np.int64))
    res = []
    for parts in (1, 2):
        out, lev1 = np.empty((2, T, 4), dtype), np.empty((2, n, 3, 4), dtype)
        KC.ll_chunked(*(ro(x[:, p:]) for x in args), rows, seg, offs, n, ro(lev0), True, C, parts, out, lev1)
        res.append((out, lev1))
    np.testing.assert_array_equal(res[1][0], res[0][0])
    np.testing.assert_array_equal(res[1][1], res[0][1])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@given(T=st.integers(1, 300), p=st.integers(0, 70), C=st.sampled_from([4, 8, 16]), parts=st.integers(2, 4),
       decay=decays, seed=seeds)
def test_ll_chunked_mamba2_pieces(dtype, T, p, C, parts, decay, seed):
    """Mamba-2 on one stream in pieces of time (``_splits``: split points with several set bits, slots of
    the stream before a split at several levels, pieces ending anywhere) from an offset: the reference
    outputs and the array-API final levels, at the dtype's bound."""
    from lsattn.backends import _numba_ll_chunked as KC

    f, r, _ = LL["mamba2"]
    args = [x.astype(dtype) for x in ll_inputs(seed, (1,), p + T, 3, 2, decay=decay)]
    q, k, v, a, lam = args
    _, st0 = f(*cut(args, 0, p), return_state=True, backend="array_api")
    n = (p + T).bit_length()
    out, lev1 = np.empty((1, T, 2), dtype), np.empty((1, n, 3, 2), dtype)
    lev0 = st0.tensors["levels"] if p else np.zeros((1, 0, 3, 2), dtype)
    rows = ro(np.zeros((6, 1), np.int64))
    seg, offs = ro(np.array([0, T], np.int64)), ro(np.array([p], np.int64))
    KC.ll_chunked(*(ro(x[:, p:]) for x in (q, k, v, a, a, lam)), rows, seg, offs, n, ro(lev0), False, C, parts,
                  out, lev1)
    assert_close(out, r(*(x.astype(np.float64) for x in args))[:, p:], TOL[dtype])
    _, want = f(*(x.astype(np.float64) for x in args), return_state=True, backend="array_api")
    assert_close(lev1, want.tensors["levels"], TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@given(T=st.integers(1, 400), p=st.integers(0, 70), C=st.sampled_from([4, 8, 16]), parts=st.integers(2, 4),
       scale=st.sampled_from([1.0, 1e3]), decay=hier_decays, weights=st.sampled_from(["zero", "random", "off"]),
       seed=seeds)
def test_hier_kept_summaries_equal_one_part(dtype, T, p, C, parts, scale, decay, weights, seed):
    """The hierarchical kernel's parts of one sequence in two passes (``HIER_KEEP``: part 0's first chunks
    beside the later parts' kept summaries, then every part from part 0's slots and the kept summaries; an
    unaligned head, incoming slots, exact rows at scale 1e3) run ``_stream``'s summaries, merges and reads on
    the same operands: outputs and final slots bit-equal to one part (parts = 1), two sequences."""
    from lsattn.backends import _numba_hier_chunked as KH

    args = [None if x is None else x.astype(dtype)
            for x in hier_inputs(seed, (2,), p + T, 3, 2, scale, decay, weights)]
    if args[4] is None:
        args[4] = np.zeros(args[0].shape[:-1], dtype)
    nl = (p + T).bit_length()
    lo = -float(np.finfo(dtype).max) / 8
    if p:
        _, st0 = hier([x[..., :p, :] if x.ndim == 3 else x[..., :p] for x in args], backend="array_api",
                      return_state=True)
        t = {name: ro(x.astype(dtype)) for name, x in st0.tensors.items()}
    else:
        t = {name: ro(np.zeros((2, 0) + s, dtype)) for name, s in (("m", (3,)), ("n", (2,)), ("S", (3, 2)), ("z", (3,)))}
    res = []
    for P in (1, parts):
        out = np.empty((2, T, 2), dtype)
        m1, n1, S1, z1 = (np.empty((2, nl) + s, dtype) for s in ((3,), (2,), (3, 2), (3,)))
        KH.hier_chunked(*(ro(x[:, p:, :] if x.ndim == 3 else x[:, p:]) for x in args),
                        ro(np.tile(np.arange(2), (5, 1))), ro(np.array([0, T], np.int64)), ro(np.array([p], np.int64)),
                        nl, t["m"], t["n"], t["S"], t["z"], lo, C, P, out, m1, n1, S1, z1)
        res.append((out, m1, n1, S1, z1))
    for got, want in zip(res[1], res[0]):
        np.testing.assert_array_equal(got, want)
