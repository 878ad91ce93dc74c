"""The Fenwick-tree level structure of log-linear attention (Guo et al. 2025).

For positions ``s <= t``: ``level(t, s) = 0`` if ``s == t`` else ``bit_length(t XOR s)``.
The bucket ``B_t^l = {s < t : level(t, s) = l}`` is non-empty exactly when bit ``l-1`` of ``t`` is
set and is then the contiguous range ``[c - 2**(l-1), c)`` with ``c = t`` with its low ``l-1``
bits cleared. Buckets partition ``[0, t]``.
"""
from __future__ import annotations

import operator
from typing import Any

import array_api_compat
import numpy as np

from ._typing import Array

__all__ = ["num_levels", "fenwick_level", "level_matrix", "bucket", "levels_of_position"]


def _as_index(name, value):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, not a bool ({value!r})")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def num_levels(T: int) -> int:
    """Number of Fenwick levels positions ``0 .. T-1`` use: ``1 + bit_length(T - 1)``.

    Parameters
    ----------
    T : int
        Sequence length (>= 0); absolute, so pass ``offset + T`` when streaming.

    Returns
    -------
    int
        ``1 + ceil(log2 T)``; 1 for ``T = 1``; 0 for ``T = 0`` (no positions, no levels: every
        operator accepts ``T = 0`` with any number of levels).

    Examples
    --------
    >>> lsattn.num_levels(1), lsattn.num_levels(8), lsattn.num_levels(9)
    (1, 4, 5)
    """
    T = _as_index("T", T)
    return 1 + (T - 1).bit_length() if T else 0


def _bit_length(xp, x):
    """Elementwise bit_length of a non-negative integer array (binary search on shifts)."""
    n = xp.zeros_like(x)
    for shift in (32, 16, 8, 4, 2, 1):
        high = xp.bitwise_right_shift(x, shift)
        has = high > 0
        n = xp.where(has, n + shift, n)
        x = xp.where(has, high, x)
    return n + xp.astype(x > 0, n.dtype)


def fenwick_level(t: int | Array, s: int | Array) -> int | Array:
    """Fenwick level of key position ``s`` seen from query position ``t``.

    Parameters
    ----------
    t, s : int or integer arrays (broadcastable, one namespace)
        Absolute 0-based positions.

    Returns
    -------
    int or integer array
        ``0`` if ``s == t``, ``bit_length(t XOR s)`` if ``s < t``, ``-1`` if ``s > t`` (no level:
        the key is in the query's future). Python ints of any size are exact.

    Examples
    --------
    >>> lsattn.fenwick_level(13, 8), lsattn.fenwick_level(13, 13), lsattn.fenwick_level(8, 13)
    (3, 0, -1)
    >>> lsattn.fenwick_level(np.array([13, 13, 13]), np.array([12, 11, 0])).tolist()
    [1, 3, 4]
    """
    if not (array_api_compat.is_array_api_obj(t) or array_api_compat.is_array_api_obj(s)):
        t, s = _as_index("t", t), _as_index("s", s)
        return -1 if s > t else (t ^ s).bit_length()
    xp = array_api_compat.array_namespace(*(a for a in (t, s) if array_api_compat.is_array_api_obj(a)))
    t = t if array_api_compat.is_array_api_obj(t) else xp.asarray(t)
    s = s if array_api_compat.is_array_api_obj(s) else xp.asarray(s)
    for name, a in (("t", t), ("s", s)):
        if not xp.isdtype(a.dtype, "integral"):
            raise TypeError(f"{name} must be integers, got dtype {a.dtype}")
    t, s = xp.broadcast_arrays(t, s)
    dtype = xp.result_type(t.dtype, s.dtype)
    t, s = xp.astype(t, dtype), xp.astype(s, dtype)
    if bool(xp.any(t < 0)) or bool(xp.any(s < 0)):
        raise ValueError("positions t and s must be >= 0")
    return xp.where(s > t, xp.asarray(-1, dtype=dtype), _bit_length(xp, xp.bitwise_xor(t, s)))


def _index_dtype(xp):
    try:
        return xp.asarray(0, dtype=xp.int64).dtype
    except Exception:  # JAX without x64 silently narrows; others may refuse
        return xp.int32


def level_matrix(T: int, *, xp: Any = None, device: Any = None) -> Array:
    """The ``(T, T)`` matrix of Fenwick levels ``level(t, s)``, ``-1`` where ``s > t``.

    Parameters
    ----------
    T : int
        Sequence length (>= 0).
    xp : array namespace, optional
        Namespace of the result (default NumPy).
    device : optional
        Device of the result, in ``xp``'s terms.

    Returns
    -------
    array of shape (T, T), int64 (int32 on JAX without x64)

    Examples
    --------
    >>> print(lsattn.level_matrix(4))
    [[ 0 -1 -1 -1]
     [ 1  0 -1 -1]
     [ 2  2  0 -1]
     [ 2  2  1  0]]
    """
    T = _as_index("T", T)
    xp = np if xp is None else xp
    kw = {} if device is None else {"device": device}
    pos = xp.arange(T, dtype=_index_dtype(xp), **kw)
    return fenwick_level(pos[:, None], pos[None, :])


def bucket(t, level):
    """The half-open range ``(lo, hi)`` of the bucket ``B_t^level``, or ``None`` when it is empty.

    Level 0 is ``(t, t + 1)``: the token itself.
    """
    t, level = _as_index("t", t), _as_index("level", level)
    if level == 0:
        return (t, t + 1)
    if not (t >> (level - 1)) & 1:
        return None
    hi = (t >> (level - 1)) << (level - 1)
    return (hi - (1 << (level - 1)), hi)


def levels_of_position(t):
    """The non-empty levels ``l >= 1`` of position ``t`` (the set bits of ``t``, plus one)."""
    t = _as_index("t", t)
    return [b + 1 for b in range(t.bit_length()) if (t >> b) & 1]
