"""Type aliases of the public signatures (for type checkers and the API reference)."""
from __future__ import annotations

from typing import Any

#: An array of any array-API namespace: ``numpy.ndarray``, ``cupy.ndarray``, ``torch.Tensor``,
#: ``jax.Array``, ``dask.array.Array``, ... (lsattn imports no framework to name them).
Array = Any

__all__ = ["Array"]
