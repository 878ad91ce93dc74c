"""Dask arrays of CuPy blocks (GPU-marked: skipped without CUDA and CuPy): every block computed by
the cupy kernels on its worker's GPU, equal to one in-memory call; states hold CuPy arrays and a
stream moves between Dask and plain CuPy / torch calls; two GPUs equal one (skipped unless 2)."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_close
from test_dask import OPS, RTOL, call, make_inputs

pytestmark = pytest.mark.gpu
da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:
        pytest.skip(f"no CUDA device ({exc})")
    return cupy


def cupy_dask(cp, x, tchunks, nb=1):
    """NumPy ``x`` (batch axes ``nb``, then T) as a Dask array of CuPy blocks cut at ``tchunks``."""
    chunks = x.shape[:nb] + (tuple(tchunks),) + x.shape[nb + 1 :]
    return da.from_array(x, chunks=chunks).map_blocks(cp.asarray, dtype=x.dtype, meta=cp.empty((0,) * x.ndim, dtype=x.dtype))


def host(x):
    return x.get() if hasattr(x, "get") else np.asarray(x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", OPS)
def test_cupy_blocks_one_gpu(cp, op, dtype):
    """Uneven blocks of CuPy arrays: output and state are CuPy, equal to one NumPy float64 call."""
    args = make_inputs(op, (2,), 300, 16, 8, 3, dtype=dtype)
    # the reference on the array-API path: the numba default compiles for minutes on a fresh GPU machine (sessions
    # 15-17 saw these tests cut there, in Numba's compiler)
    ref, st_ref = call(op, [x.astype(np.float64) for x in args], return_state=True, backend="array_api")
    dargs = [cupy_dask(cp, x, (100, 37, 1, 162)) for x in args]
    with dask.config.set(scheduler="threads"):
        out, st = call(op, dargs, return_state=True)
        assert isinstance(out._meta, cp.ndarray)
        got, tensors = dask.compute(out, st.tensors)
    assert isinstance(got, cp.ndarray) and all(isinstance(t, cp.ndarray) for t in tensors.values())
    assert_close(host(got), ref, RTOL[dtype], what=op)
    for name, t in tensors.items():
        if name not in ("m", "n"):
            assert_close(host(t), np.asarray(st_ref.tensors[name]), RTOL[dtype], atol=1e-300, what=f"state {name}")


@pytest.mark.parametrize("op", ["exp_kernel_attention", "loglinear_attention"])
def test_stream_dask_cupy_torch_and_back(cp, op):
    """Dask (CuPy blocks) -> plain CuPy call -> torch CUDA call -> Dask: one stream, equal to one call."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    import dataclasses

    args = make_inputs(op, (2,), 240, 16, 8, 4, dtype="float32")
    ref = call(op, [x.astype(np.float64) for x in args], backend="array_api")  # (as above)
    cut = lambda x, a, b: x[:, a:b]
    outs = []
    with dask.config.set(scheduler="threads"):
        o, st = call(op, [cupy_dask(cp, cut(x, 0, 60), (25, 35)) for x in args], return_state=True)
        o, t = dask.compute(o, st.tensors)
        outs.append(host(o))
        st = dataclasses.replace(st, tensors=t)  # CuPy tensors
        o, st = call(op, [cp.asarray(cut(x, 60, 120)) for x in args], state=st, return_state=True)
        outs.append(host(o))
        st = st.to(torch, "cuda")
        o, st = call(op, [torch.as_tensor(cut(x, 120, 180), device="cuda") for x in args], state=st, return_state=True)
        outs.append(o.cpu().numpy())
        st = st.to(cp)
        o = call(op, [cupy_dask(cp, cut(x, 180, 240), (7, 53)) for x in args], state=st)
        outs.append(host(o.compute()))
    assert_close(np.concatenate(outs, axis=-2), ref, RTOL["float32"], what=op)


@pytest.mark.parametrize("op", ["exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta"])
def test_two_gpus_equal_one(cp, op):
    """One worker per GPU (``local_gpu_cluster``): both GPUs compute blocks, the result equals one
    single-GPU CuPy call on the whole sequence."""
    distributed = pytest.importorskip("distributed")
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs 2 GPUs")
    from lsattn.backends.dask_backend import local_gpu_cluster

    args = make_inputs(op, (2,), 4096, 32, 32, 5, dtype="float32")
    one = host(call(op, [cp.asarray(x) for x in args]))  # one GPU holds the whole sequence
    cluster, which = local_gpu_cluster(2)
    with cluster, distributed.Client(cluster) as client, distributed.get_task_stream(client) as ts:
        out = call(op, [cupy_dask(cp, x, (512,) * 8) for x in args])
        got = client.compute(out, sync=True)
        devices = client.run(lambda: __import__("cupy").cuda.runtime.getDeviceProperties(0)["pciBusID"])
    workers = {t["worker"] for t in ts.data if str(t["key"]).startswith(("_output_task", "('_output_task"))}
    assert len(workers) == 2, f"{which}: outputs computed by {workers}"
    assert len(set(devices.values())) == 2, f"{which}: workers share a GPU: {devices}"
    assert_close(host(got), one, RTOL["float32"], what=f"{op} on 2 GPUs vs 1")
