"""The Numba CUDA backend against lsattn.reference; streams handed to and from array_api / cupy.

Two kinds of tests:

- Numba device arrays (``cuda.to_device``), through the backend's implementations
  (``backends.select(op, None, q, "numba_cuda")``: the public operators validate with
  array_namespace, which does not take Numba device arrays). These run under the CUDA simulator
  (``NUMBA_ENABLE_CUDASIM=1``, as in CI) at tiny sizes (T <= 12, d <= 4, batch <= 2; blocks of 4
  threads in 2 column blocks, so the reduction trees and the column split are exercised), and on
  a real GPU with the real block shapes.
- ``@pytest.mark.gpu``: CuPy arrays and torch CUDA tensors through the public API, larger sizes,
  hypothesis; skipped without a CUDA device.

Tolerances (max |out - ref| <= tol * max |ref|, against the float64 reference of the inputs as
computed, i.e. float32 inputs rounded first), those of the operator tests:
- exp-kernel: tol = TOL[dtype] + 2 eps(dtype) (max |q| + max |k|), plus tol absolute for log_attention;
- log-linear Mamba-2: float64 1e-12, float32 1e-5; Gated DeltaNet (unit keys, beta in [0, 1]):
  float64 1e-10, float32 1e-5.
"""
import dataclasses
import sys

import numpy as np
import pytest

import lsattn
from lsattn import backends
from lsattn import reference as ref
from helpers import TOL, assert_close, to_numpy

numba = pytest.importorskip("numba")
from numba import cuda  # noqa: E402

if not cuda.is_available():
    pytest.skip("numba.cuda is not available (no CUDA device; set NUMBA_ENABLE_CUDASIM=1 for the simulator)",
                allow_module_level=True)

from lsattn.backends import numba_cuda as nc  # noqa: E402

SIM = bool(numba.config.ENABLE_CUDASIM)
EPS = {"float64": np.finfo(np.float64).eps, "float32": np.finfo(np.float32).eps}
LL_TOL = {("mamba2", "float64"): 1e-12, ("mamba2", "float32"): 1e-5,
          ("gated", "float64"): 1e-10, ("gated", "float32"): 1e-5}
EK_OPS = {"exp": "exp_kernel_attention", "log": "log_attention"}
LL_OPS = {"mamba2": "loglinear_attention", "gated": "loglinear_gated_delta"}
EK_REF = {"exp": ref.exp_kernel_attention, "log": ref.log_attention}
LL_REF = {"mamba2": ref.loglinear_attention, "gated": ref.loglinear_gated_delta}


@pytest.fixture(autouse=True)
def _backend_runs(request):
    """GPU-marked tests need the backend itself, not only a device: numba-cuda that cannot compile
    under the installed NumPy (0.30.4 with NumPy 2.5: ``np.row_stack`` is gone) is reported by the
    backend's probe, and the library then never chooses it; its tests skip with that reason."""
    if request.node.get_closest_marker("gpu") is not None:
        ok, reason = backends.get("numba_cuda").status()
        if not ok:
            pytest.skip(f"numba_cuda backend unavailable: {reason}")


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    """Under the simulator: blocks of 4 threads, 2 columns each (2 row groups), and a short GIL
    switch interval (the simulator's barriers wait on it: ~10x faster)."""
    if SIM:
        monkeypatch.setattr(nc, "THREADS", 4)
        monkeypatch.setattr(nc, "COLUMNS", 2)
        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        yield
        sys.setswitchinterval(old)
    else:
        yield


# ---- helpers -----------------------------------------------------------------------------------

def dev(x):
    return cuda.to_device(np.ascontiguousarray(x))


def host(x):
    return x.copy_to_host() if hasattr(x, "copy_to_host") else to_numpy(x)


def impl(op, q):
    """The numba_cuda implementation, through the forced dispatch (checks serves on q)."""
    return backends.select(op, None, q, "numba_cuda")


