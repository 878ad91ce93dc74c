"""The prologue's finiteness checks of CUDA arrays in one kernel launch per dtype (``_nonfinite.KERNEL``).

``lsattn._nonfinite.checks`` needs each input's minimum and maximum (NaN when it holds one) copied to
the host once per call. torch reductions cost ~11 us of host time per array, plus a stack, a copy and
an event (~190 us per ``loglinear_log_attention`` call on the H200's host, ``benchmarks/NOTES.md``,
s11e17); here one launch reads up to six flat arrays (contiguous, or one fixed flat stride: a level
axis's first entries), each block writing its partial ``(min, max)`` (NaN for both when it met a NaN; contiguous arrays read
16 bytes a load), and the host reduces the partials after one asynchronous copy. Only raw pointers are passed: no
CuPy view of a torch tensor is built.
"""
from __future__ import annotations

import functools
import threading

import numpy as np

#: arrays per launch (the kernel's pointer arguments)
MAXA = 6
#: threads per block
NT = 256

_SOURCE = r"""
// no headers (as common.cu): float16 converted by PTX, bfloat16 by a shift of its 16-bit pattern
struct f16bits { unsigned short u; };
struct bf16bits { unsigned short u; };
// entries as float (exact for float16 / bfloat16 / float32: their min and max in float), float64 as double
__device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ double ld(const double* p, long long i) { return p[i]; }
__device__ __forceinline__ float ld(const f16bits* p, long long i) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(p[i].u));
    return f;
}
__device__ __forceinline__ float ld(const bf16bits* p, long long i) {
    return __int_as_float(((unsigned int)p[i].u) << 16);
}

template <typename A>
__device__ __forceinline__ void take(A x, A& lo, A& hi, int& nan) {
    nan |= (x != x);
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
}

// partial (min, max) of array blockIdx.y over the entries i = blockIdx.x * NT + t + k * gridDim.x * NT,
// read at p[i * s]; NaN for both when a NaN was met (comparisons with NaN are false: tracked apart).
// Contiguous 16-byte aligned arrays: 16 bytes a load (the scalar loads of 2-byte entries cost ~2x the
// bandwidth's time, session 12), the tail entry by entry.
template <typename T>
__device__ void extrema(const T* p0, const T* p1, const T* p2, const T* p3, const T* p4, const T* p5,
                        long long n0, long long n1, long long n2, long long n3, long long n4, long long n5,
                        long long s0, long long s1, long long s2, long long s3, long long s4, long long s5,
                        double* out) {
    typedef decltype(ld((const T*)nullptr, 0)) A;
    const int a = blockIdx.y;
    const T* p = a == 0 ? p0 : a == 1 ? p1 : a == 2 ? p2 : a == 3 ? p3 : a == 4 ? p4 : p5;
    const long long n = a == 0 ? n0 : a == 1 ? n1 : a == 2 ? n2 : a == 3 ? n3 : a == 4 ? n4 : n5;
    const long long s = a == 0 ? s0 : a == 1 ? s1 : a == 2 ? s2 : a == 3 ? s3 : a == 4 ? s4 : s5;
    const A inf = (A)__longlong_as_double(0x7ff0000000000000LL);
    A lo = inf, hi = -inf;
    int nan = 0;
    const long long step = (long long)gridDim.x * blockDim.x, first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long done = 0;  // entries read 16 bytes at a time
    if (s == 1 && ((unsigned long long)p & 15) == 0) {
        constexpr int V = 16 / sizeof(T);
        const uint4* pv = reinterpret_cast<const uint4*>(p);
        done = n / V * V;
        for (long long k = first; k < n / V; k += step) {
            const uint4 w = __ldg(pv + k);
            const T* e = reinterpret_cast<const T*>(&w);
#pragma unroll
            for (int u = 0; u < V; ++u) take(ld(e, u), lo, hi, nan);
        }
    }
    for (long long i = done + first; i < n; i += step) take(ld(p, i * s), lo, hi, nan);
    for (int o = 16; o > 0; o >>= 1) {
        const A l2 = __shfl_down_sync(0xffffffffu, lo, o), h2 = __shfl_down_sync(0xffffffffu, hi, o);
        lo = l2 < lo ? l2 : lo;
        hi = h2 > hi ? h2 : hi;
    }
    nan = __any_sync(0xffffffffu, nan);
    __shared__ double slo[32], shi[32];
    __shared__ int snan[32];
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) { slo[w] = lo; shi[w] = hi; snan[w] = nan; }
    __syncthreads();
    if (threadIdx.x == 0) {
        double dlo = slo[0], dhi = shi[0];
        for (int k = 1; k < (int)(blockDim.x >> 5); ++k) {
            dlo = slo[k] < dlo ? slo[k] : dlo;
            dhi = shi[k] > dhi ? shi[k] : dhi;
            nan |= snan[k];
        }
        const long long o = 2 * ((long long)a * gridDim.x + blockIdx.x);
        const double q = __longlong_as_double(0x7ff8000000000000LL);
        out[o] = nan ? q : dlo;
        out[o + 1] = nan ? q : dhi;
    }
}

#define EXTREMA(NAME, T) \
extern "C" __global__ void NAME(const T* p0, const T* p1, const T* p2, const T* p3, const T* p4, const T* p5, \
        long long n0, long long n1, long long n2, long long n3, long long n4, long long n5, \
        long long s0, long long s1, long long s2, long long s3, long long s4, long long s5, double* out) { \
    extrema<T>(p0, p1, p2, p3, p4, p5, n0, n1, n2, n3, n4, n5, s0, s1, s2, s3, s4, s5, out); }
EXTREMA(lsattn_extrema_f32, float)
EXTREMA(lsattn_extrema_f64, double)
EXTREMA(lsattn_extrema_f16, f16bits)
EXTREMA(lsattn_extrema_bf16, bf16bits)
"""

