"""Test harness: the ``xp`` fixture runs a body over every installed namespace; shared helpers.

Hypothesis profiles: ``ci`` (default; keeps the suite within CI's budget on 2 cores) and
``thorough``; pick with ``HYPOTHESIS_PROFILE=thorough``.
"""
from __future__ import annotations

import os

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


def _namespaces():
    out = {"numpy": lambda: np}

    def strict():
        import array_api_strict

        return array_api_strict

    def torch():
        import torch  # noqa: F401
        from array_api_compat import torch as xt

        return xt

    def jax():
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        return jnp

    out.update({"array_api_strict": strict, "torch": torch, "jax": jax})
    return out


NAMESPACES = _namespaces()


@pytest.fixture(params=list(NAMESPACES), scope="session")
def xp(request):
    """Every installed array namespace; float64 enabled where it is optional (JAX)."""
    try:
        return NAMESPACES[request.param]()
    except ImportError as exc:
        pytest.skip(f"{request.param} not installed: {exc}")


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


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _has_cuda():
        skip = pytest.mark.skip(reason="no CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
