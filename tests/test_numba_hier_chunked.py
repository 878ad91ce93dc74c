"""The chunked Numba kernel of hierarchical exp-kernel attention (``lsattn.backends._numba_hier_chunked``)
against lsattn.reference, with the strategies and the bound of the numba hierarchical tests in
tests/test_numba_backend.py (absolute on log y: ``tol (1 + max |ref|)``, ``tol = TOL[dtype] + 2 eps
(max |q| + max |k|)``). The chunk size is forced small (``kernel_chunk``; the public operator
chooses by size), so short hypothesis cases cover T < C, T not a multiple of C, heads before the
first aligned chunk (states), many chunks and slots, and the exact per-row fallback (large
magnitudes, log v = -inf)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lsattn
from lsattn import reference as ref
from strategies import batch_shapes, magnitudes, seeds, split_points
from test_numba_backend import dims, hier, hier_check, hier_decays, hier_inputs, hier_weights, small_T
from test_numba_chunked import ro

pytest.importorskip("numba")
pytest.importorskip("scipy")  # Numba's np.dot calls SciPy's BLAS

from lsattn.backends import numba_cpu  # noqa: E402

chunks = st.sampled_from([1, 2, 4, 8, 16])
STRONG = [-1e3, -1e4, -1e6, -np.inf]


def chunked(args, C, state=None, return_state=False):
    """The numba backend's hierarchical call with the chunked kernel in chunks of C (out, state)."""
    q, k, lv, lam, a = args
    return numba_cpu.hierarchical_forward(q, k, lv, lam, a, state, return_state, kernel_chunk=C)


def cut(args, a, b):
    return [None if x is None else (x[..., a:b, :] if x.ndim == args[0].ndim else x[..., a:b]) for x in args]


def as64(args):
    return [None if x is None else x.astype(np.float64) for x in args]


@given(batch=batch_shapes, T=small_T, dk=dims, dv=dims, scale=magnitudes, decay=hier_decays, weights=hier_weights,
       extra=st.integers(0, 2), C=chunks, seed=seeds)
def test_hier_chunked_matches_reference(batch, T, dk, dv, scale, decay, weights, extra, C, seed):
    args = hier_inputs(seed, batch, T, dk, dv, scale, decay, weights, L=lsattn.num_levels(T) + extra)
    hier_check(chunked(args, C)[0], args, "float64")


@given(T=small_T, scale=st.sampled_from([1e-3, 1.0, 1e3]), decay=hier_decays, weights=hier_weights, C=chunks,
       seed=seeds)
