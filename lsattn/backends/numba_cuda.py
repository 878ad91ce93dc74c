"""Numba CUDA backend (``backend="numba_cuda"``): the causal scans as ``@cuda.jit`` kernels.

Arrays served: anything CUDA that is a CuPy array, a torch CUDA tensor (not requiring grad) or a
Numba device array (a ``FakeCUDAArray`` under the CUDA simulator, ``NUMBA_ENABLE_CUDASIM=1``),
float16/32/64 (the public operators compute half precision in float32). Inputs are viewed through
``__cuda_array_interface__`` without copies (batch axes are flattened with the caller's own
``reshape``, which copies only when the strides forbid a view); outputs and state tensors are
allocated by the caller's library (torch's / CuPy's allocator) and written in place, so they come
back as the caller's type, on its device. Kernels run on the caller's current stream (torch's or
CuPy's; Numba's default stream for Numba arrays), so no host synchronisation is needed.

The public operators validate with ``array_api_compat.array_namespace``, which does not accept
Numba device arrays (on a GPU they have no namespace; the simulator's ``FakeCUDAArray`` passes
for NumPy and then fails in ``xp.astype``). So CuPy arrays and torch tensors go through the
public API; Numba device arrays through this backend's implementations directly:
``lsattn.backends.get("numba_cuda").implementation(op)(...)`` (or ``backends.select(op, None, q,
"numba_cuda")``), with the array-API twin's signature and validated inputs of one float dtype.

Algorithms (``_numba_cuda_kernels``): per (batch element, block of value columns) one thread
block scans the tokens in order, holding the same summaries as the Numba CPU kernels: the
exp-kernel ``(m, n, S, z)`` with max-shifting (a new key / value maximum rescales its row / column
by ``exp(old - new) <= 1``; queries read with the row shift ``max_i (q_i + m_i)``), the Fenwick
level states of log-linear Mamba-2 / Gated DeltaNet (transition and read of the occupied levels,
then the merge). The block's columns of the state live in shared memory (log-linear levels fall
back to global memory when ``L d_k columns`` items pass ``SHARED_BYTES``) and the next token's
inputs are prefetched into registers. ``O(T d_k d_v)`` (exp-kernel) and ``O(T log T d_k d_v)``
(log-linear) work in ``T`` sequential steps: the scans are latency bound, best for short calls and
decoding; chunkwise forms (array-API path, cupy backend) win on long sequences (see
``benchmarks/results/numba_cuda_2026-11-29.md``). Nothing of size ``T d_k d_v``. Non-causal
exp-kernel: summarise all keys (one thread per ``(b, i, c)``), then one thread per output element
reads. Accumulation in the compute dtype (float32 for float32 inputs; within the promised 1e-5).

``chunk_size`` is accepted and ignored (recurrent scans). Limits: ``d_k <= 512`` (shared
memory); no backward (torch tensors that require grad are declined). numba-cuda <= 0.30.4 cannot
compile kernels under NumPy 2.5 (it registers ``np.row_stack``, which NumPy 2.5 removed).
"""
from __future__ import annotations

import contextlib
import importlib.util
import math

import numpy as np

from ..exp_kernel import _minus_inf
from ..state import State

__all__ = ["OPS", "probe", "serves", "THREADS", "COLUMNS"]

_K = "lsattn.backends.numba_cuda"

#: operators this backend implements -> "module:function"
OPS = {
    "log_attention": f"{_K}:log_forward",
    "exp_kernel_attention": f"{_K}:exp_forward",
    "loglinear_attention": f"{_K}:loglinear_forward",
    "loglinear_gated_delta": f"{_K}:gated_delta_forward",
}

MAX_DK = 512
#: dynamic shared memory a block may use (the default limit without an opt-in attribute)
SHARED_BYTES = 48 * 1024
_DTYPES = ("float16", "float32", "float64")

#: threads per block of the scans (None: 32 on a GPU, 4 under the simulator, which runs a Python
#: thread per CUDA thread); COLUMNS: value columns per block (None: automatic, see _columns).
THREADS = None
COLUMNS = None


# ---- registry hooks ------------------------------------------------------------------------------

def probe():
    """None when Numba is installed and ``numba.cuda.is_available()`` (True under the simulator)."""
    if importlib.util.find_spec("numba") is None:
        return "numba not installed"
    try:
        from numba import cuda
    except Exception as exc:  # noqa: BLE001  a broken CUDA install
        return f"numba.cuda is not importable ({type(exc).__name__}: {exc})"
    try:
        ok = cuda.is_available()
    except Exception as exc:  # noqa: BLE001
        return f"numba.cuda.is_available() failed ({type(exc).__name__}: {exc})"
    if not ok:
        return "numba.cuda sees no CUDA device"
    try:  # available means: compiles and runs here (numba-cuda <= 0.30.4 cannot compile under NumPy 2.5)
        _tiny_kernel(cuda)
    except Exception as exc:  # noqa: BLE001
        return f"numba.cuda cannot compile and run a kernel here ({type(exc).__name__}: {exc})"
    return None


