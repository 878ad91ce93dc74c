"""The sweep: operators x formulations x dtypes x input magnitudes x lengths x backends, one record
per case (:data:`RECORD_KEYS`); :func:`sweep` and its defaults.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np

from ._compare import EPS, Comparison, _first_output, dtype_name, figures, to_float64
from ._formulations import formulations
from ._inputs import DTYPES, OPS, array_namespace_named, make_inputs
from ._oracles import audit_rows, oracle


#: Keys of every sweep record, in this order (stable: JSON consumers rely on it).
RECORD_KEYS = (
    "op",
    "formulation",
    "backend",
    "namespace",
    "dtype",
    "scale",
    "T",
    "max_abs_err",
    "max_rel_err",
    "normwise_rel_err",
    "err_in_eps",
    "nonfinite",
    "seconds",
    "skipped",
)

DEFAULT_SCALES = (1e-3, 1e-2, 1e-1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 1e4)
DEFAULT_LENGTHS = (1, 64, 512, 4096, 65536)
QUICK_SCALES = (1e-3, 1e-1, 1.0, 10.0, 30.0, 100.0, 1e3, 1e4)
QUICK_LENGTHS = (16, 256)
def _cast(xp, x64, dtype):
    return {n: xp.astype(xp.asarray(a), dtype) for n, a in x64.items()}


def _sync(out):
    """Wait for asynchronous frameworks (JAX) so the time is the computation's."""
    wait = getattr(_first_output(out), "block_until_ready", None)
    if wait is not None:
        wait()
    return out


def _itemsize(dtype):
    return {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}.get(dtype, 8)


class _Case:
    """Inputs and (lazily) the oracle of one (op, T, scale, dtype)."""

    def __init__(self, xp, op, T, dtype, x64):
        self.x = _cast(xp, x64, getattr(xp, dtype))
        self.x64 = {n: to_float64(a) for n, a in self.x.items()}  # what the formulations see, exactly
        self.op, self.rows, self._ref = op, audit_rows(T), None

    def reference(self):
        if self._ref is None:
            self._ref = oracle(self.op, self.x64, self.rows)
        return self._ref


def _record(f, ns, dtype, scale, T):
    rec = dict.fromkeys(RECORD_KEYS)
    rec.update(op=f.op, formulation=f.name, backend=f.backend, namespace=ns, dtype=dtype, scale=float(scale), T=int(T))
    return rec


def _skip_reason(f, ns, dtype, T, d, batch_elems, budget):
    reason = f.skip(ns, dtype) if f.skip is not None else None
    if reason is None and f.memory is not None:
        need = f.memory(T, d, _itemsize(dtype)) * batch_elems
        if need > budget:
            reason = f"exceeds the memory budget (needs ~{need / 2**20:.0f} MiB > {budget / 2**20:.0f} MiB)"
    return reason