def state_to(state, conv):
    return dataclasses.replace(state, tensors={n: conv(t) for n, t in state.tensors.items()})


def ek_tol(op, q, k, dtype):
    t = TOL[dtype] + 2 * EPS[dtype] * float(np.abs(q).max(initial=0) + np.abs(k).max(initial=0))
    return t, (t if op == "log" else 0.0)


def ek_inputs(seed, batch, T, dk, dv, scale, Tk=None, dtype=np.float64):
    rng = np.random.default_rng(seed)
    Tk = T if Tk is None else Tk
    return [x.astype(dtype) for x in (rng.standard_normal(batch + (T, dk)) * scale,
                                      rng.standard_normal(batch + (Tk, dk)) * scale,
                                      rng.standard_normal(batch + (Tk, dv)))]


def ll_inputs(seed, batch, T, dk, dv, gated, L=None, dtype=np.float64):
    """q, k, v, log_decay, (beta,) level_weights; unit keys and beta in (0, 1) when gated."""
    rng = np.random.default_rng(seed)
    L = lsattn.num_levels(max(T, 1)) if L is None else L
    q, k = rng.standard_normal(batch + (T, dk)), rng.standard_normal(batch + (T, dk))
    if gated:
        k = k / np.linalg.norm(k, axis=-1, keepdims=True)
    args = [q, k, rng.standard_normal(batch + (T, dv)), -rng.uniform(0.0, 0.5, batch + (T,))]
    if gated:
        args.append(rng.uniform(0.0, 1.0, batch + (T,)))
    args.append(rng.uniform(-1.0, 2.0, batch + (T, L)))
    return [x.astype(dtype) for x in args]


def run_ek(op, arrays, causal=True, state=None, return_state=False):
    d = [dev(x) for x in arrays]
    return impl(EK_OPS[op], d[0])(*d, causal, state, return_state)


def run_ll(op, arrays, state=None, return_state=False):
    d = [dev(x) for x in arrays]
    return impl(LL_OPS[op], d[0])(*d, 64, state, return_state)


# ---- Numba device arrays (simulator and GPU) ----------------------------------------------------

