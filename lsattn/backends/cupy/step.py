"""Fused decoding steps of the CuPy backend (``lsattn.stepper`` on CuPy arrays and CUDA torch tensors,
the automatic choice there) for ``exp_kernel_attention``, ``loglinear_attention``,
``loglinear_gated_delta`` and ``loglinear_log_attention``: ONE kernel launch per token (``step.cu``:
``ek_step``, ``ll_step``, ``gd_step``, ``hier_step``) reads the token's inputs, the state buffers and
the device offset, writes the output, updates the buffers in place and advances the offset.
Gated DeltaNet applies the token's transition ``S <- e^a (S - beta k (k^T S))`` to every occupied
level (``k^T S`` per level, then the read and the Fenwick merge, as the array-API step); the
hierarchical step reads every level summary with its own row shift and combines the reads in log
space (decays ``m -> m + a``, clamped as a plain call; ``-inf`` weights, decays and values exact).

No host-device sync, no host branch on device values, nothing allocated but the output: a step is
capturable in a ``torch.cuda.CUDAGraph``. Kernels are launched on torch's current stream for torch
tensors (CuPy's current stream otherwise) with the arrays' raw pointers (no per-step wrapping).

Buffers: the State's tensors with the batch axes flattened, contiguous, in the state's framework
(torch tensors or CuPy arrays; a JAX GPU state is copied into CuPy buffers and its tensors returned
as JAX arrays), float32 / float64; log-linear: ``bit_length(max_tokens)`` level slots up front
(empty where the offset's bit is clear: zeros, hierarchical shifts at the finite "minus infinity"),
as the other backends. The offset lives in an int64 pair ``off`` on the device (``off[0]``: tokens
seen; ``off[1]``: the ticket counter of the level steps, whose blocks all read the offset).
Inputs of the state's dtype, or (float32 state) bfloat16 / float16 inputs read as they are
(``native``): the output then has their dtype, as the forward kernels.

The kernels' per-row logic is twinned in NumPy (:class:`Twin`: the same loops, thread layout and
summation order); the host logic here runs on NumPy arrays with the twin, which the CPU tests
check against the array-API step and ``lsattn.reference``; they also run ``step.cu`` itself on the
CPU (``tests/cuda_emu_step.cpp``: a fiber per CUDA thread, the kernels' barriers and shuffles)
through the same host logic.
"""
from __future__ import annotations

import math

import numpy as np

from ..._steps import level_slots
from ...state import with_level_slots

__all__ = ["exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention", "Twin",
           "NT"]

#: threads per block (8 warps; a warp's lanes are 32 columns of d_v)
NT = 256
_WARPS = NT // 32


# ---- arrays of the state's framework ------------------------------------------------------------

def _framework(x):
    """'torch', 'cupy', 'jax' or 'numpy' (the twin's host arrays)."""
    mod = type(x).__module__
    for name in ("torch", "cupy", "jax"):
        if mod.startswith(name):
            return name
    return "numpy"


def _own(x, shape, kind):
    """A contiguous copy of ``x`` reshaped to ``shape`` (a buffer of the stepper; no autograd history).
    JAX arrays (immutable) become CuPy buffers."""
    if kind == "torch":
        return x.detach().reshape(shape).clone(memory_format=__import__("torch").contiguous_format)
    if kind == "jax":
        import cupy

        return cupy.array(cupy.from_dlpack(x).reshape(shape), copy=True, order="C")
    mod = __import__(kind)
    return mod.array(mod.asarray(x).reshape(shape), copy=True, order="C")


def _rows(x, B):
    """A token's input (..., 1, d) -> (B, d) with a contiguous last axis (a view where the batch axes
    merge; else a copy)."""
    y = x.reshape(B, x.shape[-1])
    if x.shape[-1] > 1 and _strides(y)[1] != 1:
        y = y.contiguous() if hasattr(y, "contiguous") else y.copy()
    return y


