"""The audit's inputs: what "scale" means for each operator (:data:`OPS`, :func:`make_inputs`),
the dtypes audited (:data:`DTYPES`) and the array namespaces inputs can live in
(:data:`NAMESPACES`, :func:`array_namespace_named`).
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from ..fenwick import num_levels


def _uniform(rng, shape, scale):
    return scale * rng.uniform(-1.0, 1.0, shape)


def _decay(rng, shape, scale):
    """``a_t = -scale * u_t``, ``u ~ U(0, 1)``: the per-token log decay."""
    return -scale * rng.uniform(0.0, 1.0, shape)


def _unit_keys(rng, shape):
    k = rng.standard_normal(shape)
    return k / np.linalg.norm(k, axis=-1, keepdims=True)


def _inputs_exp_kernel(rng, batch, T, d, scale, log_values):
    q, k = _uniform(rng, batch + (T, d), scale), _uniform(rng, batch + (T, d), scale)
    vals = rng.standard_normal(batch + (T, d))
    return {"q": q, "k": k, ("log_v" if log_values else "v"): vals}


def _inputs_loglinear(rng, batch, T, d, scale):
    L = num_levels(T)
    return {
        "q": rng.standard_normal(batch + (T, d)) / math.sqrt(d),
        "k": rng.standard_normal(batch + (T, d)) / math.sqrt(d),
        "v": rng.standard_normal(batch + (T, d)),
        "log_decay": _decay(rng, batch + (T,), scale),
        "level_weights": rng.uniform(0.5, 1.5, batch + (T, L)),
    }


def _inputs_gated_delta(rng, batch, T, d, scale):
    L = num_levels(T)
    return {
        "q": rng.standard_normal(batch + (T, d)) / math.sqrt(d),
        "k": _unit_keys(rng, batch + (T, d)),  # unit keys and beta in [0, 1]: I - beta k k^T contracts
        "v": rng.standard_normal(batch + (T, d)),
        "log_decay": _decay(rng, batch + (T,), scale),
        "beta": rng.uniform(0.0, 1.0, batch + (T,)),
        "level_weights": rng.uniform(0.5, 1.5, batch + (T, L)),
    }


def _inputs_hierarchical(rng, batch, T, d, scale):
    L = num_levels(T)
    x = _inputs_exp_kernel(rng, batch, T, d, scale, True)
    x["log_level_weights"] = rng.standard_normal(batch + (T, L))
    x["log_decay"] = _decay(rng, batch + (T,), scale)
    return x


#: Operator -> (input maker ``(rng, batch, T, d, scale) -> dict of float64 NumPy arrays``, what
#: ``scale`` multiplies). Keys of the dicts are the operators' argument names.
OPS = {
    "log_attention": (lambda r, b, T, d, s: _inputs_exp_kernel(r, b, T, d, s, True), "q, k ~ scale * U(-1, 1); log_v ~ N(0, 1)"),
    "exp_kernel_attention": (lambda r, b, T, d, s: _inputs_exp_kernel(r, b, T, d, s, False), "q, k ~ scale * U(-1, 1); v ~ N(0, 1)"),
    "loglinear_attention": (_inputs_loglinear, "log_decay ~ -scale * U(0, 1); q, k ~ N(0, 1/d), v ~ N(0, 1), level_weights ~ U(0.5, 1.5)"),
    "loglinear_gated_delta": (_inputs_gated_delta, "log_decay ~ -scale * U(0, 1); unit keys, beta ~ U(0, 1), level_weights ~ U(0.5, 1.5)"),
    "loglinear_log_attention": (_inputs_hierarchical, "q, k ~ scale * U(-1, 1) and log_decay ~ -scale * U(0, 1); log_v, log_level_weights ~ N(0, 1)"),
}

DTYPES = ("float16", "bfloat16", "float32", "float64")


def make_inputs(op, T, scale, *, batch=(2,), d=16, seed=0):
    """The audit's float64 NumPy inputs of ``op`` (keyword dict), deterministic in (seed, op, T, scale)."""
    if op not in OPS:
        raise ValueError(f"unknown operator {op!r}; the audit knows {sorted(OPS)}")
    key = zlib.crc32(f"{op}|{int(T)}|{float(scale)!r}".encode())
    rng = np.random.default_rng([int(seed), key])
    return OPS[op][0](rng, tuple(batch), int(T), int(d), float(scale))


#: Array libraries the audit's inputs can live in (``lsattn audit --namespace``).
NAMESPACES = ("numpy", "torch", "jax", "array_api_strict", "cupy")


def array_namespace_named(name):
    """The array namespace called ``name`` (one of :data:`NAMESPACES`); JAX gets float64 enabled."""
    if name == "numpy":
        import array_api_compat.numpy as xp
    elif name == "torch":
        import array_api_compat.torch as xp
    elif name == "cupy":
        import array_api_compat.cupy as xp
    elif name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as xp
    elif name == "array_api_strict":
        import array_api_strict as xp
    else:
        raise ValueError(f"unknown namespace {name!r}; choose from {NAMESPACES}")
    return xp
