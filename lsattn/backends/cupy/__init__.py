"""CuPy RawKernel backend: CUDA kernels for ``loglinear_attention``, ``exp_kernel_attention``,
``log_attention`` (the exp-kernel kernels compiled in their log-value mode, ``-DLOGV=1``),
``loglinear_gated_delta`` (``gated_delta.py`` + ``gated_delta.cu`` and its two-tier form ``gated_delta_tier.cu`` + ``gated_delta_coarse.cu``, backward ``gated_delta_bwd.py`` +
``gated_delta_bwd.cu`` + ``gated_delta_bwd_scan.cu``, below) and ``loglinear_log_attention`` (``hierarchical.py`` +
``hierarchical.cu`` with ``hierarchical_intra.cu`` and its reads ``hierarchical_read.cu``, backward ``hierarchical_bwd.cu`` and its per-chunk kernels ``hierarchical_bwd_dq.cu``, ``hierarchical_bwd_dkdv.cu`` over ``hierarchical_bwd_chunk.cu``, below).

Layout of this package: one host module per operator family and its kernel files
(``loglinear.py`` + ``loglinear.cu``, ``exp_kernel.py`` + ``exp_kernel.cu`` and, for bfloat16
inputs of both modes, ``exp_kernel_tc.cu``; the backward kernels in ``*_bwd.cu``), the device code they
share in ``common.cu`` (loads and stores of every input dtype, tile loaders, the mma fragments,
the Fenwick level arithmetic), the compiled variants in ``_config.py``, the compile cache and the
launches in ``_compile.py``, the array conversions in ``_arrays.py``. A family's kernel files are compiled
after ``common.cu`` once per (device, compute dtype, input dtype, chunk, padded head dims) through
``cupy.RawModule``.

Arrays served: CuPy arrays directly; CUDA torch tensors viewed from their pointer, shape and
strides, and JAX GPU arrays through DLPack, without copies, returned as the caller's type. Work is
queued on torch's current stream for torch tensors and on CuPy's current stream otherwise.
Nothing here imports CuPy, torch or JAX until a kernel is needed.

Decoding: ``step.py`` + ``step.cu`` are the ``lsattn.stepper`` steps of ``exp_kernel_attention``,
``loglinear_attention``, ``loglinear_gated_delta`` and ``loglinear_log_attention`` (the registry's
``STEP_OPS["cupy"]``; ``log_attention`` steps on the array-API path): one fused kernel launch per
token on preallocated buffers, in place, with the offset on the device (CUDA-graph capturable);
their NumPy twin is ``step.Twin``.

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

Log-linear Gated DeltaNet: two kernels. ``gd_forms`` (``gated_delta_forms.cu``) computes the
per-chunk WY quantities of the array-API path (``lsattn.gated_delta._chunk_forms`` and
``_masked_intra``: ``qeff``, ``e^G K``, ``phi``, ``H = phi V``, the chunk decay and the level-masked
intra-chunk output) in one block per (sequence, chunk), from the (BH, T, d) inputs, in shared
memory (``K K^T``, ``Q K^T``, the decay table as sums over each stretch taken in the products'
stores, ``(I + N)^{-1}`` by 16 / 32 / 64 blocks, the products: on tensor cores at C = d_k = 64; it also
flags non-finite inputs for the prologue, ``_nonfinite.KernelCheck``); ``gd_scan`` replaces the chunk tree by independent chains, one
per Fenwick level and period of ``2^m`` chunks (accumulate the bucket, then read and carry it) and per
incoming slot, two chains per block (consecutive levels: one walk over the chunks,
the tiles copied once; or two incoming slots) and per (sequence, 32 value columns), each chunk's transition applied as
``e^g S - phi (e^G K S)``, the reads added atomically. CuPy arrays, JAX arrays and torch tensors without grad take both.
float32 / float64 (``gd_scan``'s per-slot products on tensor cores in float32, 3xTF32); 16-bit
inputs reach ``gd_forms`` as they are (``HALF_OPS``) and are computed in float32. Inputs that
require grad (16-bit ones widened to float32): the backward below.

Hierarchical exp-kernel attention (``loglinear_log_attention``): ``hi_intra`` computes every pair
inside each aligned chunk exactly in log space and the chunk's exp-kernel summary ``(m, n, S, z)``
(parallel over chunks); ``hi_merge`` merges those summaries into the chunk-level Fenwick slots as a
tree (one launch per depth, parallel over its chunks, sequences and 16 value columns), ``hi_snap``
decays the held slots' shifts to every chunk's start; ``hi_read``
(parallel over chunks) reads the held slots and the incoming state's with per-row / per-column
shifts and combines everything in log space (the comments at the top of ``hierarchical.cu``). 16-bit
inputs are read as they are (``HALF_OPS``) and computed in float32 (bfloat16's slot reads on tensor
cores, the float32 factors split into bf16 halves); the returned state is built on
the host by the array-API twin's ``_advance_state``. Backward (``GRAD_OPS``): ``hierarchical_bwd.cu``
(``hierarchical_bwd.py``: the forward's slots recomputed, then dq / level weights, per-right-block
query summaries, dk / d log_v; the decay's gradient on the host); calls that return a state or whose
incoming state requires grad take the array-API formulation on the device, differentiated by torch.

Limits: ``d_k <= 128`` (``serves`` declines larger ``d_k``, so automatic selection falls back to
the array API); ``d_v`` of any size (split into column blocks of 128). ``chunk_size`` is a speed
knob here too: the kernels use ``CH = clip(chunk_size, 16, 64)`` (32 for float64 with a head dim
above 64; 64 for bf16) and results do not depend on it beyond rounding. Grid limit:
``prod(batch) <= 65535``. ``log_attention`` runs the exp-kernel kernels in their LOGV mode (per-column
value shifts in every chunk summary, exact rows recomputed where a later value of the chunk would
underflow an earlier row's numerator); its bfloat16 inputs (``HALF_OPS``) take the tensor-core
kernels in that mode (``exp_kernel_tc.cu`` with ``-DLOGV=1``: exponentiated, column-shifted values
as bf16 mma operands, fp32 accumulation, the same shifts and exact-row rule), its decoding steps
the chunk kernels. Packed segments (``cu_seqlens``): ``loglinear_attention`` (``VARLEN_OPS``; read
through a token map, ``LAYOUT_OPS``, without state or gradient), ``loglinear_gated_delta`` and
``loglinear_log_attention`` (the rewrite's gathered copies), ``exp_kernel_attention`` and
``log_attention`` (``RESET_OPS``: segment masks and scan resets in the kernels, states per segment). Broadcast
batch axes (grouped-query heads): the forward kernels of ``loglinear_attention``,
``exp_kernel_attention`` and ``log_attention`` (FFMA, LOGV and bf16 tensor-core chunk, output and
decoding kernels) read shared rows (``BROADCAST_OPS``); ``loglinear_gated_delta`` gets contiguous copies. Backward (``GRAD_OPS``;
``_autograd.py``) on CUDA torch tensors that require grad: ``loglinear_attention``
(``loglinear_bwd.cu``), ``exp_kernel_attention`` and ``log_attention`` (causal:
``exp_kernel_bwd.cu``, the latter in its LOGV mode: per-pair exponents inside chunks,
column-shifted reverse state, 16-bit inputs from float32 copies and the float32 output of a
forward run once in float32 for calls that record the backward; non-causal:
``exp_kernel.backward_noncausal``, CuPy array operations on the one summary), and
``loglinear_gated_delta``: its training path runs ``gd_forms`` in a ``torch.autograd.Function``
whose backward is the kernel ``gd_forms_bwd`` recomputing from the saved inputs (``forms_backward``; bfloat16
inputs read as they are by both, their gradients written in bfloat16: ``gated_delta.GRAD_BF16``), and
wraps the chunk scan in a second ``torch.autograd.Function`` whose backward,
``gd_scan_bwd`` (``gated_delta_bwd.py`` + ``gated_delta_bwd.cu``, ``gated_delta_bwd_scan.cu``), is a reverse scan over the
chunks with adjoint level states (gradients of ``qeff``, ``phi``, ``e^G K``, ``H``, the chunk
decays, the level weights it reads and the incoming state); it recomputes the slot states before
every chunk into a scratch of ``(n_old + NLC) / C`` of one ``T d_k d_v`` tensor (C = 64: ~10 / 64
at T = 32K), freed when the backward returns. Calls returning a state take the array-API
formulation on the same device under torch autograd.
"""
from __future__ import annotations

