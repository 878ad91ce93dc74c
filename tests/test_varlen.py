"""Packed variable-length segments (``cu_seqlens``) and broadcast batch axes, every operator.

- A packed call equals the operator called on each segment (the float64 reference per segment, and
  the same backend per segment), segments of length 0 and 1 included, several batch axes, on the
  eager namespaces (array API path) and the numba backend, ``cu_seqlens`` as a list or an array.
- The packed stream the prologue builds (``lsattn._varlen.layout``) is at most ``2 T`` tokens,
  each segment starting at a multiple of its power-of-two size (its own Fenwick levels).
- Streams: with ``return_state=True`` the state holds one stream per segment (offsets ``(N,)``) and
  ``state=`` continues each segment's own stream: equal to the reference on each whole stream.
- Bad offsets, ``causal=False``, another namespace: errors naming ``cu_seqlens``; packed states
  with the wrong number of segments, without ``cu_seqlens``, in the stepper: errors naming ``state``;
  backends that do not compute packed segments are refused when forced, skipped when automatic.
- Batch axes broadcast like matmul (grouped-query heads): equal to the call on materialised copies.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lsattn
from lsattn import _varlen, backends
from lsattn.state import LEVEL_AXES

from helpers import TOL, assert_close, on, to_numpy, traced_peak

OPS = ["log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"]


def inputs(op, batch, T, dk=3, dv=2, seed=0, L=None):
    """NumPy float64 inputs of ``op`` in its positional order (``loglinear_log_attention``: log_decay last)."""
    rng = np.random.default_rng(seed)
    n = lambda *s: rng.standard_normal(batch + s)
    q, k, v = n(T, dk), n(T, dk), n(T, dv)
    if op in ("log_attention", "exp_kernel_attention"):
        return [q, k, v]
    L = L or lsattn.num_levels(max(T, 1))
    a, lam = -rng.random(batch + (T,)), rng.random(batch + (T, L))
    if op == "loglinear_attention":
        return [q, k, v, a, lam]
    if op == "loglinear_gated_delta":
        return [q, k / np.linalg.norm(k, axis=-1, keepdims=True), v, a, rng.random(batch + (T,)), lam]
    return [q, k, v, lam - 0.5, a]


def call(fn, op, arrays, **kw):
    if op == "loglinear_log_attention":
        return fn(*arrays[:4], log_decay=arrays[4], **kw)
    return fn(*arrays, **kw)


def tokens(op, arrays, s0, s1):
    """The inputs of tokens ``[s0, s1)`` (per-token scalars along -1, the others along -2)."""
    tok = {"loglinear_attention": (3,), "loglinear_gated_delta": (3, 4), "loglinear_log_attention": (4,)}.get(op, ())
    return [x[..., s0:s1] if i in tok else x[..., s0:s1, :] for i, x in enumerate(arrays)]


def per_segment(fn, op, arrays, off, **kw):
    """``fn`` called on each non-empty segment, concatenated along T (NumPy)."""
    outs = [to_numpy(call(fn, op, tokens(op, arrays, s0, s1), **kw)) for s0, s1 in zip(off[:-1], off[1:]) if s1 > s0]
    return np.concatenate(outs, axis=-2)


lengths = st.lists(st.integers(0, 9), min_size=1, max_size=4)
batches = st.sampled_from([(), (2,), (1, 2)])


@settings(max_examples=6)
@given(op=st.sampled_from(OPS), lens=lengths, batch=batches, seed=st.integers(0, 2**16))
def test_packed_equals_per_segment(xp_eager, op, lens, batch, seed):
    """array_api backend on every eager namespace; offsets as an array of the namespace."""
    _check(xp_eager, op, lens, batch, seed, "array_api", as_array=True)


@settings(max_examples=10)
@given(op=st.sampled_from(OPS), lens=lengths, batch=batches, seed=st.integers(0, 2**16))
def test_packed_equals_per_segment_numba(op, lens, batch, seed):
    pytest.importorskip("numba")
    _check(np, op, lens, batch, seed, "numba", as_array=False)


def _check(xp, op, lens, batch, seed, backend, as_array):
    off = [0, *np.cumsum(lens).tolist()]
    T = off[-1]
    arrays = inputs(op, batch, T, seed=seed)
    cu = xp.asarray(np.asarray(off, dtype=np.int32)) if as_array else off
    out = call(getattr(lsattn, op), op, on(xp, arrays), cu_seqlens=cu, backend=backend)
    assert out.shape == batch + (T, 2)
    if T == 0 or all(n == 0 for n in lens):
        return
    ref = per_segment(getattr(lsattn.reference, op), op, arrays, off)
    assert_close(out, ref, TOL["float64"] * 10, what=f"{op} packed {lens}")
    same = per_segment(getattr(lsattn, op), op, arrays, off, backend=backend)
    assert_close(out, same, TOL["float64"] * 10, what=f"{op} packed vs per-segment calls {lens}")


@pytest.mark.parametrize("op", OPS)
def test_float32_and_long_segments(op):
    """float32, segments longer than a chunk (several chunks, Fenwick levels above the chunk's)."""
    lens = [70, 1, 0, 129, 33]
    off = [0, *np.cumsum(lens).tolist()]
    arrays = inputs(op, (2,), off[-1], dk=4, dv=3)
    ref = per_segment(getattr(lsattn.reference, op), op, arrays, off)
    for backend in ("array_api", "numba"):
        out = call(getattr(lsattn, op), op, [x.astype(np.float32) for x in arrays], cu_seqlens=off, backend=backend,
                   **({"chunk_size": 16} if op in ("loglinear_attention", "loglinear_gated_delta") else {}))
        assert out.dtype == np.float32
        assert_close(out, ref, TOL["float32"] * 5, what=f"{op} {backend}")


@settings(max_examples=30)
@given(lens=st.lists(st.integers(0, 300), min_size=1, max_size=12))
def test_layout_aligned_and_at_most_twice_as_long(lens):
    off = np.array([0, *np.cumsum(lens)], dtype=np.int64)
    T = int(off[-1])
    T_pad, src, back, starts = _varlen.layout(off)
    assert T_pad <= max(2 * T - 1, T)
    np.testing.assert_array_equal(src[back], np.arange(T))  # a bijection onto the real tokens
    assert np.all(src[np.setdiff1d(np.arange(T_pad), back)] == T)
    for i, n in enumerate(lens):  # each segment at a multiple of its power-of-two size
        if n:
            p = 1 << (n - 1).bit_length()
            assert back[off[i]] % p == 0 and np.all(np.diff(back[off[i]:off[i + 1]]) == 1)
    assert sorted(starts.tolist()) == sorted(back[off[:-1][np.array(lens) > 0]].tolist())
    # the token map the cupy kernels read, built from the segment table alone: the same layout
    tmap = _varlen.TokenMap(off)
    built = tmap.array()
    assert tmap.size == T_pad and built.dtype == np.int32
    expect = np.where(src < T, src, -1)
    expect[starts] = -2 - expect[starts]
    np.testing.assert_array_equal(built, expect)


@pytest.mark.parametrize("op", OPS)
def test_torch_gradients_equal_per_segment(op):
    """torch autograd through the packed call equals the gradients of the per-segment calls."""
    torch = pytest.importorskip("torch")
    off = [0, 5, 6, 11]
    base = inputs(op, (2,), 11)
    w = torch.tensor(np.random.default_rng(1).standard_normal((2, 11, 2)))
    grads = []
    for packed in (True, False):
        arrays = [torch.tensor(x, requires_grad=True) for x in base]
        if packed:
            out = call(getattr(lsattn, op), op, arrays, cu_seqlens=off, backend="array_api")
        else:
            out = torch.cat([call(getattr(lsattn, op), op, tokens(op, arrays, s0, s1), backend="array_api")
                             for s0, s1 in zip(off[:-1], off[1:])], dim=-2)
        (out * w).sum().backward()
        grads.append([x.grad for x in arrays])
    for name, g, g_ref in zip(("q", "k", "v", "4th", "5th", "6th"), *grads):
        assert_close(g, g_ref, 1e-12, what=f"d/d{name}")


# ---- streams: state= / return_state=True ------------------------------------------------------------

def _cat(op, a, b):
    """Inputs ``a`` then ``b`` along the token axis."""
    return [np.concatenate([x, y], axis=-1 if i in _tok_axes(op) else -2) for i, (x, y) in enumerate(zip(a, b))]


def _tok_axes(op):
    return {"loglinear_attention": (3,), "loglinear_gated_delta": (3, 4), "loglinear_log_attention": (4,)}.get(op, ())


def _check_streams(xp, op, lens, cuts, batch, seed, backend, tol=TOL["float64"] * 10, resets=(), **kw):
    """Streams of ``lens`` tokens split at ``cuts``: one packed call over the first parts with
    ``return_state=True``, one over the second parts with ``state=``; each stream's outputs equal
    the reference on the whole stream, and the same backend's per-segment calls. ``resets``:
    packed tokens of the second call whose log decay is ``-inf`` (log-linear operators). kw: more
    keywords of the operator's calls (``chunk_size``)."""
    first = [min(c, n) for c, n in zip(cuts, lens)]
    second = [n - c for c, n in zip(first, lens)]
    off1, off2 = ([0, *np.cumsum(p).tolist()] for p in (first, second))
    L = lsattn.num_levels(max(max(lens), 1))
    a1, a2 = inputs(op, batch, off1[-1], seed=seed, L=L), inputs(op, batch, off2[-1], seed=seed + 1, L=L)
    if op in LEVEL_AXES:
        for t in resets:
            a2[3 if op != "loglinear_log_attention" else 4][..., t] = -np.inf
    f = getattr(lsattn, op)
    out1, st1 = call(f, op, on(xp, a1), cu_seqlens=off1, return_state=True, backend=backend, **kw)
    N = len(lens)
    assert st1.batch_shape == batch + (N,) and st1.offset.tolist() == first
    out2, st2 = call(f, op, on(xp, a2), cu_seqlens=off2, state=st1, return_state=True, backend=backend, **kw)
    assert st2.offset.tolist() == lens
    out1, out2 = to_numpy(out1), to_numpy(out2)
    for i in range(N):
        whole = _cat(op, tokens(op, a1, off1[i], off1[i + 1]), tokens(op, a2, off2[i], off2[i + 1]))
        if lens[i] == 0:
            continue
        ref = to_numpy(call(getattr(lsattn.reference, op), op, whole))
        got = np.concatenate([out1[..., off1[i]:off1[i + 1], :], out2[..., off2[i]:off2[i + 1], :]], axis=-2)
        assert_close(got, ref, tol, what=f"{op} stream {i} of {lens} cut at {first}")
        one, st_one = call(f, op, on(xp, whole), return_state=True, backend=backend, **kw)
        for name, t in st_one.tensors.items():  # the stream's own state (its first level slots)
            t = to_numpy(t)  # CuPy arrays: the masks below are NumPy
            t2 = to_numpy(st2.tensors[name])[(slice(None),) * len(batch) + (i,)]
            ax = LEVEL_AXES.get(op, {}).get(name)
            if ax is not None:
                t2 = np.take(t2, np.arange(t.shape[ax]), axis=ax)
            if op == "loglinear_log_attention" and resets and name != "n":
                t, t2 = _live(st_one, t, t2, name, lambda x: np.take(to_numpy(st2.tensors["m"])[
                    (slice(None),) * len(batch) + (i,)], np.arange(x.shape[-2]), axis=-2))
            assert_close(t2, t, tol, what=f"{op} state {name}")


def _live(st_one, t, t2, name, m_of):
    """Hierarchical state tensors ``t`` (a per-segment call's) and ``t2`` (the packed call's) where a
    key feature is live: behind a ``-inf`` decay a slot's shift ``m`` is the decays' finite stand-in
    (``exp(m) = 0``, its ``S`` and ``z`` rounding noise of that stand-in). Dead in one is dead in both."""
    m = to_numpy(st_one.tensors["m"])
    live, live2 = m > -1e6, m_of(m) > -1e6
    np.testing.assert_array_equal(live, live2, err_msg="live key features of the state")
    mask = live if name != "S" else live[..., None]
    return np.where(mask, t, 0.0), np.where(mask, t2, 0.0)


streams_lens = st.lists(st.integers(0, 9), min_size=1, max_size=4)


@settings(max_examples=6)
@given(op=st.sampled_from(OPS), lens=streams_lens, cuts=st.lists(st.integers(0, 9), min_size=4, max_size=4),
       batch=batches, seed=st.integers(0, 2**16))
def test_streams_continue_per_segment(xp_eager, op, lens, cuts, batch, seed):
    _check_streams(xp_eager, op, lens, cuts, batch, seed, "array_api")


@settings(max_examples=10)
@given(op=st.sampled_from(OPS), lens=streams_lens, cuts=st.lists(st.integers(0, 9), min_size=4, max_size=4),
       batch=batches, seed=st.integers(0, 2**16))
def test_streams_continue_per_segment_numba(op, lens, cuts, batch, seed):
    pytest.importorskip("numba")
    _check_streams(np, op, lens, cuts, batch, seed, "numba")


@pytest.mark.parametrize("op", OPS)
def test_streams_long_segments_numba(op):
    """Streams long enough on average for the chunked Numba kernels (one launch over all of them,
    each from its own offset), segments of 0 and 1 tokens among them, hard resets in the second call."""
    pytest.importorskip("numba")
    long_ = 1100 if op == "loglinear_attention" else 300
    lens, cuts = [3 * long_, 0, 1, long_ + 37], [long_ + 5, 0, 1, 3]
    _check_streams(np, op, lens, cuts, (2,), 3, "numba", resets=(7, 2 * long_ - 1, 2 * long_ + 30))


def _refuse(*args, **kw):
    raise AssertionError("per-segment calls")


def _record_calls(monkeypatch, backend, op):
    """Refuse per-segment calls (``_varlen.streams``) and record the keywords of every call of
    ``backend``'s implementation of ``op`` (the returned list)."""
    monkeypatch.setattr(_varlen, "streams", _refuse)
    b = backends.get(backend)
    impl = b.implementation(op)
    calls = []
    monkeypatch.setitem(b._impls, (op, False), lambda *a, **kw: (calls.append(kw), impl(*a, **kw))[1])
    return calls


@pytest.mark.parametrize("op", OPS)
def test_streams_numba_one_call(op, monkeypatch):
    """On the numba backend a packed call with states is one implementation call (no per-segment
    calls: ``_varlen.streams`` is not reached), equal to the per-segment calls."""
    pytest.importorskip("numba")
    calls = _record_calls(monkeypatch, "numba", op)
    _check_streams(np, op, [5, 0, 1, 9, 3], [2, 0, 1, 6, 3], (), 1, "numba", resets=(4,))
    assert len(calls) == 2 + 4 and all("segments" in kw for kw in calls[:2])  # the packed calls, then one per stream


@pytest.mark.parametrize("op", _varlen.STREAM_OPS)
def test_streams_array_api_one_call(op, monkeypatch):
    """On the array-API path a packed call of the log-linear operators with states is one call of the
    implementation over the laid-out tokens (``lsattn._ll_packed``; no per-segment calls), equal to
    the reference on each whole stream and to the per-segment calls; hard resets among the new
    tokens and at a continued stream's first one."""
    calls = _record_calls(monkeypatch, "array_api", op)
    _check_streams(np, op, [5, 0, 1, 9, 3], [2, 0, 1, 6, 3], (2,), 1, "array_api", resets=(0, 4))
    assert len(calls) == 2 + 4  # the two packed calls, then one per non-empty stream (the check's own)


def _packed_streams_cost(op, N, monkeypatch, T=192):
    """A packed call with states of ``N`` random segments of ``T`` tokens continuing ``N`` streams
    (array-API path, NumPy): ``(function calls, uploads of the whole call, uploads of
    ``lsattn._ll_packed``'s parts 2-3 alone or None)``."""
    from lsattn import _ll_packed, _upload

    rng = np.random.default_rng(N)
    cu = np.concatenate([[0], np.sort(rng.choice(np.arange(1, T), N - 1, replace=False)), [T]])
    pre = np.concatenate([[0], np.cumsum(rng.integers(0, 40, N))])
    L = lsattn.num_levels(int(pre[-1]) + T)
    fn = getattr(lsattn, op)
    _, state = call(fn, op, inputs(op, (2,), int(pre[-1]), L=L, seed=1), cu_seqlens=pre, return_state=True,
                    backend="array_api")
    x = inputs(op, (2,), T, L=L)
    inner = [0]
    forward = _ll_packed.forward

    def counted(op_, impl, *rest, **kw):  # the uploads of the ordinary call inside it do not count
        def timed_impl(*a, **k):
            c = _upload.count
            try:
                return impl(*a, **k)
            finally:
                inner[0] += _upload.count - c
        c = _upload.count
        try:
            return forward(op_, timed_impl, *rest, **kw)
        finally:
            inner.append(_upload.count - c - inner[0])

    monkeypatch.setattr(_ll_packed, "forward", counted)
    run = lambda: call(fn, op, x, cu_seqlens=cu, state=state, return_state=True, backend="array_api")  # noqa: E731
    c = _upload.count
    run()
    uploads = _upload.count - c
    calls = _benchmark("bench_varlen_cpu").python_calls(run)  # Python and C calls: counted, not timed
    return calls, uploads, (inner[1] if len(inner) > 1 else None)


#: index uploads of ``lsattn._ll_packed``'s parts 2-3 (each a queue drain on a CUDA device before
#: ``lsattn._upload``; 35-50 per call in session 9, 7-10 since)
MAX_PACKED_UPLOADS = 12


@pytest.mark.parametrize("op", OPS)
def test_packed_streams_cost_about_one_call(op, monkeypatch):
    """A packed call with states makes a bounded number of index uploads (parts 2-3 of
    ``lsattn._ll_packed``: at most ``MAX_PACKED_UPLOADS``; ``lsattn._exp_packed``: the same for 4
    and 48 segments) and about the same number of array operations for 48 segments as for 4 at the
    same ``T`` (within 1.35x: no loop over segments; a per-segment loop makes ~10x), on the array-API
    path (NumPy, counted, not timed)."""
    few, many = _packed_streams_cost(op, 4, monkeypatch), _packed_streams_cost(op, 48, monkeypatch)
    assert many[0] <= 1.35 * few[0], (few, many)
    if op in _varlen.STREAM_OPS:
        assert few[2] is not None and max(few[2], many[2]) <= MAX_PACKED_UPLOADS, (few, many)
    else:
        assert few[1] == many[1] and few[2] is None, (few, many)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["cupy", "torch"])