def test_hier_chunked_float32(T, scale, decay, weights, C, seed):
    """scale 1e3: exponents far below the chunk's shifts, so rows take the exact fallback."""
    args = [None if x is None else x.astype(np.float32) for x in hier_inputs(seed, (2,), T, 4, 3, scale, decay, weights)]
    out, _ = chunked(args, C)
    assert out.dtype == np.float32
    hier_check(out, as64(args), "float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(T=st.integers(2, 60), C=chunks, seed=seeds, data=st.data())
def test_hier_chunked_hard_resets_and_strong_decays(dtype, T, C, seed, data):
    """Weak decays with a few of -1e3 .. -1e6 and -inf (hard resets) anywhere in a chunk, streamed
    in pieces: the bound, finite outputs."""
    q, k, lv, lam, _ = hier_inputs(seed, (2,), T, 3, 3, weights=data.draw(hier_weights))
    rng = np.random.default_rng(seed)
    a = -0.05 * rng.random((2, T))
    for _ in range(rng.integers(1, 4)):
        a[..., rng.integers(T)] = rng.choice(STRONG)
    args = [x.astype(dtype) for x in (q, k, lv, lam, a)]
    cuts = [0] + data.draw(split_points(T, max_splits=2)) + [T]
    outs, state = [], None
    for lo_, hi in zip(cuts[:-1], cuts[1:]):
        o, state = chunked(cut(args, lo_, hi), C, state, True)
        outs.append(o)
    out = np.concatenate(outs, axis=-2)
    assert np.isfinite(out).all()
    hier_check(out, as64(args), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(T=small_T, C=chunks, decay=hier_decays, seed=seeds)
def test_hier_chunked_log_v_minus_inf(dtype, T, C, decay, seed):
    """log v = -inf entries and a whole -inf column: log y = -inf exactly where nothing visible is
    non-zero, the bound elsewhere."""
    args = list(hier_inputs(seed, (2,), T, 3, 3, decay=decay))
    rng = np.random.default_rng(seed)
    args[2][..., 0] = -np.inf
    args[2][rng.random((2, T)) < 0.5, 1] = -np.inf
    args = [None if x is None else x.astype(dtype) for x in args]
    out, _ = chunked(args, C)
    want = ref.loglinear_log_attention(*as64(args)[:4], log_decay=as64(args)[4])
    assert (np.isneginf(out) == np.isneginf(want)).all()
    hier_check(out, as64(args), dtype)


@given(T=st.integers(2, 80), data=st.data(), decay=hier_decays, seed=seeds)
def test_hier_chunked_stream_handed_between_backends(T, data, decay, seed):
    """A stream cut at random points, each piece on the chunked kernel (random C), the token-by-token
    kernel or the array-API path: same outputs, and the final state equals the array-API one."""
    args = hier_inputs(seed, (2,), T, 3, 2, decay=decay, weights=data.draw(hier_weights))
    cuts = [0] + data.draw(split_points(T)) + [T]
    ways = data.draw(st.lists(st.sampled_from(["chunked", "numba", "array_api"]), min_size=len(cuts) - 1,
                              max_size=len(cuts) - 1))
    outs, state = [], None
    for (a, b), way in zip(zip(cuts[:-1], cuts[1:]), ways):
        if way == "chunked":
            o, state = chunked(cut(args, a, b), data.draw(chunks), state, True)
        else:
            o, state = hier(cut(args, a, b), backend=way, state=state, return_state=True)
        outs.append(o)
    hier_check(np.concatenate(outs, axis=-2), args, "float64")
    _, want = hier(args, backend="array_api", return_state=True)
    assert state.offset == T
    for name in want.tensors:
        np.testing.assert_allclose(state.tensors[name], want.tensors[name], rtol=1e-12, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hier_chunked_state_equals_token_kernel_state(dtype):
    """From an offset that is not a multiple of C, through several chunks and a tail: the state in
    and out and the outputs equal the token-by-token kernel's."""
    args = [x.astype(dtype) for x in hier_inputs(3, (2, 1), 61, 3, 4, weights="off")]
    _, st0 = hier(cut(args, 0, 13), return_state=True)
    o1, a = chunked(cut(args, 13, 61), 8, st0, True)
    o2, b = hier(cut(args, 13, 61), state=st0, return_state=True)
    assert a.offset == b.offset == 61 and a.tensors.keys() == b.tensors.keys()
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for name in a.tensors:
        assert a.tensors[name].dtype == dtype
        np.testing.assert_allclose(a.tensors[name], b.tensors[name], rtol=tol, atol=tol, err_msg=name)
    np.testing.assert_allclose(o1, o2, rtol=tol, atol=tol)


@given(T=small_T, C=chunks, P=st.integers(1, 5), seed=seeds)
def test_hier_chunked_parts_of_one_sequence(T, C, P, seed):
    """A sequence split into P parallel parts (each first summarising the chunks before it), from
    an offset: the reference outputs and the array-API final state, whatever P (the backend picks P
    from the thread count, so it is driven directly here)."""
    from lsattn.backends import _numba_hier_chunked as KH

    args = hier_inputs(seed, (1,), T + 5, 3, 2)
    q, k, lv, lam, a = (ro(x[:, 5:]) for x in args)
    _, st0 = hier(cut(args, 0, 5), backend="array_api", return_state=True)
    p, nl = 5, (T + 5).bit_length()
    lo = -np.finfo(np.float64).max / 8
    out = np.empty((1, T, 2))
    m1, n1, S1, z1 = np.empty((1, nl, 3)), np.empty((1, nl, 2)), np.empty((1, nl, 3, 2)), np.empty((1, nl, 3))
    t = {name: ro(x) for name, x in st0.tensors.items()}
    KH.hier_chunked(q, k, lv, lam, a, ro(np.zeros((5, 1), np.int64)), ro(np.array([0, T], np.int64)),
                    ro(np.array([p], np.int64)), nl, t["m"], t["n"], t["S"], t["z"], lo, C, P, out, m1, n1, S1, z1)
    hier_check(np.concatenate([hier(cut(args, 0, 5), backend="array_api"), out], axis=-2), args, "float64")
    _, want = hier(args, backend="array_api", return_state=True)
    for name, got in (("m", m1), ("n", n1), ("S", S1), ("z", z1)):
        np.testing.assert_allclose(got, want.tensors[name], rtol=1e-12, atol=1e-13, err_msg=name)


def test_hier_long_calls_run_chunked_and_match(monkeypatch):
    """The public operator on numba chooses the chunked kernel from HIER_CHUNKED_MIN_T tokens on
    (and the token-by-token kernel below); both meet the reference."""
    from lsattn.backends import _numba_hier_chunked as KH

    calls = []
    kernel = KH.hier_chunked
    monkeypatch.setattr(KH, "hier_chunked", lambda *a: (calls.append(a[0].shape[1]), kernel(*a)))
    least = numba_cpu.HIER_CHUNKED_MIN_T
    T = least + 69
    args = hier_inputs(11, (2,), T, 5, 3)
    for n in (T, least - 1):
        hier_check(hier(cut(args, 0, n)), cut(args, 0, n), "float64")
    assert calls == [T]


def test_warm_compiles_the_chunked_kernel_once_per_dtype():
    """``lsattn info --warm`` compiles (or loads) hier_chunked for float32 and float64; read-only
    inputs (broadcast views) and a read-only state then compile nothing more."""
    from lsattn.backends import _numba_hier_chunked as KH

    rows = numba_cpu.warm()
    assert {dt for name, dt, _ in rows if name == "hier_chunked"} == {"float32", "float64"}
    before = len(KH.hier_chunked.signatures)  # 2 (test_hier_chunked_parts_of_one_sequence calls it as the backend does)
    rng = np.random.default_rng(0)
    for dt in ("float32", "float64"):
        q, k, lv = (np.broadcast_to(rng.standard_normal((1, 9, 2)).astype(dt), (2, 9, 2)) for _ in range(3))
        lam = np.broadcast_to(rng.standard_normal((1, 9, 5)).astype(dt), (2, 9, 5))
        a = np.broadcast_to(-rng.random((1, 9)).astype(dt), (2, 9))
        _, st = chunked((q, k, lv, lam, a), 4, return_state=True)
        for t in st.tensors.values():
            t.flags.writeable = False
        chunked((q, k, lv, lam, None), 4)
        chunked((q, k, lv, lam, a), 4, state=st)
    assert len(KH.hier_chunked.signatures) == before
