"""GPU arrays just work: every operator called without ``backend=`` on CUDA torch tensors, CuPy
arrays and concrete JAX GPU arrays returns the right answer from the fastest backend that
implements it; half precision reaches the kernels; inputs that require grad get gradients.

All tests are GPU-marked (skipped without a CUDA device). Bounds (max |out - ref| / max |ref|
against ``lsattn.reference`` in float64 on the inputs as rounded to the input dtype):
float32 1e-5 (exp-kernel operators: plus 2 eps (max|q| + max|k|), as everywhere), float16 2e-3
(the kernels compute in float32; the output is rounded to float16), bfloat16 1e-2 at the
benchmark size B=2, H=16 (here B x H = 8 for log-linear and 1 for exp-kernel attention, to bound
the reference's memory), T=8192, d=64.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import lsattn
from lsattn import backends
from lsattn import reference as ref

from helpers import assert_close

pytestmark = pytest.mark.gpu
# JAX takes 75% of the GPU at its first use unless told not to; the references here need room
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

F32, F16, BF16 = 1e-5, 2e-3, 1e-2
EPS32 = float(np.finfo(np.float32).eps)
OPS = ["log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta",
       "loglinear_log_attention"]
#: the backend the automatic choice must land on for CUDA arrays (numba_cuda when its probe ran)
FASTEST = {"loglinear_attention": "cupy", "exp_kernel_attention": "cupy", "log_attention": "cupy",
           "loglinear_gated_delta": "cupy", "loglinear_log_attention": "cupy"}


def _torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    return torch


def _inputs(op, T=100, batch=(2, 3), d=16, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal(batch + (T, d)) for _ in range(3))
    L = lsattn.num_levels(T)
    a = -rng.random(batch + (T,))
    if op == "loglinear_attention":
        return [q, k, v, a, rng.random(batch + (T, L)) + 0.5], {}
    if op == "loglinear_gated_delta":
        k = k / np.linalg.norm(k, axis=-1, keepdims=True)
        return [q, k, v, a, rng.random(batch + (T,)), rng.random(batch + (T, L)) + 0.5], {}
    if op == "loglinear_log_attention":
        return [q, k, v, -rng.random(batch + (T, L))], {"log_decay": a}
    return [q, k, v], {}


def _bound(op, args, base):
    if op in ("log_attention", "exp_kernel_attention"):
        return base + 2 * EPS32 * float(np.abs(args[0]).max() + np.abs(args[1]).max())
    return base


def _expected(op):
    b = FASTEST.get(op)
    if b is None:
        nc = backends.get("numba_cuda")
        b = "numba_cuda" if (op in nc.ops and nc.status()[0]) else "array_api"
    return b


@pytest.mark.parametrize("op", OPS)
def test_torch_cuda_automatic_choice_is_fastest_and_exact(op):
    torch = _torch()
    args, kw = _inputs(op)
    t = [torch.tensor(x, dtype=torch.float32, device="cuda") for x in args]
    tkw = {n: torch.tensor(x, dtype=torch.float32, device="cuda") for n, x in kw.items()}
    from array_api_compat import torch as xt

    assert backends.resolve(op, xt, t[0]).name == _expected(op)
    out = getattr(lsattn, op)(*t, **tkw)
    assert out.is_cuda and out.dtype == torch.float32
    assert_close(out.cpu().numpy(), getattr(ref, op)(*args, **kw), _bound(op, args, F32), what=op)
    # a stream: prefill with return_state, then continue
    o1, st = getattr(lsattn, op)(*[x[..., :60, :] if x.ndim == 4 else x[..., :60] for x in t],
                                 **{n: x[..., :60] for n, x in tkw.items()}, return_state=True)
    o2 = getattr(lsattn, op)(*[x[..., 60:, :] if x.ndim == 4 else x[..., 60:] for x in t],
                             **{n: x[..., 60:] for n, x in tkw.items()}, state=st)
    got = torch.cat([o1, o2], dim=-2).cpu().numpy()
    assert_close(got, getattr(ref, op)(*args, **kw), _bound(op, args, F32), what=f"{op} stream")


@pytest.mark.parametrize("op", OPS)
def test_cupy_and_jax_gpu_arrays(op):
    cp = pytest.importorskip("cupy")
    args, kw = _inputs(op, T=70, seed=1)
    c = [cp.asarray(x, dtype=cp.float32) for x in args]
    ckw = {n: cp.asarray(x, dtype=cp.float32) for n, x in kw.items()}
    assert backends.resolve(op, cp, c[0]).name == _expected(op)
    out = getattr(lsattn, op)(*c, **ckw)
    assert isinstance(out, cp.ndarray)
    assert_close(cp.asnumpy(out), getattr(ref, op)(*args, **kw), _bound(op, args, F32), what=f"{op} cupy")
    jax = pytest.importorskip("jax")
    if not any(d.platform == "gpu" for d in jax.devices()):
        return
    import jax.numpy as jnp

    j = [jnp.asarray(x, dtype=jnp.float32) for x in args]
    jkw = {n: jnp.asarray(x, dtype=jnp.float32) for n, x in kw.items()}
    out = getattr(lsattn, op)(*j, **jkw)
    assert_close(np.asarray(out), getattr(ref, op)(*args, **kw), _bound(op, args, F32), what=f"{op} jax")
    # under jit the arrays are tracers: the array-API path, compiled by XLA
    out = jax.jit(lambda *xs: getattr(lsattn, op)(*xs[:len(j)], **dict(zip(jkw, xs[len(j):]))))(*j, *jkw.values())
    assert_close(np.asarray(out), getattr(ref, op)(*args, **kw), _bound(op, args, F32), what=f"{op} jax.jit")


def _half_case(torch, op, dtype, T, batch, seed):
    args, _ = _inputs(op, T=T, batch=batch, d=64, seed=seed)
    args[0] *= 64 ** -0.5
    args[1] *= 64 ** -0.5
    t = [torch.tensor(x, device="cuda").to(dtype) for x in args]
    return t, [x.double().cpu().numpy() for x in t]


@pytest.mark.parametrize("op", OPS)
def test_zero_size_batch_on_the_gpu(op):
    """A batch axis of size 0 (no sequence at all) on CUDA torch tensors and CuPy arrays: empty outputs
    and states on the device, streams continue, no kernel launched over zero blocks (it faulted with
    CUDA_ERROR_ILLEGAL_ADDRESS before the prologue routed such calls to the array-API twin)."""
    torch = _torch()
    args, kw = _inputs(op, T=20, batch=(3, 0))
    for to in (lambda x: torch.tensor(x, dtype=torch.float32, device="cuda"), _cupy_or_skip()):
        dev = [to(x) for x in args]
        dkw = {n: to(x) for n, x in kw.items()}
        out, st = getattr(lsattn, op)(*dev, **dkw, return_state=True)
        assert tuple(out.shape) == (3, 0, 20, args[2].shape[-1]) and type(out) is type(dev[0])
        # continue with 12 tokens: positions up to 32 need no more levels than the first call's
        out2 = getattr(lsattn, op)(*(x[:, :, :12] for x in dev), **{n: x[:, :, :12] for n, x in dkw.items()}, state=st)
        assert tuple(out2.shape) == (3, 0, 12, args[2].shape[-1])
        assert all(0 in tuple(t.shape) for t in st.tensors.values())


def _cupy_or_skip():
    cp = pytest.importorskip("cupy")
    return lambda x: cp.asarray(x, dtype=cp.float32)


@pytest.mark.parametrize("op", ["loglinear_attention", "exp_kernel_attention"])
def test_bfloat16_reaches_the_kernels_at_benchmark_size(op):
    """bfloat16 in, bfloat16 out, within 1e-2 of the float64 reference at T = 8192."""
    torch = _torch()
    try:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    except ImportError:
        pass
    # the exp-kernel reference holds (T, T, d_k) float64 per sequence: 34 GB for one at T = 8192
    t, back = _half_case(torch, op, torch.bfloat16, 8192, (2, 4) if op == "loglinear_attention" else (1, 1), 2)
    from array_api_compat import torch as xt

    b = backends.resolve(op, xt, t[0])
    assert b.name == "cupy" and op in b.half_ops
    out = getattr(lsattn, op)(*t)
    assert out.dtype == torch.bfloat16
    want = getattr(ref, op)(*(torch.tensor(x, device="cuda") for x in back)).cpu().numpy()
    # (the reference's temporaries reach ~120 GB of torch's cache on an H200: given back, not kept for the rest of the
    # run, beside which other GPU test processes may run)
    torch.cuda.empty_cache()
    assert_close(out.double().cpu().numpy(), want, BF16, what=f"{op} bf16")


@pytest.mark.parametrize("op", ["loglinear_attention", "exp_kernel_attention", "log_attention"])
def test_float16_torch_and_cupy_and_streams(op):
    torch = _torch()
    cp = pytest.importorskip("cupy")
    t, back = _half_case(torch, op, torch.float16, 300, (2, 2), 3)
    want = getattr(ref, op)(*back)
    out = getattr(lsattn, op)(*t)
    assert out.dtype == torch.float16
    assert_close(out.double().cpu().numpy(), want, F16, what=f"{op} f16 torch")
    c = [cp.asarray(x, dtype=cp.float16) for x in back]
    out = getattr(lsattn, op)(*c)
    assert out.dtype == cp.float16
    assert_close(cp.asnumpy(out).astype(np.float64), want, F16, what=f"{op} f16 cupy")
    # half-precision stream: fp32 state, a decoding step, then a chunk; bf16 too
    for dtype, tol in ((torch.float16, F16), (torch.bfloat16, 2e-2)):
        t, back = _half_case(torch, op, dtype, 300, (2, 2), 4)
        cuts = [0, 131, 132, 300]
        outs, st = [], None
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            part = [x[..., lo:hi, :] if x.ndim == 4 else x[..., lo:hi] for x in t]
            o, st = getattr(lsattn, op)(*part, state=st, return_state=True)
            assert o.dtype == dtype
            outs.append(o)
        assert st.dtype == torch.float32
        got = torch.cat(outs, dim=-2).double().cpu().numpy()
        assert_close(got, getattr(ref, op)(*back), tol, what=f"{op} {dtype} stream")


@pytest.mark.parametrize("op", OPS)
def test_inputs_that_require_grad_get_gradients(op):
    """Tensors that require grad go to a backend with a backward (here the array-API path)."""
    torch = _torch()
    args, kw = _inputs(op, T=40, seed=5)
    t = [torch.tensor(x, device="cuda", requires_grad=(i == len(args) - 1)) for i, x in enumerate(args)]
    tkw = {n: torch.tensor(x, device="cuda") for n, x in kw.items()}
    out = getattr(lsattn, op)(*t, **tkw)
    out.square().sum().backward()
    r = [torch.tensor(x, device="cuda", requires_grad=(i == len(args) - 1)) for i, x in enumerate(args)]
    getattr(ref, op)(*r, **tkw).square().sum().backward()
    assert_close(t[-1].grad.cpu().numpy(), r[-1].grad.cpu().numpy(), 1e-9, what=f"{op} grad")


def test_numba_cuda_probe_tells_the_truth():
    """Available means a kernel compiled and ran; otherwise the reason says why, and the automatic
    choice never lands on it."""
    torch = _torch()
    ok, why = backends.get("numba_cuda").status()
    q = torch.zeros(2, 5, 200, device="cuda")  # d_k beyond cupy's tiles: cupy declines, numba_cuda serves
    from array_api_compat import torch as xt

    chosen = backends.resolve("loglinear_gated_delta", xt, q).name
    if ok:
        assert chosen == "numba_cuda"
    else:
        assert "cannot compile and run" in why or "no CUDA device" in why
        assert chosen == "array_api"
