"""Numerical stability audit: how far each formulation lands from a float64 reference, and where
it breaks.

Three layers, usable on their own:

- :func:`compare` (and :func:`breakdown_scale`): error figures of *any* callable against a
  reference callable on the same inputs, in any array namespace. This is how you audit your own
  function.
- The formulations registry: for each of lsattn's five operators, lsattn itself on every
  available backend, plus clearly labelled *comparison formulations* that live only here (never
  in the operator modules): the naive unstabilised forms (raw ``exp(q) @ exp(k).T``, decays
  held in linear space as ``exp(cumsum)`` ratios) and, for ``log_attention``, the published code
  of Heinsen (2024) (log-space prefix states by ``logcumsumexp`` over a materialised
  ``(T, d_k, d_v)`` tensor). :func:`register_formulation` adds yours.
- :func:`sweep`: operators x formulations x dtypes x input magnitudes x lengths x backends, one
  record per case (:data:`RECORD_KEYS`), then :func:`table`, :func:`write_json`, :func:`plot`;
  the ``lsattn audit`` command (:func:`main`) drives it with a progress bar.

Error figures (``out``, ``ref`` as float64; entries where the reference is infinite must match it
exactly):

- ``max_abs_err = max |out - ref|``;
- ``max_rel_err = max |out - ref| / |ref|`` entrywise (``0/0 = 0``, ``x/0 = inf``);
- ``normwise_rel_err = max |out - ref| / max |ref|``: the max-norm relative error, the measure the
  library's accuracy promises (``tests/helpers.TOL``) are stated in;
- ``err_in_eps = normwise_rel_err / eps(dtype)``, ``eps`` the machine epsilon of the output dtype
  (float16 ``2^-10``, bfloat16 ``2^-7``, float32 ``2^-23``, float64 ``2^-52``);
- ``nan_count``, ``inf_count`` of the output; every error figure is ``inf`` when the output is not
  finite where the reference is (``mismatched`` counts those entries).

The reference of a case sees exactly the inputs the formulation sees (after the cast to the
audited dtype, upcast to float64), so the figures measure the arithmetic, not input rounding.

Modules (what each holds; everything public is re-exported here: import from ``lsattn.audit``):

- ``_compare``: :func:`compare`, :func:`breakdown_scale`, :func:`figures`, :class:`Comparison`;
- ``_inputs``: :data:`OPS` and :func:`make_inputs` (what "scale" means per operator), :data:`DTYPES`,
  :data:`NAMESPACES`;
- ``_formulations``: lsattn per backend and the comparison formulations, :func:`register_formulation`;
- ``_oracles``: the float64 references (``lsattn.reference``, row oracles beyond
  :data:`FULL_REFERENCE_T`);
- ``_sweep``: :func:`sweep` and its records (:data:`RECORD_KEYS`);
- ``_report``: :func:`table`, :func:`write_json`, :func:`plot`;
- ``_cli``: the ``lsattn audit`` command (:func:`add_parser`, :func:`run`, :func:`main`).
"""
from __future__ import annotations

# The public names of the modules, all importable from here (lsattn.audit was one module before).

from ._cli import ProgressBar, add_parser, main, run
from ._compare import EPS, Comparison, breakdown_scale, compare, dtype_name, figures, to_float64
from ._formulations import (
    COMPARISONS,
    Formulation,
    formulations,
    naive_exp_kernel_attention,
    naive_log_attention,
    naive_loglinear_attention,
    naive_loglinear_gated_delta,
    naive_loglinear_log_attention,
    paper_log_attention,
    register_formulation,
)
from . import _inputs, _sweep
from ._inputs import NAMESPACES, array_namespace_named, make_inputs
from ._oracles import FULL_REFERENCE_T, ROW_ORACLES, SUFFIX_SUM_OPS, audit_rows, oracle
from ._report import plot, table, write_json
from ._sweep import DEFAULT_LENGTHS, DEFAULT_SCALES, QUICK_LENGTHS, QUICK_SCALES, sweep

#: Operator -> (input maker ``(rng, batch, T, d, scale) -> dict of float64 NumPy arrays``, what
#: ``scale`` multiplies). Keys of the dicts are the operators' argument names.
OPS = _inputs.OPS
#: The dtypes a sweep audits.
DTYPES = _inputs.DTYPES
#: The keys of every record :func:`sweep` returns.
RECORD_KEYS = _sweep.RECORD_KEYS

__all__ = [
    "Comparison",
    "compare",
    "breakdown_scale",
    "Formulation",
    "register_formulation",
    "formulations",
    "make_inputs",
    "OPS",
    "DTYPES",
    "RECORD_KEYS",
    "sweep",
    "table",
    "write_json",
    "plot",
    "main",
]