def _tiny_kernel(cuda):
    """Compile and launch a one-thread kernel; AssertionError if it wrote the wrong value. (No CUDA
    intrinsics: the simulator resolves those only through module globals.)"""

    @cuda.jit
    def size_into_first(x):
        x[0] = x.shape[0]

    x = cuda.to_device(np.zeros(4, dtype=np.float32))
    size_into_first[1, 1](x)
    got = x.copy_to_host()
    assert list(got) == [4.0, 0.0, 0.0, 0.0], f"probe kernel wrote {got}"


def serves(xp, a):
    """None for CuPy arrays, torch CUDA tensors and Numba device arrays of dtype
    float16/32/64 with ``d_k = a.shape[-1] <= 512``; else the reason."""
    kind = _kind(a)
    if kind is None:
        return (f"{type(a).__module__}.{type(a).__name__} is not a CUDA array (the numba_cuda backend serves CuPy "
                "arrays, CUDA torch tensors and Numba device arrays)")
    if kind == "other":
        return (f"{type(a).__module__}.{type(a).__name__} has __cuda_array_interface__ but results could not be "
                "returned as its type (the numba_cuda backend serves CuPy arrays, CUDA torch tensors and Numba "
                "device arrays)")
    name = str(a.dtype).split(".")[-1]
    if name not in _DTYPES:
        return f"dtype {name} is not float16, float32 or float64"
    shape = tuple(a.shape)
    if shape and shape[-1] > MAX_DK:
        return f"d_k = {shape[-1]} > {MAX_DK} (shared memory per block); use another backend"
    return None


def _kind(a):
    """'torch', 'cupy', 'numba', 'other' (some other __cuda_array_interface__ exporter) or None."""
    mod = type(a).__module__
    if mod.startswith("torch"):
        return "torch" if getattr(a, "is_cuda", False) else None
    if mod.startswith("cupy"):
        return "cupy"
    if mod.startswith(("numba.cuda", "numba_cuda")):
        return "numba" if (hasattr(a, "__cuda_array_interface__") or "simulator" in mod) else None
    return "other" if hasattr(a, "__cuda_array_interface__") else None


# ---- the caller's device, stream and allocator -----------------------------------------------------

class _Gpu:
    """Views, allocations and launches on the device and stream of the array ``like``."""

    def __init__(self, like):
        from numba import config, cuda

        self.cuda = cuda
        self.sim = bool(config.ENABLE_CUDASIM)
        self.kind = _kind(like)
        if self.kind not in ("torch", "cupy", "numba"):
            raise ValueError(f"the numba_cuda backend needs CUDA arrays, got {type(like).__name__}")
        self.like = like
        self.dev = None
        if self.kind == "torch":
            import torch

            self.dev = like.device.index if like.device.index is not None else torch.cuda.current_device()
        elif self.kind == "cupy":
            self.dev = like.device.id

    @contextlib.contextmanager
    def scope(self):
        """The caller's device (numba context) and current stream (self.stream)."""
        cuda = self.cuda
        if self.kind == "numba":
            self.stream = 0
            yield self
            return
        with cuda.gpus[self.dev]:
            if self.kind == "torch":
                import torch

                ptr = torch.cuda.current_stream(self.dev).cuda_stream
            else:
                import cupy

                with cupy.cuda.Device(self.dev):
                    ptr = cupy.cuda.get_current_stream().ptr
            self.stream = cuda.external_stream(ptr) if ptr else cuda.default_stream()
            yield self

    def view(self, x):
        """A Numba device array on x's memory (no copy, no synchronisation: same stream)."""
        if self.sim or self.kind == "numba" and not hasattr(x, "__cuda_array_interface__"):
            return x
        if math.prod(x.shape) == 0:  # no memory to view (a null pointer); same shape, never indexed
            return self.cuda.device_array(tuple(x.shape), dtype=np.dtype(str(x.dtype).split(".")[-1]))
        return self.cuda.as_cuda_array(x, sync=False)

    def flat(self, x, tail):
        """(..., *tail) -> a (B, *tail) view (the caller's reshape; a copy only if strides forbid a view)."""
        shape = tuple(x.shape)
        if len(shape) != tail + 1:
            lead = shape[:len(shape) - tail]
            shape = (math.prod(lead),) + shape[len(shape) - tail:]
            x = _reshape(x, shape)
        return self.view(x)

    def empty(self, shape, flat_shape, dtype):
        """(array of the caller's type of ``shape``, Numba view of it as ``flat_shape``)."""
        obj = self._empty(shape, dtype)
        return obj, (obj.reshape(flat_shape) if self.kind == "numba" else self.view(obj.reshape(flat_shape)))

    def _empty(self, shape, dtype):
        if self.kind == "torch":
            import torch

            return torch.empty(shape, dtype=getattr(torch, dtype.name), device=self.like.device)
        if self.kind == "cupy":
            import cupy

            with cupy.cuda.Device(self.dev):
                return cupy.empty(shape, dtype=dtype)
        return self.cuda.device_array(shape, dtype=dtype)

    def dummy(self, ndim, dtype):
        """A tiny array standing for an argument a kernel does not read (one per device, kept)."""
        key = (ndim, np.dtype(dtype).name, self.dev, self.sim)
        if key not in _DUMMIES:
            _DUMMIES[key] = self.cuda.device_array((1,) * ndim, dtype=dtype)
        return _DUMMIES[key]

    def launch(self, kernel, grid, block, shared_items, itemsize, *args):
        kernel[grid, block, self.stream, shared_items * itemsize](*args)