def test_uploads_behind_queued_work_arrive_intact(kind):
    """``lsattn._upload.to_device`` on CUDA (pinned staging, asynchronous copies): 300 index arrays
    uploaded while long products are queued before them, each a different content and size, equal
    to their host arrays once the device is done (a staging buffer reused before its copy ran
    would show another array's values)."""
    from lsattn import _upload

    if kind == "cupy":
        xp = pytest.importorskip("cupy")
        try:
            like = xp.ones((2048, 2048), dtype=xp.float32)
        except Exception as exc:
            pytest.skip(f"no CUDA device for CuPy: {exc}")
        sync, get = xp.cuda.Device().synchronize, lambda x: x.get()
    else:
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device for torch")
        import array_api_compat.torch as xp

        like = torch.ones((2048, 2048), device="cuda")
        sync, get = torch.cuda.synchronize, lambda x: x.cpu().numpy()
    rng = np.random.default_rng(0)
    hosts, outs = [], []
    for i in range(300):
        if i % 50 == 0:
            for _ in range(4):
                like = like @ like / 2048.0  # keep the queue busy
        h = rng.integers(-2**40, 2**40, int(rng.integers(1, 5000)))
        hosts.append(h)
        outs.append(_upload.to_device(xp, h, like))
        h2 = h.copy()
        h[:] = -1  # the caller's array may change right after: the staged copy must not
        hosts[-1] = h2
    sync()
    for h, o in zip(hosts, outs):
        np.testing.assert_array_equal(get(o), h)


