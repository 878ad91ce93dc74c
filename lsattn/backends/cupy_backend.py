"""CuPy RawKernel backend: CUDA kernels for ``loglinear_attention`` and ``exp_kernel_attention``.

The kernels live in ``cupy_common.cu`` (helpers), ``cupy_loglinear.cu`` and ``cupy_exp_kernel.cu``
beside this file; each is compiled once per (device, compute dtype, input dtype, chunk, padded
head dims) through ``cupy.RawModule`` and launched from the thin wrappers below.

Arrays served: CuPy arrays directly; CUDA torch tensors (that do not require grad) and JAX GPU
arrays through DLPack, without copies, returned as the caller's type. Work is queued on torch's
current stream for torch tensors and on CuPy's current stream otherwise. Nothing here imports
CuPy, torch or JAX until a kernel is needed.

The wrappers implement exactly the signatures of the array-API twins registered in
``_builtin.ARRAY_API_OPS`` and consume / produce the same ``State`` tensors, so a stream can
move between backends. The host logic (``_ll_compute``, ``_ek_compute``) drives an ``ops``
object: ``_CupyOps`` launches the kernels; the tests drive the same logic with a NumPy twin of
every kernel (``tests/test_cupy_backend.py``), so the index arithmetic is checked without a GPU.

Kernels: float32 / float64 inputs run exact FFMA kernels (float32 within ~1e-6 of the float64
reference at benchmark sizes). Half precision reaches the kernels as is (``HALF_OPS``): bfloat16
inputs (torch, JAX; read as their 16-bit patterns) run mma.sync tensor-core kernels (bf16
products, fp32 accumulation, fp32 states) and write bfloat16 outputs; float16 inputs (torch, CuPy,
JAX) are read and written as float16 by the FFMA kernels, which compute in float32 (fp16's range,
65504, cannot hold the unnormalised chunk and level states that the tensor-core kernels round to
16 bits, and bf16 products would lose fp16's precision). ``LSATTN_CUPY_TC4=0`` /
``LSATTN_CUPY_EK5=0`` select earlier bf16 kernel versions (see ``benchmarks/NOTES.md``).

Limits: ``d_k <= 128`` (``serves`` declines larger ``d_k``, so automatic selection falls back to
the array API); ``d_v`` of any size (split into column blocks of 128). ``chunk_size`` is a speed
knob here too: the kernels use ``CH = clip(chunk_size, 16, 64)`` (32 for float64 with a head dim
above 64; 64 for bf16) and results do not depend on it beyond rounding. Grid limit:
``prod(batch) <= 65535``. No backward: the registry sends inputs that require grad elsewhere.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
from dataclasses import dataclass

import numpy as np

from ..state import State

__all__ = ["OPS", "HALF_OPS", "probe", "serves", "loglinear_forward", "exp_kernel_forward"]

#: operators this backend implements -> "module:function"
OPS = {
    "loglinear_attention": "lsattn.backends.cupy_backend:loglinear_forward",
    "exp_kernel_attention": "lsattn.backends.cupy_backend:exp_kernel_forward",
}
#: operators whose float16 / bfloat16 inputs reach the kernels as they are
HALF_OPS = tuple(OPS)

MAX_DK = 128
_DV_BLOCK = 128
_TC4 = os.environ.get("LSATTN_CUPY_TC4", "1") != "0"
#: bf16 exp-kernel: chunk summaries stored as bf16 and fast exp for bf16-rounded factors (v5)
_EK5 = _TC4 and os.environ.get("LSATTN_CUPY_EK5", "1") != "0"
_HERE = os.path.dirname(os.path.abspath(__file__))


# ---- registry hooks ----------------------------------------------------------------------------

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


def _kind(a):
    """'cupy', 'torch' or 'jax' for arrays on a CUDA device, else None. Imports nothing."""
    mod = type(a).__module__
    if mod.startswith("cupy"):
        return "cupy"
    if mod.startswith("torch"):
        return "torch" if getattr(a, "is_cuda", False) else None
    if mod.startswith("jax"):
        try:
            devices = a.devices()  # tracers (inside jit) raise or have no devices
            return "jax" if devices and all(d.platform == "gpu" for d in devices) else None
        except Exception:
            return None
    return None


# ---- compilation ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """One compiled variant: compute type, 16-bit inputs, chunk, padded head dims."""

    ta: str  # "float" | "double"
    half: str  # "" (inputs in the compute type) | "bf16" | "f16"
    CH: int
    DKP: int
    DVP: int

    @property
    def bf16(self):
        return self.half == "bf16"

    @property
    def itemsize(self):
        return 8 if self.ta == "double" else 4

    @property
    def QLD(self):
        return self.CH + 4

    @property
    def HS(self):
        return min(self.DKP, 32)

    @property
    def NLC(self):
        return int(math.log2(self.CH)) + 1

    # dynamic shared memory of each kernel, in bytes (the kernels check it: check_smem)
    def smem(self, kernel):
        CH, DKP, DVP, QLD, HS, es = self.CH, self.DKP, self.DVP, self.QLD, self.HS, self.itemsize
        if kernel == "ll_chunk_states":
            return (CH * DKP + CH * DVP + CH) * es
        if kernel == "ll_output":
            return (2 * DKP * QLD + CH * DVP + CH * QLD + HS * DVP + CH + CH * self.NLC) * es
        if kernel == "ek_chunk":
            return (CH * DKP + CH * DVP + DKP) * es
        if kernel == "ek_output":
            return (2 * DKP * QLD + CH * DVP + CH * QLD + HS * DVP + 3 * DKP + 2 * CH + 8 * (DKP + CH)) * es + CH * 4
        LDK, LDC = DKP + 8, CH + 8  # tensor-core kernels (bf16 tiles)
        if kernel == "ll_chunk_states_tc":
            return (DKP + DVP) * LDC * 2 + CH * 4
        if kernel == "ek_chunk_tc":
            return (DKP + DVP) * LDC * 2 + (128 + DKP) * 4
        if kernel == "ll_output_tc":
            return (2 * CH * LDK + DVP * LDC + DVP * LDK) * 2 + (CH + CH * self.NLC) * 4
        if kernel == "ek_output_tc":
            return (2 * CH * LDK + DVP * LDC + DVP * LDK) * 2 + (3 * DKP + 2 * CH + 4 * (DKP + CH)) * 4 + CH * 4
        LDV = DVP + 8
        if kernel == "ll_chunk_states_tc4":
            return (CH * LDK + CH * LDV) * 2 + CH * 4
        if kernel == "ll_output_tc4":
            return (2 * DKP * (DVP + 4) * 4 + (2 * CH * LDK + CH * LDV + DKP * LDV) * 2 + (CH + CH * self.NLC) * 4
                    + 128 * (4 + 4 + 8))
        if kernel in ("ek_chunk_tc4", "ek_chunk_tc5"):
            return (CH * LDK + CH * LDV) * 2 + (128 + DKP) * 4
        if kernel in ("ek_output_tc4", "ek_output_tc5"):
            nf = DKP * (DVP + 4) if kernel == "ek_output_tc4" else 0
            return (nf * 4 + (2 * CH * LDK + CH * LDV + DKP * LDV) * 2
                    + (3 * DKP + 2 * CH + 4 * (DKP + CH)) * 4 + CH * 4)
        return 0

    def kernel(self, name):
        """(kernel name, threads per block): tensor-core variants for bf16 inputs (the
        asynchronous-copy versions ``*_tc4`` unless ``LSATTN_CUPY_TC4=0``)."""
        if self.bf16 and name in ("ll_chunk_states", "ll_output", "ek_chunk", "ek_output"):
            if _EK5 and name.startswith("ek_"):
                return name + "_tc5", 128
            if _TC4:
                return name + "_tc4", 128
            return name + "_tc", 128
        return name, 256


def _pad_dim(d):
    for p in (16, 32, 64, 128):
        if d <= p:
            return p
    raise ValueError(f"head dim {d} > 128 is not supported by the cupy kernels")


def make_config(ta, DK, DV, chunk_size=None, half=""):
    """The variant for compute type ``ta`` ('float'/'double'), 16-bit inputs ``half`` ('', 'bf16',
    'f16') and head dims (``DV <= 128``)."""
    DKP, DVP = _pad_dim(DK), _pad_dim(DV)
    ch_max = 32 if (ta == "double" and max(DKP, DVP) == 128) else 64
    CH = min(max(int(chunk_size or 64), 16), ch_max)
    CH = 1 << (CH.bit_length() - 1)  # power of two
    if half == "bf16":
        CH = 64  # the tensor-core kernels tile 64 rows over 4 warps
    return Config(ta, half, CH, DKP, DVP)


def _source(name):
    with open(os.path.join(_HERE, name), encoding="utf-8") as f:
        return f.read()


_KERNELS = {
    "loglinear": ("ll_chunk_states", "ll_upsweep", "ll_output", "ll_new_state", "ll_decode"),
    "exp_kernel": ("ek_chunk", "ek_scan_mz", "ek_scan_Sv", "ek_scan_S1", "ek_output", "ek_decode"),
}


@functools.lru_cache(maxsize=None)
def _kernels(op, device_id, cfg):
    """Compiled kernels of ``op`` ('loglinear' | 'exp_kernel') for ``cfg`` on one device."""
    import cupy

    code = _source("cupy_common.cu") + "\n" + _source(f"cupy_{op}.cu")
    options = (
        "-std=c++17",
        f"-DTA={cfg.ta}",
        f"-DTI_BF16={int(cfg.half == 'bf16')}",
        f"-DTI_F16={int(cfg.half == 'f16')}",
        f"-DCH={cfg.CH}",
        f"-DDKP={cfg.DKP}",
        f"-DDVP={cfg.DVP}",
    )
    names = list(_KERNELS[op])
    if cfg.bf16:
        names += [cfg.kernel(n)[0] for n in names if cfg.kernel(n)[0] != n]
        if op == "exp_kernel" and _EK5:
            names += ["ek_scan_Shv", "ek_scan_Sh1"]
    with cupy.cuda.Device(device_id):
        mod = cupy.RawModule(code=code, options=options)
        out = {}
        for name in names:
            fn = mod.get_function(name)
            need = cfg.smem(name)
            if need > 48 * 1024:
                fn.max_dynamic_shared_size_bytes = need
            out[name] = fn
    return out


# ---- the kernel launches -------------------------------------------------------------------------

_NT = 256


class _CupyOps:
    """Launches the kernels on CuPy's current device and stream. Arrays are CuPy arrays."""

    def __init__(self, device_id):
        import cupy

        self.xp = cupy
        self.device_id = device_id

    def _k(self, op, cfg, name):
        return _kernels(op, self.device_id, cfg)[name]

    def _tk(self, op, cfg, name):
        """(kernel, block, shared bytes) of the variant of ``name`` for ``cfg``."""
        real, threads = cfg.kernel(name)
        return _kernels(op, self.device_id, cfg)[real], (threads,), cfg.smem(real)

    @staticmethod
    def _i(x):
        return np.int32(x)

    @staticmethod
    def _l(x):
        return np.int64(x)

    # log-linear
    def ll_chunk_states(self, cfg, k, v, a, H, gsum, T, DK, DV, p, F, n, BH):
        fn, block, smem = self._tk("loglinear", cfg, "ll_chunk_states")
        fn((n, BH), block, (k, v, a, H, gsum, self._i(T), self._i(DK), self._i(DV), self._l(p), self._l(F), self._i(n)),
           shared_mem=smem)

    def ll_upsweep(self, cfg, H, gsum, DK, DV, n, j0, step, stride, count, BH):
        self._k("loglinear", cfg, "ll_upsweep")(
            (count, BH), (_NT,), (H, gsum, self._i(DK), self._i(DV), self._i(n), self._l(j0), self._l(step), self._l(stride)))

    def ll_output(self, cfg, q, k, v, a, lam, H, gsum, old, out, T, DK, DV, L, p, F, n, n_old, BH):
        fn, block, smem = self._tk("loglinear", cfg, "ll_output")
        fn((n, BH), block,
           (q, k, v, a, lam, H, gsum, old, out, self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p),
            self._l(F), self._i(n), self._i(n_old)),
           shared_mem=smem)

    def ll_new_state(self, cfg, k, v, a, H, gsum, old, newlev, T, DK, DV, p, F, n, n_old, h, Lnew, BH):
        self._k("loglinear", cfg, "ll_new_state")(
            (Lnew, BH), (_NT,),
            (k, v, a, H, gsum, old, newlev, self._i(T), self._i(DK), self._i(DV), self._l(p), self._l(F), self._i(n),
             self._i(n_old), self._i(h), self._i(Lnew)))

    def ll_decode(self, cfg, q, k, v, a, lam, old, newlev, out, DK, DV, L, p, n_old, h, Lnew, BH):
        self._k("loglinear", cfg, "ll_decode")(
            (BH, -(-DV // 16)), (_NT,),
            (q, k, v, a, lam, old, newlev, out, self._i(DK), self._i(DV), self._i(L), self._l(p), self._i(n_old),
             self._i(h), self._i(Lnew)))

    # exp-kernel
    def ek_chunk(self, cfg, k, v, mk, S, z, T, DK, DV, n, BH):
        fn, block, smem = self._tk("exp_kernel", cfg, "ek_chunk")
        fn((n, BH), block, (k, v, mk, S, z, self._i(T), self._i(DK), self._i(DV), self._i(n)), shared_mem=smem)

    def ek_scan(self, cfg, mk, S, z, m0, S0, z0, m_in, m_out, S_out, z_out, DK, DV, n, BH):
        """m0, S0, z0: the incoming state, or None (no keys yet: m = -finfo.max / 8, S = z = 0)."""
        xp = self.xp
        al = xp.empty((BH, n, DK), dtype=mk.dtype)
        be = xp.empty((BH, n, DK), dtype=mk.dtype)
        has = m0 is not None
        if not has:
            m0 = S0 = z0 = al  # not read
        lo = -float(np.finfo(mk.dtype).max) / 8
        scalar = np.float64 if cfg.ta == "double" else np.float32
        self._k("exp_kernel", cfg, "ek_scan_mz")(
            (-(-DK // _NT), BH), (_NT,),
            (mk, z, m0, z0, m_in, al, be, m_out, z_out, self._i(DK), self._i(n), self._i(has), scalar(lo)))
        if S.dtype != mk.dtype:  # v5: bf16 summaries (stored as uint16)
            vec = 4
            name = "ek_scan_Shv" if DV % vec == 0 else "ek_scan_Sh1"
            vec = vec if DV % vec == 0 else 1
        elif DV % (16 // cfg.itemsize) == 0 and (not has or S0.data.ptr % 16 == 0):
            name, vec = "ek_scan_Sv", 16 // cfg.itemsize
        else:
            name, vec = "ek_scan_S1", 1
        self._k("exp_kernel", cfg, name)(
            (-(-DK * DV // (vec * _NT)), BH), (_NT,),
            (al, be, S, S0, S_out, self._i(DK), self._i(DV), self._i(n), self._i(has)))

    def ek_output(self, cfg, q, k, v, m_in, S_in, z_in, out, Tq, Tk, DK, DV, n_state, causal, BH):
        nq = -(-Tq // cfg.CH)
        fn, block, smem = self._tk("exp_kernel", cfg, "ek_output")
        fn((nq, BH), block,
           (q, k, v, m_in, S_in, z_in, out, self._i(Tq), self._i(Tk), self._i(DK), self._i(DV), self._i(n_state),
            self._i(int(causal))),
           shared_mem=smem)

    def ek_decode(self, cfg, q, k, v, m, S, z, m2, S2, z2, out, DK, DV, BH):
        self._k("exp_kernel", cfg, "ek_decode")(
            (BH, -(-DV // 16)), (_NT,), (q, k, v, m, S, z, m2, S2, z2, out, self._i(DK), self._i(DV)))


# ---- host logic (shared by the kernels and their NumPy twin) -------------------------------------

def _ta(xp, dtype):
    return "double" if dtype == xp.float64 else "float"


def _flat(xp, x, shape):
    return xp.ascontiguousarray(xp.reshape(x, shape))


def _check_grid(BH):
    if BH > 65535:
        raise ValueError(f"the cupy kernels take at most 65535 sequences (prod of the batch axes), got {BH}")


def _ll_compute(ops, q, k, v, a, lam, chunk_size, p, old, want_state, half=""):
    """Log-linear Mamba-2 over one call at offset ``p``.

    q, k (..., T, d_k), v (..., T, d_v), a (..., T), lam (..., T, L): arrays of ``ops.xp``, float32
    / float64, float16 (``half="f16"``) or bfloat16 stored as 16-bit integers (``half="bf16"``);
    old: (..., n_old, d_k, d_v) float32 / float64, or None.
    Returns (out (..., T, d_v), levels (..., bit_length(p + T), d_k, d_v) or None).
    """
    xp = ops.xp
    batch = tuple(q.shape[:-2])
    T, DK, DV, L = q.shape[-2], q.shape[-1], v.shape[-1], lam.shape[-1]
    BH = math.prod(batch)
    _check_grid(BH)
    ta_dtype = xp.float32 if half else q.dtype
    if DV > _DV_BLOCK:  # independent column blocks of v (and of the state)
        outs, levs = [], []
        for c0 in range(0, DV, _DV_BLOCK):
            c1 = min(DV, c0 + _DV_BLOCK)
            o, lv = _ll_compute(ops, q, k, xp.ascontiguousarray(v[..., c0:c1]), a, lam, chunk_size, p,
                                None if old is None else xp.ascontiguousarray(old[..., c0:c1]), want_state, half)
            outs.append(o)
            levs.append(lv)
        return xp.concatenate(outs, axis=-1), (xp.concatenate(levs, axis=-1) if want_state else None)

    cfg = make_config(_ta(xp, ta_dtype), DK, DV, chunk_size, half)
    q3, k3 = _flat(xp, q, (BH, T, DK)), _flat(xp, k, (BH, T, DK))
    v3, a2, l3 = _flat(xp, v, (BH, T, DV)), _flat(xp, a, (BH, T)), _flat(xp, lam, (BH, T, L))
    n_old = 0 if old is None else old.shape[-3]
    old4 = xp.zeros((1,), dtype=ta_dtype) if n_old == 0 else _flat(xp, old, (BH, n_old, DK, DV))
    out = xp.empty((BH, T, DV), dtype=q.dtype)
    pn = p + T
    h, Lnew = (p ^ pn).bit_length(), pn.bit_length()
    if T == 1:  # decoding step
        newlev = xp.empty((BH, Lnew, DK, DV), dtype=ta_dtype)
        ops.ll_decode(cfg, q3, k3, v3, a2, l3, old4, newlev, out, DK, DV, L, p, n_old, h, Lnew, BH)
        levels = xp.reshape(newlev, batch + (Lnew, DK, DV)) if want_state else None
        return xp.reshape(out, batch + (T, DV)), levels

    CH = cfg.CH
    F = p // CH
    n = (p + T - 1) // CH - F + 1
    H = xp.empty((BH, n, DK, DV), dtype=ta_dtype)
    gsum = xp.empty((BH, n), dtype=ta_dtype)
    ops.ll_chunk_states(cfg, k3, v3, a2, H, gsum, T, DK, DV, p, F, n, BH)
    for stride, step, j0, count in _upsweep_plan(F, n):
        ops.ll_upsweep(cfg, H, gsum, DK, DV, n, j0, step, stride, count, BH)
    ops.ll_output(cfg, q3, k3, v3, a2, l3, H, gsum, old4, out, T, DK, DV, L, p, F, n, n_old, BH)
    levels = None
    if want_state:
        newlev = xp.empty((BH, Lnew, DK, DV), dtype=ta_dtype)
        if Lnew:
            ops.ll_new_state(cfg, k3, v3, a2, H, gsum, old4, newlev, T, DK, DV, p, F, n, n_old, h, Lnew, BH)
        levels = xp.reshape(newlev, batch + (Lnew, DK, DV))
    return xp.reshape(out, batch + (T, DV)), levels


def _upsweep_plan(F, n):
    """Per chunk level: (stride, step, first slot, slot count) of the in-place Fenwick up-sweep over
    the absolute chunk indices F .. F + n - 1: slots j with (F + j + 1) % step == 0 and j >= stride."""
    plan = []
    stride = 1
    while stride < n:
        step = 2 * stride
        j0 = (-(F + 1)) % step
        while j0 < stride:
            j0 += step
        if j0 < n:
            plan.append((stride, step, j0, (n - 1 - j0) // step + 1))
        stride = step
    return plan


def _ek_compute(ops, q, k, v, causal, init, want_state, chunk_size=None, half=""):
    """Exp-kernel attention. q (..., Tq, d_k), k (..., Tk, d_k), v (..., Tk, d_v) (16-bit inputs as
    in ``_ll_compute``; non-causal calls take none); init: (m, S, z) of the incoming state or None.
    Returns (out (..., Tq, d_v), (m, S, z) or None)."""
    xp = ops.xp
    batch = tuple(q.shape[:-2])
    Tq, Tk, DK, DV = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    BH = math.prod(batch)
    _check_grid(BH)
    ta_dtype = xp.float32 if half else q.dtype
    if DV > _DV_BLOCK:
        outs, Ss, mz = [], [], None
        for c0 in range(0, DV, _DV_BLOCK):
            c1 = min(DV, c0 + _DV_BLOCK)
            sub = None if init is None else (init[0], xp.ascontiguousarray(init[1][..., c0:c1]), init[2])
            o, st = _ek_compute(ops, q, k, xp.ascontiguousarray(v[..., c0:c1]), causal, sub, want_state, chunk_size, half)
            outs.append(o)
            if want_state:
                Ss.append(st[1])
                mz = (st[0], st[2])
        state = (mz[0], xp.concatenate(Ss, axis=-1), mz[1]) if want_state else None
        return xp.concatenate(outs, axis=-1), state

    cfg = make_config(_ta(xp, ta_dtype), DK, DV, chunk_size, half)
    q3, k3, v3 = _flat(xp, q, (BH, Tq, DK)), _flat(xp, k, (BH, Tk, DK)), _flat(xp, v, (BH, Tk, DV))
    if init is None:
        if causal and Tq == 1:  # the decoding kernel reads a state: the one before any token
            lo = -float(np.finfo(np.float64 if cfg.ta == "double" else np.float32).max) / 8
            m0 = xp.full((BH, DK), lo, dtype=ta_dtype)
            S0 = xp.zeros((BH, DK, DV), dtype=ta_dtype)
            z0 = xp.zeros((BH, DK), dtype=ta_dtype)
        else:
            m0 = S0 = z0 = None
    else:
        m0, S0, z0 = _flat(xp, init[0], (BH, DK)), _flat(xp, init[1], (BH, DK, DV)), _flat(xp, init[2], (BH, DK))
    out = xp.empty((BH, Tq, DV), dtype=q.dtype)
    m_out = xp.empty((BH, DK), dtype=ta_dtype)
    S_out = xp.empty((BH, DK, DV), dtype=ta_dtype)
    z_out = xp.empty((BH, DK), dtype=ta_dtype)

    if causal and Tq == 1:  # decoding step
        ops.ek_decode(cfg, q3, k3, v3, m0, S0, z0, m_out, S_out, z_out, out, DK, DV, BH)
    else:
        n = -(-Tk // cfg.CH)
        mk = xp.empty((BH, n, DK), dtype=ta_dtype)
        # per-chunk summaries: compute dtype, or bf16 (uint16 storage) in the v5 bf16 path
        S = xp.empty((BH, n, DK, DV), dtype=xp.uint16 if cfg.kernel("ek_chunk")[0].endswith("tc5") else ta_dtype)
        z = xp.empty((BH, n, DK), dtype=ta_dtype)
        m_in = xp.empty((BH, n, DK), dtype=ta_dtype)
        ops.ek_chunk(cfg, k3, v3, mk, S, z, Tk, DK, DV, n, BH)
        ops.ek_scan(cfg, mk, S, z, m0, S0, z0, m_in, m_out, S_out, z_out, DK, DV, n, BH)
        if causal:
            ops.ek_output(cfg, q3, k3, v3, m_in, S, z, out, Tq, Tk, DK, DV, n, True, BH)
        elif Tq > 0:
            if half:
                raise NotImplementedError("non-causal calls take float32 / float64 inputs")
            one = lambda x: xp.reshape(x, (BH, 1) + x.shape[1:])  # noqa: E731  the final summary as 1 'chunk'
            ops.ek_output(cfg, q3, k3, v3, one(m_out), one(S_out), one(z_out), out, Tq, Tk, DK, DV, 1, False, BH)
    state = None
    if want_state:
        state = (xp.reshape(m_out, batch + (DK,)), xp.reshape(S_out, batch + (DK, DV)), xp.reshape(z_out, batch + (DK,)))
    return xp.reshape(out, batch + (Tq, DV)), state


# ---- array conversion ----------------------------------------------------------------------------

@contextlib.contextmanager
def _on_gpu(like):
    """Device and stream of ``like`` (a torch tensor's current stream; CuPy's current stream
    otherwise); yields (to_cupy, from_cupy, ops): ``to_cupy(x)`` is ``(CuPy array, half)`` with
    bfloat16 as its 16-bit patterns (``half`` '', 'f16' or 'bf16'), ``from_cupy(x, half)`` the
    caller's array type (bfloat16 again for ``half='bf16'``)."""
    import cupy

    kind = _kind(like)
    if kind is None:
        raise ValueError(f"the cupy backend needs GPU arrays, got {type(like).__name__}")
    stream = contextlib.nullcontext()
    if kind == "torch":
        import torch

        dev = like.device.index if like.device.index is not None else torch.cuda.current_device()
        stream = _external_stream(torch.cuda.current_stream(dev).cuda_stream, dev)
    elif kind == "cupy":
        dev = like.device.id
    else:
        dev = next(iter(like.devices())).id
    with cupy.cuda.Device(dev), stream:
        yield functools.partial(_to_cupy, kind=kind), functools.partial(_from_cupy, kind=kind), _CupyOps(dev)


@functools.lru_cache(maxsize=64)
def _external_stream(ptr, dev):
    """CuPy's handle on a torch stream (cached: one per stream, not one per call)."""
    import warnings

    import cupy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return cupy.cuda.ExternalStream(ptr, dev)


def _half(x):
    name = str(x.dtype).split(".")[-1]
    return {"bfloat16": "bf16", "float16": "f16"}.get(name, "")


def _to_cupy(x, kind):
    """(CuPy array on x's memory, its 16-bit kind); bfloat16 is viewed as int16 (no copy for
    torch; one bit-cast copy for JAX, which has no in-place view)."""
    import cupy

    if x is None:
        return None, ""
    half = _half(x)
    if kind == "cupy":
        return x, half
    if kind == "torch":
        return _torch_view(cupy, x), half
    if half == "bf16":
        import jax

        x = jax.lax.bitcast_convert_type(x, "int16")
    return cupy.from_dlpack(x), half


#: torch dtype name -> the NumPy dtype CuPy sees (bfloat16 as its 16-bit patterns)
_TORCH_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "bfloat16": np.int16}


def _torch_view(cupy, t):
    """A CuPy array on a CUDA tensor's memory (same shape and strides; the tensor kept alive).

    Built from the pointer, shape and strides directly: DLPack through torch costs tens of
    microseconds per tensor (stream queries), the dominant host cost of a decoding step."""
    dtype = np.dtype(_TORCH_DTYPES[str(t.dtype).split(".")[-1]])
    shape = tuple(t.shape)
    if t.numel() == 0:
        return cupy.empty(shape, dtype=dtype)
    strides = t.stride()
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides))
    mem = cupy.cuda.UnownedMemory(t.data_ptr(), extent * dtype.itemsize, t, t.device.index)
    return cupy.ndarray(shape, dtype=dtype, memptr=cupy.cuda.MemoryPointer(mem, 0),
                        strides=tuple(s * dtype.itemsize for s in strides))


def _from_cupy(x, half, kind):
    if x is None or kind == "cupy":
        return x
    if kind == "torch":
        import torch

        t = torch.from_dlpack(x)
        return t.view(torch.bfloat16) if half == "bf16" else t
    import cupy
    import jax

    cupy.cuda.get_current_stream().synchronize()  # JAX reads it on its own stream
    y = jax.dlpack.from_dlpack(x)
    return jax.lax.bitcast_convert_type(y, "bfloat16") if half == "bf16" else y


def _inputs(to_cp, arrays):
    """CuPy views of the inputs and their common 16-bit kind. The tensor-core kernels read 16-byte
    aligned rows with asynchronous copies: a misaligned bfloat16 view is copied once."""
    pairs = [to_cp(x) for x in arrays]
    half = pairs[0][1]
    out = []
    for c, _ in pairs:
        if half == "bf16" and c.data.ptr % 16:
            c = c.copy()
        out.append(c)
    return out, half


# ---- the backend's implementations (signatures of the array-API twins) ----------------------------

def loglinear_forward(q, k, v, log_decay, level_weights, chunk_size, state, return_state):
    """CuPy-kernel implementation of ``loglinear_attention``; the signature of
    ``lsattn.loglinear._forward`` (validated inputs of one dtype: float32 / float64, or float16 /
    bfloat16 as the caller gave them; ``state`` may be None; its tensors float32 / float64).

    Returns
    -------
    (out (..., T, d_v) in the inputs' dtype, State or None); the state's ``tensors["levels"]`` as
    in the array-API twin.
    """
    batch, T, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], v.shape[-1]
    p = 0 if state is None else state.offset
    with _on_gpu(q) as (to_cp, back, ops):
        xp = ops.xp
        args, half = _inputs(to_cp, (q, k, v, log_decay, level_weights))
        sdtype = xp.float32 if half else args[0].dtype
        if T == 0:
            out = back(xp.empty(batch + (0, d_v), dtype=args[0].dtype), half)
            if not return_state or state is not None:
                return out, state if return_state else None
            levels = xp.zeros(batch + (0, d_k, d_v), dtype=sdtype)
            return out, State("loglinear_attention", 0, batch, d_k, d_v, sdtype, {"levels": back(levels, "")})
        old = None if (state is None or p == 0) else to_cp(state.tensors["levels"])[0]
        out, levels = _ll_compute(ops, *args, chunk_size, p, old, return_state, half)
        out = back(out, half)
        if not return_state:
            return out, None
        levels = back(levels, "")
        return out, State("loglinear_attention", p + T, batch, d_k, d_v, levels.dtype, {"levels": levels})


def exp_kernel_forward(q, k, v, causal, state, return_state, *, chunk_size=None):
    """CuPy-kernel implementation of ``exp_kernel_attention``; the signature of
    ``lsattn.exp_kernel._exp_forward`` (inputs as in :func:`loglinear_forward`; non-causal calls
    with 16-bit inputs compute from float32 copies).

    Returns
    -------
    (y (..., Tq, d_v) in the inputs' dtype, State or None); state tensors ``m (..., d_k)``,
    ``S (..., d_k, d_v)``, ``z (..., d_k)`` as in the array-API twin (before any token
    ``m = -finfo.max / 8``), float32 / float64.
    """
    batch, Tq, d_k, d_v = tuple(q.shape[:-2]), q.shape[-2], q.shape[-1], v.shape[-1]
    offset = 0 if state is None else state.offset
    with _on_gpu(q) as (to_cp, back, ops):
        xp = ops.xp
        (qc, kc, vc), half = _inputs(to_cp, (q, k, v))
        if half and not causal:  # no 16-bit entry for the one-summary read: compute from float32 copies
            qc, kc, vc = (_widen(xp, x, half) for x in (qc, kc, vc))
            out, _ = _ek_compute(ops, qc, kc, vc, False, None, False, chunk_size)
            return back(_narrow(xp, out, half), half), None
        sdtype = xp.float32 if half else qc.dtype
        init = None if state is None else tuple(to_cp(state.tensors[n])[0] for n in ("m", "S", "z"))
        if Tq == 0 and causal:
            out = back(xp.empty(batch + (0, d_v), dtype=qc.dtype), half)
            if not return_state or state is not None:
                return out, state if return_state else None
            lo = -float(np.finfo(np.dtype(sdtype)).max) / 8
            init = (xp.full(batch + (d_k,), lo, dtype=sdtype), xp.zeros(batch + (d_k, d_v), dtype=sdtype),
                    xp.zeros(batch + (d_k,), dtype=sdtype))
            tensors = dict(zip(("m", "S", "z"), (back(t, "") for t in init)))
            return out, State("exp_kernel_attention", 0, batch, d_k, d_v, tensors["S"].dtype, tensors)
        out, st = _ek_compute(ops, qc, kc, vc, causal, init, return_state, chunk_size, half)
        out = back(out, half)
        if not return_state:
            return out, None
        tensors = dict(zip(("m", "S", "z"), (back(t, "") for t in st)))
        return out, State("exp_kernel_attention", offset + Tq, batch, d_k, d_v, tensors["S"].dtype, tensors)


def _widen(xp, x, half):
    """float32 copy of 16-bit input ``x`` (bfloat16 patterns shifted into float32's high half)."""
    if half == "bf16":
        return (x.view(xp.uint16).astype(xp.uint32) << 16).view(xp.float32)
    return x.astype(xp.float32)


def _narrow(xp, x, half):
    """float32 ``x`` rounded to the 16-bit kind (bfloat16: round to nearest even, as ``st``)."""
    if half == "bf16":
        u = x.view(xp.uint32)
        u = u + xp.uint32(0x7FFF) + ((u >> 16) & xp.uint32(1))
        return (u >> 16).astype(xp.uint16).view(xp.int16)
    return x.astype(xp.float16)
