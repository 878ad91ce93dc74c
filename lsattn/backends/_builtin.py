"""The built-in backends. Specialised backends register themselves here as they land."""
from __future__ import annotations

from . import Backend, register

#: operator -> "module:function" of its backend-neutral (array API) implementation
ARRAY_API_OPS = {
    "log_attention": "lsattn.exp_kernel:_log_forward",
    "exp_kernel_attention": "lsattn.exp_kernel:_exp_forward",
    "loglinear_attention": "lsattn.loglinear:_forward",
    "loglinear_gated_delta": "lsattn.gated_delta:_forward",
    "loglinear_log_attention": "lsattn.hierarchical:_forward",
}

register(
    Backend(
        name="array_api",
        description="backend-neutral algorithms on any array-API namespace (NumPy, CuPy, torch, JAX, ...)",
        ops=ARRAY_API_OPS,
        probe=lambda: None,
        serves=lambda xp, a: None,
        priority=1000,
    )
)


def _cupy_backend():
    """The CuPy RawKernel backend; its module imports no CuPy until a kernel runs."""
    try:
        from . import cupy_backend
    except Exception:  # never let an optional backend break ``import lsattn``
        return
    register(
        Backend(
            name="cupy",
            description="CUDA kernels through cupy.RawModule (CuPy arrays; CUDA torch / JAX GPU arrays via DLPack)",
            ops=cupy_backend.OPS,
            probe=cupy_backend.probe,
            serves=cupy_backend.serves,
            auto_serves=cupy_backend.auto_serves,
            priority=10,
        )
    )


_cupy_backend()


def _numba_backend():
    """The Numba CPU backend; its module imports no Numba until a kernel runs."""
    from . import numba_cpu

    register(
        Backend(
            name="numba",
            description="fused Numba CPU scans, parallel over batch elements (NumPy arrays)",
            ops=numba_cpu.OPS,
            probe=numba_cpu.probe,
            serves=numba_cpu.serves,
            priority=20,
        )
    )


_numba_backend()


def _dask_backend():
    """Sequence-parallel Dask graphs over the in-memory implementations; imports no Dask until a call."""
    from . import dask_backend

    register(
        Backend(
            name="dask",
            description="block-parallel graphs on dask.array inputs chunked along the sequence (any Dask scheduler)",
            ops=dask_backend.OPS,
            probe=dask_backend.probe,
            serves=dask_backend.serves,
            priority=5,
        )
    )


_dask_backend()


def _numba_cuda_backend():
    """The Numba CUDA backend; its module imports no Numba until a kernel runs."""
    from . import numba_cuda

    register(
        Backend(
            name="numba_cuda",
            description="Numba CUDA scans (CuPy arrays, CUDA torch tensors, Numba device arrays)",
            ops=numba_cuda.OPS,
            probe=numba_cuda.probe,
            serves=numba_cuda.serves,
            priority=15,
        )
    )


_numba_cuda_backend()
