"""Compilation and launches of the CuPy backend's kernels: one compiled variant per (device,
``Config``, ``_config.py``), cached for the process; ``CupyOps`` launches them on CuPy's current device and
stream (the one object the host logic of ``loglinear.py`` / ``exp_kernel.py`` drives)."""
from __future__ import annotations

import contextlib
import functools
import os
import threading

import numpy as np

from ..._upload import to_device
# the variants (``_config``), named here too: the host modules and benchmarks/device/ reach them as _compile's
from ._config import (DV_BLOCK, GD_BW, GD_G, SMEM_MAX, Config, _pad_dim, gd_scan_bwd_columns, grad_fits, grad_tc,
                      make_config)

__all__ = ["DV_BLOCK", "GD_BW", "GD_G", "SMEM_MAX", "Config", "CupyOps", "_pad_dim", "defines", "gd_scan_bwd_columns",
           "grad_fits", "grad_tc", "make_config"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def _source(name):
    with open(os.path.join(_HERE, name), encoding="utf-8") as f:
        return f.read()


_KERNELS = {
    "loglinear": ("ll_chunk_states", "ll_upsweep", "ll_output", "ll_new_state", "ll_decode",
                  "ll_pk_read", "ll_pk_state", "hi_pk_read", "hi_pk_state"),  # packed streams with states (loglinear_streams.cu)
    "loglinear_bwd": ("ll_output_dl", "ll_bw_blocks", "ll_bw_dkdv"),
    "exp_kernel": ("ek_chunk", "ek_scan_mz", "ek_scan_Sv", "ek_scan_S1", "ek_output", "ek_decode"),
    "exp_kernel_bwd": ("ekb_dq", "ekb_rscan", "ekb_dkdv"),
    "step": ("ek_step", "ll_step", "gd_step", "hier_step"),  # the stepper's fused steps (step.py); head dims at run time
    "gated_delta": ("gd_forms", "gd_scan", "gd_tier1", "gd_tier1x", "gd_coarse", "gd_cgroup", "gd_coarse_g", "gd_cfill",
                    "gd_tier3"),
    # gated_delta.py: the per-chunk WY forms, the scan over chunks (its two-tier form from chunk 0 without states:
    # gd_tier1 (low walks), gd_tier1x (transfers), the coarse slots (gd_coarse, or from 65 periods gd_cgroup,
    # gd_coarse_g, gd_cfill), gd_tier3)
    "gated_delta_bwd": ("gd_scan_bwd", "gd_scan_bwd_x1", "gd_forms_bwd", "gd_forms_bwd_x1"),  # gated_delta_bwd.py: its backward (the scan's, the forms')
    # gated_delta_bwd.py: the two-tier scan's backward (benchmarks/NOTES.md "Session 24 — s24c": K1-K4), each kernel
    # in 3xTF32 and 1xTF32 (_x1) builds
    "gated_delta_tier_bwd": (
        # K1 (gated_delta_tier3_bwd.cu)
        "gd_tier3_bwd", "gd_tier3_bwd_x1",

        # K2 (gated_delta_coarse_bwd.cu)
        "gd_coarse_bwd", "gd_coarse_bwd_x1",

        # K3 (gated_delta_tier1x_bwd.cu)
        "gd_tier1x_bwd", "gd_tier1x_bwd_x1",

        # K4 (gated_delta_tier1_bwd.cu)
        "gd_tier1_bwd", "gd_tier1_bwd_x1",
    ),
    "hierarchical": ("hi_intra", "hi_merge", "hi_snap", "hi_read"),  # hierarchical.py: loglinear_log_attention
    "hierarchical_bwd": ("hib_dq", "hib_blocks", "hib_bmerge", "hib_dkdv"),  # hierarchical_bwd.py: its backward
}
#: the kernel files of each family, compiled after common.cu in this order
_SOURCES = {"loglinear": ("loglinear.cu", "loglinear_streams.cu"), "loglinear_bwd": ("loglinear.cu", "loglinear_bwd.cu"),
            "gated_delta": ("gated_delta.cu", "gated_delta_tier.cu", "gated_delta_coarse.cu", "gated_delta_forms_tc.cu",
                            "gated_delta_forms.cu"),
            "gated_delta_bwd": ("gated_delta.cu", "gated_delta_bwd.cu", "gated_delta_bwd_scan.cu", "gated_delta_forms_bwd.cu"),
            "gated_delta_tier_bwd": ("gated_delta.cu", "gated_delta_tier.cu", "gated_delta_coarse.cu", "gated_delta_bwd.cu",
                                     "gated_delta_tier3_bwd.cu", "gated_delta_coarse_bwd.cu", "gated_delta_tier1x_bwd.cu",
                                     "gated_delta_tier1_bwd.cu"),
            "exp_kernel": ("exp_kernel.cu", "exp_kernel_tc.cu"), "hierarchical": ("hierarchical.cu", "hierarchical_intra.cu", "hierarchical_read.cu"),
            "hierarchical_bwd": ("hierarchical.cu", "hierarchical_bwd.cu", "hierarchical_bwd_chunk.cu",
                                 "hierarchical_bwd_dq.cu", "hierarchical_bwd_dkdv.cu"),
            "exp_kernel_bwd": ("exp_kernel_bwd.cu", "exp_kernel_bwd_tc.cu")}


def defines(op, cfg):
    """The ``-D`` options of ``op``'s sources for ``cfg`` (also benchmarks/device/nvcc_check.py's)."""
    return (
        f"-DTA={cfg.ta}",
        f"-DTI_BF16={int(cfg.half == 'bf16')}",
        f"-DTI_F16={int(cfg.half == 'f16')}",
        f"-DCH={cfg.CH}",
        f"-DDKP={cfg.DKP}",
        f"-DDVP={cfg.DVP}",
        f"-DLOGV={int(cfg.logv)}",
        f"-DHIB_TC={int(op == 'hierarchical_bwd' and cfg.tc)}",  # its products on bf16 tensor cores (bf16 callers)
        f"-DHIB_UNB={cfg.hib_unb}",  # hib_dkdv's U buffers
        # the forward's tensor-core kernels for float32 / float16 inputs: products as 3xTF32
        f"-DHI_TF32={int(op == 'hierarchical' and cfg.hi_tc and not cfg.bf16)}",
    ) + (("-DGD_S16=1",) if op in ("gated_delta", "gated_delta_bwd", "gated_delta_tier_bwd") and cfg.s16 else ()) + (  # the two-tier scan's bf16
        ("-DGD_O16=1",) if op == "gated_delta" and cfg.o16 else ()) + (  # intermediates (gated_delta.S16; read by gd_scan_bwd:
        # gated_delta_bwd.S16_TRAIN), its output's sums (O16)
        ("-DGF_XO=1",) if op == "gated_delta" and cfg.xs else ()) + (  # X saved by gd_forms (FORMS_X_SAVED) and read by
        ("-DFB_XIN=1",) if op == "gated_delta_bwd" and cfg.xs else ()) + (  # gd_forms_bwd (gated_delta_bwd.FORMS_X_SAVED)
        # dout as bfloat16 (gated_delta_bwd.TRAIN_OUT16)
        ("-DGD_DO16=1",) if op in ("gated_delta_bwd", "gated_delta_tier_bwd") and cfg.do16 else ())


@functools.lru_cache(maxsize=None)
def _kernels(op, device_id, cfg):
    """Compiled kernels of ``op`` ('loglinear' | 'exp_kernel') for ``cfg`` on one device."""
    import cupy

    code = "\n".join(_source(f) for f in ("common.cu",) + _SOURCES.get(op, (f"{op}.cu",)))
    options = ("-std=c++17",) + defines(op, cfg)
    names = list(_KERNELS[op])
    if cfg.bwd and op == "exp_kernel_bwd":  # the tensor-core kernels replace the FFMA ones
        names = [cfg.kernel(n)[0] for n in names]
    elif cfg.bf16 and cfg.tc:
        names += [cfg.kernel(n)[0] for n in names if cfg.kernel(n)[0] != n]
        if op == "exp_kernel":
            names += ["ek_scan_Shv", "ek_scan_Sh1", "ek_output_tc5f"]
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


@functools.lru_cache(maxsize=None)
def _aux_kernels():
    """The packed calls' small kernels: ``seg_tokens`` (the token table), ``chunk_resets``
    (the scans' resets, ``exp_kernel.cu``), ``rows_{2,4,8,16}`` (``gather_rows``, thread per unit of
    the output), ``token_map`` (``CupyOps.token_map``)."""
    import cupy

    return cupy.RawModule(code=r"""
// tab: (3, n) laid-out starts (sorted), packed starts, lengths; out[g] as lsattn._varlen.TokenMap says
extern "C" __global__ void token_map(const long long* tab, int* out, int n, long long size) {
    const long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= size) return;
    int lo = 0, hi = n;
    while (hi - lo > 1) { int mid = (lo + hi) / 2; if (tab[mid] <= g) lo = mid; else hi = mid; }
    const long long rel = g - tab[lo], r = tab[n + lo] + rel;
    out[g] = (rel >= 0 && rel < tab[2 * n + lo]) ? (int)(rel == 0 ? -2 - r : r) : -1;
}
extern "C" __global__ void seg_tokens(const long long* off, int* out, int nseg, int ntok) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= ntok) return;
    int lo = 0, hi = nseg;  // off: (nseg + 1,) offsets; the last segment starting at or before token i
    while (hi - lo > 1) { int mid = (lo + hi) / 2; if (off[mid] <= i) lo = mid; else hi = mid; }
    out[i] = (int)off[lo];
    out[ntok + i] = lo;
}
// rst[j]: the segment that starts in chunk j and holds its last token, else -1 (tok: (2, T) seg_tokens)
extern "C" __global__ void chunk_resets(const int* tok, int* rst, int T, int CH, int n) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    const int last = min((j + 1) * CH, T) - 1;
    rst[j] = tok[last] >= j * CH ? tok[T + last] : -1;
}
template <typename E>
__device__ __forceinline__ void rows(const E* __restrict__ x, E* __restrict__ y, const int* __restrict__ src,
                                     long long n, int t_in, int t_out, int w, E fill) {
    const long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n) return;
    const long long r = g / w, b = r / t_out;  // the output row, its sequence
    const int s = src[r - b * t_out];
    y[g] = s < 0 ? fill : x[(b * t_in + s) * w + (g - r * w)];
}
#define ROWS(U, E) extern "C" __global__ void rows_##U(const E* x, E* y, const int* src, long long n, int t_in, \
    int t_out, int w, E fill) { rows<E>(x, y, src, n, t_in, t_out, w, fill); }
ROWS(2, unsigned short)
ROWS(4, unsigned int)
ROWS(8, unsigned long long)
extern "C" __global__ void rows_16(const ulonglong2* x, ulonglong2* y, const int* src, long long n, int t_in, int t_out,
                                   int w, unsigned long long fill) {
    rows<ulonglong2>(x, y, src, n, t_in, t_out, w, make_ulonglong2(fill, fill));
}
""")


# ---- the kernel launches -------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _launch(op, device_id, cfg, name):
    """(kernel, block, shared bytes) of the variant of ``name`` for ``cfg`` (looked up once: every
    launch asks)."""
    real, threads = cfg.kernel(name)
    return _kernels(op, device_id, cfg)[real], (threads,), cfg.smem(real)


_NT = 256
#: the hierarchical kernels launch through the driver with prebuilt argument blocks (``CupyOps._raw``; False:
#: CuPy's RawKernel call, for A/B timing)
RAW_LAUNCH = True
_RAW = {}  # (device, op, cfg, kernel, grid, scalars, pointer counts) -> RawLaunch
_RAW_MAX = 512
#: device token maps of recent packed layouts (``CupyOps.token_map``), least recently used first: a few,
#: so the device memory held stays a few ``4 T`` bytes
_TOKEN_MAPS = {}
_TOKEN_MAPS_MAX = 4


class _Side:
    """``CupyOps.gd_tiers``' second stream (gated_delta.TIER_FORK): a non-blocking CuPy stream of one device and thread
    with two events; ``fork``: it waits for the current stream's work so far, ``on()``: launches go to it, ``join``: the
    current stream waits for its work so far."""

    def __init__(self, cp):
        self.cp, self.stream = cp, cp.cuda.Stream(non_blocking=True)
        self.ev = [cp.cuda.Event(block=False, disable_timing=True, interprocess=False) for _ in range(2)]

    def fork(self):
        self.ev[0].record(self.cp.cuda.get_current_stream())
        self.stream.wait_event(self.ev[0])

    def join(self):
        self.ev[1].record(self.stream)
        self.cp.cuda.get_current_stream().wait_event(self.ev[1])

    def on(self):
        return self.stream


class _NoSide:
    """``_Side`` where the launches stay on the current stream, in their order (the switch off; the CPU emulation)."""

    def fork(self):
        pass

    join = fork

    def on(self):
        return contextlib.nullcontext()


_NO_SIDE, _SIDES = _NoSide(), threading.local()


def _side(ops):
    """The current device's ``_Side`` of this thread where ``ops`` launches on a GPU, else ``_NO_SIDE``."""
    # (CupyOps: xp CuPy; gated_delta._Direct: no xp, its device; the CPU emulation: xp NumPy, or _Direct of device -1)
    if getattr(ops, "xp", None) is np or getattr(ops, "dev", 0) < 0:
        return _NO_SIDE
    import cupy

    sides = _SIDES.__dict__.setdefault("by_device", {})
    dev = cupy.cuda.runtime.getDevice()
    side = sides.get(dev)
    if side is None:
        side = sides[dev] = _Side(cupy)
    return side


class CupyOps:
    """Launches the kernels on CuPy's current device and stream. Arrays are CuPy arrays."""

    def __init__(self, device_id):
        import cupy

        self.xp = cupy
        self.device_id = device_id

    def _k(self, op, cfg, name):
        return _kernels(op, self.device_id, cfg)[name]

    def _tk(self, op, cfg, name):
        """(kernel, block, shared bytes) of the variant of ``name`` for ``cfg``."""
        return _launch(op, self.device_id, cfg, name)

    @staticmethod
    def _i(x):
        return np.int32(x)

    @staticmethod
    def _l(x):
        return np.int64(x)

    @staticmethod
    def _p(x):
        """A pointer argument the kernel does not read in this mode: None -> a null pointer."""
        return np.uint64(0) if x is None else x

    def token_map(self, tm):
        """The (tm.size,) int32 map of a ``lsattn._varlen.TokenMap`` (``TokenMap.array`` on the
        device): one launch over its positions, each binary-searching the segment laid out at or
        before it (a raw kernel: an ElementwiseKernel's call costs ~0.1 ms of host time). Kept for
        the next calls with the same layout on this device and stream (``_TOKEN_MAPS``: read-only to
        the kernels; the stream orders its build before them): no upload or launch per call."""
        cp = self.xp
        key = (tm.size, tm.table.tobytes(), self.device_id, cp.cuda.get_current_stream().ptr)
        out = _TOKEN_MAPS.pop(key, None)
        if out is None:
            out = cp.empty((tm.size,), dtype=cp.int32)
            if tm.size:
                _aux_kernels().get_function("token_map")((-(-tm.size // _NT),), (_NT,), (
                    to_device(cp, tm.table, out), out, np.int32(tm.table.shape[1]), np.int64(tm.size)))
            while len(_TOKEN_MAPS) >= _TOKEN_MAPS_MAX:
                _TOKEN_MAPS.pop(next(iter(_TOKEN_MAPS)))  # the least recently used
        _TOKEN_MAPS[key] = out
        return out

    def seg_tokens(self, off, like):
        """The exp-kernel kernels' ``tok`` (2, T) int32 of packed offsets ``off`` (N + 1,) int64 (host):
        the first token of every token's segment, then its segment (``exp_kernel.cu``); one elementwise
        launch over the tokens, each binary-searching the offsets (one copy of ``N + 1`` integers)."""
        cp = self.xp
        T = int(off[-1])
        out = cp.empty((2, T), dtype=cp.int32)
        if T:  # (a raw kernel: an ElementwiseKernel's call costs ~0.1 ms of host time, session 12's profile)
            _aux_kernels().get_function("seg_tokens")((-(-T // _NT),), (_NT,), (
                to_device(cp, np.asarray(off, np.int64), out), out, np.int32(off.shape[0] - 1), np.int32(T)))
        return out

    def chunk_resets(self, tok, T, CH, n):
        """(n,) int32: for each chunk of ``CH`` of the ``T`` tokens of the token table ``tok`` (2, T), the
        segment that starts in it and holds its last token, else -1 (the scans' resets, one launch)."""
        rst = self.xp.empty((n,), dtype=self.xp.int32)
        if n:
            _aux_kernels().get_function("chunk_resets")((-(-n // _NT),), (_NT,), (tok, rst, np.int32(T), np.int32(CH),
                                                                                    np.int32(n)))
        return rst

    def gather_rows(self, x, src, t_out, fill=0):
        """``(B, t_out, d)`` C-contiguous: row ``t`` of every sequence is row ``src[t]`` of ``x``
        ``(B, t_in, d)`` (C-contiguous), or every element the bit pattern ``fill`` (an int) where
        ``src[t] < 0``; ``src`` ``(t_out,)`` int32 on the device. One launch of plain row copies in units
        of up to 16 bytes (the packed backward's chunk layout and its way back: no scatter)."""
        cp = self.xp
        B, t_in, d = x.shape
        y = cp.empty((B, t_out, d), dtype=x.dtype)
        e = x.dtype.itemsize
        u = next(u for u in (16, 8, 4, 2) if (d * e) % u == 0 and x.data.ptr % u == 0)
        n = B * t_out * d * e // u
        if n:  # the fill's pattern over a unit (16 bytes: the 8-byte pattern twice)
            pattern = sum((int(fill) & ((1 << 8 * e) - 1)) << (8 * e * j) for j in range(min(u, 8) // e))
            _aux_kernels().get_function(f"rows_{u}")(
                (-(-n // _NT),), (_NT,), (x, y, src, np.int64(n), np.int32(t_in), np.int32(t_out), np.int32(d * e // u),
                                         getattr(np, f"uint{8 * min(u, 8)}")(pattern)))
        return y

    # log-linear
    def ll_chunk_states(self, cfg, k, v, a, H, gsum, T, DK, DV, p, F, n, BH, rows=None, tmap=None, Ts=None):
        """rows: (5, BH) int32, the inputs' row of every sequence (broadcast inputs), or None.
        tmap: (T,) int32, the input row of every token of the call (packed segments; ``tok_row``), or
        None; Ts: the inputs' rows per sequence (None: T)."""
        fn, block, smem = self._tk("loglinear", cfg, "ll_chunk_states")
        fn((n, BH), block, (k, v, a, H, gsum, self._i(T), self._i(DK), self._i(DV), self._l(p), self._l(F), self._i(n),
                            self._p(rows), self._p(tmap), self._i(T if Ts is None else Ts)),
           shared_mem=smem)

    def ll_upsweep(self, cfg, H, gsum, DK, DV, n, j0, step, stride, count, BH):
        self._k("loglinear", cfg, "ll_upsweep")(
            (count, BH), (_NT,), (H, gsum, self._i(DK), self._i(DV), self._i(n), self._l(j0), self._l(step), self._l(stride)))

    def ll_output(self, cfg, q, k, v, a, lam, H, gsum, old, out, T, DK, DV, L, p, F, n, n_old, BH, rows=None,
                  tmap=None, Ts=None):
        fn, block, smem = self._tk("loglinear", cfg, "ll_output")
        fn((n, BH), block,
           (q, k, v, a, lam, H, gsum, old, out, self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p),
            self._l(F), self._i(n), self._i(n_old), self._p(rows), self._p(tmap), self._i(T if Ts is None else Ts)),
           shared_mem=smem)

    def _ll_grid_launch(self, name, cfg, grid, args):
        fn, block, smem = self._tk("loglinear_bwd", cfg, name)
        fn(grid, block, args, shared_mem=smem)

    def ll_output_dl(self, cfg, q, k, v, a, lam, H, gsum, old, out, T, DK, DV, L, p, F, n, n_old, X, Y, dl, BH):
        self._ll_grid_launch("ll_output_dl", cfg, (n, BH), (
            q, k, v, a, lam, H, gsum, old, out, self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p),
            self._l(F), self._i(n), self._i(n_old), X, Y, dl))

    def ll_bw_blocks(self, cfg, q, do, a, lam, G, gtot, T, DK, DV, L, p, F, n, BH):
        self._ll_grid_launch("ll_bw_blocks", cfg, (n - 1, BH), (
            q, do, a, lam, G, gtot, self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p), self._l(F), self._i(n)))

    def ll_bw_dkdv(self, cfg, q, k, v, do, a, lam, G, gtot, dk, dv, T, DK, DV, L, p, F, n, BH):
        self._ll_grid_launch("ll_bw_dkdv", cfg, (n, BH), (
            q, k, v, do, a, lam, G, gtot, dk, dv, self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p),
            self._l(F), self._i(n)))

    def ll_new_state(self, cfg, k, v, a, H, gsum, old, newlev, T, DK, DV, p, F, n, n_old, h, Lnew, BH, rows=None):
        self._k("loglinear", cfg, "ll_new_state")(
            (Lnew, BH), (_NT,),
            (k, v, a, H, gsum, old, newlev, self._i(T), self._i(DK), self._i(DV), self._l(p), self._l(F), self._i(n),
             self._i(n_old), self._i(h), self._i(Lnew), self._p(rows)))

    def ll_decode(self, cfg, q, k, v, a, lam, old, newlev, out, DK, DV, L, p, n_old, h, Lnew, BH, rows=None):
        self._k("loglinear", cfg, "ll_decode")(
            (BH, -(-DV // 16)), (_NT,),
            (q, k, v, a, lam, old, newlev, out, self._i(DK), self._i(DV), self._i(L), self._l(p), self._i(n_old),
             self._i(h), self._i(Lnew), self._p(rows)))

    def ll_pk_read(self, cfg, x, a, lam, old, out, seg, tiles, T, DK, DV, L, N, L_old, ntiles, BH):
        """Packed streams' reads of their old slots into ``out`` (in place; ``loglinear_streams.cu``)."""
        fn, block, smem = self._tk("loglinear", cfg, "ll_pk_read")
        fn((ntiles, BH, -(-DV // cfg.DVP)), block,
           (x, self._p(a), lam, old, out, seg, tiles, self._i(T), self._i(DK), self._i(DV), self._i(L), self._i(N),
            self._i(L_old), self._i(ntiles)), shared_mem=smem)

    def ll_pk_state(self, cfg, y, v, a, tot, old, lev, seg, rng, T, DK, DV, N, L_old, L_new, BH):
        """Packed streams' new slots ``lev`` (BH, N, L_new, DK, DV) (``loglinear_streams.cu``)."""
        fn, block, smem = self._tk("loglinear", cfg, "ll_pk_state")
        fn((N * L_new, BH, -(-DV // cfg.DVP)), block,
           (y, v, self._p(a), self._p(tot), self._p(old), lev, seg, rng, self._i(T), self._i(DK), self._i(DV), self._i(N),
            self._i(L_old), self._i(L_new)), shared_mem=smem)

    def hi_pk_read(self, cfg, q, a, lam, old, part, out, seg, tiles, T, DK, DV, L, N, L_old, ntiles, BH):
        """Packed ``loglinear_log_attention`` streams: the partials ``part = (r, den, y)`` with the reads of
        the old slots ``old = (m, n, S, z)`` (None: none), finished into ``out`` (``loglinear_streams.cu``)."""
        fn, block, smem = self._tk("loglinear", cfg, "hi_pk_read")
        om, on, oS, oz = (None,) * 4 if old is None else old
        fn((ntiles, BH, -(-DV // cfg.DVP)), block,
           (q, self._p(a), lam, self._p(om), self._p(on), self._p(oS), self._p(oz), *part, out, seg, tiles, self._i(T),
            self._i(DK), self._i(DV), self._i(L), self._i(N), self._i(L_old), self._i(ntiles)), shared_mem=smem)

    def hi_pk_state(self, cfg, k, lv, a, old, new, seg, rng, T, DK, DV, N, L_old, L_new, BH):
        """Their new slots ``new = (m, n, S, z)`` (BH, N, L_new, ...) (``loglinear_streams.cu``)."""
        fn, block, smem = self._tk("loglinear", cfg, "hi_pk_state")
        om, on, oS, oz = (None,) * 4 if old is None else old
        fn((N * L_new, BH, -(-DV // cfg.DVP)), block,
           (k, lv, self._p(a), self._p(om), self._p(on), self._p(oS), self._p(oz), *new, seg, rng, self._i(T), self._i(DK),
            self._i(DV), self._i(N), self._i(L_old), self._i(L_new)), shared_mem=smem)

    # log-linear Gated DeltaNet
    def gd_forms(self, cfg, q, k, v, a, beta, lam, qe, ek, ph, H, g, out, T, DK, DV, L, p, F, n, BH, lamw=None, bad=None,
                 xo=None):
        """The per-chunk WY forms (gated_delta_forms.cu) of the contiguous (BH, T, ..) inputs into
        qe, ek (BH, n, CH, DK), ph (BH, n, DK, CH), H (BH, n, DK, DV), g (BH, n), out (BH, n, CH, DV);
        lamw (BH, T, L): lam in the compute type (or None); bad: an int32 (a (1,) array or its address as
        np.uint64) set to 1 when some input is not finite (log decays: +inf or NaN), else left as it is (or None);
        xo (BH, n, CH, CH) compute type or None: each chunk's X = (I + N)^{-1} written there (``cfg.xs``'s GF_XO build
        only)."""
        assert xo is None or cfg.xs, "xo: gd_forms' GF_XO build (Config.xs)"
        fn, block, smem = self._tk("gated_delta", cfg, "gd_forms")
        fn((n, BH), block,
           (q, k, v, a, beta, lam, qe, ek, ph, H, g, out, self._p(lamw), self._p(bad), self._i(T), self._i(DK),
            self._i(DV), self._i(L), self._l(p), self._l(F), self._i(n)) + ((self._p(xo),) if cfg.xs else ()),
           shared_mem=smem)

    def gd_scan(self, cfg, qe, ek, ph, H, g, lam, out, lev, oldc, T, DK, DV, L, p, F, n, n_old, NLC, merge_last, BH,
                keep=True):
        """The scan's independent chains (gated_delta.cu) in groups of ``gated_delta.scan_group(n)``
        slots: ``gated_delta.scan_blocks`` of them, each for every sequence and block of GD_BW value
        columns; ``keep``: write the returned state into lev / oldc (else only the output)."""
        from .gated_delta import scan_blocks, scan_group, tier_plan

        tier = tier_plan(cfg, F, n, n_old, keep, DK, DV)
        if tier is not None:
            return self.gd_tiers(cfg, tier, qe, ek, ph, H, g, lam, out, T, DK, DV, L, n, BH)
        assert not cfg.s16, "gd_scan reads float32 intermediates: a GD_S16 build's gd_forms feeds the two-tier form only"
        fn, block, smem = self._tk("gated_delta", cfg, "gd_scan")
        per, G = BH * -(-DV // GD_BW), scan_group(n)
        fn((scan_blocks(F, n, n_old, NLC, G) * per,), block,
           (qe, ek, ph, H, g, lam, out, lev, oldc, self._i(T), self._i(DK), self._i(DV), self._i(L), self._l(p),
            self._l(F), self._i(n), self._i(n_old), self._i(NLC), self._i(int(merge_last)), self._i(int(keep)),
            self._i(BH), self._i(G)),
           shared_mem=smem)

    def gd_tiers(self, cfg, tier, qe, ek, ph, H, g, lam, out, T, DK, DV, L, n, BH, scratch=None, bw=None, walk3=False,
                 split=True, r3=None, o16=None, t3fill=None):
        """gd_scan's two-tier form (gated_delta_tier.cu: gd_tier1, gd_tier1x; gated_delta_coarse.cu: the coarse slots,
        gd_tier3) for ``tier = gated_delta.tier_plan(..)``; scratch: (Z, Tot, Sb, Qp, Pc, Tg) of ``tier.shapes`` (None:
        allocated here); bw: gd_tier1 / gd_tier3's columns per block (None: ``cfg.tier_bw``; a timing build's
        GD_TBW_SET); walk3: gd_tier3 as session 13's walks (a timing build's GD_T3WALK_SET=1; no Qp); split: the
        transfers in gd_tier1x (on a second stream beside gd_tier1: ``gated_delta.TIER_FORK``; False: in gd_tier1, a
        timing build's GD_T1SPLIT_SET=0); r3: gd_tier3's chunks per block
        (None: ``cfg.tier3_chunks(bw)``; a timing build's GD_T3R_SET). The coarse slots: ``tier.grouped``, gd_cgroup,
        gd_coarse_g, gd_cfill (levels >= 3 over groups of 4 periods); else gd_coarse (every level over periods). o16
        (16-bit inputs, ``tier.NCL > 0``): the (BH, T, DV) output in the inputs' dtype, which gd_tier3 writes rounded
        from out's float32 sums (out then holds the levels <= TM's only); None: the sums added into out. t3fill:
        gd_cfill folded into gd_tier3 (None: ``gated_delta.T3FILL``; False: gd_cfill runs, every slot of Sb written: the
        training forward's, whose Sb the backward reads)."""
        nP, NCL, NPR, nG = tier.nP, tier.NCL, tier.NPR, tier.nG
        assert o16 is None or NCL > 0, "one period: no gd_tier3 to round the output"
        Z, Tot, Sb, Qp, Pc, Tg = scratch or [self.xp.empty((BH,) + shape, dtype=dt) for shape, dt in
                                             zip(tier.shapes(DK, DV), tier.dtypes(out.dtype, cfg, self.xp))]
        bw = bw or cfg.tier_bw
        r3 = r3 or cfg.tier3_chunks(bw)
        NCB, NCK, i = -(-DV // bw), -(-DK // bw), self._i
        head = (qe, ek, ph, H, g, lam, out)
        t1 = head + (Z, Tot, self._p(None) if walk3 else Qp, i(T), i(DK), i(DV), i(L), i(n), i(nP), i(BH))
        from . import gated_delta as gdm

        x1 = split and nP > 1  # the transfers (the last period's: its reads Qp alone) in gd_tier1x
        # ... on a second stream beside gd_tier1 (gated_delta.TIER_FORK, from TIER_FORK_PERIODS periods; neither reads
        # what the other writes), joined before the coarse slots
        side = _side(self) if x1 and gdm.TIER_FORK and nP >= gdm.TIER_FORK_PERIODS else _NO_SIDE
        side.fork()
        fn, block, smem = self._tk("gated_delta", cfg, "gd_tier1")
        fn((nP * BH * (NCB + (0 if split else NCK)),), block, t1, shared_mem=smem)
        if x1:
            fn, block, smem = self._tk("gated_delta", cfg, "gd_tier1x")
            with side.on():
                fn((nP * BH * NCK,), block, t1, shared_mem=smem)
        side.join()
        if NCL == 0:  # one period: no level above GD_TM
            return
        # gd_cfill folded into gd_tier3 (gated_delta.T3FILL; gated_delta_coarse.cu's GD_T3FILL: P_k within a slot buffer)
        fill = bool(tier.grouped and (gdm.T3FILL if t3fill is None else t3fill) and not walk3 and cfg.DKP <= bw)
        cargs = (Z, Tot, Pc, Tg, Sb, i(DK), i(DV), i(nP), i(NCL), i(BH))
        if tier.grouped:  # levels >= 3 over groups of 4 periods: their transfers' prefixes and keys, the chains, the fill
            cbw = cfg.coarse_group_bw
            CB, CK = -(-DV // cbw), -(-DK // cbw)
            fn, block, smem = self._tk("gated_delta", cfg, "gd_cgroup")
            fn((nG * BH * (CK + CB),), block, (Z, Tot, Pc, Tg, i(DK), i(DV), i(nP), i(BH)), shared_mem=smem)
            fn, block, smem = self._tk("gated_delta", cfg, "gd_coarse_g")
            fn((tier.coarse_chains * BH * CB,), block, cargs, shared_mem=smem)
            if not fill:  # (fill: folded into gd_tier3)
                fn, block, smem = self._tk("gated_delta", cfg, "gd_cfill")
                fn((nP * BH * CB,), block, (Z, Pc, Sb, i(DK), i(DV), i(nP), i(BH)), shared_mem=smem)
        else:
            fn, block, smem = self._tk("gated_delta", cfg, "gd_coarse")
            fn((tier.coarse_chains * BH * -(-DV // GD_BW),), block, cargs, shared_mem=smem)
        fn, block, smem = self._tk("gated_delta", cfg, "gd_tier3")
        if not walk3:  # one block per (r3 chunks of a period, sequence, column block)
            fn((-(-n // r3) * BH * NCB,), block,
               (qe, Qp, lam, out, Sb, self._p(o16), Z, Pc, i(T), i(DK), i(DV), i(L), i(n), i(nP), i(BH), i(fill)),
               shared_mem=smem)
            return
        assert o16 is None, "session 13's gd_tier3 walks add into out"
        fn((nP * NPR * BH * NCB,), block, head + (Sb, i(T), i(DK), i(DV), i(L), i(n), i(nP), i(NPR), i(BH)),
           shared_mem=smem)

    def gd_tier3_bwd(self, cfg, tier, qe, Qp, Sb, lam, dout, dQp, dSb, dlam, T, DK, DV, L, n, BH, x1=False):
        """K1 of the two-tier scan's backward (gated_delta_tier3_bwd.cu), gd_tier3's: from the forward's saved qe,
        Qp (BH, n, C, DK) (gd_e), Sb (BH, popsum(nP), DK, DV), lam (BH, T, L) and dout (BH, n, C, DV), writes dQp (BH, n,
        C, DK) whole where DV <= 64 (one column block; else adds into it, zeroed by the caller), adds into dlam's coarse
        columns (zeroed by the caller), writes dSb (as Sb) for periods >= 1; one block per (period >= 1, sequence, 64
        value columns); x1: its 1xTF32 build (bfloat16 callers)."""
        if tier.NCL == 0:  # one period: no coarse slot
            return
        i = self._i
        fn, block, smem = self._tk("gated_delta_tier_bwd", cfg, "gd_tier3_bwd_x1" if x1 else "gd_tier3_bwd")
        fn(((tier.nP - 1) * BH * -(-DV // 64),), block,
           (qe, Qp, Sb, lam, dout, dQp, dSb, dlam, i(T), i(DK), i(DV), i(L), i(n), i(tier.nP), i(BH)), shared_mem=smem)

    def gd_coarse_bwd(self, cfg, tier, Z, Sb, dSb, dZ, dTot, DK, DV, BH, x1=False):
        """K2 of the two-tier scan's backward (gated_delta_coarse_bwd.cu): the coarse slots' reverse chains, one block per
        (level, level period with reads, sequence, 64 value columns) as gd_coarse's (``tier.coarse_chains``): from the
        forward's Z (BH, nP, DK, DK), Sb and K1's dSb (BH, popsum(nP), DK, DV), adds into dZ (BH, nP, DK, DK) and dTot
        (BH, nP, DK, DV) (zeroed by the caller); x1: its 1xTF32 build (bfloat16 callers)."""
        if tier.NCL == 0:  # one period: no coarse slot
            return
        i = self._i
        fn, block, smem = self._tk("gated_delta_tier_bwd", cfg, "gd_coarse_bwd_x1" if x1 else "gd_coarse_bwd")
        fn((tier.coarse_chains * BH * -(-DV // 64),), block,
           (Z, Sb, dSb, dZ, dTot, i(DK), i(DV), i(tier.nP), i(tier.NCL), i(BH)), shared_mem=smem)

    def gd_scan_bwd(self, cfg, qe, ek, ph, H, g, lam, dout, oldc, sv, dS, dqe, dek, dph, dH, dg, dlam, T, DK, DV, L, p, F,
                    n, n_old, NLC, merge_last, BH, x1=False):
        """The chunk scan's backward (gated_delta_bwd_scan.cu); x1: its 1xTF32 build (gd_scan_bwd_x1, bfloat16 callers)."""
        fn, block, smem = self._tk("gated_delta_bwd", cfg, "gd_scan_bwd_x1" if x1 else "gd_scan_bwd")
        fn((BH, -(-DV // gd_scan_bwd_columns(cfg))), block,
           (qe, ek, ph, H, g, lam, dout, oldc, sv, dS, dqe, dek, dph, dH, dg, dlam, self._i(T), self._i(DK), self._i(DV),
            self._i(L), self._l(p), self._l(F), self._i(n), self._i(n_old), self._i(NLC), self._i(int(merge_last))),
           shared_mem=smem)

    def gd_tier1x_bwd(self, cfg, tier, qe, ek, ph, g, dQp, dZ, dqe, dek, dph, dg, T, DK, n, BH, x1=False, bw=None,
                      st=False):
        """K3 of the two-tier scan's backward (gated_delta_tier1x_bwd.cu): gd_tier1x's backward, adding into dqe, dek
        (BH, n, C, DK), dph (BH, n, DK, C), dg (BH, n) (zeroed) the shares of the transfers from dQp (BH, n, C, DK) and
        dZ (BH, nP, DK, DK) (float32; qe, ek (BH, n, C, DK), ph (BH, n, DK, C): the forward's, ``cfg.s16``: bfloat16
        patterns); one block per (period, sequence, ``cfg.tier1x_bwd_bw`` of X's d_k columns). x1: the 1xTF32 build
        (gd_tier1x_bwd_x1, bfloat16 callers); bw: the columns (None: ``cfg.tier1x_bwd_bw``; a timing build's
        GX_BW_SET); st: dqe, dek, dph stored whole instead (any contents before; one column block, DK <= the columns;
        with several the kernel adds), dg added as ever."""
        fn, block, smem = self._tk("gated_delta_tier_bwd", cfg, "gd_tier1x_bwd_x1" if x1 else "gd_tier1x_bwd")
        i = self._i
        fn((tier.nP * BH * -(-DK // (bw or cfg.tier1x_bwd_bw)),), block,
           (qe, ek, ph, g, dQp, dZ, dqe, dek, dph, dg, i(T), i(DK), i(n), i(tier.nP), i(BH), i(int(st))),
           shared_mem=smem)
    def gd_tier1_bwd(self, cfg, tier, qe, ek, ph, H, g, lam, dout, dTot, dqe, dek, dph, dH, dg, dlam, T, DK, DV, L, n,
                     BH, x1=False, bw=None):
        """K4 of the two-tier scan's backward (gated_delta_tier1_bwd.cu): gd_tier1's low walks reversed, one block per
        (period, sequence, ``Config.tier1_bwd_bw`` value columns; bw: a timing build's GT4_BW_SET); x1: its 1xTF32
        build (gd_tier1_bwd_x1, bfloat16 callers). qe, ek (BH, n, C, DK), ph (BH, n, DK, C), H (BH, n, DK, DV):
        gd_forms' outputs (``cfg.s16``: bfloat16 patterns); g (BH, n), lam (BH, T, L), dout (BH, n, C, DV), dTot (BH,
        nP, DK, DV): the compute type. Writes dH (BH, n, DK, DV) whole; adds into dqe, dek (BH, n, C, DK), dph (BH, n,
        DK, C), dg (BH, n) and dlam (BH, T, L)'s columns log2 C + 1, + 2 (zeroed by the caller, or dqe, dek, dph
        stored by gd_tier1x_bwd's st before: launched after it; gd_tier1x_bwd adds into dg too)."""
        name = "gd_tier1_bwd_x1" if x1 else "gd_tier1_bwd"
        fn, block, smem = self._tk("gated_delta_tier_bwd", cfg, name)
        i = self._i
        fn((tier.nP * BH * -(-DV // (bw or cfg.tier1_bwd_bw)),), block,
           (qe, ek, ph, H, g, lam, dout, dTot, dqe, dek, dph, dH, dg, dlam, i(T), i(DK), i(DV), i(L), i(n), i(tier.nP),
            i(BH)), shared_mem=smem)

    def gd_forms_bwd(self, cfg, q, k, v, a, beta, lam, dqe, dek, dph, dH, dg, dI, dq, dk, dv, da, dbeta, dlam, T, DK, DV,
                     L, p, F, n, BH, x1=False, dlw=None, xin=None):
        """The backward of the WY forms (gated_delta_forms_bwd.cu): the (BH, T, ..) gradients of the
        inputs from those of gd_forms' outputs (chunked), one block per (chunk, sequence); x1: its
        1xTF32 build (gd_forms_bwd_x1, bfloat16 callers); cfg.half 'bf16': the inputs and their gradients
        as bfloat16 patterns; dlw (BH, T, L) compute type or None: a gradient of lam added into dlam; xin (BH, n, CH,
        CH) compute type: X as gd_forms' GF_XO build wrote it, read instead of solved (``cfg.xs``'s FB_XIN build, which
        needs it; else None)."""
        assert (xin is not None) == cfg.xs, "xin: gd_forms_bwd's FB_XIN build (Config.xs), and only it"
        fn, block, smem = self._tk("gated_delta_bwd", cfg, "gd_forms_bwd_x1" if x1 else "gd_forms_bwd")
        fn((n, BH), block,
           (q, k, v, a, beta, lam, dqe, dek, dph, dH, dg, dI, dq, dk, dv, da, dbeta, dlam, self._p(dlw), self._i(T),
            self._i(DK), self._i(DV), self._i(L), self._l(p), self._l(F), self._i(n)) + ((self._p(xin),) if cfg.xs else ()),
           shared_mem=smem)

    def _raw(self, op, cfg, name, grid, ptrs, scalars, tail=()):
        """Launch ``name`` of ``op`` for ``cfg`` on ``grid`` with the arguments ``ptrs`` (arrays, None: null), then
        ``scalars`` (NumPy scalars), then ``tail`` (arrays or None): through the driver with the grid, shared bytes and
        scalars in a prebuilt argument block (``_rawlaunch``, kept per (kernel, grid, scalars): a repeated call's
        launches set only the pointers), or through CuPy's call where the driver's launch is not reachable or
        :data:`RAW_LAUNCH` is off."""
        fn, block, smem = self._tk(op, cfg, name)
        if RAW_LAUNCH:
            key = (self.device_id, op, cfg, name, grid, scalars, len(ptrs), len(tail))
            raw = _RAW.get(key)
            if raw is None:
                from ._rawlaunch import raw_launch

                # (None is not kept: a wrapped kernel without a handle, e.g. a benchmark's recording ``_tk``)
                raw = raw_launch(fn, grid, block, smem, len(ptrs), scalars, len(tail))
                if raw is not None:
                    if len(_RAW) >= _RAW_MAX:
                        _RAW.clear()
                    _RAW[key] = raw
            if raw is not None:
                raw(self.xp.cuda.get_current_stream().ptr, *[0 if x is None else x.data.ptr for x in ptrs],
                    *[0 if x is None else x.data.ptr for x in tail])
                return
        p = self._p
        fn(grid, block, (*[p(x) for x in ptrs], *scalars, *[p(x) for x in tail]), shared_mem=smem)

    # hierarchical exp-kernel attention
    def hi_intra(self, cfg, q, k, lv, lam, a, lden, lnum, wm, wz, wn, wS, gch, T, DK, DV, L, p, F, n, n_old, alo, BH):
        """a: (BH, T) log decays or None (no decay); alo: their clamp (compute-dtype scalar)."""
        i, l = self._i, self._l
        self._raw("hierarchical", cfg, "hi_intra", (n, BH), (q, k, lv, lam, a, lden, lnum, wm, wz, wn, wS, gch),
                  (i(T), i(DK), i(DV), i(L), l(p), l(F), self._s(cfg, alo), i(n_old), i(wm.shape[1])))

    def hi_merge(self, cfg, wm, wz, wn, wS, gch, gnode, DK, DV, F, n, n_old, c0, d, count, BH):
        """Depth d of the chunk tree: the chunks c0 + x 2^(d+1), x < count (``hierarchical.merge_levels``)."""
        i, l = self._i, self._l
        self._raw("hierarchical", cfg, "hi_merge", (count, wm.shape[1], BH), (wm, wz, wn, wS, gch, gnode),
                  (i(DK), i(DV), l(F), i(n), i(n_old), l(c0), i(d)))

    def hi_snap(self, cfg, wm, gnode, msnap, DK, p, F, n, n_old, NLC, BH):
        i, l = self._i, self._l
        self._raw("hierarchical", cfg, "hi_snap", (n, BH), (wm, gnode, msnap),
                  (i(DK), l(p), l(F), i(n), i(n_old), i(NLC), i(wm.shape[1])))

    def hi_read(self, cfg, q, lam, a, lden, lnum, msnap, wz, wn, wS, out, T, DK, DV, L, p, F, n, n_old, NLC, alo, BH,
                ltot=None, wide=False, narrow=None):
        """ltot: (BH, T) compute dtype, the rows' log den (the partials of packed streams), or None; wide: out
        is in the compute dtype whatever the inputs' (16-bit inputs under autograd); narrow (with wide): the
        same output in the inputs' dtype too, or None."""
        i, l = self._i, self._l
        nrb = -(-DV // 64)  # HI_RW value columns per block
        self._raw("hierarchical", cfg, "hi_read", (n * nrb, BH),
                  (q, lam, a, lden, lnum, msnap, wz, wn, wS, narrow if wide else out),
                  (i(T), i(DK), i(DV), i(L), l(p), l(F), i(n), i(n_old), i(NLC), self._s(cfg, alo), i(wz.shape[1]),
                   i(nrb)), (ltot, out if wide else None))

    def hib_dq(self, cfg, q, k, lv, lam, a, gm, om, delta, lden0, msnap, wz, wn, wS, lden, dq, dlam, Pg, Dg, Fg, dsum, T,
               DK, DV, L, p, F, n, n_old, NLC, alo, BH):
        i, l = self._i, self._l
        self._raw("hierarchical_bwd", cfg, "hib_dq", (n, BH),
                  (q, k, lv, lam, a, gm, om, delta, lden0, msnap, wz, wn, wS, lden, dq, dlam, Pg, Dg, Fg, dsum),
                  (i(T), i(DK), i(DV), i(L), l(p), l(F), i(n), i(n_old), i(NLC), self._s(cfg, alo), i(wz.shape[1])))

    def hib_blocks(self, cfg, q, lam, a, gm, om, delta, lden, gch, U, Z, M, W, gt, Up, Zp, Mp, Wp, gp, T, DK, DV, L, p,
                   F, n, alo, items, slots, BH):
        i, l = self._i, self._l
        self._raw("hierarchical_bwd", cfg, "hib_blocks", (items, BH),
                  (q, lam, a, gm, om, delta, lden, gch, U, Z, M, W, gt, Up, Zp, Mp, Wp, gp),
                  (i(T), i(DK), i(DV), i(L), l(p), l(F), i(n), self._s(cfg, alo), i(slots)))

    def hib_bmerge(self, cfg, Up, Zp, Mp, Wp, gp, U, Z, M, W, gt, DK, DV, F, n, split, slots, BH):
        i, l = self._i, self._l
        self._raw("hierarchical_bwd", cfg, "hib_bmerge", (split, BH), (Up, Zp, Mp, Wp, gp, U, Z, M, W, gt),
                  (i(DK), i(DV), l(F), i(n), i(slots)))

    def hib_dkdv(self, cfg, q, k, lv, lam, a, gm, om, delta, lden, U, Z, M, W, gt, Pg, Dg, Fg, dk, dlv, dsum, T, DK, DV, L,
                 p, F, n, alo, BH):
        i, l = self._i, self._l
        self._raw("hierarchical_bwd", cfg, "hib_dkdv", (n, BH),
                  (q, k, lv, lam, a, gm, om, delta, lden, U, Z, M, W, gt, Pg, Dg, Fg, dk, dlv, dsum),
                  (i(T), i(DK), i(DV), i(L), l(p), l(F), i(n), self._s(cfg, alo)))

    @staticmethod
    def _s(cfg, x):
        """A compute-type scalar argument."""
        return np.float64(x) if cfg.ta == "double" else np.float32(x)

    # exp-kernel
    def ek_chunk(self, cfg, k, v, mk, S, z, T, DK, DV, n, BH, nc=None, rows=None, tok=None):
        """nc (BH, n, DV): log_attention's chunk column maxima of log_v (``cfg.logv``), else None.
        rows: (3, BH) int32, the row of q, k, v every sequence reads (broadcast inputs), or None.
        tok: (2, T) int32 packed segments (the first token of every token's segment, then its
        segment; ``exp_kernel.cu``), or None: one stream."""
        fn, block, smem = self._tk("exp_kernel", cfg, "ek_chunk")
        fn((n, BH), block, (k, v, mk, S, z, self._i(T), self._i(DK), self._i(DV), self._i(n), self._p(nc), self._p(rows),
                            self._p(tok)), shared_mem=smem)

    def _scan_max(self, cfg, mk, z, m0, z0, m_in, m_out, z_out, DK, n, BH, segs=None, vshift=None, DV=0):
        """ek_scan_mz: the running maximum of mk (BH, n, DK) from m0 (None: no keys) -> m_in, and
        the factors (al, be) of every merge; z scanned alongside. segs: None, or (rst, N) packed
        segments (:meth:`ek_scan`; m0, z0 then hold N rows per sequence: each segment's incoming state).
        vshift: as :meth:`ek_scan` (``cfg.logv``): the value columns' max-scan (no z) in the same launch.
        Returns (al, be, ga, gb) (ga, gb: the value columns' factors, or None)."""
        xp = self.xp
        al = xp.empty((BH, n, DK), dtype=mk.dtype)
        be = xp.empty((BH, n, DK), dtype=mk.dtype)
        has = m0 is not None
        if not has:
            m0 = z0 = al  # not read
        lo = -float(np.finfo(mk.dtype).max) / 8
        scalar = np.float64 if cfg.ta == "double" else np.float32
        ga = gb = None
        vals = (None,) * 6
        if vshift is not None:
            nc, n0, n_in, n_out = vshift
            ga, gb = xp.empty((BH, n, DV), dtype=mk.dtype), xp.empty((BH, n, DV), dtype=mk.dtype)
            vals = (nc, n0 if has else al, n_in, ga, gb, n_out)
        self._k("exp_kernel", cfg, "ek_scan_mz")(
            (-(-max(DK, DV) // _NT), BH, 1 if vshift is None else 2), (_NT,),
            (mk, z, m0, z0, m_in, al, be, m_out, z_out, self._i(DK), self._i(n), self._i(has), scalar(lo))
            + self._segs(segs) + tuple(self._p(x) for x in vals) + (self._i(DV),))
        return al, be, ga, gb

    def _segs(self, segs):
        """The scans' trailing (rst, nseg) arguments of packed segments ``segs`` (None: one stream)."""
        rst, N = (None, 1) if segs is None else segs
        return (self._p(rst), self._i(N))

    def ek_scan(self, cfg, mk, S, z, m0, S0, z0, m_in, m_out, S_out, z_out, DK, DV, n, BH, vshift=None, segs=None):
        """m0, S0, z0: the incoming state, or None (no keys yet: m = -finfo.max / 8, S = z = 0).
        vshift (``cfg.logv``): (nc, n0, n_in, n_out), the chunks' column maxima of log_v, the incoming
        state's (or None), and the outputs: the column shift entering every chunk and the final one.
        segs: None, or (tok, T, N) packed segments (the incoming states then (BH N, ...)); the scans
        read the chunks' resets ``rst`` (n,) int32, one launch from ``tok`` (``exp_kernel.cu``)."""
        has = m0 is not None
        if segs is not None:
            segs = (self.chunk_resets(segs[0], segs[1], cfg.CH, n), segs[2])
        # the value columns' max-scan (log_attention) in the same launch
        al, be, ga, gb = self._scan_max(cfg, mk, z, m0, z0, m_in, m_out, z_out, DK, n, BH, segs, vshift, DV)
        if not has:
            S0 = m_in  # not read
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
            (al, be, S, S0, S_out, self._i(DK), self._i(DV), self._i(n), self._i(has), self._p(ga), self._p(gb))
            + self._segs(segs))

    def ek_output(self, cfg, q, k, v, m_in, S_in, z_in, out, Tq, Tk, DK, DV, n_state, causal, BH, n_in=None, rows=None,
                  name="ek_output", tok=None, init=None, nseg=1):
        """n_in (BH, n_state, DV): log_attention's column shift of every summary read (``cfg.logv``);
        rows, tok as in :meth:`ek_chunk`; name 'ek_output_f32': a float32 ``out`` (bf16 tensor-core
        variants). init: packed segments' incoming states (m0, S0, z0[, n0]) (BH nseg, ...) or None."""
        nq = -(-Tq // cfg.CH)
        fn, block, smem = self._tk("exp_kernel", cfg, name)
        m0, S0, z0 = (None, None, None) if init is None else init[:3]
        n0 = init[3] if init is not None and len(init) > 3 else None
        fn((nq, BH), block,
           (q, k, v, m_in, S_in, z_in, out, self._i(Tq), self._i(Tk), self._i(DK), self._i(DV), self._i(n_state),
            self._i(int(causal)), self._p(n_in), self._p(rows), self._p(tok), self._p(m0), self._p(z0), self._p(S0),
            self._p(n0), self._i(nseg)),
           shared_mem=smem)

    def _ekb(self, cfg, name, grid, args):
        fn, block, smem = self._tk("exp_kernel_bwd", cfg, name)
        fn(grid, block, args, shared_mem=smem)

    def ekb_dq(self, cfg, q, k, v, y, do, m_in, S, z, dq, lden, dl, T, DK, DV, n, BH, n_in=None, Wc=None):
        """n_in, Wc (BH, n, DV): log_attention's column shift of every summary read, and the output
        column shift of every chunk's U^c (``cfg.logv``)."""
        self._ekb(cfg, "ekb_dq", (n, BH), (q, k, v, y, do, m_in, S, z, dq, lden, dl, self._i(T), self._i(DK),
                                           self._i(DV), self._i(n), self._p(n_in), self._p(Wc)))

    def ekb_rscan(self, cfg, U, Z, m_in, m_next, R0, DK, DV, n, BH, Wc=None, Wn=None, W0=None):
        """Wc (BH, n, DV) in; Wn (BH, n, DV), W0 (BH, DV) out: log_attention's column shifts (``cfg.logv``)."""
        self._ekb(cfg, "ekb_rscan", (-(-(DK * DV + DK) // _NT), BH), (U, Z, m_in, m_next, R0, self._i(DK), self._i(DV),
                                                                        self._i(n), self._p(Wc), self._p(Wn), self._p(W0)))

    def ekb_dkdv(self, cfg, q, k, v, do, lden, dl, U, Z, m_next, dk, dv, T, DK, DV, n, BH, y=None, Wn=None):
        """y: log_attention's output, Wn: the column shifts of U entering from the right (``cfg.logv``)."""
        self._ekb(cfg, "ekb_dkdv", (n, BH), (q, k, v, do, lden, dl, U, Z, m_next, dk, dv, self._i(T), self._i(DK),
                                             self._i(DV), self._i(n), self._p(y), self._p(Wn)))

    def ek_decode(self, cfg, q, k, v, m, S, z, m2, S2, z2, out, DK, DV, BH, rows=None):
        self._k("exp_kernel", cfg, "ek_decode")(
            (BH, -(-DV // 16)), (_NT,), (q, k, v, m, S, z, m2, S2, z2, out, self._i(DK), self._i(DV), self._p(rows)))
