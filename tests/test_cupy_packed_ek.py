"""Packed segments (``cu_seqlens``) of ``exp_kernel_attention`` / ``log_attention`` on the CuPy
kernels (issue 19): segment masks inside chunks, scan resets at segment starts, incoming states read
by the exact rows, states per segment (``lsattn/backends/cupy/exp_kernel.cu``).

* CPU (CI): the host logic (``exp_kernel.compute(..., segs=...)``) driven by the NumPy twin of the
  kernels (``test_cupy_backend.Twin``) against the array-API packed path and the reference.
* GPU (``@pytest.mark.gpu``): the public operators on CuPy arrays and CUDA torch tensors (float64,
  float32, bfloat16 on the tensor-core kernels), with and without states, ``-inf`` log values and
  NaN tokens; gradients of packed calls equal per-segment gradients.

Tolerances: as ``tests/test_cupy_backend.py`` (``F64``, ``F32`` relative to max |y|; ``BF16`` against
the reference on the bf16-rounded inputs) and ``log_attention``'s bound (``_log_tol``, relative and
absolute in log y; ``assert_bf16_log`` for bfloat16).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import lsattn
from lsattn import reference as ref
from lsattn.backends.cupy import exp_kernel as cek
from lsattn.backends.cupy._arrays import narrow, widen

from helpers import TOL, assert_close, to_numpy
from strategies import seeds
from test_cupy_backend import BF16, F32, F64, Twin, _gpu_ready, chunks, ek_inputs
from test_cupy_log_attention import _log_tol, assert_bf16_log

OPS = ("exp_kernel_attention", "log_attention")
NAMES = {"exp_kernel_attention": ("m", "S", "z"), "log_attention": ("m", "S", "z", "n")}
#: segment lengths: 0 and 1, chunk edges (16, 32, 64) and either side of them, several chunks
seg_lens = st.lists(st.one_of(st.integers(0, 3), st.sampled_from([15, 16, 17, 31, 32, 33, 63, 64, 65]),
                              st.integers(0, 150)), min_size=1, max_size=7)


def _packed_case(seed, lens, logv, with_state, dk=3, dv=4, batch=(2,), scale=2.0, prefix=None, prefix_lens=None):
    """Packed inputs (segments ``lens``; ``logv``: log values with ``-inf`` entries), their offsets and
    (``with_state``) a packed incoming state of the array-API path (each stream after a prefix of its
    own, of 0 .. 40 tokens, or of ``prefix_lens``); ``prefix``: a list that receives the prefix call's
    inputs and offsets."""
    rng = np.random.default_rng(seed)
    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    q, k, v = ek_inputs(seed, batch, int(off[-1]), dk, dv, scale)
    if logv:
        v = np.where(rng.random(v.shape) < 0.2, -np.inf, v * 30.0)
    state = None
    if with_state:
        pl = rng.integers(0, 41, len(lens)) if prefix_lens is None else np.asarray(prefix_lens)
        pre = list(ek_inputs(seed + 1, batch, int(pl.sum()), dk, dv, scale)) + [np.concatenate([[0], np.cumsum(pl)])]
        op = lsattn.log_attention if logv else lsattn.exp_kernel_attention
        _, state = op(*pre[:3], cu_seqlens=pre[3], return_state=True, backend="array_api")
        if prefix is not None:
            prefix.extend(pre)
    return q, k, v, off, state


def assert_state(mine, want, tol, what=""):
    """State tensors ``mine`` equal ``want`` (name -> array): the shifts ``m``, ``n`` where the
    reference holds a key / value (elsewhere both at the stand-in ``-finfo.max / 8``), the rest
    relative to their largest entry."""
    for name, w in want.items():
        g, gd, w, wd = to_numpy(mine[name]), _dtype(mine[name]), to_numpy(w), _dtype(w)
        g, w = g.astype(np.float64), w.astype(np.float64)
        if name in ("m", "n"):  # each at the stand-in of its own dtype (not of to_numpy's float64: torch)
            live = w > -np.finfo(wd).max / 16
            np.testing.assert_array_equal(g > -np.finfo(gd).max / 16, live, err_msg=f"{what} {name}: keys seen")
            g, w = np.where(live, g, 0.0), np.where(live, w, 0.0)
        assert_close(g, w, tol, atol=tol if name in ("m", "n") else 0.0, what=f"{what} state {name}")


def _dtype(x):
    """The NumPy dtype of an array of any library (torch's by name: ``torch.float32`` -> float32)."""
    return np.dtype(str(x.dtype).split(".")[-1])


# ---- CPU: the host logic with the twin -----------------------------------------------------------

@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # the reference takes log 0
@given(lens=seg_lens, C=chunks, seed=seeds, logv=st.booleans(), with_state=st.booleans())
@settings(max_examples=30)
def test_twin_packed_segments(lens, C, seed, logv, with_state):
    """Segments of length 0 and 1, boundaries inside chunks and on their edges, fresh streams or a
    packed incoming state: equal to the array-API packed path (output and every segment's state) and,
    for fresh streams, to the reference on each segment."""
    q, k, v, off, state = _packed_case(seed, lens, logv, with_state)
    op = "log_attention" if logv else "exp_kernel_attention"
    init = None if state is None else tuple(state.tensors[n] for n in NAMES[op])
    twin = Twin()
    out, got = cek.compute(twin, q, k, v, True, init, True, C, logv=logv, segs=(off, twin.seg_tokens(off, q)))
    want, st_api = getattr(lsattn, op)(q, k, v, cu_seqlens=off, state=state, return_state=True, backend="array_api")
    assert_close(out, want, F64, what=f"lens={lens} C={C}")
    assert_state(dict(zip(NAMES[op], got)), st_api.tensors, F64)
    if state is None:
        refop = getattr(ref, op)
        for s0, s1 in zip(off[:-1], off[1:]):
            if s1 > s0:
                assert_close(out[..., s0:s1, :], refop(q[..., s0:s1, :], k[..., s0:s1, :], v[..., s0:s1, :]), F64)


@pytest.fixture
def twin_forward(monkeypatch):
    """``exp_kernel._forward`` driving the NumPy twin on NumPy arrays (its ``on_gpu`` replaced): the
    public implementation's packed plumbing (states, offsets, T = 0) runs on the CPU."""
    import contextlib

    @contextlib.contextmanager
    def on_twin(like):
        yield (lambda x: (x, "")), (lambda a, half: a), Twin()

    monkeypatch.setattr(cek, "on_gpu", on_twin)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("lens", [[5, 0, 1, 70, 3], [0, 0], [0]])
def test_twin_forward_packed_streams(twin_forward, op, lens):
    """``forward`` / ``log_forward`` with ``segments=`` (fresh streams, then continued ones, T = 0
    included): outputs, offsets and states equal the array-API implementation's."""
    from lsattn import _varlen
    from lsattn.exp_kernel import _exp_forward, _log_forward

    impl, api = (cek.log_forward, _log_forward) if op == "log_attention" else (cek.forward, _exp_forward)
    q, k, v, off, _ = _packed_case(7, lens, op == "log_attention", False)
    segs = _varlen.Streams(off, np.zeros(len(lens), np.int64))
    o1, s1 = impl(q, k, v, True, None, True, chunk_size=16, segments=segs)
    w1, t1 = api(q, k, v, True, None, True, chunk_size=16, segments=segs)
    assert_close(o1, w1, F64)
    assert s1.offset.tolist() == t1.offset.tolist() == list(lens) and s1.batch_shape == t1.batch_shape
    assert_state(s1.tensors, t1.tensors, F64)
    q2, k2, v2, off2, _ = _packed_case(8, lens[::-1], op == "log_attention", False)
    segs2 = _varlen.Streams(off2, s1.offset)
    o2, s2 = impl(q2, k2, v2, True, s1, True, chunk_size=16, segments=segs2)
    w2, t2 = api(q2, k2, v2, True, t1, True, chunk_size=16, segments=segs2)
    assert_close(o2, w2, F64)
    assert s2.offset.tolist() == t2.offset.tolist()
    assert_state(s2.tensors, t2.tensors, F64)


def test_twin_packed_large_key_in_another_segment():
    """A key of magnitude 400 in one segment of a chunk: the other segment of that chunk (whose rows
    the shared chunk shift underflows) takes the exact path and stays exact."""
    q, k, v, off, _ = _packed_case(3, [40, 30, 50], False, False)
    k[..., 20, :] = 400.0
    twin = Twin()
    out, _ = cek.compute(twin, q, k, v, True, None, False, 64, segs=(off, twin.seg_tokens(off, q)))
    for s0, s1 in zip(off[:-1], off[1:]):
        assert_close(out[..., s0:s1, :], ref.exp_kernel_attention(q[..., s0:s1, :], k[..., s0:s1, :], v[..., s0:s1, :]), F64)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("logv", [False, True])
def test_twin_packed_shared_rows_and_wide_values(logv):
    """Grouped-query heads (q, k broadcast over the heads: read through the row map) and d_v above
    one column block (130: two launches of the kernels), packed with an incoming state: equal to the
    array-API packed path on the materialised inputs."""
    import dataclasses

    lens = [30, 0, 1, 64, 45]
    q, k, v, off, state = _packed_case(9, lens, logv, True, 4, 130, (2, 3))
    views = [np.broadcast_to(x[:, :1], x.shape) for x in (q, k)] + [v]
    op = "log_attention" if logv else "exp_kernel_attention"
    init = tuple(state.tensors[n] for n in NAMES[op])
    twin = Twin()
    out, got = cek.compute(twin, *views, True, init, True, 32, logv=logv, segs=(off, twin.seg_tokens(off, q)))
    full = [np.ascontiguousarray(x) for x in views]
    want, st_api = getattr(lsattn, op)(*full, cu_seqlens=off, state=dataclasses.replace(state), return_state=True,
                                       backend="array_api")
    assert_close(out, want, F64)
    assert_state(dict(zip(NAMES[op], got)), st_api.tensors, F64)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@given(lens=st.lists(st.one_of(st.integers(0, 3), st.sampled_from([15, 16, 17, 31, 32, 33]), st.integers(0, 80)),
                     min_size=1, max_size=5),
       logv=st.booleans(), seed=seeds)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_twin_packed_gradients(monkeypatch, lens, logv, seed):
    """The packed autograd path (the forward's segment masks; the backward on a chunk-aligned layout
    with scan resets and cut reverse carries) driving the twin on CPU torch float64 tensors: the
    gradients of q, k, v equal those of the per-segment calls."""
    torch = pytest.importorskip("torch")
    import contextlib

    from lsattn.backends.cupy import _autograd

    @contextlib.contextmanager
    def on_twin(like):
        yield (lambda x: (x.detach().numpy(), "")), (lambda a, half: torch.from_numpy(np.ascontiguousarray(a))), Twin()

    monkeypatch.setattr(_autograd, "on_gpu", on_twin)  # the same replacement for every example
    q, k, v, off, _ = _packed_case(seed, lens, logv, False, 4, 3)
    T = int(off[-1])
    if T == 0:
        return
    w = torch.tensor(np.random.default_rng(seed).standard_normal((2, T, 3)))
    grads = []
    for packed in (True, False):
        xs = [torch.tensor(x, requires_grad=True) for x in (q, k, v)]
        if packed:
            out = _autograd.apply_exp_kernel(*xs, None, 16, logv, True, off)
        else:
            out = torch.cat([_autograd.apply_exp_kernel(*(x[..., s0:s1, :] for x in xs), None, 16, logv, True)
                             for s0, s1 in zip(off[:-1].tolist(), off[1:].tolist()) if s1 > s0], dim=-2)
        torch.where(torch.isfinite(out), out * w, 0.0).sum().backward()
        grads.append([x.grad.numpy() for x in xs])
    for name, g, g_ref in zip("qkv", *grads):
        assert_close(g, g_ref, 1e-10, atol=1e-12, what=f"d/d{name} lens={lens}")


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("logv", [False, True])
def test_emulated_bf16_packed_backward_tensor_cores(logv):
    """The tensor-core backward kernels (CPU emulation, ``tests/cuda_emu_ek_bwd.cpp``) on the packed
    backward's chunk-aligned layout, bf16 inputs, segments of 0, 1 and across chunks of 64: the
    gradients equal those of the per-segment backward calls (the same chunks, the layout's gap tokens
    neutral), to float32 rounding."""
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    from lsattn.backends.cupy._arrays import widen
    from test_cupy_log_attention import EmuTC, bf16_bits

    lens = [1, 70, 0, 64, 3]
    q, k, v, off, _ = _packed_case(4, lens, logv, False, 16, 16, (2,), 1.0)
    (qb, q), (kb, k), (vb, v), (dob, do) = (bf16_bits(x) for x in (q, k, v, np.random.default_rng(5).standard_normal(
        v.shape)))
    emu = EmuTC()
    op = "log_attention" if logv else "exp_kernel_attention"
    y = getattr(lsattn, op)(q, k, v, cu_seqlens=off, backend="array_api").astype(np.float32)
    y = y if logv else bf16_bits(y)[0]
    got = cek.backward(emu, qb, kb, vb, None, y, dob, False, "bf16", logv, starts=off)[:3]
    parts = [cek.backward(emu, qb[:, s0:s1], kb[:, s0:s1], vb[:, s0:s1], None, y[:, s0:s1], dob[:, s0:s1], False, "bf16",
                          logv)[:3] for s0, s1 in zip(off[:-1], off[1:]) if s1 > s0]
    for name, g, per in zip("qkv", got, zip(*parts)):
        want = np.concatenate([widen(np, x, "bf16") for x in per], axis=1)
        assert_close(widen(np, g, "bf16"), want, 1e-2, atol=1e-6, what=f"d/d{name}")


def test_cupy_lists_the_exp_kernel_operators_as_reset_ops():
    """Packed exp-kernel calls on CUDA arrays choose the cupy kernels (no backend=)."""
    import lsattn.backends.cupy as cb

    assert set(OPS) <= set(cb.VARLEN_OPS) and set(cb.RESET_OPS) == set(OPS)


class BF16Twin(Twin):
    """The twin on the tensor-core path's bf16 layout: inputs and outputs as bf16 bit patterns (uint16)
    and the chunk summaries ``S`` stored as bf16 (``ek_chunk_tc5``, ``ek_scan_Shv``), the rest float32;
    ``calls`` counts the packed output launches."""

    calls = 0

    @staticmethod
    def _wide(x):
        return widen(np, x, "bf16").astype(np.float32) if x.dtype == np.uint16 else x

    @staticmethod
    def _bits(x):
        return narrow(np, np.ascontiguousarray(x, np.float32), "bf16").view(np.uint16)

    def ek_chunk(self, cfg, k, v, mk, S, z, *args, **kw):
        Sf = np.empty(S.shape, np.float32)
        super().ek_chunk(cfg, self._wide(k), self._wide(v), mk, Sf, z, *args, **kw)
        S[...] = self._bits(Sf)

    def ek_scan(self, cfg, mk, S, *args, **kw):
        Sf = self._wide(S)
        super().ek_scan(cfg, mk, Sf, *args, **kw)
        S[...] = self._bits(Sf)

    def ek_output(self, cfg, q, k, v, m_in, S_in, z_in, out, *args, **kw):
        BF16Twin.calls += kw.get("tok") is not None
        o = out if out.dtype == np.float32 else np.empty(out.shape, np.float32)
        super().ek_output(cfg, *(self._wide(x) for x in (q, k, v)), m_in, self._wide(S_in), z_in, o, *args, **kw)
        if o is not out:
            out[...] = self._bits(o)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("with_state", [False, True])
def test_twin_bf16_packed_torch_streams(monkeypatch, op, with_state):
    """``test_gpu_packed_bfloat16_tensor_cores`` on the CPU: the public call on bfloat16 CPU torch
    tensors, served by the cupy backend's implementation (``exp_kernel._forward``: the bf16 layout,
    the prologue's 16-bit state handling, float32 torch states) driving :class:`BF16Twin` (session 11's
    GPU failure of this case, a stream with no key in either call "holding keys", was the test reading a
    float32 torch state's stand-in at float64's: ``assert_state``)."""
    torch = pytest.importorskip("torch")
    import contextlib

    from lsattn import backends

    def to_np(x):
        if x.dtype == torch.bfloat16:
            return x.contiguous().view(torch.int16).numpy().view(np.uint16), "bf16"
        return x.numpy(), ""

    def back(a, half):
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.view(torch.int16).view(torch.bfloat16) if half == "bf16" else t

    @contextlib.contextmanager
    def on_twin(like):
        yield to_np, back, BF16Twin()

    resolve, cupy_backend = backends.resolve, backends.get("cupy")
    monkeypatch.setattr(cek, "on_gpu", on_twin)
    monkeypatch.setattr(cek, "inputs", lambda to_cp, arrays: ([to_cp(x)[0] for x in arrays], to_cp(arrays[0])[1]))
    monkeypatch.setattr(backends, "resolve", lambda op_, xp, a, backend=None, **kw: (
        resolve(op_, xp, a, backend, **kw) if backend == "array_api" else cupy_backend))
    BF16Twin.calls = 0
    check_bf16_packed(torch, op, with_state, "cpu")
    assert BF16Twin.calls == (2 if with_state else 1)  # the prefix, the call: no array-API detour


# ---- GPU: the kernels ------------------------------------------------------------------------------

def _tol(op, dtype, q, k):
    q, k = (x if x.size else np.zeros(1) for x in (q, k))
    return _log_tol(dtype, q, k) if op == "log_attention" else (F64 if dtype == "float64" else F32)


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@given(lens=seg_lens, op=st.sampled_from(OPS), dtype=st.sampled_from(["float32", "float64"]), dk=st.sampled_from([3, 16, 64]),
       with_state=st.booleans(), scale=st.sampled_from([0.1, 1.0, 3.0]), seed=seeds)
@settings(max_examples=25, deadline=None)
def test_gpu_packed_segments(lens, op, dtype, dk, with_state, scale, seed):
    """CuPy arrays, the public call with ``cu_seqlens`` (automatic choice: ``cupy``), with and without
    a packed incoming state: output and states equal the array-API packed path in float64 and, for
    fresh streams, the reference on each segment."""
    _gpu_ready()
    import cupy as cp

    pre = []
    q, k, v, off, state = _packed_case(seed, lens, op == "log_attention", with_state, dk, 5, (2, 3), scale, pre)
    q, k, v = (x.astype(dtype) for x in (q, k, v))
    dev = [cp.asarray(x) for x in (q, k, v)]
    assert lsattn.backends.resolve(op, cp, dev[0], None, varlen=True).name == "cupy"
    f = getattr(lsattn, op)
    st_dev = None
    if state is not None:  # the prefixes packed on the kernels too (in this dtype; the reference's in float64)
        _, st_dev = f(*(cp.asarray(x.astype(dtype)) for x in pre[:3]), cu_seqlens=pre[3].tolist(), return_state=True)
    out, st_ = f(*dev, cu_seqlens=cp.asarray(off), state=st_dev, return_state=True)
    want, st_api = f(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), cu_seqlens=off, state=state,
                     return_state=True, backend="array_api")
    tol = _tol(op, dtype, q, k)
    assert_close(out.get(), want, tol, atol=tol if op == "log_attention" else 0.0, what=f"lens={lens}")
    assert st_.batch_shape == (2, 3, len(lens)) and st_.offset.tolist() == st_api.offset.tolist()
    assert_state(st_.tensors, st_api.tensors, 10 * tol if dtype == "float32" else tol)
    if state is None:
        for s0, s1 in zip(off[:-1].tolist(), off[1:].tolist()):
            if s1 > s0:
                one = f(*(x[..., s0:s1, :] for x in dev))
                assert_close(out[..., s0:s1, :].get(), one.get(), tol, atol=tol if op == "log_attention" else 0.0)


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("op", OPS)
def test_gpu_packed_nonfinite_tokens(op):
    """NaN at random tokens and ``-inf`` log values in a packed call on the kernels: NaN where the
    per-segment calls have it (from the poisoned token on, in its own segment only), equal elsewhere."""
    _gpu_ready()
    import cupy as cp

    lens = [70, 0, 1, 64, 130, 5]
    q, k, v, off, _ = _packed_case(11, lens, op == "log_attention", False, 16, 8)
    k[0, 80, 3] = np.nan
    q[1, 200, 0] = np.nan
    v[0, 150, 2] = np.nan
    f = getattr(lsattn, op)
    dev = [cp.asarray(x, dtype=cp.float32) for x in (q, k, v)]
    out = f(*dev, cu_seqlens=off.tolist()).get()
    loop = np.concatenate([f(*(x[..., s0:s1, :] for x in dev)).get() for s0, s1 in zip(off[:-1], off[1:]) if s1 > s0], axis=-2)
    nan = np.isnan(loop)
    assert nan.any() and not nan.all()
    np.testing.assert_array_equal(np.isnan(out), nan)
    tol = _tol(op, "float32", q[np.isfinite(q)], k[np.isfinite(k)])
    assert_close(np.where(nan, 0.0, out), np.where(nan, 0.0, loop), tol, atol=tol if op == "log_attention" else 0.0)


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("with_state", [False, True])
def test_gpu_packed_bfloat16_tensor_cores(op, with_state):
    """bfloat16 CUDA torch tensors (the tensor-core kernels), d = 64, segments across and on chunk
    edges: equal to the reference per segment on the bf16-rounded inputs (``BF16``; log outputs
    ``assert_bf16_log``), continuing streams too (against the array-API packed path in float64), a
    stream with no token in either call among them (``exp_kernel_attention``: the prefix's segment 2 is
    empty too). CPU twin of this test: ``test_twin_bf16_packed_torch_streams``."""
    _gpu_ready()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    check_bf16_packed(torch, op, with_state, "cuda")