from ._arrays import array_kind as _kind

__all__ = ["OPS", "HALF_OPS", "GRAD_OPS", "VARLEN_OPS", "RESET_OPS", "LAYOUT_OPS", "BROADCAST_OPS", "MAX_DK", "probe", "serves"]

#: operators this backend implements -> "module:function"
OPS = {
    "loglinear_attention": "lsattn.backends.cupy.loglinear:forward",
    "exp_kernel_attention": "lsattn.backends.cupy.exp_kernel:forward",
    "log_attention": "lsattn.backends.cupy.exp_kernel:log_forward",
    "loglinear_gated_delta": "lsattn.backends.cupy.gated_delta:forward",
    "loglinear_log_attention": "lsattn.backends.cupy.hierarchical:forward",
}
#: operators whose float16 / bfloat16 inputs reach the kernels as they are (the others receive
#: float32 and their outputs are cast back by the registry)
HALF_OPS = ("loglinear_attention", "exp_kernel_attention", "log_attention", "loglinear_log_attention", "loglinear_gated_delta")
#: operators with backward kernels (torch autograd; ``_autograd.py``)
GRAD_OPS = ("loglinear_attention", "exp_kernel_attention", "log_attention", "loglinear_gated_delta",
            "loglinear_log_attention")
#: operators with ``cu_seqlens``: ``lsattn._varlen`` rewrites a packed log-linear call as one
#: ordinary call (aligned segments, ``-inf`` decays at their starts: hard resets, which the kernels
#: keep exact; ``hierarchical.cu`` clamps them as ``hierarchical._forward`` does) in the array API of
#: the inputs (torch, CuPy); with states, ``lsattn._ll_packed`` adds the incoming slots and the new
#: state around that call (``loglinear_log_attention``: around its partial, the kernels' rows' log den
#: beside their outputs; 16-bit inputs: the array-API formulation's), on CUDA arrays outside autograd
#: by the kernels of ``loglinear_streams.cu``.
#: The exp-kernel operators compute their packed segments in the kernels (``RESET_OPS``).
VARLEN_OPS = ("loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention", "exp_kernel_attention",
              "log_attention")
#: those whose implementation computes packed segments itself (``segments=``: the exp-kernel
#: kernels' segment masks and resets, ``exp_kernel.cu``; with or without states; calls that record a
#: gradient: the backward kernels on a chunk-aligned layout, ``exp_kernel.backward``; with an
#: incoming state too: the array-API formulation's packed path on the device)
RESET_OPS = ("exp_kernel_attention", "log_attention")
#: those whose kernels read the packed tokens through that layout's token map (``token_map=``: no
#: gathered copies of the inputs, outputs written on the packed rows) when no state and no gradient
#: is involved
LAYOUT_OPS = ("loglinear_attention",)
#: operators whose kernels read broadcast batch views (grouped-query heads: q, k shared by several
#: value heads) through a row map (``_arrays.shared_inputs``, the kernels' ``seq_row``), with no
#: broadcast copy; the backward kernels read contiguous copies
BROADCAST_OPS = ("loglinear_attention", "exp_kernel_attention", "log_attention")
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