@pytest.mark.gpu
@pytest.mark.parametrize("op", _varlen.STREAM_OPS)
def test_streams_one_call_on_cupy_arrays(op, monkeypatch):
    """CuPy arrays: packed streams in one call of the ``cupy`` implementation
    (``loglinear_attention``, ``loglinear_gated_delta``: its kernels compute the new tokens among
    themselves; ``loglinear_log_attention``: its array-API twin's partial), ``lsattn._ll_packed``
    the rest, a long carry among them; equal to the reference per stream."""
    cp = pytest.importorskip("cupy")
    import lsattn.backends.cupy as cb

    if cb.probe() is not None:
        pytest.skip(f"cupy backend unavailable: {cb.probe()}")
    backend = "cupy" if op in backends.get("cupy").varlen_ops else "array_api"
    calls = _record_calls(monkeypatch, backend, op)
    _check_streams(cp, op, [5, 0, 1, 40, 3], [2, 0, 1, 31, 3], (2,), 1, None, resets=(0, 4))
    assert len(calls) == (2 + 4 if backend == "cupy" else 2)  # the packed calls (and the check's per-stream ones)


def _cuda_arrays(kind, arrays, **kw):
    """NumPy ``arrays`` as float32 CuPy arrays or CUDA torch tensors (``kw``: torch.tensor's, e.g.
    requires_grad)."""
    if kind == "cupy":
        import cupy as cp

        return [cp.asarray(x, dtype=cp.float32) for x in arrays]
    import torch

    return [torch.tensor(x, dtype=torch.float32, device="cuda", **kw) for x in arrays]


@pytest.mark.gpu
@pytest.mark.parametrize("op", ["loglinear_gated_delta", "loglinear_log_attention"])
@pytest.mark.parametrize("kind", ["cupy", "torch"])
def test_packed_rewrite_on_the_cupy_kernels(op, kind, monkeypatch):
    """Packed ``loglinear_gated_delta`` / ``loglinear_log_attention`` without state on CuPy arrays
    and CUDA torch tensors (float32): the automatic choice is ``cupy``, one call of its kernels over
    the rewrite's laid-out tokens (hard resets at the segments' starts), equal to the reference on
    each segment (GD: ``TOL["float32"]`` of max |ref|; hierarchical log outputs: the bound of
    ``tests/test_cupy_hierarchical.py``, ``tol (1 + max |ref|)``, ``tol = TOL["float32"] + 2 eps
    (max |q| + max |k|)``)."""
    import lsattn.backends.cupy as cb

    if cb.probe() is not None:
        pytest.skip(f"cupy backend unavailable: {cb.probe()}")
    lens = [100, 0, 1, 257, 64, 3]
    off = [0, *np.cumsum(lens).tolist()]
    arrays = inputs(op, (2,), off[-1], dk=16, dv=16, seed=4)
    dev = _cuda_arrays(kind, arrays)
    calls = _record_calls(monkeypatch, "cupy", op)
    out = to_numpy(call(getattr(lsattn, op), op, dev, cu_seqlens=off))
    assert len(calls) == 1
    seen = [to_numpy(x).astype(np.float64) for x in dev]
    tol, atol = TOL["float32"], 0.0
    if op == "loglinear_log_attention":
        tol = atol = TOL["float32"] + 2 * np.finfo(np.float32).eps * (np.abs(seen[0]).max() + np.abs(seen[1]).max())
    assert_close(out, per_segment(getattr(lsattn.reference, op), op, seen, off), tol, atol=atol, what=kind)
    # the layout's device index is kept per device and stream: the next call uploads nothing; another
    # stream gets its own (at most one upload), same outputs
    from lsattn import _upload

    c = _upload.count
    np.testing.assert_array_equal(to_numpy(call(getattr(lsattn, op), op, dev, cu_seqlens=off)), out)
    assert _upload.count == c
    if kind == "cupy":
        import cupy as cp

        side = cp.cuda.Stream(non_blocking=True)
    else:
        import torch

        side = torch.cuda.Stream()
    with side if kind == "cupy" else torch.cuda.stream(side):
        got = call(getattr(lsattn, op), op, dev, cu_seqlens=off)
    side.synchronize()
    np.testing.assert_array_equal(to_numpy(got), out)
    assert _upload.count <= c + 1


def test_kept_device_index_per_key_and_stream(monkeypatch):
    """``lsattn._upload.kept`` (the rewrite's device index of a packed layout, CUDA only): built once
    per (key, device, stream), a key of None or a non-CUDA array never kept, the least recently
    used of more than ``_KEPT_MAX`` dropped (the stream key faked: no GPU)."""
    from lsattn import _upload

    monkeypatch.setattr(_upload, "_KEPT", {})
    where = ["s0"]
    monkeypatch.setattr(_upload, "_stream_key", lambda like: where[0] if like is not None else None)
    built = []

    def build(tag):
        return lambda: built.append(tag) or tag

    assert _upload.kept("a", 1, build("a")) == "a" and _upload.kept("a", 1, build("a2")) == "a"
    assert _upload.kept(None, 1, build("n")) == "n" and _upload.kept(None, 1, build("n")) == "n"
    assert _upload.kept("a", None, build("cpu")) == "cpu"  # no CUDA stream: every call builds
    where[0] = "s1"
    assert _upload.kept("a", 1, build("a3")) == "a3"  # another stream: its own
    for i in range(_upload._KEPT_MAX):
        _upload.kept(("b", i), 1, build(i))
    assert _upload.kept("a", 1, build("a4")) == "a4"  # dropped: the least recently used
    assert built == ["a", "n", "n", "cpu", "a3", *range(_upload._KEPT_MAX), "a4"]


def test_rewrite_index_keyed_by_offset_values(monkeypatch):
    """Packed ``loglinear_gated_delta`` on the array-API path with the device index kept as on CUDA
    (the stream key faked for NumPy): an offsets array changed in place between calls is laid out by
    its new values, never served the kept index of the old ones (float64, against the reference per
    segment)."""
    from lsattn import _upload

    monkeypatch.setattr(_upload, "_KEPT", {})
    monkeypatch.setattr(_upload, "_stream_key", lambda like: ("numpy", 0, 0))
    op = "loglinear_gated_delta"
    arrays = inputs(op, (2,), 20, seed=3)
    cu = np.array([0, 7, 7, 20])
    f, ref = getattr(lsattn, op), getattr(lsattn.reference, op)
    for values in ([0, 7, 7, 20], [0, 7, 7, 20], [0, 1, 13, 20]):
        cu[:] = values
        got = call(f, op, arrays, cu_seqlens=cu, backend="array_api")
        assert_close(got, per_segment(ref, op, arrays, values), TOL["float64"] * 10, what=str(values))
    assert len(_upload._KEPT) == 2