def _strides(x):
    """Strides in elements (torch: ``stride()``; NumPy / CuPy: bytes / itemsize)."""
    s = x.stride() if callable(getattr(x, "stride", None)) else tuple(t // x.itemsize for t in x.strides)
    return s


def _half(dtype):
    return {"bfloat16": "bf16", "float16": "f16"}.get(str(dtype).split(".")[-1], "")


def _lo_in(dtype):
    """The inputs' stand-in for ``-inf``, ``-finfo.max / 8`` of their dtype (``step.cu``'s ``lo_in``)."""
    if _half(dtype) == "bf16":
        return -3.3895313892515355e38 / 8
    return -float(np.finfo(np.dtype(str(dtype).split(".")[-1])).max) / 8


# ---- the host logic ---------------------------------------------------------------------------------

class _Step:
    """Buffers (``buf``: name -> (B, ...) contiguous), the device offset ``off`` and the launches.

    ``ops``: the kernel launcher (:class:`GpuOps`) or the NumPy :class:`Twin`."""

    def __init__(self, state, bufs, slots, ops):
        like = next(iter(state.tensors.values()))
        self.kind = _framework(like)
        self.batch, self.slots, self.d_v = tuple(state.batch_shape), slots, state.d_v
        self.B = math.prod(self.batch)
        self.dtype = state.dtype
        self.buf = bufs
        self.ops = ops if ops is not None else GpuOps(like, self.kind, str(state.dtype).split(".")[-1])
        self.off = self.ops.offset(bufs, int(state.offset))
        self.ops.warm()

    def native(self, dtype):
        """True when inputs of ``dtype`` reach the kernel as they are (bfloat16 / float16 into a float32
        state); the output then has that dtype."""
        return self.ops.half_ok and _half(dtype) != ""

    def _out(self, like):
        out = self.ops.empty(self.batch + (1, self.d_v), self.ops.prep(like))
        return out, out.reshape(self.B, self.d_v)

    def offset_now(self):
        """The device offset (a host read: after CUDA-graph replays, the truth)."""
        return int(self.off[0])

    def tensors(self, p):
        out = {}
        for name, b in self.buf.items():
            view = b if self.slots is None else b[:, : p.bit_length()]
            out[name] = self.ops.back(view.reshape(self.batch + tuple(view.shape[1:])))
        return out


class _ExpKernel(_Step):
    def __init__(self, state, ops=None):
        kind = _framework(next(iter(state.tensors.values())))
        B, dk, dv = math.prod(state.batch_shape), state.d_k, state.d_v
        shapes = {"m": (B, dk), "S": (B, dk, dv), "z": (B, dk)}
        bufs = {n: _own(state.tensors[n], shapes[n], kind) for n in ("m", "S", "z")}
        super().__init__(state, bufs, None, ops)
        self.dk = dk

    def step(self, p, q, k, v):
        """q, k (..., 1, d_k), v (..., 1, d_v) -> (..., 1, d_v); ``p`` (host) is not read."""
        out, flat = self._out(v)
        B, b = self.B, self.buf
        r = lambda x: _rows(self.ops.prep(x), B)  # noqa: E731
        self.ops.ek_step(r(q), r(k), r(v), b["m"], b["S"], b["z"], flat, self.off, self.dk, self.d_v, B)
        return self.ops.result(out)


class _Slots(_Step):
    """Level buffers with ``level_slots(state, max_tokens)`` slots: the State's tensors with
    ``tails`` trailing axes after the slot axis, empty slots appended (``with_level_slots``)."""

    def __init__(self, state, max_tokens, tails, ops):
        kind = _framework(next(iter(state.tensors.values())))
        K = level_slots(state, max_tokens)
        B = math.prod(state.batch_shape)
        dims = {"levels": (state.d_k, state.d_v), "S": (state.d_k, state.d_v), "m": (state.d_k,), "z": (state.d_k,),
                "n": (state.d_v,)}
        full = with_level_slots(state, K).tensors
        bufs = {name: _own(full[name], (B, K) + dims[name], kind) for name in tails}
        super().__init__(state, bufs, K, ops)
        self.dk = state.d_k

    def _args(self, *xs):
        """The token's inputs as (B, d) rows (None stays None)."""
        return [None if x is None else _rows(self.ops.prep(x), self.B) for x in xs]


class _Levels(_Slots):
    def __init__(self, state, max_tokens, ops=None, gated=False):
        super().__init__(state, max_tokens, ("levels",), ops)
        self.gated = gated

    def step(self, p, q, k, v, log_decay, *rest):
        """q, k (..., 1, d_k), v (..., 1, d_v), log_decay (..., 1), [beta (..., 1),] lam (..., 1, L)
        -> (..., 1, d_v); ``p`` (host) is not read: the kernel reads the device offset."""
        out, flat = self._out(v)
        q, k, v, a, *rest = self._args(q, k, v, log_decay, *rest)
        lam, S = rest[-1], self.buf["levels"]
        tail = (S, flat, self.off, self.dk, self.d_v, lam.shape[-1], self.slots, self.B)
        if self.gated:
            self.ops.gd_step(q, k, v, a, rest[0], lam, *tail)
        else:
            self.ops.ll_step(q, k, v, a, lam, *tail)
        return self.ops.result(out)


class _Hierarchical(_Slots):
    """One exp-kernel summary per level slot: m (B, K, d_k), n (B, K, d_v), S (B, K, d_k, d_v),
    z (B, K, d_k); empty slots ``m = n = lo``, ``S = z = 0``."""

    def __init__(self, state, max_tokens, ops=None):
        super().__init__(state, max_tokens, ("m", "n", "S", "z"), ops)
        from ._compile import SMEM_MAX

        need = hier_smem(self.dk, self.slots, 8 if getattr(self.ops, "ta", "float") == "double" else 4)
        if isinstance(self.ops, GpuOps) and need > SMEM_MAX:
            raise ValueError(f"the fused loglinear_log_attention step needs {need} bytes of shared memory for d_k = "
                             f"{self.dk} and max_tokens = {max_tokens} ({self.slots} level slots), above {SMEM_MAX}: "
                             "use backend='array_api'")

    def step(self, p, q, k, log_v, lam, log_decay):
        """q, k (..., 1, d_k), log_v (..., 1, d_v), lam (..., 1, L) log level weights, log_decay
        (..., 1) or None -> log y (..., 1, d_v); ``p`` (host) is not read."""
        out, flat = self._out(log_v)
        q, k, lv, lam, a = self._args(q, k, log_v, lam, log_decay)
        b = self.buf
        self.ops.hier_step(q, k, lv, lam, a, b["m"], b["n"], b["S"], b["z"], flat, self.off, self.dk, self.d_v,
                           lam.shape[-1], self.slots, self.B)
        return self.ops.result(out)


def exp_kernel_attention(state, max_tokens, ops=None):
    return _ExpKernel(state, ops)


def loglinear_attention(state, max_tokens, ops=None):
    return _Levels(state, max_tokens, ops)


def loglinear_gated_delta(state, max_tokens, ops=None):
    return _Levels(state, max_tokens, ops, gated=True)


def loglinear_log_attention(state, max_tokens, ops=None):
    return _Hierarchical(state, max_tokens, ops)


# ---- the launches -------------------------------------------------------------------------------------

class GpuOps:
    """Launches ``step.cu`` on the state's device, on torch's current stream (torch buffers) or CuPy's
    current stream. Arrays are passed as raw pointers with their row strides."""

    def __init__(self, like, kind, dtype_name):
        import cupy

        from ._arrays import _external_stream
        from ._compile import Config

        self.cupy, self.kind = cupy, kind
        self.ta = "double" if dtype_name == "float64" else "float"
        self.half_ok = self.ta == "float" and kind != "jax"  # JAX halves: cast by the stepper
        if kind == "torch":
            import torch

            self.torch = torch
            self.dev = like.device.index if like.device.index is not None else torch.cuda.current_device()
            self._stream = lambda: _external_stream(torch.cuda.current_stream(self.dev).cuda_stream, self.dev)
        else:
            self.dev = like.device.id if kind == "cupy" else next(iter(like.devices())).id
            self._stream = cupy.cuda.get_current_stream
        self._cfg = lambda half: Config(self.ta, half, 64, 64, 64, tc=False)

    def _fn(self, half, name):
        from ._compile import _kernels

        return _kernels("step", self.dev, self._cfg(half))[name]

    def warm(self):
        """Compile (or load) the kernels of the state's dtype now, not inside a captured step."""
        for half in ("",) + (("bf16", "f16") if self.half_ok else ()):
            self._fn(half, "ek_step")

    def offset(self, bufs, p):
        if self.kind == "torch":
            return self.torch.tensor([p, 0], dtype=self.torch.int64, device=f"cuda:{self.dev}")
        with self.cupy.cuda.Device(self.dev):
            return self.cupy.asarray(np.asarray([p, 0], dtype=np.int64))

    def empty(self, shape, like):
        """The output; bfloat16 (a JAX input's 16-bit patterns) keeps its int16 view."""
        if self.kind == "torch":
            return self.torch.empty(shape, dtype=like.dtype, device=like.device)
        with self.cupy.cuda.Device(self.dev):
            return self.cupy.empty(shape, dtype=like.dtype)

    def prep(self, x):
        """An input as the kernels read it: itself (torch, CuPy), a CuPy view of a JAX array."""
        if self.kind != "jax":
            return x
        from ._arrays import _to_cupy

        return _to_cupy(x, "jax")[0]

    def result(self, out):
        """The output in the caller's type (JAX: synchronised, through DLPack)."""
        if self.kind != "jax":
            return out
        from ._arrays import _from_cupy

        return _from_cupy(out, "bf16" if out.dtype == np.int16 else "", "jax")

    def back(self, x):
        """A state tensor in the caller's type: the buffer's view; for JAX (immutable) a copy."""
        return x if self.kind != "jax" else self.result(x.copy())

    def _ptr(self, x):
        """The raw device pointer (None: a null pointer, an absent input)."""
        if x is None:
            return np.uint64(0)
        return np.uint64(x.data_ptr() if self.kind == "torch" else x.data.ptr)

    @staticmethod
    def _row_strides(*xs):
        return tuple(np.int64(0 if x is None else _strides(x)[0]) for x in xs)

    def _launch(self, name, half, grid, args, smem):
        fn = self._fn(half, name)
        if smem > 48 * 1024 and fn.max_dynamic_shared_size_bytes < smem:
            fn.max_dynamic_shared_size_bytes = smem
        with self.cupy.cuda.Device(self.dev), self._stream():
            fn(grid, (NT,), args, shared_mem=smem)

    def ek_step(self, q, k, v, m, S, z, out, off, DK, DV, B):
        P, es = self._ptr, 8 if self.ta == "double" else 4
        sq, sk, sv = (np.int64(_strides(x)[0]) for x in (q, k, v))
        self._launch("ek_step", _half(q.dtype), (B,),
                     (P(q), P(k), P(v), sq, sk, sv, P(m), P(S), P(z), P(out), P(off), np.int32(DK), np.int32(DV)),
                     (4 * DK + NT) * es)

    def ll_step(self, q, k, v, a, lam, S, out, off, DK, DV, L, K, B):
        P, es = self._ptr, 8 if self.ta == "double" else 4
        strides = (np.int64(_strides(x)[0]) for x in (q, k, v, a, lam))
        self._launch("ll_step", _half(q.dtype), (-(-DV // 32), B),
                     (P(q), P(k), P(v), P(a), P(lam), *strides, P(S), P(out), P(off), np.int32(DK), np.int32(DV),
                      np.int32(L), np.int32(K)),
                     (2 * DK + NT) * es)


    def gd_step(self, q, k, v, a, beta, lam, S, out, off, DK, DV, L, K, B):
        P, es = self._ptr, 8 if self.ta == "double" else 4
        self._launch("gd_step", _half(q.dtype), (-(-DV // 32), B),
                     (P(q), P(k), P(v), P(a), P(beta), P(lam), *self._row_strides(q, k, v, a, beta, lam), P(S), P(out),
                      P(off), np.int32(DK), np.int32(DV), np.int32(L), np.int32(K)),
                     (2 * DK + NT) * es)

    def hier_step(self, q, k, lv, lam, a, m, n, S, z, out, off, DK, DV, L, K, B):
        P, es = self._ptr, 8 if self.ta == "double" else 4
        self._launch("hier_step", _half(q.dtype), (B,),
                     (P(q), P(k), P(lv), P(lam), P(a), *self._row_strides(q, k, lv, lam, a), P(m), P(n), P(S), P(z),
                      P(out), P(off), np.int32(DK), np.int32(DV), np.int32(L), np.int32(K)),
                     hier_smem(DK, K, es))


def hier_smem(DK, K, es):
    """Dynamic shared memory of ``hier_step`` in bytes: 2 K DK + 4 DK + 32 K values, the reduction and
    the slots' per-warp partial numerators (NT K)."""
    return (2 * K * DK + 4 * DK + 32 * K + NT * (K + 1)) * es

# ---- the NumPy twin of step.cu --------------------------------------------------------------------------

class Twin:
    """``ek_step`` / ``ll_step`` / ``gd_step`` / ``hier_step`` on NumPy arrays: per block (row, 32-column tile) and per warp (rows
    ``i = w, w + 8, ...``), with the kernels' loops, masks and summation order; the 32 lanes are
    a vectorised column axis. Computes in the buffers' dtype, as the kernels in ``ta``."""

    half_ok = False

    @staticmethod
    def warm():
        pass

    @staticmethod
    def offset(bufs, p):
        return np.asarray([p, 0], dtype=np.int64)

    @staticmethod
    def empty(shape, like):
        return np.empty(shape, dtype=like.dtype)

    @staticmethod
    def prep(x):
        return x

    result = back = prep

    @staticmethod
    def ek_step(q, k, v, m, S, z, out, off, DK, DV, B):
        ta = S.dtype.type
        for bh in range(B):
            mi, ki = m[bh].copy(), k[bh].astype(ta)
            mm = np.maximum(mi, ki)
            fa, fb = np.exp(mi - mm), np.exp(ki - mm)
            zn = fa * z[bh] + fb
            m[bh], z[bh] = mm, zn
            A = q[bh].astype(ta) + mm
            R = A.max()
            A = np.exp(A - R)
            den = _block_sum(A * zn)
            # a feature live in the query and in a key so far (mm above the inputs' stand-in), else 0/0
            defined = np.any((q[bh] > -np.inf) & (mm > _lo_in(q.dtype)))

            def row(i, c, vc):  # S'_ic, written back; the thread's term A_i S'_ic
                s2 = fa[i] * S[bh, i, c] + fb[i] * vc
                S[bh, i, c] = s2
                return A[i] * s2

            for c, vc, num in _tiles(v[bh], DK, DV, ta, row):
                out[bh, c] = num / den if defined else np.nan
        off[0] += 1

    @staticmethod
    def ll_step(q, k, v, a, lam, S, out, off, DK, DV, L, K, B):
        ta = S.dtype.type
        p = _read_offset(off, K)
        if p is None:
            return
        n, h, _ = _slots_of(p)
        for bh in range(B):
            qs, ks = q[bh].astype(ta), k[bh].astype(ta)
            qk = _block_sum(qs * ks)
            wl = np.zeros(K, ta)
            for j in range(min(n, K)):
                if (p >> j) & 1:
                    wl[j] = lam[bh, min(j + 1, L - 1)]
            ea = np.exp(ta(a[bh, 0]))
            Sb = S[bh]

            def row(i, c, vc):  # the slots of the offset's bits at (i, c); the thread's term q_i rd_ic
                rd, fold = np.zeros(len(c), ta), np.zeros(len(c), ta)
                for j in range(n):
                    if not (p >> j) & 1:
                        continue
                    x = Sb[j, i, c].copy()
                    rd = wl[j] * x + rd
                    if j < h - 1:
                        fold = fold + x
                        Sb[j, i, c] = 0
                    else:
                        Sb[j, i, c] = ea * x
                Sb[h - 1, i, c] = ea * fold + ks[i] * vc
                return qs[i] * rd

            for c, vc, rdq in _tiles(v[bh], DK, DV, ta, row):
                out[bh, c] = ea * rdq + ta(lam[bh, 0]) * qk * vc

    @staticmethod
    def gd_step(q, k, v, a, beta, lam, S, out, off, DK, DV, L, K, B):
        ta = S.dtype.type
        p = _read_offset(off, K)
        if p is None:
            return
        n, h, occ = _slots_of(p)
        for bh in range(B):
            qs, ks = q[bh].astype(ta), k[bh].astype(ta)
            qk = _block_sum(qs * ks)
            ea, bt = np.exp(ta(a[bh, 0])), ta(beta[bh, 0])
            Sb = S[bh]
            for c0 in range(0, DV, 32):
                c = np.arange(c0, min(c0 + 32, DV))
                vc = v[bh, c].astype(ta)
                Sb[h - 1][:, c] = (bt * ks)[:, None] * vc  # the write
                acc = np.zeros((_WARPS, len(c)), ta)
                for j in occ:
                    wl = ta(lam[bh, min(j + 1, L - 1)])
                    kp = np.zeros((_WARPS, len(c)), ta)
                    for w in range(_WARPS):
                        for i in range(w, DK, _WARPS):
                            kp[w] = ks[i] * Sb[j, i, c] + kp[w]
                    kS = _warp_order_sum(kp)
                    for w in range(_WARPS):
                        for i in range(w, DK, _WARPS):
                            x = ea * (Sb[j, i, c] - (bt * ks[i]) * kS)
                            acc[w] = (wl * qs[i]) * x + acc[w]
                            if j < h - 1:
                                Sb[h - 1, i, c] += x
                                Sb[j, i, c] = 0
                            else:
                                Sb[j, i, c] = x
                out[bh, c] = ta(lam[bh, 0]) * bt * qk * vc + _warp_order_sum(acc)

    @staticmethod
    def hier_step(q, k, lv, lam, a, m, n, S, z, out, off, DK, DV, L, K, B):
        ta = S.dtype.type
        p = _read_offset(off, K)
        if p is None:
            return
        nl, h, occ = _slots_of(p)
        lo = ta(-np.finfo(ta).max / 8)
        alo = lo / (ta(4) * ta(p + 1))
        for bh in range(B):
            ab = np.maximum(ta(a[bh, 0]), alo) if a is not None else ta(0)
            qs, ks = q[bh].astype(ta), k[bh].astype(ta)
            mb, zb, Sb, nb = m[bh], z[bh], S[bh], n[bh]
            # the merge's per-row factors (F: folded slots, then the key's at row h - 1)
            mk = ks.copy()
            for l in range(h - 1):
                mk = np.maximum(mk, mb[l] + ab)
            F = np.zeros((h, DK), ta)
            F[h - 1] = np.exp(ks - mk)
            zz = F[h - 1].copy()
            for l in range(h - 1):
                F[l] = np.exp(mb[l] + ab - mk)
                zz = F[l] * zb[l] + zz
            rd = (qs + ks).max()
            den0 = _block_sum(_per_thread(np.exp(qs + ks - rd)))
            l0 = np.maximum(ta(lam[bh, 0]), lo)
            r0 = rd + l0
            on = l0 > lo  # some weight not switched off (else the output is NaN)
            A, e, d = {}, {}, {}
            for j in occ:  # warp j % 8, lanes over d_k
                rj = (qs + mb[j]).max()
                A[j] = np.exp(qs + mb[j] - rj)
                d[j] = _lane_sum(A[j] * zb[j])
                lj = np.maximum(ta(lam[bh, min(j + 1, L - 1)]), lo)
                e[j] = rj + lj + ab
                on = on or (lj > lo and (a is None or ab > alo))
            R = r0
            for j in occ:
                R = np.maximum(R, e[j])
            den = np.exp(r0 - R) * den0
            for j in occ:
                den = np.exp(e[j] - R) * d[j] + den
            ldiag, lden = np.log(den0) + r0 - R, np.log(den)
            mb[: h - 1], zb[: h - 1] = lo, 0
            mb[h - 1], zb[h - 1] = np.maximum(mk, lo), zz
            mb[h:nl] = np.maximum(mb[h:nl] + ab, lo)
            for c0 in range(0, DV, 32):
                c = np.arange(c0, min(c0 + 32, DV))
                vc = np.maximum(lv[bh, c].astype(ta), lo)
                M, s = ldiag + vc, np.ones(len(c), ta)
                for j in occ:
                    part = np.zeros((_WARPS, len(c)), ta)
                    for w in range(_WARPS):
                        for i in range(w, DK, _WARPS):
                            part[w] = A[j][i] * Sb[j, i, c] + part[w]
                    N = _warp_order_sum(part)
                    pos = N > 0
                    t = e[j] - R + nb[j, c] + np.log(np.where(pos, N, ta(1)))
                    up = pos & (t > M)
                    with np.errstate(over="ignore"):  # the branch np.where discards may overflow
                        s = np.where(up, s * np.exp(M - t) + 1, np.where(pos, s + np.exp(t - M), s))
                    M = np.where(up, t, M)
                o = M + np.log(s) - lden
                out[bh, c] = np.where(o > lo / 2, o, -np.inf) if on else np.nan
                nn = vc.copy()
                for l in range(h - 1):
                    nn = np.maximum(nn, nb[l, c])
                G = np.zeros((h, len(c)), ta)
                G[h - 1] = np.exp(vc - nn)
                for l in range(h - 1):
                    G[l] = np.exp(nb[l, c] - nn)
                acc = F[h - 1][:, None] * G[h - 1]
                for l in range(h - 1):
                    acc = (F[l][:, None] * G[l]) * Sb[l][:, c] + acc
                    Sb[l][:, c] = 0
                Sb[h - 1][:, c] = acc
                nb[: h - 1, c] = lo
                nb[h - 1, c] = nn


def _read_offset(off, K):
    """``read_offset`` of the level steps: the token's offset ``p``, advanced on the device; None when
    the step would pass the ``K`` slots (a replay past max_tokens: only the offset advances)."""
    p = int(off[0])
    off[0] = p + 1
    return None if (p + 1).bit_length() > K else p


def _slots_of(p):
    """``(n, h, occupied)`` of the token at ``p``: ``bit_length(p)``, ``bit_length(p XOR (p + 1))``
    (slots ``0 .. h - 2`` fold into ``h - 1``) and the occupied slots (bits of ``p``)."""
    n = p.bit_length()
    return n, (p ^ (p + 1)).bit_length(), [j for j in range(n) if (p >> j) & 1]


def _per_thread(x):
    """Per-thread partial sums of ``x[i]`` over ``i = tid, tid + NT, ...`` (in that order): (<= NT,)."""
    x = np.concatenate([x, np.zeros(-len(x) % NT, x.dtype)]).reshape(-1, NT)
    s = np.zeros(NT, x.dtype)
    for row in x:
        s = s + row
    return s[: min(NT, x.size)]


def _lane_sum(x):
    """A warp's sum of ``x[i]`` with lanes over ``i = lane, lane + 32, ...`` (each lane's sum in order,
    then over the lanes: the butterfly's order is not twinned)."""
    x = np.concatenate([x, np.zeros(-len(x) % 32, x.dtype)]).reshape(-1, 32)
    s = np.zeros(32, x.dtype)
    for row in x:
        s = s + row
    return s.sum(dtype=x.dtype)


def _tiles(vrow, DK, DV, ta, row):
    """The kernels' sweep of one row: per 32-column tile ``c`` (the lanes), per warp ``w`` the rows
    ``i = w, w + 8, ...`` accumulated as the thread does (``acc = row(i, c, vc) + acc``), then
    ``column_sum`` over the warps. Yields ``(c, v_c, column sums)``."""
    for c0 in range(0, DV, 32):
        c = np.arange(c0, min(c0 + 32, DV))
        vc = vrow[c].astype(ta)
        part = np.zeros((_WARPS, len(c)), ta)
        for w in range(_WARPS):
            acc = np.zeros(len(c), ta)
            for i in range(w, DK, _WARPS):
                acc = row(i, c, vc) + acc
            part[w] = acc
        yield c, vc, _warp_order_sum(part)


def _warp_order_sum(part):
    """Sum over the warps in warp order (``column_sum``): (warps, cols) -> (cols,)."""
    s = np.zeros(part.shape[1], part.dtype)
    for w in range(part.shape[0]):
        s = s + part[w]
    return s


def _block_sum(x):
    """``block_sum`` of per-thread values ``x[i]`` (thread ``i`` of ``NT``; ``len(x) <= NT``): each
    warp's sum, then over the warps in order (the butterfly's order within a warp is not twinned)."""
    x = np.concatenate([x, np.zeros(-len(x) % 32, x.dtype)]).reshape(-1, 32)
    return x.sum(axis=1).sum(dtype=x.dtype)
