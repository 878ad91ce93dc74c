"""The built-in backends: the array-API path and the specialised backends, in priority order."""
from __future__ import annotations

import importlib

from . import Backend, register

#: operator -> "module:function" of its backend-neutral (array API) implementation
ARRAY_API_OPS = {
    "log_attention": "lsattn.exp_kernel:_log_forward",
    "exp_kernel_attention": "lsattn.exp_kernel:_exp_forward",
    "loglinear_attention": "lsattn.loglinear:_forward",
    "loglinear_gated_delta": "lsattn.gated_delta:_forward",
    "loglinear_log_attention": "lsattn.hierarchical:_forward",
}

_S = "lsattn._steps"
_N = "lsattn.backends._numba_step"
_OPS = tuple(ARRAY_API_OPS)
#: backend -> {operator -> "module:function"} of its per-token step factory (``lsattn.stepper``).
#: A backend gets a decoding path by adding its row here (a GPU backend: its capturable step).
STEP_OPS = {
    "array_api": {op: f"{_S}:{op}" for op in _OPS},
    "numba": {op: f"{_N}:{op}" for op in _OPS},
    "cupy": {op: f"lsattn.backends.cupy.step:{op}" for op in (
        "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention")},
}

register(
    Backend(
        name="array_api",
        description="backend-neutral algorithms on any array-API namespace (NumPy, CuPy, torch, JAX, ...)",
        ops=ARRAY_API_OPS,
        probe=lambda: None,
        serves=lambda xp, a: None,
        priority=1000,
        grad_ops=frozenset(ARRAY_API_OPS),  # autograd of the framework (torch, JAX) through array ops
        steps=STEP_OPS["array_api"],
        varlen_ops=frozenset(ARRAY_API_OPS),
        broadcast_ops=frozenset(ARRAY_API_OPS),
        # the exp-kernel operators compute packed segments themselves (``lsattn._exp_packed``)
        reset_ops=frozenset({"log_attention", "exp_kernel_attention"}),
    )
)


#: specialised backends: (name, module, priority, description). Each module defines ``OPS``,
#: ``probe``, ``serves`` (and optionally ``auto_serves``, ``HALF_OPS``, ``GRAD_OPS``, ``VARLEN_OPS``,
#: ``BROADCAST_OPS``, ``RESET_OPS``, ``LAYOUT_OPS``: see ``Backend``; absent: none) and imports its framework only when a
#: kernel runs, so registering never needs CuPy, Numba or Dask.
_SPECIALISED = [
    ("dask", "dask_backend", 5,
     "block-parallel graphs on dask.array inputs chunked along the sequence (any Dask scheduler)"),
    ("cupy", "cupy", 10,
     "CUDA kernels through cupy.RawModule (CuPy arrays; CUDA torch / JAX GPU arrays when forced, via DLPack)"),
    ("numba_cuda", "numba_cuda", 15,
     "Numba CUDA scans (CuPy arrays, CUDA torch tensors, Numba device arrays)"),
    ("numba", "numba_cpu", 20, "fused Numba CPU scans, parallel over batch elements (NumPy arrays)"),
]


def _register_specialised():
    for name, module, priority, description in _SPECIALISED:
        try:
            m = importlib.import_module(f"{__package__}.{module}")
        except Exception as exc:  # never let an optional backend break ``import lsattn``: list it, unavailable
            why = f"{type(exc).__name__}: {exc}"
            register(Backend(name, description, {}, probe=lambda why=why: why, serves=lambda xp, a: None,
                             priority=priority))
            continue
        register(Backend(name=name, description=description, ops=m.OPS, probe=m.probe, serves=m.serves,
                         auto_serves=getattr(m, "auto_serves", None), priority=priority,
                         half_ops=frozenset(getattr(m, "HALF_OPS", ())), grad_ops=frozenset(getattr(m, "GRAD_OPS", ())),
                         steps=STEP_OPS.get(name, {}), varlen_ops=frozenset(getattr(m, "VARLEN_OPS", ())),
                         broadcast_ops=frozenset(getattr(m, "BROADCAST_OPS", ())),
                         reset_ops=frozenset(getattr(m, "RESET_OPS", ())),
                         layout_ops=frozenset(getattr(m, "LAYOUT_OPS", ()))))


_register_specialised()