@pytest.mark.gpu
@pytest.mark.parametrize("op", _varlen.STREAM_OPS)
@pytest.mark.parametrize("kind", ["cupy", "torch"])
def test_packed_device_offsets_plan_and_one_read(op, kind, monkeypatch):
    """Packed log-linear calls without state on CUDA arrays (float32), the offsets an array on the
    device: validated by the first call with those values only (the plan is keyed by the values read
    back: an array changed in place is seen, bad values raise), the inputs' finiteness in the one
    read after the launch (nothing reads them before: ``_nonfinite._all_finite`` is not called),
    equal to the reference per segment (bounds of ``test_packed_rewrite_on_the_cupy_kernels``); a
    NaN query poisons its own row only."""
    from unittest import mock

    from lsattn import _nonfinite, _prologue
    import lsattn.backends.cupy as cb

    if cb.probe() is not None:
        pytest.skip(f"cupy backend unavailable: {cb.probe()}")
    monkeypatch.setattr(_prologue, "_PLANS", {})
    lens = [100, 0, 1, 257, 64, 3]
    off = [0, *np.cumsum(lens).tolist()]
    other = [0, 5, 5, 200, 300, 420, 425]
    arrays = inputs(op, (2,), off[-1], dk=16, dv=16, seed=4)
    dev = _cuda_arrays(kind, arrays)
    if kind == "cupy":
        import cupy as cp

        cu, put = cp.asarray(off), (lambda c, v: c.__setitem__(slice(None), cp.asarray(v)))
    else:
        import torch

        cu, put = torch.tensor(off, device="cuda"), (lambda c, v: c.copy_(torch.tensor(v)))
    f, ref = getattr(lsattn, op), getattr(lsattn.reference, op)
    seen = [to_numpy(x).astype(np.float64) for x in dev]
    tol, atol = TOL["float32"], 0.0
    if op == "loglinear_log_attention":
        tol = atol = TOL["float32"] + 2 * np.finfo(np.float32).eps * (np.abs(seen[0]).max() + np.abs(seen[1]).max())
    want = per_segment(ref, op, seen, off)
    with mock.patch.object(_prologue, "namespace", wraps=_prologue.namespace) as ns, \
            mock.patch.object(_nonfinite, "_all_finite", wraps=_nonfinite._all_finite) as reads:
        for _ in range(2):
            assert_close(to_numpy(call(f, op, dev, cu_seqlens=cu)), want, tol, atol=atol, what=kind)
        assert (ns.call_count, reads.call_count) == (1, 0)
        put(cu, other)
        assert_close(to_numpy(call(f, op, dev, cu_seqlens=cu)), per_segment(ref, op, seen, other), tol, atol=atol)
        assert ns.call_count == 2
        put(cu, [0, 5, 500, 200, 300, 420, 425])
        with pytest.raises(ValueError, match="non-decreasing"):
            call(f, op, dev, cu_seqlens=cu)
    bad = [x.copy() for x in seen]
    bad[0][1, 120] = np.nan  # a query of segment 4 (tokens 101-357)
    got = to_numpy(call(f, op, _cuda_arrays(kind, bad), cu_seqlens=off)).astype(np.float64)
    assert np.argwhere(~np.isfinite(got).all(-1)).tolist() == [[1, 120]]
    got[1, 120] = want[1, 120]
    assert_close(got, want, tol, atol=atol, what=f"{kind}, NaN query")


@pytest.mark.gpu
@pytest.mark.parametrize("op", ["loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"])
def test_packed_gradients_on_the_cupy_kernels(op):
    """CUDA torch tensors that require grad, packed (``cupy``: the backward kernels over the laid-out
    tokens, hard resets included): the gradients equal those of the per-segment calls (float32,
    within 10x the float32 output bound: each gradient sums over a segment)."""
    torch = pytest.importorskip("torch")
    import lsattn.backends.cupy as cb

    if cb.probe() is not None:
        pytest.skip(f"cupy backend unavailable: {cb.probe()}")
    off = [0, 37, 38, 38, 140, 201]
    base = inputs(op, (2,), off[-1], dk=16, dv=16, seed=5)
    w = torch.tensor(np.random.default_rng(1).standard_normal((2, off[-1], 16)), dtype=torch.float32, device="cuda")
    grads = []
    for packed in (True, False):
        arrays = _cuda_arrays("torch", base, requires_grad=True)
        if packed:
            out = call(getattr(lsattn, op), op, arrays, cu_seqlens=off)
        else:
            out = torch.cat([call(getattr(lsattn, op), op, tokens(op, arrays, s0, s1))
                             for s0, s1 in zip(off[:-1], off[1:]) if s1 > s0], dim=-2)
        (out * w).sum().backward()
        grads.append([x.grad for x in arrays])
    for name, g, g_ref in zip(("q", "k", "v", "4th", "5th", "6th"), *grads):
        assert_close(g, g_ref, TOL["float32"] * 10, what=f"{op} d/d{name}")


@settings(max_examples=6)
@given(op=st.sampled_from(_varlen.STREAM_OPS),
       cuts=st.lists(st.sampled_from([0, 1, 2, 3, 7, 8, 31, 32, 33, 63, 127, 128, 255]), min_size=1, max_size=4),
       more=st.lists(st.integers(0, 40), min_size=4, max_size=4), batch=batches, resets=st.booleans(),
       seed=st.integers(0, 2**16))
def test_streams_array_api_long_carries(op, cuts, more, batch, resets, seed):
    """Streams continued at offsets whose next tokens carry through many bits (``2^k - 1``, ``2^k``)
    with up to 40 new tokens (levels of the new tokens above a fresh stream's, old slots folded),
    segments of 0 and 1 tokens, ``-inf`` decays at random new tokens: equal to the reference on each
    whole stream and to the per-segment calls (array-API path, one call)."""
    lens = [c + m for c, m in zip(cuts, more)]
    T2 = sum(m for m in more[: len(cuts)])
    rng = np.random.default_rng(seed)
    hard = tuple(rng.choice(T2, size=min(T2, 3), replace=False).tolist()) if resets and T2 else ()
    _check_streams(np, op, lens, cuts, batch, seed, "array_api", resets=hard)


@settings(max_examples=8)
@given(cuts=st.lists(st.sampled_from([0, 1, 2, 3, 7, 8, 15, 16, 31, 33, 63, 64]), min_size=1, max_size=5),
       more=st.lists(st.integers(0, 45), min_size=5, max_size=5), chunk=st.sampled_from([2, 4, 8]),
       batch=batches, resets=st.booleans(), seed=st.integers(0, 2**16))
def test_gated_delta_streams_many_chunks(cuts, more, chunk, batch, resets, seed):
    """Gated DeltaNet's packed streams on the array-API path (one call, ``lsattn._ll_packed``) with
    chunks of 2 to 8 tokens: the transitions within a segment cross many chunks (the prefix and
    suffix products of ``_ll_packed._transfers``), segments of 0 and 1 tokens, long carries,
    ``-inf`` decays at random new tokens; equal to the reference on each whole stream and to the
    per-segment calls."""
    lens = [c + m for c, m in zip(cuts, more)]
    T2 = sum(more[: len(cuts)])
    rng = np.random.default_rng(seed)
    hard = tuple(rng.choice(T2, size=min(T2, 3), replace=False).tolist()) if resets and T2 else ()
    _check_streams(np, "loglinear_gated_delta", lens, cuts, batch, seed, "array_api", resets=hard, chunk_size=chunk)


class _EmuStreams:
    """The packed streams' kernels (``loglinear_streams.cu``) on the CPU through
    ``tests/cuda_emu_ll_streams.cpp`` (a fiber per CUDA thread), launched by the cupy host
    logic (``backends.cupy.loglinear.run_streams``) on NumPy arrays: the ``run`` of
    ``lsattn._ll_packed._fused``."""

    calls = 0

    @staticmethod
    def _lib(cfg):
        from helpers import cupy_source, emulation

        return emulation("cuda_emu_ll_streams.cpp", {"TA": cfg.ta, "DKP": cfg.DKP, "DVP": cfg.DVP},
                         {"KERNEL": cupy_source("loglinear_streams.cu")})

    @staticmethod
    def _ptrs(*xs):
        import ctypes

        for x in xs:
            assert x is None or x.flags.c_contiguous
        return [None if x is None else x.ctypes.data_as(ctypes.c_void_p) for x in xs]

    @staticmethod
    def _ints(*xs):
        import ctypes

        return [ctypes.c_int(int(x)) for x in xs]

    def ll_pk_read(self, cfg, x, a, lam, old, out, seg, tiles, T, DK, DV, L, N, L_old, ntiles, BH):
        import ctypes

        self._lib(cfg).run_read(*self._ptrs(x, a, lam, old, out, seg, tiles), *self._ints(T, DK, DV, L, N, L_old, ntiles, BH),
                                ctypes.c_uint(cfg.smem("ll_pk_read")))

    def ll_pk_state(self, cfg, y, v, a, tot, old, lev, seg, rng, T, DK, DV, N, L_old, L_new, BH):
        import ctypes

        self._lib(cfg).run_state(*self._ptrs(y, v, a, tot, old, lev, seg, rng), *self._ints(T, DK, DV, N, L_old, L_new, BH),
                                 ctypes.c_uint(cfg.smem("ll_pk_state")))

    def hi_pk_read(self, cfg, q, a, lam, old, part, out, seg, tiles, T, DK, DV, L, N, L_old, ntiles, BH):
        import ctypes

        old = (None,) * 4 if old is None else old
        self._lib(cfg).run_hier_read(*self._ptrs(q, a, lam, *old, *part, out, seg, tiles),
                                     *self._ints(T, DK, DV, L, N, L_old, ntiles, BH), ctypes.c_uint(cfg.smem("hi_pk_read")))

    def hi_pk_state(self, cfg, k, lv, a, old, new, seg, rng, T, DK, DV, N, L_old, L_new, BH):
        import ctypes

        old = (None,) * 4 if old is None else old
        self._lib(cfg).run_hier_state(*self._ptrs(k, lv, a, *old, *new, seg, rng), *self._ints(T, DK, DV, N, L_old, L_new, BH),
                                      ctypes.c_uint(cfg.smem("hi_pk_state")))

    @staticmethod
    def _upload(h):
        return np.ascontiguousarray(h, dtype=np.int64)

    @classmethod
    def run(cls, out, x, a, lam, old, y, v, tot, seg, rng, L_new, want_state):
        from lsattn.backends.cupy.loglinear import run_streams

        cls.calls += 1
        return run_streams(cls(), np, out, x, a, lam, old, y, v, tot, seg, rng, L_new, want_state, cls._upload)

    @classmethod
    def run_hier(cls, part, q, k, lv, lam, a, old, seg, rng, L_new, want_state):
        from lsattn.backends.cupy.loglinear import run_hier

        cls.calls += 1
        return run_hier(cls(), np, part, q, k, lv, lam, a, old, seg, rng, L_new, want_state, cls._upload)


