"""Type of the array arguments of the public signatures (for type checkers and the API reference)."""
from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Array"]


class Array(Protocol):
    """An array of any array-API namespace: ``numpy.ndarray``, ``cupy.ndarray``, ``torch.Tensor``,
    ``jax.Array``, ``dask.array.Array``, ... (structural: anything with ``shape`` and ``dtype``;
    lsattn imports no framework to name them)."""

    @property
    def shape(self) -> tuple[Any, ...]: ...

    @property
    def dtype(self) -> Any: ...