#: the bfloat16 case: segments of 0, 1, across and on the edges of the tensor-core chunks (64); the
#: prefixes of its continued streams, segment 2 empty in both calls (a stream that never had a key)
BF16_LENS, BF16_PREFIX = [1, 200, 0, 63, 64, 65, 3, 300], [27, 33, 0, 33, 19, 21, 25, 11]


def check_bf16_packed(torch, op, with_state, device):
    """``test_gpu_packed_bfloat16_tensor_cores`` on bfloat16 torch tensors of ``device``."""
    pre = []
    q, k, v, off, state = _packed_case(5, BF16_LENS, op == "log_attention", with_state, 64, 64, (1, 2), 1.0, pre,
                                       BF16_PREFIX)
    bf = lambda xs: [torch.tensor(x, device=device).to(torch.bfloat16) for x in xs]  # noqa: E731
    tb = bf((q, k, v))
    back = [t.double().cpu().numpy() for t in tb]
    f = getattr(lsattn, op)
    if with_state:  # the prefixes packed on the kernels in bf16 too; the reference's from their bf16 roundings
        pb = bf(pre[:3])
        _, st_dev = f(*pb, cu_seqlens=pre[3].tolist(), return_state=True)
        _, state = f(*(t.double().cpu().numpy() for t in pb), cu_seqlens=pre[3], return_state=True, backend="array_api")
        out, st_ = f(*tb, cu_seqlens=off.tolist(), state=st_dev, return_state=True)
        want, st_api = f(*back, cu_seqlens=off, state=state, return_state=True, backend="array_api")
        assert st_.tensors["m"].dtype == torch.float32
        assert_state(st_.tensors, st_api.tensors, BF16)
    else:
        out = f(*tb, cu_seqlens=off.tolist())
        want = np.concatenate([getattr(ref, op)(*(x[..., s0:s1, :] for x in back))
                               for s0, s1 in zip(off[:-1], off[1:]) if s1 > s0], axis=-2)
    assert out.dtype == torch.bfloat16
    got = out.double().cpu().numpy()
    if op == "log_attention":
        assert_bf16_log(got, want, f"state={with_state}")
    else:
        assert_close(got, want, BF16, what=f"state={with_state}")


