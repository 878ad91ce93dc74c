"""Input checks shared by every operator: one namespace, one device, float dtypes, shapes.

Every error names the argument, what it received and what was expected, so a user can fix the
call without reading our code.
"""
from __future__ import annotations

import array_api_compat

__all__ = [
    "namespace",
    "device_of",
    "check_float",
    "compute_dtype",
    "check_shape",
    "check_levels",
    "seq_split",
]


def namespace(**arrays):
    """The array namespace shared by all named, non-None arrays; TypeError naming the culprits.

    Parameters are keyword arrays so errors can name them: ``namespace(q=q, k=k)``.
    """
    named = {n: a for n, a in arrays.items() if a is not None}
    spaces, by_type = {}, {}  # one array type, one namespace: asked once per type (every call's path)
    for n, a in named.items():
        xp = by_type.get(type(a))
        if xp is None:
            if not array_api_compat.is_array_api_obj(a):
                raise TypeError(f"{n} must be an array (NumPy, CuPy, PyTorch, JAX, ...), got {type(a).__name__}")
            xp = by_type[type(a)] = array_api_compat.array_namespace(a)
        spaces[n] = xp
    distinct = {id(x): x for x in spaces.values()}
    if len(distinct) > 1:
        got = ", ".join(f"{n}: {getattr(x, '__name__', x)}" for n, x in spaces.items())
        raise TypeError(f"arrays from different namespaces cannot be mixed ({got})")
    xp = next(iter(distinct.values()))
    if array_api_compat.is_jax_namespace(xp):
        from .state import register_jax_pytree

        register_jax_pytree()
    # a JAX tracer has no device (None): it cannot conflict with the others
    devices = {n: d for n, d in ((n, _device_or_none(a)) for n, a in named.items()) if d is not None}
    if len({str(d) for d in devices.values()}) > 1:
        got = ", ".join(f"{n}: {d}" for n, d in devices.items())
        raise ValueError(f"arrays on different devices cannot be mixed ({got})")
    return xp


def _device_or_none(x):
    try:
        return array_api_compat.device(x)
    except Exception:  # abstract arrays (tracers) of some JAX versions raise instead of returning None
        return None


def device_of(x):
    return array_api_compat.device(x)


def check_float(xp, name, x):
    """TypeError unless ``x`` has a real floating dtype."""
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype (float16/bfloat16/float32/float64), got {x.dtype}")


def compute_dtype(xp, dtype):
    """The dtype we compute in: half precision is promoted to float32, others kept."""
    if dtype in (xp.float32, xp.float64):
        return dtype
    return xp.float32


def check_shape(name, x, expected, what):
    """ValueError unless ``tuple(x.shape) == expected``; ``what`` spells the expected layout."""
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {what} = {tuple(expected)}, got {tuple(x.shape)}")


def check_levels(name, x, needed):
    """ValueError unless the last axis of a level-weight array holds at least ``needed`` levels."""
    if x.shape[-1] < needed:
        raise ValueError(
            f"{name} has {x.shape[-1]} levels on its last axis but positions up to this call need "
            f"num_levels(offset + T) = {needed}; pass at least {needed} levels (extra ones are ignored)"
        )


def seq_split(name, x, ndim_min=2):
    """``(batch_shape, T, d)`` of a ``(..., T, d)`` array, with a ValueError for fewer axes."""
    if x.ndim < ndim_min:
        raise ValueError(f"{name} must have shape (..., T, d) with at least {ndim_min} axes, got shape {tuple(x.shape)}")
    return tuple(x.shape[:-2]), x.shape[-2], x.shape[-1]