@settings(max_examples=4, deadline=None)
@given(op=st.sampled_from(_varlen.STREAM_OPS),
       cuts=st.lists(st.sampled_from([0, 1, 2, 3, 7, 8, 31, 32, 33, 63, 64, 127]), min_size=1, max_size=3),
       more=st.lists(st.integers(0, 70), min_size=3, max_size=3), batch=st.sampled_from([(), (2,)]),
       resets=st.booleans(), seed=st.integers(0, 2**16))
def test_streams_fused_kernels_emulated(op, cuts, more, batch, resets, seed):
    """The packed streams' fused kernels (``loglinear_streams.cu``: the reads of the old slots, the
    new slots, the fold and the carry; ``loglinear_log_attention``'s in log space) on the CPU emulation, driven by the cupy host logic in place
    of ``lsattn._ll_packed``'s array operations: streams continued at long carries (more than one
    tile of 64 new tokens, old slots folded), segments of 0 and 1 tokens, ``-inf`` decays at random
    new tokens; equal to the reference on each whole stream and to the per-segment calls (float64)."""
    from lsattn import _ll_packed

    lens = [c + m for c, m in zip(cuts, more)]
    T2 = sum(more[: len(cuts)])
    rng = np.random.default_rng(seed)
    hard = tuple(rng.choice(T2, size=min(T2, 3), replace=False).tolist()) if resets and T2 else ()
    before = _EmuStreams.calls
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_ll_packed, "_fused", lambda arrays, state, name="packed_streams": getattr(
            _EmuStreams, {"packed_streams": "run", "packed_hier": "run_hier"}[name]))
        _check_streams(np, op, lens, cuts, batch, seed, "array_api", resets=hard)
    # every packed call with tokens (the first returns a state, the second reads one)
    assert _EmuStreams.calls - before == (sum(cuts) > 0) + (T2 > 0)


def _spy_fused(mp, used):
    """Record whether ``lsattn._ll_packed._fused`` chose the kernels (``used``: one bool per packed call)."""
    from lsattn import _ll_packed

    real = _ll_packed._fused

    def spy(arrays, state, name="packed_streams"):
        run = real(arrays, state, name)
        used.append(run is not None)
        return run

    mp.setattr(_ll_packed, "_fused", spy)


@pytest.mark.gpu
@settings(max_examples=5, deadline=None)
@given(op=st.sampled_from(_varlen.STREAM_OPS),
       cuts=st.lists(st.sampled_from([0, 1, 2, 3, 7, 8, 31, 32, 33, 63, 64, 127, 255, 1023]), min_size=1, max_size=4),
       more=st.lists(st.integers(0, 150), min_size=4, max_size=4), batch=batches, resets=st.booleans(),
       seed=st.integers(0, 2**16))
def test_streams_fused_kernels_on_cupy(op, cuts, more, batch, resets, seed):
    """CuPy arrays (float64): packed streams with states of the three log-linear operators through the
    fused kernels of ``loglinear_streams.cu`` (chosen automatically: ``_ll_packed._fused``), long carries, several
    tiles of new tokens, segments of 0 and 1 tokens, ``-inf`` decays at random new tokens; equal to
    the reference on each whole stream and to the per-segment calls (float64 bound)."""
    pytest.importorskip("cupy")
    import lsattn.backends.cupy as cb

    if cb.probe() is not None:
        pytest.skip(f"cupy backend unavailable: {cb.probe()}")
    import cupy as cp

    lens = [c + m for c, m in zip(cuts, more)]
    T2 = sum(more[: len(cuts)])
    rng = np.random.default_rng(seed)
    hard = tuple(rng.choice(T2, size=min(T2, 3), replace=False).tolist()) if resets and T2 else ()
    used = []
    with pytest.MonkeyPatch.context() as mp:
        _spy_fused(mp, used)
        _check_streams(cp, op, lens, cuts, batch, seed, None, resets=hard)
    assert all(used) and len(used) == (sum(cuts) > 0) + (T2 > 0), used  # every packed call with tokens


@pytest.mark.gpu
@pytest.mark.parametrize("op", _varlen.STREAM_OPS)
@pytest.mark.parametrize("kind", ["cupy", "torch"])
def test_streams_fused_kernels_float32(op, kind):
    """float32 CuPy arrays / CUDA torch tensors, d = 64 (a full tile), 5 streams (a long one, empty
    ones): the fused kernels' outputs and states equal the array-API formulation's on the same
    arrays (``_fused`` off) within 10x float32's bound, for a prefill returning states and a
    continuation reading them."""
    import lsattn.backends.cupy as cb

    if cb.probe() is not None:
        pytest.skip(f"cupy backend unavailable: {cb.probe()}")
    lens1, lens2 = [70, 0, 1, 300, 5], [200, 0, 0, 97, 1]
    off1, off2 = ([0, *np.cumsum(x).tolist()] for x in (lens1, lens2))
    L = lsattn.num_levels(max(a + b for a, b in zip(lens1, lens2)))
    f = getattr(lsattn, op)
    base = [inputs(op, (2,), off[-1], dk=64, dv=64, seed=seed, L=L) for off, seed in ((off1, 3), (off2, 4))]
    got = {}
    for fused in (True, False):
        used = []
        with pytest.MonkeyPatch.context() as mp:
            if fused:
                _spy_fused(mp, used)
            else:
                from lsattn import _ll_packed

                mp.setattr(_ll_packed, "_fused", lambda arrays, state, name=None: None)
            a1, a2 = (_cuda_arrays(kind, b) for b in base)
            o1, s1 = call(f, op, a1, cu_seqlens=off1, return_state=True)
            o2, s2 = call(f, op, a2, cu_seqlens=off2, state=s1, return_state=True)
        assert not fused or (used and all(used))
        got[fused] = {f"{name} {i}": to_numpy(x) for i, (o, st_) in enumerate(((o1, s1), (o2, s2)))
                      for name, x in [("out", o), *st_.tensors.items()]}
    # hierarchical log outputs and key shifts: also absolute, as test_packed_rewrite_on_the_cupy_kernels
    qk = max(np.abs(b[0]).max() + np.abs(b[1]).max() for b in base)
    atol = TOL["float32"] + 2 * np.finfo(np.float32).eps * qk if op == "loglinear_log_attention" else 0.0
    stand_in = -float(np.finfo(np.float32).max) / 16  # below: an empty slot's shift (the same in both)
    for name, x in got[True].items():
        y = got[False][name]
        np.testing.assert_array_equal(x < stand_in, y < stand_in, err_msg=f"{op} {kind} {name}: empty slots")
        assert_close(np.where(x < stand_in, 0.0, x), np.where(y < stand_in, 0.0, y), TOL["float32"] * 10, atol=atol,
                     what=f"{op} {kind} {name}")


@settings(max_examples=20)
@given(lens=st.lists(st.integers(0, 70), min_size=1, max_size=8),
       offsets=st.lists(st.integers(0, 300), min_size=8, max_size=8))
def test_layout_of_continued_streams(lens, offsets):
    """Continued streams (offsets p) in the rewrite's layout: each segment's new tokens contiguous,
    with the Fenwick levels among themselves of their absolute positions once the level map of
    split segments (a long carry) is applied; at most the sum of the blocks (< 4 T)."""
    off = np.array([0, *np.cumsum(lens)], dtype=np.int64)
    p = np.array(offsets[: len(lens)], dtype=np.int64)
    T = int(off[-1])
    T_pad, src, back, starts = _varlen.layout(off, p)
    np.testing.assert_array_equal(src[back], np.arange(T))  # a bijection onto the real tokens
    g, level, true = _varlen._level_map(off, p, back)
    moved = {(int(x), int(y)): int(z) for x, y, z in zip(g, level, true)}
    blocks = 0
    for i, n in enumerate(lens):
        if n:
            seg = back[off[i]:off[i + 1]]
            assert np.all(np.diff(seg) == 1)
            laid = lsattn.fenwick_level(seg[:, None], seg[None, :])
            laid = np.vectorize(lambda t, l: moved.get((int(t), int(l)), int(l)))(np.broadcast_to(seg[:, None], laid.shape), laid)
            pos = p[i] + np.arange(n)
            np.testing.assert_array_equal(np.where(laid >= 0, laid, -1), lsattn.fenwick_level(pos[:, None], pos[None, :]))
            blocks += _varlen._blocks(np.array([n]), p[i:i + 1])[0][0]
    assert T_pad <= blocks < 4 * T + 1


EK_OPS = ["log_attention", "exp_kernel_attention"]


