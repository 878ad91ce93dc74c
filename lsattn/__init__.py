"""lsattn: log-sum-exp attention and log-linear (Fenwick-tree) attention on every array library.

Public API (see docs/api.md and DESIGN.md):

- Fenwick structure: ``num_levels``, ``fenwick_level``, ``level_matrix``
- Operators: ``log_attention``, ``exp_kernel_attention``, ``loglinear_attention``,
  ``loglinear_gated_delta``, ``loglinear_log_attention``
- Decoding: ``stepper`` (a per-token step on preallocated state buffers)
- ``lsattn.reference``: float64 quadratic oracles of the operators
- ``lsattn.backends``: the backend registry (``lsattn.backends.available()``)
- ``lsattn.audit``: numerical stability audit (``compare``, ``sweep``; ``lsattn audit``)

Importing lsattn needs only NumPy and array-api-compat; frameworks are imported lazily.
"""
from . import backends, reference
from .exp_kernel import exp_kernel_attention, log_attention
from .fenwick import fenwick_level, level_matrix, num_levels
from .gated_delta import loglinear_gated_delta
from .loglinear import loglinear_attention
from .hierarchical import loglinear_log_attention
from .decoding import stepper
from . import audit  # noqa: E402  lsattn.audit: the numerical stability audit (docs/audit.md)
from ._version import __version__

__all__ = [
    "num_levels",
    "fenwick_level",
    "level_matrix",
    "log_attention",
    "exp_kernel_attention",
    "loglinear_attention",
    "loglinear_gated_delta",
    "loglinear_log_attention",
    "stepper",
    "reference",
    "backends",
    "audit",
    "__version__",
]
