"""compare() and breakdown_scale(): error figures of any callable against a reference callable.

Holds :class:`Comparison` (the figures of one output), :func:`figures` (out against ref, arrays of
any namespace), :func:`compare`, :func:`breakdown_scale` and the conversions they use
(:func:`to_float64`, :func:`dtype_name`, :data:`EPS`). The figures are defined in the package
docstring (:mod:`lsattn.audit`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import array_api_compat
import numpy as np

#: Machine epsilon (spacing of the floats at 1) per dtype name.
EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


@dataclass
class Comparison:
    """Error figures of one output against its reference (see the module docstring).

    ``breakdown_scale`` and ``by_scale`` are set only by ``compare(..., scales=...)``: the first
    scale whose output is not finite where the reference is, and the figures at each scale.
    """

    max_abs_err: float
    max_rel_err: float
    normwise_rel_err: float
    err_in_eps: float
    nan_count: int
    inf_count: int
    mismatched: int
    size: int
    dtype: str
    breakdown_scale: Optional[float] = None
    by_scale: Optional[dict] = field(default=None, repr=False)

    @property
    def finite(self):
        """True when the output is finite wherever the reference is."""
        return self.mismatched == 0

    def as_dict(self):
        d = asdict(self)
        if self.by_scale is not None:
            d["by_scale"] = {s: c.as_dict() for s, c in self.by_scale.items()}
        return d


def to_float64(x):
    """Any array (NumPy, torch, JAX, array-api-strict, CuPy; any float dtype) as NumPy float64."""
    if array_api_compat.is_torch_array(x):
        x = x.detach().cpu()
        return (x.double() if x.is_floating_point() else x).numpy().astype(np.float64)
    if array_api_compat.is_cupy_array(x):
        return x.get().astype(np.float64)
    try:
        a = np.asarray(x)
    except Exception:
        a = np.from_dlpack(x)
    return a.astype(np.float64)


def dtype_name(x):
    """``"float32"`` etc. for an array of any namespace."""
    return str(x.dtype).split(".")[-1].replace("dtype(", "").strip("')")


def _eps(name, out):
    if name in EPS:
        return EPS[name]
    try:
        return float(np.finfo(np.asarray(out).dtype).eps)
    except Exception:
        return math.nan


def figures(out, ref, *, eps=None):
    """The :class:`Comparison` of ``out`` against ``ref`` (arrays of any namespace, same shape).

    ``eps`` defaults to the machine epsilon of ``out``'s dtype.
    """
    name = dtype_name(out) if hasattr(out, "dtype") else "float64"
    eps = _eps(name, out) if eps is None else float(eps)
    o, r = to_float64(out), to_float64(ref)
    if o.shape != r.shape:
        raise ValueError(f"output shape {o.shape} differs from the reference shape {r.shape}")
    nan, inf = int(np.isnan(o).sum()), int(np.isinf(o).sum())
    fin = np.isfinite(r)
    # The output must be finite where the reference is, and equal to it where it is not.
    mismatched = int((~np.isfinite(o) & fin).sum() + (~fin & ~((o == r) | (np.isnan(o) & np.isnan(r)))).sum())
    if mismatched:
        worst = (math.inf,) * 4
    else:
        diff, mag = np.abs(o[fin] - r[fin]), np.abs(r[fin])
        max_abs = float(diff.max(initial=0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(diff == 0, 0.0, diff / mag)
        max_rel = float(rel.max(initial=0.0))
        scale = float(mag.max(initial=0.0))
        normwise = 0.0 if max_abs == 0 else (max_abs / scale if scale > 0 else math.inf)
        worst = (max_abs, max_rel, normwise, normwise / eps)
    return Comparison(*worst, nan_count=nan, inf_count=inf, mismatched=mismatched, size=int(o.size), dtype=name)


def _call(fn, inputs):
    if isinstance(inputs, dict):
        return fn(**inputs)
    if isinstance(inputs, (tuple, list)):
        return fn(*inputs)
    raise TypeError(f"inputs must be a dict of keyword arrays or a tuple of positional arrays, got {type(inputs).__name__}")


def _first_output(out):
    return out[0] if isinstance(out, tuple) else out


def compare(fn, reference, inputs, *, scales=None, eps=None):
    """Error figures of ``fn`` against ``reference`` on the same inputs.

    Parameters
    ----------
    fn, reference : callables
        Called as ``fn(**inputs)`` (dict) or ``fn(*inputs)`` (tuple); each returns one array of any
        namespace and shape, or a tuple whose first item is that array (``return_state=True``).
        The reference should compute in float64; it receives exactly what ``fn`` receives.
    inputs : dict, tuple, or callable
        The arguments; with ``scales``, a function ``inputs(scale) -> dict or tuple``.
    scales : sequence of float, optional
        Input magnitudes to sweep (sorted ascending). The result then holds the worst figures
        over all scales, ``by_scale`` (scale -> Comparison) and ``breakdown_scale``: the first
        scale at which ``fn``'s output stops being finite where the reference is (None if never).
    eps : float, optional
        Unit for ``err_in_eps``; defaults to the machine epsilon of ``fn``'s output dtype.

    Returns
    -------
    Comparison
    """
    if scales is None:
        out = _first_output(_call(fn, inputs))
        return figures(out, _first_output(_call(reference, inputs)), eps=eps)
    if not callable(inputs):
        raise TypeError("with scales=, inputs must be a function inputs(scale) -> dict or tuple")
    by_scale = {float(s): compare(fn, reference, inputs(s), eps=eps) for s in sorted(scales)}
    results = list(by_scale.values())
    broken = [s for s, c in by_scale.items() if not c.finite]
    worst = Comparison(
        *(max(getattr(c, a) for c in results) for a in ("max_abs_err", "max_rel_err", "normwise_rel_err", "err_in_eps")),
        nan_count=sum(c.nan_count for c in results),
        inf_count=sum(c.inf_count for c in results),
        mismatched=sum(c.mismatched for c in results),
        size=sum(c.size for c in results),
        dtype=results[0].dtype,
        breakdown_scale=broken[0] if broken else None,
        by_scale=by_scale,
    )
    return worst


def breakdown_scale(fn, make_inputs, scales):
    """The first of ``sorted(scales)`` at which ``fn(make_inputs(scale))`` has a NaN or infinity.

    No reference is needed: use it to find where a formulation overflows. ``make_inputs(scale)``
    returns a dict (keyword arguments) or a tuple (positional). Returns None if every output is
    finite.
    """
    for s in sorted(scales):
        out = to_float64(_first_output(_call(fn, make_inputs(s))))
        if not np.isfinite(out).all():
            return float(s)
    return None