@pytest.mark.parametrize("op", EK_OPS)
@pytest.mark.parametrize("stateful", [False, True])
def test_exp_kernel_packed_array_api_one_call(op, stateful, monkeypatch):
    """The array-API path computes packed exp-kernel calls itself (``lsattn._exp_packed``), with and
    without states: one call of its own implementation with ``segments=``, no per-segment calls
    (``_varlen.streams``) and no rewrite as another operator (hierarchical attention)."""
    calls = _record_calls(monkeypatch, "array_api", op)
    monkeypatch.setitem(backends.get("array_api")._impls, ("loglinear_log_attention", False), _refuse)
    if stateful:
        _check_streams(np, op, [5, 0, 1, 9, 3], [2, 0, 1, 6, 3], (), 1, "array_api")
        assert len(calls) == 2 + 4 and all("segments" in kw for kw in calls[:2])  # packed, then per-stream checks
    else:
        _check(np, op, [5, 0, 1, 9, 3], (2,), 1, "array_api", as_array=False)
        assert len(calls) == 1 + 4 and "segments" in calls[0]


ek_lens = st.lists(st.integers(0, 140), min_size=1, max_size=5)


@settings(max_examples=8)
@given(op=st.sampled_from(EK_OPS), lens=ek_lens, cuts=st.lists(st.integers(0, 140), min_size=5, max_size=5),
       scale=st.sampled_from([1.0, 30.0, 300.0]), stretch=st.booleans(), seed=st.integers(0, 2**16))
def test_exp_kernel_packed_array_api_long_and_large(op, lens, cuts, scale, stretch, seed):
    """The array-API packed exp-kernel path on segments of several chunks (C = 64 here), over
    stretches of one chunk (``SEGMENT_CHUNKS = 1``) or of many, at large magnitudes (shifts taken
    over a segment's keys only: a large key of another segment must not make them underflow), with
    ``-inf`` keys and log values, from states: equal to the reference on each whole stream and to
    the per-segment calls."""
    from lsattn import exp_kernel

    with pytest.MonkeyPatch.context() as mp:
        if stretch:
            mp.setattr(exp_kernel, "SEGMENT_CHUNKS", 1)
        _check_ek_streams(op, lens, cuts, scale, seed)


@pytest.mark.parametrize("op", EK_OPS)
def test_exp_kernel_packed_stretches_sized_by_bytes_off_the_cpu(op, monkeypatch):
    """Off the CPU the packed exp-kernel path runs stretches sized by ``STRETCH_BYTES`` (fewer
    stretches: less host work per call), never shorter than ``SEGMENT_CHUNKS`` chunks: here 3
    chunks (not a power of two) against 1 on the CPU rule, the same streams equal to the reference
    either way (the device rule forced on NumPy arrays)."""
    from lsattn import _exp_packed, exp_kernel

    monkeypatch.setattr(exp_kernel, "SEGMENT_CHUNKS", 1)
    q = np.zeros((2, 5, 3))
    assert _exp_packed.stretch_tokens(q, (2,), 64, 2) == 64  # NumPy: the CPU rule
    monkeypatch.setattr(_exp_packed, "on_cpu", lambda x: False)
    monkeypatch.setattr(_exp_packed, "STRETCH_BYTES", 4 * 64 * 2 * 3 * 64 + 100)
    assert _exp_packed.stretch_tokens(q, (2,), 64, 2) == 3 * 64
    assert _exp_packed.stretch_tokens(np.zeros((2, 5, 256)), (2,), 64, 256) == 64  # summaries bound it
    _check_ek_streams(op, [140, 0, 77, 1, 130], [20, 0, 77, 0, 129], 30.0, 3)


def _check_ek_streams(op, lens, cuts, scale, seed):
    first = [min(c, n) for c, n in zip(cuts, lens)]
    rng = np.random.default_rng(seed)
    whole = [scale * x for x in inputs(op, (2,), sum(lens), seed=seed)[:2]] + [inputs(op, (2,), sum(lens), seed=seed)[2]]
    # a few -inf features of keys, and of log values at magnitude 1 (larger ones would put outputs
    # below the underflow regime that lsattn.exp_kernel documents for log_attention)
    for i in range(2 if op == "log_attention" and scale == 1 else 1):
        x = whole[1 + i]
        x[rng.random(x.shape) < 0.1] = -np.inf
    if scale > 1:  # one huge key per segment start: later segments must not see its shift
        off = np.cumsum([0, *lens])[:-1]
        for s0, n in zip(off, lens):
            if n:
                whole[1][..., s0, 0] = 10 * scale
    off = [0, *np.cumsum(lens).tolist()]
    parts = [[], []]
    for s0, n, c in zip(off[:-1], lens, first):
        parts[0].append(tokens(op, whole, s0, s0 + c))
        parts[1].append(tokens(op, whole, s0 + c, s0 + n))
    a1, a2 = ([np.concatenate([p[j] for p in ps], axis=-2) for j in range(3)] for ps in parts)
    off1, off2 = ([0, *np.cumsum(p).tolist()] for p in (first, [n - c for n, c in zip(lens, first)]))
    f = getattr(lsattn, op)
    out1, st1 = f(*a1, cu_seqlens=off1, return_state=True, backend="array_api")
    out2, st2 = f(*a2, cu_seqlens=off2, state=st1, return_state=True, backend="array_api")
    tol = TOL["float64"] * 10 * (1 if scale == 1 else 100)
    for i, n in enumerate(lens):
        if n == 0:
            continue
        seg = tokens(op, whole, off[i], off[i + 1])
        got = np.concatenate([out1[..., off1[i]:off1[i + 1], :], out2[..., off2[i]:off2[i + 1], :]], axis=-2)
        ref = getattr(lsattn.reference, op)(*seg)
        fin, nan = np.isfinite(ref), np.isnan(ref)  # NaN: rows without weight (0/0), docs/api.md
        np.testing.assert_array_equal(np.isfinite(got), fin)
        np.testing.assert_array_equal(np.isnan(got), nan)
        assert_close(got[fin], ref[fin], tol, what=f"{op} stream {i} of {lens}")
        one, st_one = f(*seg, return_state=True, backend="array_api")
        np.testing.assert_array_equal(np.isnan(one), nan)
        assert_close(got[~nan], one[~nan], tol, what=f"{op} per-segment call {i}")
        # a key feature with no key above -inf yet (m at the stand-in) has weight 0 for every query:
        # its rows of S and z carry nothing (a single call counts its padding keys there)
        live = st_one.tensors["m"] > -np.finfo(np.float64).max / 8
        for name, t in st_one.tensors.items():
            got_t = st2.tensors[name][:, i]
            if name in ("S", "z"):
                keep = live[..., None] if name == "S" else live
                got_t, t = np.where(keep, got_t, 0.0), np.where(keep, t, 0.0)
            assert_close(got_t, t, tol, what=f"{op} state {name} {i}")


def test_hierarchical_packed_numba_runs_chunked(monkeypatch):
    """Packed ``loglinear_log_attention`` on numba runs the chunked kernel (``hier_chunked``, stream
    tables) when the streams are at least ``HIER_CHUNKED_MIN_T`` tokens on average, with and without
    states, segments of 0 and 1 tokens and hard resets among them: equal to the reference on each
    whole stream and to the per-segment calls; shorter streams run the token scan."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    from lsattn.backends import _numba_hier_chunked as KH
    from lsattn.backends import numba_cpu

    op = "loglinear_log_attention"
    calls = []
    kernel = KH.hier_chunked
    monkeypatch.setattr(KH, "hier_chunked", lambda *a: (calls.append(a[6].shape[0] - 1), kernel(*a))[1])
    n = numba_cpu.HIER_CHUNKED_MIN_T
    lens = [5 * n + 5, 0, 1, 4 * n + 37]  # both calls at least 4 n tokens over the 4 streams
    _check_streams(np, op, lens, [2 * n + 3, 0, 1, 2 * n], (2,), 5, "numba", resets=(7, 2 * n + 1))
    assert calls[:2] == [4, 4]  # both packed calls chunked, over the 4 streams
    calls.clear()
    _check(np, op, lens, (2,), 6, "numba", as_array=False)
    assert calls[0] == 4
    calls.clear()
    _check(np, op, [5, 0, 9], (), 6, "numba", as_array=False)  # 14 tokens over 3 streams: the token scan
    assert 3 not in calls


@pytest.mark.parametrize("op, backend", [(op, "numba") for op in OPS] +
                         [(op, "array_api") for op in EK_OPS + list(_varlen.STREAM_OPS)])
def test_poisoned_state_stays_in_its_stream(op, backend):
    """A NaN in one stream of a packed state poisons that stream's outputs and new state only, as a
    per-segment call from that stream's state does (the backends that compute packed states in one
    call)."""
    if backend == "numba":
        pytest.importorskip("numba")
    f = getattr(lsattn, op)
    off1, off2 = [0, 3, 8, 9], [0, 4, 4, 10]
    a1, a2 = inputs(op, (2,), 9, seed=1, L=4), inputs(op, (2,), 10, seed=2, L=4)
    _, st1 = call(f, op, a1, cu_seqlens=off1, return_state=True, backend=backend)
    name = next(iter(st1.tensors))
    bad = {n: t.copy() for n, t in st1.tensors.items()}
    bad[name][(0, 2) + (0,) * (bad[name].ndim - 2)] = np.nan  # batch element 0, stream 2
    import dataclasses

    st_bad = dataclasses.replace(st1, tensors=bad)
    out, st2 = call(f, op, a2, cu_seqlens=off2, state=st_bad, return_state=True, backend=backend)
    for i in range(3):
        one = _varlen.split(st_bad, SimpleNamespace(name=op), (2,), 3)[i]
        ref, st_ref = call(f, op, tokens(op, a2, off2[i], off2[i + 1]), state=one, return_state=True, backend=backend)
        np.testing.assert_array_equal(np.isnan(out[:, off2[i]:off2[i + 1]]), np.isnan(ref))
        for n, t in st_ref.tensors.items():
            got = st2.tensors[n][:, i]
            ax = LEVEL_AXES.get(op, {}).get(n)
            if ax is not None:
                got = np.take(got, np.arange(t.shape[ax]), axis=ax)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(t), err_msg=f"{op} state {n} stream {i}")
    assert np.isnan(out[0, off2[2]:]).any() and not np.isnan(out[:, :off2[2]]).any() and not np.isnan(out[1]).any()


def test_streams_decode_one_token_per_segment():
    """Decoding a batch of streams of different lengths: a packed prefill with ``return_state=True``,
    then packed calls of one token per segment (``cu_seqlens = range(N + 1)``) with ``state=``."""
    op, lens = "loglinear_attention", [7, 1, 12]
    off = [0, *np.cumsum(lens).tolist()]
    prompt = inputs(op, (2,), off[-1], L=5)
    _, st_ = lsattn.loglinear_attention(*prompt, cu_seqlens=off, return_state=True)
    steps = [inputs(op, (2,), 3, seed=10 + j, L=5) for j in range(4)]
    outs = []
    for x in steps:
        o, st_ = lsattn.loglinear_attention(*x, cu_seqlens=[0, 1, 2, 3], state=st_, return_state=True)
        outs.append(o)
    assert st_.offset.tolist() == [n + 4 for n in lens]
    for i in range(3):
        whole = tokens(op, prompt, off[i], off[i + 1])
        for x in steps:
            whole = _cat(op, whole, tokens(op, x, i, i + 1))
        ref = lsattn.reference.loglinear_attention(*whole)[:, lens[i]:]
        assert_close(np.concatenate([o[:, i:i + 1] for o in outs], axis=-2), ref, TOL["float64"] * 10)


def test_streams_jax_and_dask(xp_jax):
    """JAX (fixed-capacity level slots) and Dask streams continue per segment like NumPy's."""
    _check_streams(xp_jax, "loglinear_attention", [2, 3], [1, 3], (), 0, "array_api")
    da = pytest.importorskip("dask.array")
    op = "loglinear_attention"
    arrays = inputs(op, (2,), 9)
    out, st_ = lsattn.loglinear_attention(*[da.from_array(x) for x in arrays], cu_seqlens=[0, 6, 9], return_state=True)
    ref, st_ref = lsattn.loglinear_attention(*arrays, cu_seqlens=[0, 6, 9], return_state=True)
    assert_close(to_numpy(out), ref, TOL["float64"] * 10)
    assert_close(np.asarray(st_.tensors["levels"]), st_ref.tensors["levels"], TOL["float64"] * 10)


