"""Helpers shared by the tests: conversions, tolerances, the comparison every test uses."""
from __future__ import annotations

import array_api_compat
import numpy as np

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
    try:
        return np.asarray(x)
    except Exception:
        return np.from_dlpack(x)


def asarray(xp, a, dtype="float64"):
    """A NumPy array in namespace ``xp`` with dtype named ``dtype``."""
    return xp.asarray(np.asarray(a), dtype=getattr(xp, dtype))


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
