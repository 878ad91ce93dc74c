"""Helpers shared by the tests: conversions, tolerances, the comparison every test uses, the pair
of eager and JAX property tests, calls under ``jax.jit`` (and the switch that routes them there)."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import getpass
import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile
import tracemalloc

import array_api_compat
import numpy as np
from hypothesis import given, settings

from lsattn.state import State

#: The accuracy lsattn promises, per compute dtype, as a relative error against the float64
#: reference: max |out - ref| <= TOL[dtype] * max |ref| (per call). Operators with longer chains
#: of rounding state their own, tighter-than-this-or-documented bounds in their tests.
TOL = {"float64": 1e-12, "float32": 1e-5}


def to_numpy(x):
    """Any array (NumPy, array-api-strict, torch, JAX) as a NumPy float64/int array."""
    if array_api_compat.is_torch_array(x):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()
        return x.numpy()
    if array_api_compat.is_jax_array(x):
        return np.asarray(x)
    if isinstance(x, np.ndarray):
        return x
    if type(x).__module__.startswith("cupy"):
        return x.get()
    try:
        return np.asarray(x)
    except Exception:
        return np.from_dlpack(x)


def asarray(xp, a, dtype="float64"):
    """A NumPy array in namespace ``xp`` with dtype named ``dtype``."""
    return xp.asarray(np.asarray(a), dtype=getattr(xp, dtype))


def on(xp, arrays, dtype="float64"):
    """NumPy ``arrays`` in namespace ``xp`` with dtype named ``dtype`` (None stays None)."""
    return [None if x is None else asarray(xp, x, dtype) for x in arrays]


def dtype_name(x):
    return str(x.dtype).split(".")[-1]


def assert_close(out, ref, rtol, *, atol=0.0, what=""):
    """``max |out - ref| <= rtol * max |ref| + atol`` with matching infinities and no NaN."""
    out, ref = to_numpy(out).astype(np.float64), to_numpy(ref).astype(np.float64)
    assert out.shape == ref.shape, f"{what} shape {out.shape} != reference {ref.shape}"
    assert not np.isnan(out).any(), f"{what} has NaN"
    inf = np.isinf(ref)
    np.testing.assert_array_equal(out[inf], ref[inf], err_msg=f"{what} infinities differ")
    fin = ~inf
    if not fin.any():
        return
    err = np.max(np.abs(out[fin] - ref[fin]))
    scale = np.max(np.abs(ref[fin]))
    assert err <= rtol * scale + atol, f"{what} error {err:.3e} > {rtol:.1e} * {scale:.3e} + {atol:.1e}"


def property_tests(jax_examples, *, jax_shapes=None, jax_context=None):
    """``every_namespace`` of an operator's test module: ``@every_namespace(**strategies)`` turns
    ``body(xp, **drawn)`` into two hypothesis tests, ``(eager, jax)``, to be bound to test names.

    ``eager`` runs on the ``xp_eager`` namespaces with the profile's number of examples; ``jax`` on
    ``xp_jax`` with ``jax_examples`` examples, drawing from ``jax_shapes[name]`` instead of
    ``strategies[name]`` where given (few fixed shapes share JAX's per-shape compilations), with
    its body run inside ``jax_context()`` when given."""

    def every_namespace(**strategies):
        def deco(body):
            def eager(xp_eager, **kw):
                body(xp_eager, **kw)

            def jax(xp_jax, **kw):
                with jax_context() if jax_context is not None else contextlib.nullcontext():
                    body(xp_jax, **kw)

            for f in (eager, jax):
                f.__doc__ = body.__doc__
            jax_strategies = {**strategies, **{n: x for n, x in (jax_shapes or {}).items() if n in strategies}}
            return given(**strategies)(eager), settings(max_examples=jax_examples)(given(**jax_strategies)(jax))

        return deco

    return every_namespace


#: ``JIT_JAX[0]`` is True while :func:`jitting` runs (a JAX property test's body): the operator
#: tests then call through :func:`jax_jit` (one compilation per shape instead of one per operation
#: and shape, ~5x faster for one-off shapes; the traced code is the same).
JIT_JAX = [False]


@contextlib.contextmanager
def jitting():
    JIT_JAX[0] = True
    try:
        yield
    finally:
        JIT_JAX[0] = False


def jax_jit(fn, op, arrays, *, state=None, return_state=False, **kw):
    """``fn(*arrays, state=state, return_state=return_state, **kw)`` under ``jax.jit``.

    A :class:`State` is not a pytree: its tensors travel through the compiled function and the
    State is rebuilt around them (``op`` names it; offset advanced by the call's tokens; batch,
    ``d_k``, ``d_v``, dtype from ``arrays[0]`` and ``arrays[2]``). Compiled once per ``fn``,
    keywords, incoming state and input shapes."""
    skeleton = None if state is None else (state.op, state.offset, state.batch_shape, state.d_k, state.d_v, state.dtype)
    tensors = None if state is None else dict(state.tensors)
    r = _jitted(fn, skeleton, return_state, tuple(sorted(kw.items())))(list(arrays), tensors)
    if not return_state:
        return r
    out, tensors = r
    q, v = arrays[0], arrays[2]
    offset = (0 if state is None else state.offset) + q.shape[-2]
    return out, State(op, offset, tuple(q.shape[:-2]), q.shape[-1], v.shape[-1], q.dtype, tensors)


@functools.cache
def _jitted(fn, skeleton, return_state, kw):
    import jax

    def f(arrays, tensors):
        state = None if skeleton is None else State(*skeleton, tensors)
        r = fn(*arrays, state=state, return_state=return_state, **dict(kw))
        return (r[0], dict(r[1].tensors)) if return_state else r

    return jax.jit(f)


def traced_peak(fn):
    """``(fn(), peak bytes tracemalloc saw while it ran)`` (NumPy allocations; not Numba's)."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---- the CPU emulations of the CUDA kernels (tests/cuda_emu_*.cpp) ---------------------------------

_HERE = pathlib.Path(__file__).parent
CUPY_SRC = _HERE.parent / "lsattn" / "backends" / "cupy"
_EMULATIONS = {}  # key -> ctypes.CDLL, this process's


def _emu_dir():
    """Where built emulations are kept: ``$LSATTN_EMU_CACHE``, else a folder of the temporary
    directory (beside the tests' Numba cache, conftest.py), so that every test process of a run
    (pytest-xdist's workers, ``make test``) and later runs build each variant once. Builds are
    named by the hash of everything they are made of: a changed source never loads an old one."""
    folder = pathlib.Path(os.environ.get("LSATTN_EMU_CACHE")
                          or pathlib.Path(tempfile.gettempdir()) / f"lsattn-tests-emu-{getpass.getuser()}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock on ``path`` between processes (two workers wanting the same build: one
    builds, the other waits and loads it)."""
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): concurrent builders each build, the renames stay atomic
        yield
        return
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def emulation(main, defines, kernels):
    """The CUDA kernels ``kernels`` (macro -> source text) compiled for the CPU through the
    emulation ``tests/<main>`` (a fiber per CUDA thread) with g++ and ``defines`` (name ->
    value), loaded with ctypes. Built once for each distinct build and kept on disk (``_emu_dir``):
    named by the hash of the compiler, the command, the kernels' texts and every emulation and CUDA
    source they may include. The kernels' ``extern __shared__`` reaches g++ as ``extern``
    (cuda_emu.h: ``__shared__`` is static)."""
    gxx = shutil.which("g++")
    cmd = [gxx, "-std=c++20", "-O1", "-shared", "-fPIC", *(f"-D{k}={v}" for k, v in sorted(defines.items()))]
    digest = hashlib.sha256(repr((cmd, os.stat(gxx).st_mtime_ns, main, sorted(kernels.items()))).encode())
    for f in sorted(_HERE.glob("cuda_emu*")) + sorted(CUPY_SRC.glob("*.cu*")):
        digest.update(f.read_bytes())
    key = digest.hexdigest()[:24]
    if key not in _EMULATIONS:
        folder = _emu_dir()
        so = folder / f"{key}.so"
        if not so.exists():
            with _locked(folder / f"{key}.lock"):
                if not so.exists():
                    for macro, text in kernels.items():
                        (folder / f"{key}_{macro}.cu").write_text(text.replace("extern __shared__", "extern"))
                        cmd.append(f'-D{macro}="{folder / f"{key}_{macro}.cu"}"')
                    part = folder / f"{key}.{os.getpid()}.part"
                    built = subprocess.run([*cmd, str(_HERE / main), "-o", str(part), "-pthread"],
                                           capture_output=True, text=True)
                    assert built.returncode == 0, built.stderr[-3000:]
                    os.replace(part, so)  # atomic: a reader sees no .so or a whole one
        _EMULATIONS[key] = ctypes.CDLL(str(so))
    return _EMULATIONS[key]


def cupy_source(name):
    """The text of ``lsattn/backends/cupy/<name>``."""
    return (CUPY_SRC / name).read_text()