@pytest.mark.parametrize("op", OPS)
def test_packed_state_errors_name_state(op):
    f = getattr(lsattn, op)
    arrays = inputs(op, (2,), 6)
    _, packed = call(f, op, arrays, cu_seqlens=[0, 2, 6], return_state=True)
    assert packed.offset.tolist() == [2, 4] and packed.batch_shape == (2, 2)
    with pytest.raises(ValueError, match="state holds 2 packed streams but cu_seqlens has 3 segments"):
        call(f, op, arrays, cu_seqlens=[0, 2, 3, 6], state=packed)
    with pytest.raises(ValueError, match=r"state holds 2 packed streams .*cu_seqlens of 2 segments"):
        call(f, op, arrays, state=packed)
    with pytest.raises(ValueError, match="state has batch shape"):
        call(f, op, [x[:1] for x in arrays], cu_seqlens=[0, 2, 6], state=packed)
    with pytest.raises(ValueError, match="state holds 2 packed streams"):
        lsattn.stepper(op, packed, max_tokens=20)
    other = "log_attention" if op != "log_attention" else "exp_kernel_attention"
    _, wrong = call(getattr(lsattn, other), other, inputs(other, (2,), 6), cu_seqlens=[0, 2, 6], return_state=True)
    with pytest.raises(ValueError, match=f"state was made by {other}"):
        call(f, op, arrays, cu_seqlens=[0, 2, 6], state=wrong)
    before = {n: t.copy() for n, t in packed.tensors.items()}
    call(f, op, arrays, cu_seqlens=[0, 2, 6], state=packed)
    for n, t in packed.tensors.items():
        np.testing.assert_array_equal(t, before[n])


# ---- bad input, backends ----------------------------------------------------------------------

@pytest.mark.parametrize("op", OPS)
def test_bad_offsets_name_cu_seqlens(op):
    arrays = inputs(op, (2,), 6)
    f = getattr(lsattn, op)
    cases = [([1, 6], ValueError, "start at 0"), ([0, 5], ValueError, "end at T = 6"), ([0, 4, 3, 6], ValueError,
             "non-decreasing"), ([0.0, 6.0], TypeError, "integers"), ([0, True, 6], TypeError, "integers"),
             (np.array([0, 6.0]), TypeError, "integers"), ([[0, 6]], ValueError, "1-D"), ([0], ValueError, "1-D"),
             ("06", TypeError, "got str"), (6, TypeError, "got int")]
    for bad, exc, msg in cases:
        with pytest.raises(exc, match=msg) as info:
            call(f, op, arrays, cu_seqlens=bad)
        assert str(info.value).startswith("cu_seqlens"), info.value
    st0 = call(f, op, arrays, return_state=True)[1]
    with pytest.raises(ValueError, match="state holds one stream .* cu_seqlens has 1 segments"):
        call(f, op, arrays, cu_seqlens=[0, 6], state=st0)
    if op in ("log_attention", "exp_kernel_attention"):
        with pytest.raises(ValueError, match="cu_seqlens needs causal=True"):
            f(*arrays, causal=False, cu_seqlens=[0, 6])


def test_offsets_of_another_namespace():
    torch = pytest.importorskip("torch")
    arrays = inputs("log_attention", (2,), 6)
    with pytest.raises(TypeError, match="cu_seqlens is a torch.Tensor, not an array of the inputs' namespace"):
        lsattn.log_attention(*arrays, cu_seqlens=torch.tensor([0, 6]))


def test_backends_that_do_not_serve_packed_segments():
    """numba_cuda and dask list no ``varlen_ops`` (the automatic choice takes another backend),
    cupy every operator (the exp-kernel ones computing their segments in the kernels, ``reset_ops``);
    forced: refused, the error naming the backend, ``cu_seqlens`` and the backends that compute it."""
    for name in ("numba_cuda", "dask"):
        assert not backends.get(name).varlen_ops
    assert backends.get("cupy").varlen_ops == set(OPS) and backends.get("cupy").reset_ops == set(EK_OPS)
    assert backends.get("array_api").varlen_ops == frozenset(OPS)
    arrays = inputs("log_attention", (2,), 6)
    b = backends.resolve("log_attention", np, arrays[0], varlen=True)
    assert b.name in ("numba", "array_api")
    pytest.importorskip("dask")
    import dask.array as da

    darrays = [da.from_array(x, chunks=(2, 3, -1)) for x in arrays]
    with pytest.raises(ValueError, match=r"backend 'dask' cannot compute log_attention.*cu_seqlens.*that do: "
                                         r"\['array_api', 'cupy', 'numba'\]"):
        lsattn.log_attention(*darrays, cu_seqlens=[0, 2, 6], backend="dask")


def test_numba_cuda_refuses_packed_segments(monkeypatch):
    """``numba_cuda`` forced with ``cu_seqlens`` (here as if it served NumPy arrays: no device needed
    to reach the check) is a ValueError naming the backend, the operator and ``cu_seqlens``; the
    same call without ``cu_seqlens`` gets past it."""
    b = backends.get("numba_cuda")
    monkeypatch.setattr(b, "_status", (True, "ok"))
    monkeypatch.setattr(b, "serves", lambda xp, x: None)
    for op in ("loglinear_attention", "exp_kernel_attention"):
        with pytest.raises(ValueError, match=f"backend 'numba_cuda' cannot compute {op} on these arrays: it does not "
                                             f"compute packed segments \\(cu_seqlens\\)"):
            backends.resolve(op, np, np.zeros(1), "numba_cuda", varlen=True)
        assert backends.resolve(op, np, np.zeros(1), "numba_cuda") is b


# ---- broadcast batch axes -------------------------------------------------------------------------

def _shared(op, x, i, G, r):
    """Input ``i`` of shape (B, G, r, ...) made shared across r (q, k: grouped-query heads) or across
    all heads (per-token inputs after the values) as a size-1 axis."""
    if i in (0, 1):
        return x[:, :, :1]
    if i >= 3:
        return x[:, :1, :1]
    return x


@settings(max_examples=6)
@given(op=st.sampled_from(OPS), T=st.integers(1, 12), G=st.integers(1, 2), r=st.integers(1, 3), seed=st.integers(0, 99))
def test_broadcast_equals_materialised(xp_eager, op, T, G, r, seed):
    arrays = inputs(op, (2, G, r), T, seed=seed)
    shared = [_shared(op, x, i, G, r) for i, x in enumerate(arrays)]
    full = [np.broadcast_to(x, y.shape).copy() for x, y in zip(shared, arrays)]
    f = getattr(lsattn, op)
    out, st_ = call(f, op, on(xp_eager, shared), return_state=True, backend="array_api")
    ref, st_ref = call(f, op, full, return_state=True, backend="array_api")
    assert out.shape == (2, G, r, T, 2) and st_.batch_shape == (2, G, r)
    assert_close(out, ref, TOL["float64"], what=op)
    for name, t in st_.tensors.items():
        assert_close(t, st_ref.tensors[name], TOL["float64"], what=name)
    out_nb = call(f, op, shared, backend="numba")
    assert_close(out_nb, ref, TOL["float64"] * 10, what=f"{op} numba")


