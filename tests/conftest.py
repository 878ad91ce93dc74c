"""Test harness: the namespace fixtures and the hypothesis profiles (helpers: helpers.py, strategies:
strategies.py).

Fixtures: ``xp`` runs a test over every installed namespace, ``xp_eager`` over the eagerly
executing ones (:data:`EAGER`), ``xp_jax`` on JAX alone (float64 enabled). JAX compiles every
operation for every new shape when run eagerly (seconds per call on 2 cores), so the operator
tests give their property tests an eager and a JAX variant (``helpers.property_tests``) with
fewer JAX examples. :func:`namespace` is the one place a namespace is loaded (or the test skipped).

Hypothesis profiles: ``ci`` (default; keeps the suite within CI's budget on 2 cores) and
``thorough``; pick with ``HYPOTHESIS_PROFILE=thorough``.
"""
from __future__ import annotations

import getpass
import importlib.util
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# XLA compilation dominates the JAX tests; LLVM's code optimisation (skipped at level 0; XLA's
# HLO passes still run) buys nothing on the tests' tiny arrays: measured, one gradient compilation
# 13 s -> 7 s, the JAX tests of test_exp_kernel 54 -> 44 CPU s. Read when JAX starts its backend
# (after this file); set XLA_FLAGS yourself to override.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

# Numba likewise: LLVM's level-3 passes dominate the cold compilation of the parallel kernels (every
# kernel in both dtypes on a fresh CI clone). Level 1 still drops the dead dispatcher constants that
# would keep a kernel out of the on-disk cache (level 0 keeps them), so the subprocesses of the docs
# examples load what this process compiled. Those kernels go to a cache of their own: Numba's cache
# key ignores the level, and benchmarks or users must never load them. Set NUMBA_OPT to override.
# Read when Numba is first imported (after this file).
if "NUMBA_OPT" not in os.environ:
    os.environ["NUMBA_OPT"] = "1"
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(os.environ.get("NUMBA_CACHE_DIR") or tempfile.gettempdir(),
                                                 f"lsattn-tests-numba-opt1-{getpass.getuser()}")


def pytest_sessionstart(session):
    """Under pytest-xdist (``make test``), before the workers start: compile the Numba kernels into
    the tests' cache (above), one process per dtype (``numba_warm.py``). Cold, that compilation is
    ~400 CPU s (about half the suite's CPU time); left to the workers, both would compile a kernel
    they reach at the same time. Warm, each process only loads the kernels (~2 CPU s)."""
    cfg = session.config
    spec = importlib.util.find_spec("lsattn")
    if getattr(cfg.option, "numprocesses", None) and not hasattr(cfg, "workerinput") \
            and importlib.util.find_spec("numba") is not None and spec is not None:
        # the lsattn this process imports (a checkout on sys.path or the installed one)
        path = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(spec.origin)),
                                             os.environ.get("PYTHONPATH")]))
        warm = os.path.join(os.path.dirname(__file__), "numba_warm.py")
        for p in [subprocess.Popen([sys.executable, warm, dt], env=dict(os.environ, PYTHONPATH=path))
                  for dt in ("float32", "float64")]:
            p.wait()  # a failure shows again in the tests that call the kernel


def _namespaces():
    out = {"numpy": lambda: np}

    def strict():
        import array_api_strict

        return array_api_strict

    def torch():
        from array_api_compat import torch as xt  # (imports torch: ImportError without it)

        return xt

    def jax():
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        return jnp

    out.update({"array_api_strict": strict, "torch": torch, "jax": jax})
    return out


NAMESPACES = _namespaces()

#: The namespaces that execute eagerly without compiling per shape (every one but JAX).
EAGER = ["numpy", "array_api_strict", "torch"]


def namespace(name):
    """The array namespace ``name`` (a key of :data:`NAMESPACES`; JAX with float64 enabled), or
    skip the calling test when it is not installed."""
    try:
        return NAMESPACES[name]()
    except ImportError as exc:
        pytest.skip(f"{name} not installed: {exc}")


@pytest.fixture(params=list(NAMESPACES), scope="session")
def xp(request):
    """Every installed array namespace; float64 enabled where it is optional (JAX)."""
    return namespace(request.param)


@pytest.fixture(params=EAGER, scope="session")
def xp_eager(request):
    """The eagerly executing namespaces (:data:`EAGER`)."""
    return namespace(request.param)


@pytest.fixture(scope="session")
def xp_jax():
    """JAX's namespace, float64 enabled."""
    return namespace("jax")


def _has_cuda():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        pass
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


#: Relative weights of the heavy test files: seconds of one pytest-xdist worker on the shared 2-core machine (no GPU;
#: benchmarks/NOTES.md, session 15, under the thread-per-CUDA-thread emulations; the three emulation-heavy cupy files
#: scaled by session 16's fibers / threads CPU time of their emulated tests with the builds, x0.39 and x0.35).
#: ``make test``'s workers take whole files (``--dist loadfile``) in collection order (``--no-loadscope-reorder``), and
#: the workers collect the heaviest first: the last file a worker starts is a light one, so the two end together
#: (longest processing time first). Files not listed follow in their own order.
FILE_SECONDS = {
    "test_gated_delta.py": 586, "test_cupy_gated_delta.py": 500, "test_exp_kernel.py": 235,
    "test_cupy_hierarchical_grad.py": 230, "test_loglinear.py": 178, "test_varlen.py": 156, "test_stepper.py": 125,
    "test_audit.py": 124, "test_reference.py": 113, "test_cupy_log_attention.py": 90,
    "test_cupy_packed_ek.py": 65, "test_hierarchical.py": 51, "test_nonfinite.py": 50, "test_training.py": 44,
    "test_cupy_hierarchical.py": 42, "test_chunktree.py": 41, "test_cupy_step.py": 32, "test_numba_cuda.py": 30,
}


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _has_cuda():
        skip = pytest.mark.skip(reason="no CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: every worker sorts alike (a stable sort)
        items.sort(key=lambda item: -FILE_SECONDS.get(item.nodeid.split("::")[0].rsplit("/", 1)[-1], 0))
