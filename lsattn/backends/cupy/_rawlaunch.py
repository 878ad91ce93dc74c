"""Kernel launches through the CUDA driver's ``cuLaunchKernel`` with a prebuilt argument block.

A CuPy ``RawKernel`` call converts each argument on every launch (~11 us for 13 arguments on the
H200's host, 17 with NumPy scalars: benchmarks/NOTES.md, s11e17's primitives): a launch whose
geometry and scalar arguments are fixed (a cached plan) keeps them in one ctypes block and sets only
the pointers per call. A lock per block keeps another thread from refilling it before the driver has
read it (the driver copies the arguments at the launch); the GIL is released during the driver call (a
full launch queue blocks it).
A launch may carry the programmatic stream serialization attribute (``cuLaunchKernelEx``; sm_90's programmatic
dependent launch, ``gated_delta.PDL``): the kernel may then start before the previous kernel in the stream has
ended, and must call ``pdl_wait`` (common.cu) before it reads what that kernel writes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading

import numpy as np

__all__ = ["RawLaunch", "cached_plan", "raw_launch"]

_DRIVER = []  # [cuLaunchKernel, cuLaunchKernelEx] once loaded; None where it cannot be
#: CUlaunchAttributeID's CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION (cuda.h)
_PROGRAMMATIC_STREAM_SERIALIZATION = 6


class _Attribute(ctypes.Structure):
    """cuda.h's CUlaunchAttribute: an id, then a 64-byte value union (8-byte aligned; 72 bytes)."""

    _fields_ = [("id", ctypes.c_uint), ("pad", ctypes.c_uint), ("value", ctypes.c_uint64 * 8)]


class _Config(ctypes.Structure):
    """cuda.h's CUlaunchConfig (56 bytes: the stream at offset 32)."""

    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("shared", ctypes.c_uint),
                ("stream", ctypes.c_void_p), ("attrs", ctypes.POINTER(_Attribute)), ("n_attrs", ctypes.c_uint)]


def _driver(ex=False):
    """``cuLaunchKernel`` (ex: ``cuLaunchKernelEx``) of the process's CUDA driver (already loaded by CuPy), or None."""
    if not _DRIVER:
        fns = [None, None]
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("cuda") or "libcuda.so.1")
            fn = lib.cuLaunchKernel
            u = ctypes.c_uint
            fn.argtypes = [ctypes.c_void_p, u, u, u, u, u, u, u, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            fn.restype = ctypes.c_int
            fns[0] = fn
            fx = getattr(lib, "cuLaunchKernelEx", None)  # (CUDA 12+)
            if fx is not None:
                fx.argtypes = [ctypes.POINTER(_Config), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
                fx.restype = ctypes.c_int
                fns[1] = fx
        except (OSError, AttributeError):
            pass
        _DRIVER.extend(fns)
    return _DRIVER[int(ex)]


class RawLaunch:
    """Launches of one kernel with a fixed grid, block, shared bytes and trailing scalars.

    fn: the CuPy kernel (``RawKernel`` or its ``Function``); grid, block: up to 3 ints each;
    n_ptr: the number of leading pointer arguments (set per call); scalars: the arguments after them as
    NumPy scalars (int32 / int64 / uint64 / float32 / float64), in order; n_tail: pointer arguments after
    the scalars (set per call).
    pdl: launched with the programmatic stream serialization attribute (``driver``: ``cuLaunchKernelEx``).
    Call: ``launch(stream, *pointers)`` with the stream's handle and ``n_ptr + n_tail`` ints (0: null)."""

    _CT = {np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64,
           np.dtype(np.uint64): ctypes.c_uint64, np.dtype(np.float32): ctypes.c_float,
           np.dtype(np.float64): ctypes.c_double}

    def __init__(self, fn, grid, block, shared, n_ptr, scalars, driver, n_tail=0, pdl=False):
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
        self.config = None
        if pdl:  # the launch's configuration, its stream set per call
            self.attr = _Attribute(_PROGRAMMATIC_STREAM_SERIALIZATION)
            self.attr.value[0] = 1  # programmaticStreamSerializationAllowed
            self.config = _Config((ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b), int(shared), None,
                                  ctypes.pointer(self.attr), 1)
        self._lock = threading.Lock()

    def __call__(self, stream, *pointers):
        with self._lock:  # the block is this call's until the driver has copied it
            self.ptrs[:] = pointers
            if self.config is None:
                err = self._launch(self.func, *self.geometry, stream, self.params, None)
            else:
                self.config.stream = stream
                err = self._launch(ctypes.byref(self.config), self.func, self.params, None)
        if err:
            from cupy.cuda.driver import CUDADriverError

            raise CUDADriverError(err)


def raw_launch(fn, grid, block, shared, n_ptr, scalars, n_tail=0, pdl=False):
    """A :class:`RawLaunch` of ``fn``, or None where the driver (pdl: ``cuLaunchKernelEx``) or the kernel's handle
    is not reachable (the caller then launches through CuPy)."""
    driver = _driver(pdl)
    if driver is None or getattr(getattr(fn, "kernel", fn), "ptr", None) is None:
        return None
    return RawLaunch(fn, grid, block, shared, n_ptr, scalars, driver, n_tail, pdl)


def cached_plan(cache, limit, key, make):
    """``cache[key]``, made by ``make()`` where missing (a per-shape launch plan); the cache is cleared first when it
    holds ``limit`` plans (a bound on the memory a long run of distinct shapes keeps)."""
    plan = cache.get(key)
    if plan is None:
        if len(cache) >= limit:
            cache.clear()
        plan = cache[key] = make()
    return plan
