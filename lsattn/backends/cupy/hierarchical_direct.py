"""``hi_intra`` of the hierarchical autograd forward launched on CUDA torch tensors' pointers, before any CuPy
view (issue 17, session 17): every training step starts on an empty queue, so the host's work before the first
kernel is GPU idle time. What depends only on the shapes, dtype, device and chunk is kept per plan (``_Plan``:
the variant, layout, clamp, the buffers' byte layout, a prebuilt driver launch), the buffers ``hi_intra`` writes
are two torch allocations (the ones the backward keeps, and ``wm`` / ``lnum``, dropped after the forward), and the
CuPy views, the other allocations and launches follow ``hi_intra``'s launch (``hierarchical.slots(pre=...)``).
The same kernel with the same arguments as ``hierarchical.slots``' own launch: outputs bit-equal.
"""
from __future__ import annotations

import math

import numpy as np

from ._arrays import _half, check_grid
from ._compile import CupyOps, _launch
from ._rawlaunch import cached_plan, raw_launch
from .gated_delta import chunk_slots
from . import hierarchical as _hi

__all__ = ["intra", "DIRECT"]

#: bfloat16 CUDA torch tensors of the autograd forward (no incoming state) launch ``hi_intra`` here (False: after the
#: CuPy views and allocations, as every other call; for A/B timing). H200, the table's calls (NOTES, s17g17): bf16 16K
#: fwd+bwd 9.278 against 9.440 ms; fp32 8K 5.824 against 5.783 (no gain: its shorter ``hi_intra`` is over before the
#: host work moved after it is done), so float32 / float64 (and float16, unmeasured) keep the views-first order
DIRECT = True
_PLANS = {}
_PLANS_MAX = 64
_RAW_STREAM = []  # torch's current raw stream getter, looked up once


class _Plan:
    """``hi_intra``'s launch of one (shapes, dtype, device, chunk): its variant, the layout ``slots`` reads, the
    buffers' byte offsets in the kept scratch (``wz, wn, wS, lden, gch``) and the temporary one (``wm, lnum``)."""

    def __init__(self, q, lv, lam, CH, dev):
        import torch

        self.half = _half(q)
        f64 = q.dtype == torch.float64
        self.cfg = cfg = _hi.config("double" if f64 else "float", q.shape[-1], lv.shape[-1], CH, self.half)
        self.batch = batch = tuple(q.shape[:-2])
        BH = math.prod(batch)
        check_grid(BH)
        T, DK, DV, L = q.shape[-2], q.shape[-1], lv.shape[-1], lam.shape[-1]
        lay = _hi._layout(0, T, cfg.CH)
        F, n = lay.first_chunk, lay.n_chunks
        self.np_dtype = np.dtype(np.float64 if f64 else np.float32)  # the compute dtype (slots' ta_dtype)
        self.alo = -_hi._fmax(self.np_dtype) / 8 / (4 * T)  # slots' clamp at p = 0
        ncb = -(-DV // _hi.BV)
        self.dims = dict(batch=batch, BH=BH, T=T, DK=DK, DV=DV, L=L, F=F, n=n, n_old=0, NLC=chunk_slots(F, n, False))
        self.shapes = {"wz": (BH, ncb, n, DK), "wn": (BH, n, DV), "wS": (BH, n, DK, DV), "lden": (BH, T), "gch": (BH, n),
                       "wm": (BH, ncb, n, DK), "lnum": (BH, T, DV)}
        self.offsets, self.nbytes = {}, [0, 0]
        for name, shape in self.shapes.items():  # each 256-byte aligned
            part = int(name in ("wm", "lnum"))
            self.offsets[name] = (part, self.nbytes[part])
            self.nbytes[part] += -(-math.prod(shape) * self.np_dtype.itemsize // 256) * 256
        self.device, self.dev = q.device, dev
        fn, block, smem = _launch("hierarchical", dev, cfg, "hi_intra")
        i, l = np.int32, np.int64
        # CupyOps.hi_intra's scalars: T, DK, DV, L, p, F, alo, n_old, ncb
        self.raw = raw_launch(fn, (n, BH), block, smem, 12,
                              (i(T), i(DK), i(DV), i(L), l(0), l(F), CupyOps._s(cfg, self.alo), i(0), i(ncb)))


class _Launched:
    """``hi_intra``'s buffers (torch scratch) for ``hierarchical.slots(pre=...)``."""

    def __init__(self, plan, parts):
        self.plan, self.parts = plan, parts

    def views(self, xp):
        """(wm, wz, wn, wS, lden, lnum, gch) as CuPy arrays on the scratch (each keeping its part alive)."""
        plan = self.plan
        mems = [xp.cuda.UnownedMemory(t.data_ptr(), nb, t, plan.dev) for t, nb in zip(self.parts, plan.nbytes)]
        out = {}
        for name, shape in plan.shapes.items():
            part, off = plan.offsets[name]
            out[name] = xp.ndarray(shape, dtype=plan.np_dtype, memptr=xp.cuda.MemoryPointer(mems[part], off))
        return tuple(out[x] for x in ("wm", "wz", "wn", "wS", "lden", "lnum", "gch"))


def intra(q, k, lv, lam, a, CH):
    """Launch ``hi_intra`` of an autograd forward without incoming state (p = 0) on torch's current stream, from the
    tensors' pointers, at chunk ``CH``; returns its buffers for ``hierarchical.slots(pre=...)``, or None where the
    general path is needed (:data:`DIRECT` off, not CUDA, not bfloat16, an input not contiguous, a misaligned one
    (``_arrays.inputs``' rule), a device other than the current one, no driver launch)."""
    if not DIRECT or not q.is_cuda or q.shape[-2] == 0 or _half(q) != "bf16":  # (bfloat16: the measured gain)
        return None
    import cupy

    dev = q.get_device()
    if dev != cupy.cuda.runtime.getDevice():  # the driver's launch runs in the current device's context
        return None
    return _launch_on(q, k, lv, lam, a, CH, dev, _stream)


def _stream(dev):
    """torch's current stream's handle on device ``dev``."""
    if not _RAW_STREAM:
        import torch

        _RAW_STREAM.append(getattr(torch._C, "_cuda_getCurrentRawStream", None))
    raw = _RAW_STREAM[0]
    if raw is not None:
        return raw(dev)
    import torch

    return torch.cuda.current_stream(dev).cuda_stream


def _launch_on(q, k, lv, lam, a, CH, dev, stream):
    """:func:`intra` past its device checks (``stream(dev)``: the handle to launch on; CPU tensors in the tests)."""
    import torch

    xs = (q, k, lv, lam) if a is None else (q, k, lv, lam, a)
    if not all(x.is_contiguous() for x in xs):
        return None
    ptrs = [x.data_ptr() for x in xs]
    key = (q.shape, lv.shape[-1], lam.shape[-1], q.dtype, dev, CH)
    plan = cached_plan(_PLANS, _PLANS_MAX, key, lambda: _Plan(q, lv, lam, CH, dev))
    if plan.raw is None or (plan.half == "bf16" and any(p % 16 for p in ptrs)):
        return None
    handle = stream(dev)
    parts = [torch.empty(nb, dtype=torch.uint8, device=plan.device) for nb in plan.nbytes]
    kept, tmp = (t.data_ptr() for t in parts)
    at = {name: (kept, tmp)[part] + off for name, (part, off) in plan.offsets.items()}
    if a is None:
        ptrs.append(0)
    plan.raw(handle, *ptrs, at["lden"], at["lnum"], at["wm"], at["wz"], at["wn"], at["wS"], at["gch"])
    return _Launched(plan, parts)