@pytest.mark.gpu
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gpu_packed_gradients_equal_per_segment(op, dtype):
    """CUDA torch tensors that require grad, packed (the forward's segment masks; the backward
    kernels on a chunk-aligned layout, bf16: the tensor-core ones): the gradients equal those of the
    per-segment calls (float32 within 10x the float32 output bound: each gradient sums over a segment;
    bfloat16 within ``BF16``: the same kernels on the same chunks)."""
    _gpu_ready()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    off = [0, 37, 38, 38, 140, 201, 265]
    d = 16 if dtype == "float32" else 64
    base = ek_inputs(5, (2,), off[-1], d, d)
    w = torch.tensor(np.random.default_rng(1).standard_normal((2, off[-1], d)), dtype=torch.float32, device="cuda")
    f = getattr(lsattn, op)
    tdt = getattr(torch, dtype)
    grads = []
    for packed in (True, False):
        arrays = [torch.tensor(x, device="cuda").to(tdt).requires_grad_(True) for x in base]
        if packed:
            out = f(*arrays, cu_seqlens=off)
        else:
            out = torch.cat([f(*(x[..., s0:s1, :] for x in arrays)) for s0, s1 in zip(off[:-1], off[1:]) if s1 > s0],
                            dim=-2)
        (out.float() * w).sum().backward()
        grads.append([x.grad.float() for x in arrays])
    for name, g, g_ref in zip("qkv", *grads):
        assert_close(g, g_ref, TOL["float32"] * 10 if dtype == "float32" else BF16, what=f"{op} {dtype} d/d{name}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,d", [("float64", 3), ("float32", 3), ("float32", 16), ("uint16", 3), ("uint16", 64),
                                     ("uint16", 130)])
