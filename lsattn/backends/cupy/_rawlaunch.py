"""Kernel launches through the CUDA driver's ``cuLaunchKernel`` with a prebuilt argument block.

A CuPy ``RawKernel`` call converts each argument on every launch (~11 us for 13 arguments on the
H200's host, 17 with NumPy scalars: benchmarks/NOTES.md, s11e17's primitives): a launch whose
geometry and scalar arguments are fixed (a cached plan) keeps them in one ctypes block and sets only
the pointers per call, then calls CuPy's binding of the driver's ``cuLaunchKernel``
(``cupy.cuda.driver.launchKernel``: its integer arguments converted in C, where ctypes' ``argtypes`` convert them in
Python: 3.4 us a call of a no-op C function of cuLaunchKernel's signature on the development CPU, s23a). A lock per
block keeps another thread from refilling it before the driver has read it (the driver copies the arguments at the
launch); the GIL is released during the driver call (a full launch queue blocks it).
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

__all__ = ["RawLaunch", "cached_plan", "raw_launch"]

_DRIVER = []  # [launchKernel] once looked up; [None] where CuPy has none


def _driver():
    """CuPy's ``cupy.cuda.driver.launchKernel(f, gx, gy, gz, bx, by, bz, shared, stream, params, extra)`` (the
    addresses as ints; ``CUDADriverError`` on a failed launch), or None."""
    if not _DRIVER:
        import cupy

        _DRIVER.append(getattr(cupy.cuda.driver, "launchKernel", None))
    return _DRIVER[0]


class RawLaunch:
    """Launches of one kernel with a fixed grid, block, shared bytes and trailing scalars.

    fn: the CuPy kernel (``RawKernel`` or its ``Function``); grid, block: up to 3 ints each;
    n_ptr: the number of leading pointer arguments (set per call); scalars: the arguments after them as
    NumPy scalars (int32 / int64 / uint64 / float32 / float64), in order; n_tail: pointer arguments after
    the scalars (set per call).
    driver: ``_driver()``'s launch (or a stand-in of its signature).
    Call: ``launch(stream, *pointers)`` with the stream's handle and ``n_ptr + n_tail`` ints (0: null)."""

    _CT = {np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64,
           np.dtype(np.uint64): ctypes.c_uint64, np.dtype(np.float32): ctypes.c_float,
           np.dtype(np.float64): ctypes.c_double}

    def __init__(self, fn, grid, block, shared, n_ptr, scalars, driver, n_tail=0):
        self._launch = driver
        self.func = int(getattr(getattr(fn, "kernel", fn), "ptr"))
        self.n_ptr = n_ptr
        self.ptrs = (ctypes.c_uint64 * (n_ptr + n_tail))()
        self.scalars = [self._CT[np.asarray(x).dtype](x.item()) for x in scalars]
        base = ctypes.addressof(self.ptrs)
        addrs = [base + 8 * i for i in range(n_ptr)] + [ctypes.addressof(c) for c in self.scalars]
        addrs += [base + 8 * (n_ptr + i) for i in range(n_tail)]
        self.params = (ctypes.c_void_p * len(addrs))(*addrs)
        g, b = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
        self.geometry = (*g, *b, int(shared))
        self._head = (self.func, *self.geometry)  # the driver's arguments before the stream
        self._tail = (ctypes.addressof(self.params), 0)  # ... after it: the block's address, no extra
        self._lock = threading.Lock()

    def __call__(self, stream, *pointers):
        with self._lock:  # the block is this call's until the driver has copied it
            self.ptrs[:] = pointers
            self._launch(*self._head, stream, *self._tail)


def raw_launch(fn, grid, block, shared, n_ptr, scalars, n_tail=0):
    """A :class:`RawLaunch` of ``fn``, or None where the driver or the kernel's handle is not reachable
    (the caller then launches through CuPy)."""
    driver = _driver()
    if driver is None or getattr(getattr(fn, "kernel", fn), "ptr", None) is None:
        return None
    return RawLaunch(fn, grid, block, shared, n_ptr, scalars, driver, n_tail)


def cached_plan(cache, limit, key, make):
    """``cache[key]``, made by ``make()`` where missing (a per-shape launch plan); the cache is cleared first when it
    holds ``limit`` plans (a bound on the memory a long run of distinct shapes keeps)."""
    plan = cache.get(key)
    if plan is None:
        if len(cache) >= limit:
            cache.clear()
        plan = cache[key] = make()
    return plan