CASES = [((), 1, 1, 1), ((2,), 5, 3, 4), ((2, 1), 12, 4, 3), ((1,), 9, 2, 1)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("op", ["exp", "log"])
@pytest.mark.parametrize("batch,T,dk,dv", CASES)
def test_exp_kernel_matches_reference(op, causal, dtype, batch, T, dk, dv):
    scale = 30.0 if dtype == "float32" else 3.0  # large magnitudes: only max-shifting keeps them finite
    arrays = ek_inputs(T * 7 + dk, batch, T, dk, dv, scale, Tk=None if causal else T + 2, dtype=dtype)
    out, state = run_ek(op, arrays, causal)
    assert state is None and out.dtype == np.dtype(dtype) and tuple(out.shape) == batch + (T, dv)
    rtol, atol = ek_tol(op, *arrays[:2], dtype)
    assert_close(host(out), EK_REF[op](*(x.astype(np.float64) for x in arrays), causal=causal), rtol, atol=atol)


def test_exp_kernel_huge_magnitudes_float32():
    q, k, v = ek_inputs(1, (2,), 10, 3, 2, 1e3, dtype=np.float32)
    rtol, _ = ek_tol("exp", q, k, "float32")
    out, _ = run_ek("exp", [q, k, v])
    assert_close(host(out), ref.exp_kernel_attention(*(x.astype(np.float64) for x in (q, k, v))), rtol)


def test_log_v_minus_inf_is_zero_value():
    q, k, lv = ek_inputs(0, (), 5, 3, 2, 1.0)
    lv[:, 0] = -np.inf  # a column of zero values -> log y = -inf everywhere
    lv[2, 1] = -np.inf
    out, _ = run_ek("log", [q, k, lv])
    out = host(out)
    assert_close(out, ref.log_attention(q, k, lv), TOL["float64"], atol=TOL["float64"])
    assert np.isneginf(out[:, 0]).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op", ["mamba2", "gated"])
@pytest.mark.parametrize("batch,T,dk,dv", CASES)
def test_loglinear_matches_reference(op, dtype, batch, T, dk, dv):
    arrays = ll_inputs(T * 5 + dv, batch, T, dk, dv, op == "gated", L=lsattn.num_levels(T) + 1, dtype=dtype)
    out, state = run_ll(op, arrays)
    assert state is None and out.dtype == np.dtype(dtype) and tuple(out.shape) == batch + (T, dv)
    assert_close(host(out), LL_REF[op](*(x.astype(np.float64) for x in arrays)), LL_TOL[op, dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("op", ["mamba2", "gated"])
def test_loglinear_hard_resets_and_strong_decays(op, dtype):
    """docs/api.md, "Non-finite inputs and strong decays": log_decay = -inf is a hard reset (finite
    outputs, nothing before it counts) and decays of -1e3 .. -1e6 among weak ones keep the bounds."""
    T = 20
    arrays = ll_inputs(7, (2,), T, 3, 2, op == "gated", dtype=np.float64)
    arrays[3] = -0.05 * np.random.default_rng(8).random((2, T))
    arrays[3][:, 6], arrays[3][:, 11], arrays[3][0, 15] = -np.inf, -1e6, -1e3
    arrays = [x.astype(dtype) for x in arrays]
    out = host(run_ll(op, arrays)[0])
    assert np.isfinite(out).all()
    assert_close(out, LL_REF[op](*(x.astype(np.float64) for x in arrays)), LL_TOL[op, dtype])


@pytest.mark.parametrize("threads,columns", [(1, 1), (4, 1), (4, 4), (8, 2), (2, 2)])
def test_block_shapes(monkeypatch, threads, columns):
    """Every split of a block into column and row groups computes the same function."""
    monkeypatch.setattr(nc, "THREADS", threads)
    monkeypatch.setattr(nc, "COLUMNS", columns)
    for op in ("exp", "log"):
        arrays = ek_inputs(3, (2,), 6, 3, 3, 2.0)
        rtol, atol = ek_tol(op, *arrays[:2], "float64")
        assert_close(host(run_ek(op, arrays)[0]), EK_REF[op](*arrays), rtol, atol=atol, what=op)
    for op in ("mamba2", "gated"):
        arrays = ll_inputs(4, (2,), 6, 3, 3, op == "gated")
        assert_close(host(run_ll(op, arrays)[0]), LL_REF[op](*arrays), LL_TOL[op, "float64"], what=op)


@pytest.mark.parametrize("op", ["mamba2", "gated"])
def test_loglinear_levels_in_global_memory(monkeypatch, op):
    """Levels too large for shared memory are scanned in the returned state's memory instead."""
    monkeypatch.setattr(nc, "SHARED_BYTES", 0)
    arrays = ll_inputs(9, (2,), 9, 3, 3, op == "gated")
    out, state = run_ll(op, arrays, None, True)
    assert_close(host(out), LL_REF[op](*arrays), LL_TOL[op, "float64"])
    _, whole = getattr(lsattn, LL_OPS[op])(*arrays, return_state=True, backend="array_api")
    np.testing.assert_allclose(host(state.tensors["levels"]), whole.tensors["levels"], rtol=1e-12, atol=1e-14)
    out2, _ = run_ll(op, arrays)  # no state asked: a scratch buffer
    np.testing.assert_array_equal(host(out2), host(out))


def _stream(kind, op, arrays, cuts, names):
    """Run the pieces [cuts[i], cuts[i+1]) on the named backends, converting the state between
    Numba device arrays (numba_cuda) and NumPy (array_api). Returns (outputs, final state)."""
    outs, state = [], None
    for (a, b), name in zip(zip(cuts[:-1], cuts[1:]), names):
        part = [x[..., a:b, :] if x.ndim == arrays[0].ndim else x[..., a:b] for x in arrays]
        if name == "numba_cuda":
            st = None if state is None else state_to(state, dev)
            o, state = (run_ek(op, part, True, st, True) if kind == "ek" else run_ll(op, part, st, True))
            outs.append(host(o))
            state = state_to(state, host)
        else:
            f = getattr(lsattn, EK_OPS[op] if kind == "ek" else LL_OPS[op])
            o, state = f(*part, state=state, return_state=True, backend="array_api")
            outs.append(o)
    return np.concatenate(outs, axis=-2), state


@pytest.mark.parametrize("op", ["exp", "log"])
def test_exp_kernel_stream_handed_between_backends(op):
    q, k, v = ek_inputs(5, (2,), 11, 3, 4, 2.0)
    cuts = [0, 1, 2, 6, 7, 11]  # decode steps (T = 1) and longer pieces
    names = ["numba_cuda", "array_api", "numba_cuda", "numba_cuda", "array_api"]
    out, state = _stream("ek", op, [q, k, v], cuts, names)
    rtol, atol = ek_tol(op, q, k, "float64")
    assert_close(out, EK_REF[op](q, k, v), rtol, atol=atol)
    assert state.offset == 11
    _, whole = getattr(lsattn, EK_OPS[op])(q, k, v, return_state=True, backend="array_api")
    for name in whole.tensors:
        np.testing.assert_allclose(state.tensors[name], whole.tensors[name], rtol=1e-12, atol=1e-300, err_msg=name)


@pytest.mark.parametrize("op", ["mamba2", "gated"])
def test_loglinear_stream_handed_between_backends(op):
    arrays = ll_inputs(6, (2,), 12, 3, 2, op == "gated")
    cuts = [0, 1, 3, 4, 9, 12]
    names = ["numba_cuda", "array_api", "numba_cuda", "array_api", "numba_cuda"]
    out, state = _stream("ll", op, arrays, cuts, names)
    assert_close(out, LL_REF[op](*arrays), LL_TOL[op, "float64"])
    assert state.offset == 12 and state.tensors["levels"].shape == (2, 4, 3, 2)
    _, whole = getattr(lsattn, LL_OPS[op])(*arrays, return_state=True, backend="array_api")
    np.testing.assert_allclose(state.tensors["levels"], whole.tensors["levels"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("op", ["exp", "log"])
def test_exp_kernel_empty_call(op):
    q, k, v = ek_inputs(2, (2,), 0, 3, 2, 1.0)
    out, state = run_ek(op, [q, k, v], True, None, True)
    assert tuple(out.shape) == (2, 0, 2) and state.offset == 0 and state.op == EK_OPS[op]
    _, fresh = getattr(lsattn, EK_OPS[op])(q, k, v, return_state=True, backend="array_api")
    for name in fresh.tensors:
        np.testing.assert_array_equal(host(state.tensors[name]), fresh.tensors[name], err_msg=name)
    # an empty call continues a stream unchanged
    q, k, v = ek_inputs(3, (2,), 4, 3, 2, 1.0)
    _, s1 = run_ek(op, [q, k, v], True, None, True)
    _, s2 = run_ek(op, [x[:, :0] for x in (q, k, v)], True, s1, True)
    assert s2.offset == 4
    for name in s1.tensors:
        np.testing.assert_array_equal(host(s2.tensors[name]), host(s1.tensors[name]), err_msg=name)


@pytest.mark.parametrize("op", ["mamba2", "gated"])
def test_loglinear_empty_call(op):
    arrays = ll_inputs(1, (2,), 0, 3, 2, op == "gated", L=1)
    out, state = run_ll(op, arrays, None, True)
    assert tuple(out.shape) == (2, 0, 2) and state.offset == 0 and tuple(state.tensors["levels"].shape) == (2, 0, 3, 2)


def test_inputs_are_not_modified():
    arrays = ll_inputs(8, (2,), 5, 3, 2, True, L=lsattn.num_levels(10))  # levels for a second call at offset 5
    d = [dev(x) for x in arrays]
    _, state = impl("loglinear_gated_delta", d[0])(*d, 64, None, True)
    levels = host(state.tensors["levels"])
    impl("loglinear_gated_delta", d[0])(*d, 64, state, True)
    for x, y in zip(arrays, d):
        np.testing.assert_array_equal(host(y), x)
    np.testing.assert_array_equal(host(state.tensors["levels"]), levels)
    e = [dev(x) for x in ek_inputs(8, (2,), 5, 3, 2, 1.0)]
    _, s = impl("log_attention", e[0])(*e, True, None, True)
    before = {n: host(t) for n, t in s.tensors.items()}
    impl("log_attention", e[0])(*e, True, s, True)
    for n, t in s.tensors.items():
        np.testing.assert_array_equal(host(t), before[n])


# ---- dispatch --------------------------------------------------------------------------------------

def test_serves():
    serves = backends.get("numba_cuda").serves
    assert serves(None, dev(np.zeros((2, 3), np.float32))) is None
    assert serves(None, dev(np.zeros((2, 3), np.float16))) is None
    assert "int64" in serves(None, dev(np.zeros((2, 3), np.int64)))
    assert "not a CUDA array" in serves(np, np.zeros((2, 3)))
    assert "d_k = 2000" in serves(None, dev(np.zeros((1, 2000), np.float32)))
    assert backends.get("numba_cuda").status() == (True, "ok")


def test_forced_numba_cuda_on_numpy_is_an_error():
    q = np.zeros((3, 2))
    with pytest.raises(ValueError, match="'numba_cuda' cannot compute exp_kernel_attention.*not a CUDA array"):
        lsattn.exp_kernel_attention(q, q, q, backend="numba_cuda")
    with pytest.raises(ValueError, match="'numba_cuda' does not implement loglinear_log_attention"):
        lsattn.loglinear_log_attention(q, q, q, np.zeros((3, 3)), backend="numba_cuda")


def test_unavailable_numba_cuda_is_a_clear_error(monkeypatch):
    b = backends.get("numba_cuda")
    monkeypatch.setattr(b, "_status", (False, "numba.cuda sees no CUDA device"))
    q = dev(np.zeros((3, 2)))
    with pytest.raises(RuntimeError, match="'numba_cuda' is not available here: numba.cuda sees no CUDA device"):
        backends.select("exp_kernel_attention", None, q, "numba_cuda")


def test_numpy_is_not_sent_to_numba_cuda(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    for op in nc.OPS:
        assert backends.select(op, np, np.zeros((2, 3))).__module__ != nc.__name__


# ---- real GPU: CuPy and torch through the public API ---------------------------------------------

GPU = pytest.mark.gpu


def _torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    return torch


@GPU
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_torch_public_api_all_ops(dtype):
    torch = _torch()
    T = 300
    for op in ("exp", "log"):
        for causal in (True, False):
            arrays = ek_inputs(11, (2, 3), T, 64, 48, 2.0, Tk=None if causal else T + 5, dtype=dtype)
            t = [torch.as_tensor(x, device="cuda") for x in arrays]
            out = getattr(lsattn, EK_OPS[op])(*t, causal=causal, backend="numba_cuda")
            assert isinstance(out, torch.Tensor) and out.is_cuda and out.dtype == t[0].dtype
            rtol, atol = ek_tol(op, *arrays[:2], dtype)
            assert_close(out, EK_REF[op](*(x.astype(np.float64) for x in arrays), causal=causal), rtol, atol=atol,
                         what=f"{op} causal={causal}")
    for op in ("mamba2", "gated"):
        arrays = ll_inputs(12, (2, 3), T, 64, 48, op == "gated", dtype=dtype)
        t = [torch.as_tensor(x, device="cuda") for x in arrays]
        out, state = getattr(lsattn, LL_OPS[op])(*t, return_state=True, backend="numba_cuda")
        assert isinstance(out, torch.Tensor) and isinstance(state.tensors["levels"], torch.Tensor)
        assert_close(out, LL_REF[op](*(x.astype(np.float64) for x in arrays)), LL_TOL[op, dtype], what=op)


@GPU
def test_gpu_long_float32():
    """T = 4096, d = 64, float32: within the promised bounds against the float64 reference."""
    torch = _torch()
    T = 4096
    arrays = ek_inputs(21, (1,), T, 64, 64, 1.0, dtype=np.float32)
    for op in ("exp", "log"):
        out = getattr(lsattn, EK_OPS[op])(*(torch.as_tensor(x, device="cuda") for x in arrays), backend="numba_cuda")
        rtol, atol = ek_tol(op, *arrays[:2], "float32")
        assert_close(out, EK_REF[op](*(x.astype(np.float64) for x in arrays)), rtol, atol=atol, what=op)
    for op in ("mamba2", "gated"):
        arrays = ll_inputs(22, (1,), T, 64, 64, op == "gated", dtype=np.float32)
        out = getattr(lsattn, LL_OPS[op])(*(torch.as_tensor(x, device="cuda") for x in arrays), backend="numba_cuda")
        assert_close(out, LL_REF[op](*(x.astype(np.float64) for x in arrays)), LL_TOL[op, "float32"], what=op)


@GPU
def test_gpu_cupy_in_cupy_out_and_streams_across_backends():
    cp = pytest.importorskip("cupy")
    for op, names in (("exp", ["numba_cuda", "cupy", "array_api", "numba_cuda"]),
                      ("log", ["numba_cuda", "array_api", "numba_cuda", "numba_cuda"])):
        q, k, v = ek_inputs(31, (2,), 200, 16, 24, 2.0)
        cuts = [0, 77, 78, 150, 200]
        outs, state = [], None
        f = getattr(lsattn, EK_OPS[op])
        for (a, b), name in zip(zip(cuts[:-1], cuts[1:]), names):
            o, state = f(*(cp.asarray(x[:, a:b]) for x in (q, k, v)), state=state, return_state=True, backend=name)
            assert isinstance(o, cp.ndarray) and all(isinstance(t, cp.ndarray) for t in state.tensors.values())
            outs.append(cp.asnumpy(o))
        rtol, atol = ek_tol(op, q, k, "float64")
        assert_close(np.concatenate(outs, axis=1), EK_REF[op](q, k, v), rtol, atol=atol, what=op)
    for op, names in (("mamba2", ["numba_cuda", "cupy", "array_api", "numba_cuda"]),
                      ("gated", ["numba_cuda", "array_api", "numba_cuda", "array_api"])):
        arrays = ll_inputs(32, (2,), 200, 16, 24, op == "gated")
        cuts = [0, 77, 78, 150, 200]
        outs, state = [], None
        f = getattr(lsattn, LL_OPS[op])
        for (a, b), name in zip(zip(cuts[:-1], cuts[1:]), names):
            part = [cp.asarray(x[:, a:b]) for x in arrays]
            o, state = f(*part, state=state, return_state=True, backend=name)
            assert isinstance(o, cp.ndarray)
            outs.append(cp.asnumpy(o))
        assert_close(np.concatenate(outs, axis=1), LL_REF[op](*arrays), LL_TOL[op, "float64"], what=op)


@GPU
def test_gpu_automatic_choice_and_declines():
    torch = _torch()
    q = torch.zeros(2, 5, 3, device="cuda")
    assert backends.select("log_attention", None, q).__module__ == nc.__name__
    assert backends.select("loglinear_gated_delta", None, q).__module__ == nc.__name__
    assert backends.resolve("loglinear_attention", None, q).name == "cupy"  # the faster kernels first
    qg = q.clone().requires_grad_(True)
    assert backends.resolve("log_attention", None, qg, grad=True).name == "array_api"
    assert "not a CUDA array" in nc.serves(None, q.cpu())
    half = torch.randn(2, 9, 4, device="cuda", dtype=torch.float16)
    out = lsattn.log_attention(half, half, half, backend="numba_cuda")
    assert out.dtype == torch.float16
    want = ref.log_attention(*(to_numpy(half.float()),) * 3)
    assert_close(out, want, 1e-3, atol=1e-3)


@GPU
def test_gpu_non_contiguous_torch_inputs():
    torch = _torch()
    arrays = ll_inputs(41, (3, 2), 33, 8, 5, True)
    t = [torch.as_tensor(x, device="cuda") for x in arrays]
    # the same values through transposed storage (batch axes swapped, then swapped back as a view)
    tt = [x.transpose(0, 1).contiguous().transpose(0, 1) for x in t]
    assert not tt[0].is_contiguous()
    out = lsattn.loglinear_gated_delta(*tt, backend="numba_cuda")
    assert_close(out, ref.loglinear_gated_delta(*arrays), LL_TOL["gated", "float64"])
    q, k, v = (torch.as_tensor(x, device="cuda") for x in ek_inputs(42, (2,), 40, 6, 7, 1.0))
    out = lsattn.exp_kernel_attention(q[:, ::2], k[:, ::2], v[:, ::2], backend="numba_cuda")
    assert_close(out, ref.exp_kernel_attention(*(to_numpy(x[:, ::2]) for x in (q, k, v))), 1e-12)


if not SIM:
    try:
        from hypothesis import given, strategies as st
        from strategies import batch_shapes, seeds, split_points
    except ImportError:  # pragma: no cover
        given = None

    if given is not None:
        @GPU
        @given(batch=batch_shapes, T=st.integers(1, 300), dk=st.integers(1, 70), dv=st.integers(1, 70),
               dtype=st.sampled_from(["float32", "float64"]), data=st.data(), seed=seeds)
        def test_gpu_property_streams_match_reference(batch, T, dk, dv, dtype, data, seed):
            """Random shapes and cuts, every op, pieces on numba_cuda or array_api (torch CUDA)."""
            torch = _torch()
            cuts = [0] + data.draw(split_points(T)) + [T]
            names = data.draw(st.lists(st.sampled_from(["numba_cuda", "array_api"]), min_size=len(cuts) - 1,
                                       max_size=len(cuts) - 1))
            for op in ("exp", "log", "mamba2", "gated"):
                ek = op in EK_OPS
                arrays = (ek_inputs(seed, batch, T, dk, dv, 2.0, dtype=dtype) if ek
                          else ll_inputs(seed, batch, T, dk, dv, op == "gated", dtype=dtype))
                f = getattr(lsattn, EK_OPS[op] if ek else LL_OPS[op])
                outs, state = [], None
                for (a, b), name in zip(zip(cuts[:-1], cuts[1:]), names):
                    part = [torch.as_tensor(x[..., a:b, :] if x.ndim == len(batch) + 2 else x[..., a:b],
                                            device="cuda") for x in arrays]
                    o, state = f(*part, state=state, return_state=True, backend=name)
                    outs.append(to_numpy(o))
                want = (EK_REF if ek else LL_REF)[op](*(x.astype(np.float64) for x in arrays))
                if ek:
                    rtol, atol = ek_tol(op, *arrays[:2], dtype)
                else:
                    rtol, atol = LL_TOL[op, dtype], 0.0
                assert_close(np.concatenate(outs, axis=-2), want, rtol, atol=atol, what=f"{op} {names}")