def test_broadcast_with_packed_segments():
    """Both at once: shared q, k across 4 heads, packed segments."""
    op = "loglinear_attention"
    off = [0, 3, 4, 13]
    arrays = inputs(op, (1, 4), 13)
    shared = [x[:, :1] if i in (0, 1) else x for i, x in enumerate(arrays)]
    full = [np.broadcast_to(x, y.shape) for x, y in zip(shared, arrays)]
    ref = per_segment(lsattn.reference.loglinear_attention, op, full, off)
    for backend in ("array_api", "numba"):
        assert_close(lsattn.loglinear_attention(*shared, cu_seqlens=off, backend=backend), ref, 1e-12)


def _blocks_of(op, arrays, T):
    """Dask arrays of ``arrays`` cut into two blocks along their token axis."""
    import dask.array as da

    out = []
    for i, x in enumerate(arrays):
        chunks = list(x.shape)
        chunks[-1 if i in _tok_axes(op) else -2] = T // 2
        out.append(da.from_array(x, chunks=tuple(chunks)))
    return out


@pytest.mark.parametrize("backend", ["array_api", "dask"])
@pytest.mark.parametrize("op", OPS)
def test_broadcast_input_not_copied_by_the_prologue(op, backend):
    """Grouped-query heads (G = 1, r = 16) on the array-API path and on ``dask`` (its blocks computed
    by the synchronous scheduler): every input but the values shared by the 16 heads. The call on
    the shared inputs takes no more peak NumPy memory than the call on copies made beforehand, up
    to a quarter of those copies of q and k (a copy by the prologue or the backend would add all of
    it), and equals it."""
    if backend == "dask":
        pytest.importorskip("dask")
    T, d, r = 256, 32, 16
    arrays = inputs(op, (1, 1), T, dk=d, dv=4, L=lsattn.num_levels(T))
    arrays[2] = np.random.default_rng(2).standard_normal((1, r, T, 4))
    full = [np.broadcast_to(x, (1, r) + x.shape[2:]).copy() for x in arrays]
    copy = 2 * r * T * d * 8
    f = getattr(lsattn, op)
    if backend == "dask":
        def run(xs):
            return call(f, op, _blocks_of(op, xs, T), backend="dask").compute(scheduler="synchronous")
    else:
        def run(xs):
            return call(f, op, xs, backend="array_api")
    run(arrays)  # first call: imports and caches
    out, peak = traced_peak(lambda: run(arrays))
    ref, peak_full = traced_peak(lambda: run(full))
    assert_close(out, ref, 1e-12, what=op)
    assert peak < peak_full + copy / 4, (op, peak, peak_full, copy)


@pytest.mark.parametrize("op", OPS)
def test_numba_reads_broadcast_inputs_without_copies(op):
    """Grouped-query heads (G = 1, r = 16) on the numba backend: every input but the values shared
    by the 16 heads (a size-1 head axis). The kernels read the shared rows (``numba_cpu._inputs``):
    the call's peak NumPy memory (kernel scratch included) exceeds that of the call on copies made
    beforehand by less than a quarter of those copies of q and k (a copy in the call would add all
    of it), and the output equals that call's."""
    pytest.importorskip("numba")
    T, d, r = 256, 32, 16
    arrays = inputs(op, (1, 1), T, dk=d, dv=4, L=lsattn.num_levels(T))
    arrays[2] = np.random.default_rng(2).standard_normal((1, r, T, 4))
    full = [np.broadcast_to(x, (1, r) + x.shape[2:]).copy() for x in arrays]
    copy = 2 * r * T * d * 8
    f = getattr(lsattn, op)
    call(f, op, arrays, backend="numba")  # compiles
    out, peak = traced_peak(lambda: call(f, op, arrays, backend="numba"))
    ref, peak_full = traced_peak(lambda: call(f, op, full, backend="numba"))
    assert_close(out, ref, 0.0, what=op)
    assert peak < peak_full + copy / 4, (op, peak, peak_full, copy)


@pytest.mark.parametrize("backend", ["array_api", "numba"])
@pytest.mark.parametrize("op", OPS)
def test_poison_stays_in_its_segment(op, backend):
    """A NaN key, value or query (an infinite value) poisons what it poisons in a per-segment call,
    in its segment only (docs/api.md, "Non-finite inputs and strong decays")."""
    off = [0, 4, 9, 14]
    f = getattr(lsattn, op)
    for i, t, bad in ((1, 5, np.nan), (2, 6, np.nan), (2, 7, np.inf), (0, 2, np.nan)):
        arrays = inputs(op, (2,), 14)
        arrays[i] = arrays[i].copy()
        arrays[i][0, t, 0] = bad
        out = to_numpy(call(f, op, arrays, cu_seqlens=off, backend=backend))
        ref = per_segment(f, op, arrays, off, backend=backend)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        assert np.isnan(out).any() and not np.isnan(out[:, off[-2]:]).any()
        fin = ~np.isnan(ref)
        assert_close(out[fin], ref[fin], 1e-12)


def test_numba_compiles_nothing_more_for_broadcast_or_packed_inputs():
    """Broadcast views (stride 0, read-only) and packed calls reach the Numba kernels in the layout
    of an ordinary call: no second compiled specialisation."""
    pytest.importorskip("numba")
    import numba

    from lsattn.backends import _numba_kernels

    def counts():
        return {n: len(f.signatures) for n, f in vars(_numba_kernels).items() if isinstance(f, numba.core.registry.CPUDispatcher)}

    ops = ["log_attention", "loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"]
    for op in ops:
        call(getattr(lsattn, op), op, inputs(op, (2, 3), 16), backend="numba")
    before = counts()
    for op in ops:
        arrays = [x[:, :1] if i != 2 else x for i, x in enumerate(inputs(op, (2, 3), 16))]
        call(getattr(lsattn, op), op, arrays, backend="numba")
        call(getattr(lsattn, op), op, arrays, backend="numba", cu_seqlens=[0, 3, 3, 16])
    assert counts() == before


def test_jax_jit_with_static_offsets():
    """Under ``jax.jit`` the offsets are a static value (a list): the packed call compiles and
    equals the per-segment reference; traced offsets are a TypeError naming ``cu_seqlens``."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    off = [0, 5, 6, 12]
    arrays = inputs("loglinear_attention", (2,), 12)
    ref = per_segment(lsattn.reference.loglinear_attention, "loglinear_attention", arrays, off)
    f = jax.jit(lambda *x: lsattn.loglinear_attention(*x, cu_seqlens=off))
    assert_close(f(*(jnp.asarray(x, dtype=jnp.float32) for x in arrays)), ref, TOL["float32"])
    for op in EK_OPS:  # the array-API path's own packed exp-kernel calls, with states
        arrays = inputs(op, (2,), 12)
        g = jax.jit(lambda *x, op=op: call(getattr(lsattn, op), op, x, cu_seqlens=off, return_state=True))
        out, st_ = g(*(jnp.asarray(x, dtype=jnp.float32) for x in arrays))
        assert_close(out, per_segment(getattr(lsattn.reference, op), op, arrays, off), TOL["float32"] * 10, what=op)
        assert st_.batch_shape == (2, 3) and st_.offset.tolist() == [5, 1, 6]
    with pytest.raises(TypeError, match="cu_seqlens must be concrete"):
        jax.jit(lambda q, c: lsattn.log_attention(q, q, q, cu_seqlens=c))(jnp.zeros((12, 2)), jnp.asarray(off))


def _benchmark(name):
    """The module ``benchmarks/<name>.py``, loaded as ``python benchmarks/<name>.py`` would run it."""
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(name, pathlib.Path(__file__).parent.parent / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cpu_benchmark_smoke(tmp_path):
    """``benchmarks/bench_varlen_cpu.py --smoke``: every operator on numba and array_api, its packed
    call with states equal to the per-segment loop."""
    pytest.importorskip("numba")
    res = _benchmark("bench_varlen_cpu").main(["--smoke", "--out", str(tmp_path)])
    assert (tmp_path / "varlen_cpu.json").exists() and (tmp_path / "varlen_cpu.md").exists()
    assert len(res["rows"]) == 10 and all(r["rel_diff_vs_loop"] < 1e-5 for r in res["rows"]), res["rows"]


def test_gpu_benchmark_smoke(tmp_path):
    """``benchmarks/bench_varlen_gpu.py --smoke``: every code path of the GPU benchmark on the CPU
    (tiny sizes), so that the one GPU run does not fail on a typo; its packed call equals the loop."""
    pytest.importorskip("torch")
    res = _benchmark("bench_varlen_gpu").main(["--smoke", "--out", str(tmp_path)])
    assert (tmp_path / "varlen_gpu.json").exists() and (tmp_path / "varlen_gpu.md").exists()
    assert res["rows"]["packed"]["packed_vs_loop_rel_err"] < 1e-5
    assert res["rows"]["memory"]["shared_peak_bytes"] < res["rows"]["memory"]["materialised_peak_bytes"] + \
        res["rows"]["memory"]["copy_bytes_of_q_k"] / 4