def _measure(f, case, dtype):
    """``(figures, nonfinite, seconds)`` of one formulation on one case."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow is what the audit measures
        t0 = time.perf_counter()
        out = _first_output(_sync(f.fn(**case.x)))
        seconds = time.perf_counter() - t0
    o = to_float64(out)
    nonfinite = int((~np.isfinite(o)).sum())
    if case.rows is not None:
        o = o[..., case.rows, :]
    fig = figures(o, case.reference(), eps=EPS.get(dtype_name(out), EPS.get(dtype)))
    if nonfinite and fig.finite:  # non-finite outside the audited rows: every true output is finite
        fig = Comparison(*(math.inf,) * 4, fig.nan_count, fig.inf_count, nonfinite, fig.size, fig.dtype)
    return fig, nonfinite, seconds


def _warm_up(f, xp, dtype, batch, d, seed):
    """One tiny call first, so JIT compilation and caches are not what is timed."""
    try:
        with np.errstate(all="ignore"):
            _sync(f.fn(**_cast(xp, make_inputs(f.op, 2, 1.0, batch=batch, d=d, seed=seed), dtype)))
    except Exception:
        pass  # the real call reports the error


def _as_list(v, default):
    return list(default) if v is None else list(v)


def sweep(
    ops=None,
    dtypes=None,
    scales=None,
    lengths=None,
    backends=None,
    formulation_names=None,
    *,
    namespace="numpy",
    batch=(2,),
    d=16,
    seed=0,
    memory_budget=256 * 2**20,
    progress=None,
):
    """Audit operators x formulations x dtypes x scales x lengths; one record per case.

    Parameters
    ----------
    ops : operator names (default all of :data:`OPS`).
    dtypes : dtype names (default :data:`DTYPES` that ``namespace`` has; named ones it lacks give
        skipped records).
    scales, lengths : input magnitudes (see :data:`OPS`) and sequence lengths ``T``
        (default :data:`DEFAULT_SCALES`, :data:`DEFAULT_LENGTHS`).
    backends : lsattn backend names (default every available one implementing the operator).
    formulation_names : keep only these formulations (``"lsattn"``, ``"naive"``, ``"paper"``, ...).
    namespace : array namespace of the inputs, one of :data:`NAMESPACES`.
    batch, d : batch shape and head size (``d_k = d_v = d``) of the inputs.
    seed : base seed; the inputs of a case depend only on (seed, op, T, scale).
    memory_budget : bytes; formulations whose intermediates would exceed it are skipped (recorded).
    progress : optional ``progress(done, total, label)`` called before each case.

    Returns
    -------
    list of dict with keys :data:`RECORD_KEYS`. ``skipped`` is None for a case that ran, else the
    reason (then every figure is None). Error figures are ``inf`` when the output is not finite
    where the reference is (``nonfinite`` counts the output's NaN and infinite entries). For
    ``T > FULL_REFERENCE_T`` the errors are taken over the rows of :func:`audit_rows`.
    """
    xp = array_namespace_named(namespace)
    ops = _as_list(ops, OPS)
    named_dtypes = dtypes is not None
    dtypes = [dt for dt in _as_list(dtypes, DTYPES) if named_dtypes or getattr(xp, dt, None) is not None]
    scales, lengths = [float(s) for s in _as_list(scales, DEFAULT_SCALES)], [int(T) for T in _as_list(lengths, DEFAULT_LENGTHS)]
    forms = {op: formulations(op, backends_=backends, names=formulation_names, namespace=namespace) for op in ops}
    total = sum(len(forms[op]) for op in ops) * len(dtypes) * len(scales) * len(lengths)
    batch_elems, records, warmed = math.prod(batch), [], set()
    for op in ops:
        for T in lengths:
            for scale in scales:
                x64 = make_inputs(op, T, scale, batch=batch, d=d, seed=seed)
                for dtype in dtypes:
                    case = _Case(xp, op, T, dtype, x64) if getattr(xp, dtype, None) is not None else None
                    for f in forms[op]:
                        if progress is not None:
                            progress(len(records), total, f"{op} {f.name}[{f.backend}] {dtype} scale={scale:g} T={T}")
                        rec = _record(f, namespace, dtype, scale, T)
                        records.append(rec)
                        if case is None:
                            rec["skipped"] = f"namespace {namespace} has no {dtype}"
                            continue
                        reason = _skip_reason(f, namespace, dtype, T, d, batch_elems, memory_budget)
                        if reason is not None:
                            rec["skipped"] = reason
                            continue
                        if (f.op, f.name, f.backend, dtype) not in warmed:
                            _warm_up(f, xp, getattr(xp, dtype), batch, d, seed)
                            warmed.add((f.op, f.name, f.backend, dtype))
                        try:
                            fig, nonfinite, seconds = _measure(f, case, dtype)
                        except Exception as exc:  # recorded and shown in the table, never hidden
                            rec["skipped"] = f"error: {type(exc).__name__}: {exc}"[:300]
                            continue
                        rec.update(
                            max_abs_err=fig.max_abs_err,
                            max_rel_err=fig.max_rel_err,
                            normwise_rel_err=fig.normwise_rel_err,
                            err_in_eps=fig.err_in_eps,
                            nonfinite=nonfinite,
                            seconds=seconds,
                        )
    if progress is not None:
        progress(len(records), total, "done")
    return records