def test_gpu_gather_rows(dtype, d):
    """``CupyOps.gather_rows`` (the packed backward's chunk layout and its way back) in units of 2, 4,
    8 and 16 bytes, on an aligned array and on one starting an element into its buffer: equal to the
    twin's NumPy gather, the fill's bit pattern at ``src < 0``."""
    _gpu_ready()
    import cupy as cp

    from lsattn.backends.cupy._compile import CupyOps

    rng = np.random.default_rng(d)
    x = rng.integers(0, 2**16, (3, 41, d)).astype(dtype)
    src = rng.integers(-1, 40, 77).astype(np.int32)
    fill = int(np.array([-7.5]).astype(dtype).view(f"u{np.dtype(dtype).itemsize}")[0])
    shifted = cp.empty(x.size + 1, dtype=x.dtype)[1:].reshape(x.shape)  # C-contiguous, one element off
    shifted[...] = cp.asarray(x)
    for base in (cp.asarray(x), shifted):
        got = CupyOps(0).gather_rows(base, cp.asarray(src), 77, fill).get()
        np.testing.assert_array_equal(got, Twin.gather_rows(x, src, 77, fill))


@pytest.mark.gpu
@given(lens=seg_lens, CH=st.sampled_from([16, 32, 64]))
@settings(max_examples=20, deadline=None)
def test_gpu_token_table_and_chunk_resets(lens, CH):
    """The kernels' token table (``CupyOps.seg_tokens``) and the scans' per-chunk resets
    (``CupyOps.chunk_resets``) equal the twin's (``Twin.seg_tokens``, ``Twin._reset``): segments of
    length 0 and 1, on and across chunk edges."""
    _gpu_ready()
    import cupy as cp

    from lsattn.backends.cupy._compile import CupyOps

    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    T = int(off[-1])
    if T == 0:
        return
    ops, n = CupyOps(0), -(-T // CH)
    tok = ops.seg_tokens(off, cp.empty(1))
    want = Twin().seg_tokens(off, None)
    np.testing.assert_array_equal(tok.get(), want)
    np.testing.assert_array_equal(ops.chunk_resets(tok, T, CH, n).get(), [Twin._reset(want, j, CH, T) for j in range(n)])
