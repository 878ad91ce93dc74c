"""CuPy RawKernel backend: CUDA kernels for ``loglinear_attention``, ``exp_kernel_attention`` and
``log_attention`` (the exp-kernel kernels compiled in their log-value mode, ``-DLOGV=1``).

Layout of this package: one host module and one kernel file per operator family
(``loglinear.py`` + ``loglinear.cu``, ``exp_kernel.py`` + ``exp_kernel.cu``), the device code they
share in ``common.cu`` (loads and stores of every input dtype, tile loaders, the mma fragments,
the Fenwick level arithmetic), the compile cache and the launches in ``_compile.py``, the array
conversions in ``_arrays.py``. Each kernel file is compiled after ``common.cu`` once per (device,
compute dtype, input dtype, chunk, padded head dims) through ``cupy.RawModule``.

Arrays served: CuPy arrays directly; CUDA torch tensors viewed from their pointer, shape and
strides, and JAX GPU arrays through DLPack, without copies, returned as the caller's type. Work is
queued on torch's current stream for torch tensors and on CuPy's current stream otherwise.
Nothing here imports CuPy, torch or JAX until a kernel is needed.

Decoding: ``step.py`` + ``step.cu`` are the ``lsattn.stepper`` steps of both operators (the
registry's ``STEP_OPS["cupy"]``): one fused kernel launch per token on preallocated buffers, in
place, with the offset on the device (CUDA-graph capturable); their NumPy twin is ``step.Twin``.

``loglinear.forward`` and ``exp_kernel.forward`` implement exactly the signatures of the
array-API twins registered in ``_builtin.ARRAY_API_OPS`` and consume / produce the same
``State`` tensors, so a stream can move between backends. Their host logic (``compute``) drives
an ``ops`` object: ``_compile.CupyOps`` launches the kernels; the tests drive the same logic with
a NumPy twin of every kernel (``tests/test_cupy_backend.py``), so the index arithmetic is checked
without a GPU.

Kernels: float32 / float64 inputs run exact FFMA kernels (float32 within ~1e-6 of the float64
reference at benchmark sizes). Half precision reaches the kernels as is (``HALF_OPS``): bfloat16
inputs (torch, JAX; read as their 16-bit patterns) run mma.sync tensor-core kernels (bf16
products, fp32 accumulation, fp32 states) and write bfloat16 outputs; float16 inputs (torch, CuPy,
JAX) are read and written as float16 by the FFMA kernels, which compute in float32 (fp16's range,
65504, cannot hold the unnormalised chunk and level states that the tensor-core kernels round to
16 bits, and bf16 products would lose fp16's precision).

Limits: ``d_k <= 128`` (``serves`` declines larger ``d_k``, so automatic selection falls back to
the array API); ``d_v`` of any size (split into column blocks of 128). ``chunk_size`` is a speed
knob here too: the kernels use ``CH = clip(chunk_size, 16, 64)`` (32 for float64 with a head dim
above 64; 64 for bf16) and results do not depend on it beyond rounding. Grid limit:
``prod(batch) <= 65535``. ``log_attention`` runs the exp-kernel kernels in their LOGV mode (per-column
value shifts in every chunk summary, exact rows recomputed where a later value of the chunk would
underflow an earlier row's numerator); its bfloat16 inputs take the FFMA kernels (no tensor-core
variant), its decoding steps the chunk kernels, and inputs that require grad the array-API path. Packed segments (``cu_seqlens``): ``loglinear_attention`` only
(``VARLEN_OPS``). Backward: ``loglinear_attention`` on CUDA torch tensors that require grad
(``GRAD_OPS``; ``_autograd.py``, ``loglinear_bwd.cu``); the registry sends other inputs that
require grad to the array-API path.
"""
from __future__ import annotations

from ._arrays import array_kind as _kind

__all__ = ["OPS", "HALF_OPS", "GRAD_OPS", "VARLEN_OPS", "MAX_DK", "probe", "serves"]

#: operators this backend implements -> "module:function"
OPS = {
    "loglinear_attention": "lsattn.backends.cupy.loglinear:forward",
    "exp_kernel_attention": "lsattn.backends.cupy.exp_kernel:forward",
    "log_attention": "lsattn.backends.cupy.exp_kernel:log_forward",
}
#: operators whose float16 / bfloat16 inputs reach the kernels as they are
HALF_OPS = tuple(OPS)
#: operators with backward kernels (torch autograd; ``_autograd.py``)
GRAD_OPS = ("loglinear_attention", "exp_kernel_attention")
#: operators with ``cu_seqlens``: ``lsattn._varlen`` rewrites a packed ``loglinear_attention`` as one
#: ordinary call (aligned segments, ``-inf`` decays at their starts: hard resets, which the kernels
#: keep exact) in the array API of the inputs (torch, CuPy). The exp-kernel operators stay refused:
#: they have no rewrite and these kernels no segment masks (the array-API path computes them).
VARLEN_OPS = ("loglinear_attention",)
#: largest d_k of the shared-memory tiles
MAX_DK = 128


def probe():
    """None when CuPy imports and sees a CUDA device, else the reason."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        return f"cupy is not importable ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"cupy sees no CUDA device ({type(exc).__name__}: {exc})"
    return None if count > 0 else "cupy sees no CUDA device"


def serves(xp, a):
    """None when ``a`` is a CuPy array, a CUDA torch tensor or a concrete JAX GPU array with
    ``d_k = a.shape[-1] <= 128``; else the reason."""
    kind = _kind(a)
    if kind is None:
        return (f"{type(a).__module__}.{type(a).__name__} is not a GPU array (the cupy backend serves CuPy "
                "arrays, CUDA torch tensors and JAX GPU arrays)")
    if a.ndim >= 1 and a.shape[-1] > MAX_DK:
        return f"d_k = {a.shape[-1]} > {MAX_DK} (shared-memory tiles); use the array_api backend"
    return None