#: dtype name (torch's or NumPy's, without the module) -> kernel
_KERNEL_OF = {"float32": "lsattn_extrema_f32", "float64": "lsattn_extrema_f64", "float16": "lsattn_extrema_f16",
              "bfloat16": "lsattn_extrema_bf16"}


@functools.lru_cache(maxsize=None)
def _kernel(device_id, name):
    import cupy

    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=_SOURCE, options=("-std=c++17",)).get_function(name)


def flat(x):
    """``(pointer, entries, flat stride, dtype name)`` of a torch tensor or CuPy array whose entries
    sit at one fixed stride (contiguous: 1), else None."""
    if hasattr(x, "data_ptr"):  # torch
        n, shape, strides, ptr = x.numel(), x.shape, x.stride(), x.data_ptr()
        name = str(x.dtype)[6:]
    else:  # CuPy: byte strides
        item = x.dtype.itemsize
        n, shape, strides, ptr = x.size, x.shape, tuple(s // item for s in x.strides), x.data.ptr
        name = x.dtype.name
    if name not in _KERNEL_OF:
        return None
    s, want = None, None  # the flat stride: each axis's stride is the next one's times its size
    for size, st in zip(reversed(shape), reversed(strides)):
        if size == 1:
            continue
        if s is None:
            s, want = st, st * size
        elif st != want:
            return None
        else:
            want = st * size
    return ptr, n, (s or 1), name


#: the reads on a side stream of the highest priority, waiting on an event of the caller's stream, with launches,
#: buffers and events kept per thread (``_Side``): they run beside the call's first kernels instead of before them,
#: and cost a few driver calls of host time; False: on the caller's stream through CuPy (sessions 12-14; timing A/B)
SIDE = True


class Mark:
    """An event recorded now on the stream ``ptr`` (raw handle) of ``device_id``: reads launched later
    (``extrema(ready=)``) wait on it, i.e. on the work queued before it, not on what was queued since."""

    def __init__(self, device_id, ptr):
        import cupy

        rt = cupy.cuda.runtime
        with cupy.cuda.Device(device_id):
            self.event = rt.eventCreateWithFlags(2)  # cudaEventDisableTiming
            rt.eventRecord(self.event, ptr)

    def __del__(self):
        try:  # (a stream still waiting on it keeps what it needs: CUDA frees it after)
            import cupy

            cupy.cuda.runtime.eventDestroy(self.event)
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass


def extrema(arrays, device_id, stream=None, ready=None):
    """``() -> (len(arrays), 2) float64 NumPy``: each array's (min, max), NaN for both when it holds a
    NaN, (+inf, -inf) when empty; ``arrays``: :func:`flat` tuples on ``device_id``, computed on CuPy's
    current stream and copied to pinned host memory without waiting (the function waits).
    stream: the raw handle of the caller's stream (CuPy's current one): with :data:`SIDE`, the reads run on
    a side stream after the work queued on it so far (:func:`_side_extrema`), or with ``ready`` (a :class:`Mark` of
    that stream) after the work queued before the mark (without the side stream: after all of it)."""
    if stream is not None and SIDE:
        got = _side_extrema(arrays, device_id, stream, ready)
        if got is not None:
            return got
    import cupy
    import cupyx

    nmax = max(n for _, n, _, _ in arrays)
    nb = max(1, min(256, -(-nmax // (NT * 16))))
    out = cupy.empty((len(arrays), nb, 2), dtype=cupy.float64)
    for name, part in _groups(arrays):
        fn = _kernel(device_id, _KERNEL_OF[name])
        _launch(fn, [arrays[i] for i in part], out[part[0]:part[0] + len(part)], nb)
    pinned = cupyx.empty_pinned(out.shape, out.dtype)
    out.get(out=pinned, blocking=False)
    done = cupy.cuda.Event(disable_timing=True)
    done.record()

    def wait():
        done.synchronize()
        return reduce_twin(pinned)

    return wait


def _groups(arrays):
    """``(dtype name, [index, ...])`` per launch: consecutive arrays of one dtype, at most MAXA each."""
    groups = {}
    for i, a in enumerate(arrays):
        groups.setdefault(a[3], []).append(i)
    for name, idx in groups.items():
        for c in range(0, len(idx), MAXA):
            part = idx[c:c + MAXA]
            if part != list(range(part[0], part[0] + len(part))):  # the kernel writes consecutive rows
                for i in part:
                    yield name, [i]
            else:
                yield name, part


class _Side(threading.local):
    """A thread's reads per device (:class:`_Buffers`): reused by the thread's next call once this one's
    answer was waited for (``_nonfinite.Checked``: before the call returns); a call that finds them busy
    (one call inside another's implementation, or a call that raised before it waited) takes new ones."""

    def __init__(self):
        self.by_device = {}


_SIDE = _Side()
_STREAMS = {}  # device -> the side stream's handle (created once; never destroyed)
_STREAMS_LOCK = threading.Lock()


def _side_stream(device_id):
    import cupy

    with _STREAMS_LOCK:
        s = _STREAMS.get(device_id)
        if s is None:
            # non-blocking (1): no implicit order with the legacy default stream (torch's current one by default);
            # a priority beyond the device's range is clamped to its highest
            s = _STREAMS[device_id] = cupy.cuda.runtime.streamCreateWithPriority(1, -1000)
    return s


class _Buffers:
    """The side stream (shared by the device's threads), two events, the partials' device buffer and their
    pinned host copy, the prebuilt launches writing into that buffer; ``busy`` from a launch to its wait."""

    def __init__(self, device_id, size):
        import cupy
        import cupyx

        rt = cupy.cuda.runtime
        self.stream = _side_stream(device_id)
        self.ready = rt.eventCreateWithFlags(2)  # cudaEventDisableTiming
        self.done = rt.eventCreateWithFlags(2)
        self.size = size
        self.dev = cupy.cuda.alloc(8 * size)  # held by the thread (never returned to the pool while in use)
        self.host = cupyx.empty_pinned((size,), np.float64)
        self.launches = {}  # (dtype name, rows, row0, entries, strides, nb) -> RawLaunch (pointers per call)
        self.busy = False

    def __del__(self):
        # dropped busy (a call raised before its wait): its reads end before the memory returns to the pool
        try:
            import cupy

            rt = cupy.cuda.runtime
            if self.busy:
                rt.eventSynchronize(self.done)
            rt.eventDestroy(self.ready)
            rt.eventDestroy(self.done)
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass


def _side_extrema(arrays, device_id, stream, ready=None):
    """:func:`extrema` on the side stream: an event recorded on ``stream`` (the inputs' producers are queued
    before it; or ``ready``'s, recorded earlier), the side stream waiting on it, one prebuilt launch per dtype
    group (pointers set per call), one asynchronous copy to pinned memory, an event; None where the driver's
    launch is not reachable."""
    import cupy

    from ._rawlaunch import raw_launch

    rt = cupy.cuda.runtime
    nmax = max(n for _, n, _, _ in arrays)
    nb = max(1, min(256, -(-nmax // (NT * 16))))
    size = len(arrays) * nb * 2
    buf = _SIDE.by_device.get(device_id)
    if buf is None or buf.size < size or buf.busy:  # (a busy one stays with the call that waits on it)
        buf = _SIDE.by_device[device_id] = _Buffers(device_id, max(size, 2 * 12 * 16))
    plans = []
    for name, part in _groups(arrays):
        key = (name, len(part), part[0], tuple(arrays[i][1] for i in part), tuple(arrays[i][2] for i in part), nb)
        fn = buf.launches.get(key)
        if fn is None:
            pad = MAXA - len(part)
            ns = [np.int64(arrays[i][1]) for i in part] + [np.int64(0)] * pad
            ss = [np.int64(arrays[i][2]) for i in part] + [np.int64(1)] * pad
            out = np.uint64(buf.dev.ptr + 8 * 2 * nb * part[0])
            fn = raw_launch(_kernel(device_id, _KERNEL_OF[name]), (nb, len(part)), (NT,), 0, MAXA, ns + ss + [out])
            if fn is None:
                return None
            if len(buf.launches) >= 64:  # (shapes of other calls)
                buf.launches.clear()
            buf.launches[key] = fn
        plans.append((fn, [arrays[i][0] for i in part] + [0] * (MAXA - len(part))))
    side = buf.stream
    if ready is None:
        rt.eventRecord(buf.ready, stream)
    rt.streamWaitEvent(side, buf.ready if ready is None else ready.event, 0)
    for fn, ptrs in plans:
        fn(side, *ptrs)
    rt.memcpyAsync(buf.host.ctypes.data, buf.dev.ptr, 8 * size, 2, side)  # cudaMemcpyDeviceToHost
    rt.eventRecord(buf.done, side)
    buf.busy = True
    shape = (len(arrays), nb, 2)

    def wait():
        rt.eventSynchronize(buf.done)
        got = reduce_twin(buf.host[:size].reshape(shape))  # (a new array: the buffer is the next call's)
        buf.busy = False
        return got

    return wait


def _launch(fn, arrays, out, nb):
    pad = MAXA - len(arrays)
    ptrs = [np.uint64(p) for p, _, _, _ in arrays] + [np.uint64(0)] * pad
    ns = [np.int64(n) for _, n, _, _ in arrays] + [np.int64(0)] * pad
    ss = [np.int64(s) for _, _, s, _ in arrays] + [np.int64(1)] * pad
    fn((nb, len(arrays)), (NT,), (*ptrs, *ns, *ss, out))


def reduce_twin(partials):
    """The host reduction of the kernel's partials ``(arrays, blocks, 2)`` (NumPy): (arrays, 2); NaN
    propagates through NumPy's min and max."""
    with np.errstate(invalid="ignore"):
        return np.stack([partials[:, :, 0].min(axis=1), partials[:, :, 1].max(axis=1)], axis=1)


__all__ = ["extrema", "flat", "reduce_twin", "Mark", "MAXA", "NT"]