_DUMMIES = {}


def _reshape(x, shape):
    try:
        return x.reshape(shape)
    except NotImplementedError:  # a non-contiguous Numba device array: no device-side reshape copy
        from numba import cuda

        return cuda.to_device(np.ascontiguousarray(x.copy_to_host()).reshape(shape))


def _threads(gpu):
    return THREADS or (4 if gpu.sim else 32)


def _sm_count(gpu):
    if gpu.sim:
        return 1
    try:
        return gpu.cuda.get_current_device().MULTIPROCESSOR_COUNT
    except Exception:  # noqa: BLE001
        return 132


def _columns(gpu, B, dv, NT, shared_bytes):
    """Value columns per block: 2 by default (16 row groups of 32 threads; measured best of
    1..16 on an H100-class GPU), fewer while the grid has fewer blocks than multiprocessors (the
    scans are latency bound: more blocks, more overlap) or the block's shared memory
    ``shared_bytes(columns)`` would pass SHARED_BYTES."""
    cb = min(COLUMNS or 2, NT)
    while cb > 1 and ((not COLUMNS and B * -(-dv // cb) < _sm_count(gpu)) or shared_bytes(cb) > SHARED_BYTES):
        cb //= 2
    return cb


def _kernels(dtype):
    from ._numba_cuda_kernels import kernels

    return kernels(dtype.name)


# ---- exp-kernel attention -----------------------------------------------------------------------

def log_forward(q, k, log_v, causal, state, return_state, *, chunk_size=None):
    """Numba CUDA twin of ``lsattn.exp_kernel._log_forward`` (same arguments, result and state)."""
    return _ek(q, k, log_v, causal, state, return_state, True)


def exp_forward(q, k, v, causal, state, return_state, *, chunk_size=None):
    """Numba CUDA twin of ``lsattn.exp_kernel._exp_forward`` (same arguments, result and state)."""
    return _ek(q, k, v, causal, state, return_state, False)


def _ek(q, k, vals, causal, state, return_state, log_values):
    (*batch, Tq, d_k), d_v = tuple(q.shape), tuple(vals.shape)[-1]
    batch = tuple(batch)
    B = math.prod(batch)
    gpu = _Gpu(q)
    with gpu.scope():
        qd, kd, vd = gpu.flat(q, 2), gpu.flat(k, 2), gpu.flat(vals, 2)
        dt = np.dtype(qd.dtype)
        K, lo, es = _kernels(dt), dt.type(_minus_inf(np, dt)), dt.itemsize
        out, out_d = gpu.empty(batch + (Tq, d_v), (B, Tq, d_v), dt)
        NT = _threads(gpu)
        if not causal:
            _, m = gpu.empty((B, d_k), (B, d_k), dt)
            _, n = gpu.empty((B, d_v), (B, d_v), dt)
            _, S = gpu.empty((B, d_k, d_v), (B, d_k, d_v), dt)
            _, z = gpu.empty((B, d_k), (B, d_k), dt)
            tpb = 128
            if B * d_k * d_v and Tq:
                gpu.launch(K.ek_summary, -(-B * d_k * d_v // tpb), tpb, 0, es, kd, vd, log_values, lo, m, n, S, z)
                gpu.launch(K.ek_read, -(-B * Tq * d_v // tpb), tpb, 0, es, qd, m, n, S, z, log_values, lo, out_d)
            return out, None
        has_state = state is not None
        if has_state:
            t = state.tensors
            m0, S0, z0 = gpu.flat(t["m"], 1), gpu.flat(t["S"], 2), gpu.flat(t["z"], 1)
            n0 = gpu.flat(t["n"], 1) if log_values else gpu.dummy(2, dt)
        else:
            m0, n0, S0, z0 = gpu.dummy(2, dt), gpu.dummy(2, dt), gpu.dummy(3, dt), gpu.dummy(2, dt)
        if return_state:
            m1, m1_d = gpu.empty(batch + (d_k,), (B, d_k), dt)
            z1, z1_d = gpu.empty(batch + (d_k,), (B, d_k), dt)
            S, S_d = gpu.empty(batch + (d_k, d_v), (B, d_k, d_v), dt)
            n1, n1_d = gpu.empty(batch + (d_v,), (B, d_v), dt) if log_values else (None, gpu.dummy(2, dt))
        else:
            m1_d = n1_d = z1_d = gpu.dummy(2, dt)
            S_d = gpu.dummy(3, dt)
        items = lambda cb: 5 * d_k + 3 * NT + 3 * cb + d_k * cb  # noqa: E731
        CB = _columns(gpu, B, d_v, NT, lambda cb: items(cb) * es)
        if B:
            gpu.launch(K.ek_causal, (B, max(1, -(-d_v // CB))), NT, items(CB), es,
                       qd, kd, vd, m0, n0, S0, z0, has_state, log_values, lo, CB, bool(return_state),
                       out_d, m1_d, n1_d, S_d, z1_d)
    if not return_state:
        return out, None
    tensors = {"m": m1, "S": S, "z": z1}
    if log_values:
        tensors["n"] = n1
    op = "log_attention" if log_values else "exp_kernel_attention"
    offset = state.offset if has_state else 0
    return out, State(op, offset + Tq, batch, d_k, d_v, q.dtype, tensors)


# ---- log-linear operators ------------------------------------------------------------------------

def loglinear_forward(q, k, v, log_decay, level_weights, chunk_size, state, return_state):
    """Numba CUDA twin of ``lsattn.loglinear._forward`` (same arguments, result and state)."""
    return _loglinear("loglinear_attention", q, k, v, log_decay, None, level_weights, state, return_state)


def gated_delta_forward(q, k, v, log_decay, beta, level_weights, chunk_size, state, return_state):
    """Numba CUDA twin of ``lsattn.gated_delta._forward`` (same arguments, result and state)."""
    return _loglinear("loglinear_gated_delta", q, k, v, log_decay, beta, level_weights, state, return_state)


def _loglinear(op, q, k, v, log_decay, beta, level_weights, state, return_state):
    (*batch, T, d_k), d_v = tuple(q.shape), tuple(v.shape)[-1]
    batch = tuple(batch)
    B = math.prod(batch)
    p = 0 if state is None else state.offset
    gpu = _Gpu(q)
    with gpu.scope():
        qd = gpu.flat(q, 2)
        dt = np.dtype(qd.dtype)
        if T == 0:
            out, _ = gpu.empty(batch + (0, d_v), (B, 0, d_v), dt)
            if not return_state:
                return out, None
            if state is None:
                levels, _ = gpu.empty(batch + (0, d_k, d_v), (B, 0, d_k, d_v), dt)
                state = State(op, 0, batch, d_k, d_v, q.dtype, {"levels": levels})
            return out, state
        kd, vd = gpu.flat(k, 2), gpu.flat(v, 2)
        ad = gpu.flat(log_decay, 1)
        bd = gpu.flat(beta, 1) if beta is not None else ad  # not read unless gated
        lam = gpu.flat(level_weights, 2)
        n_old = p.bit_length()
        lev0 = gpu.flat(state.tensors["levels"], 3) if n_old else gpu.dummy(4, dt)
        n_new = (p + T).bit_length()
        out, out_d = gpu.empty(batch + (T, d_v), (B, T, d_v), dt)
        NT, es = _threads(gpu), dt.itemsize
        nl = min(tuple(level_weights.shape)[-1], n_new + 1)
        items = lambda cb: 2 * d_k + nl + 2 * NT + n_new * d_k * cb  # noqa: E731  levels in shared memory
        CB = _columns(gpu, B, d_v, NT, lambda cb: items(cb) * es)
        use_shared = items(CB) * es <= SHARED_BYTES
        shared = items(CB) if use_shared else items(0)
        # the returned levels; without a state and with shared-memory levels nothing is written
        levels, S_d = None, gpu.dummy(2, dt)
        if return_state or not use_shared:
            levels, S_d = gpu.empty(batch + (n_new, d_k, d_v), (B, n_new * d_k * d_v), dt)
        if B:
            gpu.launch(_kernels(dt).ll_scan, (B, max(1, -(-d_v // CB))), NT, shared, es,
                       qd, kd, vd, ad, bd, lam, p, lev0, n_old, beta is not None, CB, n_new, use_shared,
                       bool(return_state), out_d, S_d)
    if not return_state:
        return out, None
    return out, State(op, p + T, batch, d_k, d_v, q.dtype, {"levels": levels})
