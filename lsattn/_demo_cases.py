"""Demo cases of ``lsattn demo``, one block per implemented operator (registered on import)."""
from __future__ import annotations

from .cli import register_demo, register_stream  # noqa: F401


# ---- loglinear_log_attention (hierarchical exp-kernel attention, lsattn/hierarchical.py) ----------

def _hierarchical_demo(rng, T):
    import numpy as np

    from . import reference
    from .fenwick import num_levels
    from .hierarchical import loglinear_log_attention

    B, H, d = 1, 2, 32
    q, k, lv = (rng.standard_normal((B, H, T, d)).astype(np.float32) for _ in range(3))
    lam = rng.standard_normal((B, H, T, num_levels(T))).astype(np.float32)
    a = (-0.05 * rng.random((B, H, T))).astype(np.float32)
    rT = min(T, 512)  # the quadratic float64 reference on a prefix
    pre = [x[..., :rT, :].astype(np.float64) for x in (q, k, lv, lam)] + [a[..., :rT].astype(np.float64)]
    return {
        "fn": loglinear_log_attention, "args": (q, k, lv, lam), "kwargs": {"log_decay": a},
        "ref": reference.loglinear_log_attention, "ref_args": pre, "ref_T": rT,
    }


def _hierarchical_stream(rng):
    import numpy as np

    from .hierarchical import loglinear_log_attention

    d, L = 32, 20

    def step(state, n):
        for _ in range(n):
            q, k, lv = (rng.standard_normal((1, 1, d)).astype(np.float32) for _ in range(3))
            lam = rng.standard_normal((1, L)).astype(np.float32)
            a = np.full((1,), -0.01, dtype=np.float32)
            _, state = loglinear_log_attention(q[0], k[0], lv[0], lam, log_decay=a, state=state, return_state=True)
        return state

    return step, lambda state: state.nbytes


register_demo("loglinear_log_attention", _hierarchical_demo)
register_stream("loglinear_log_attention", _hierarchical_stream)


# ---- loglinear_attention (log-linear Mamba-2, lsattn/loglinear.py) ------------------------------

def _loglinear_demo(rng, T):
    import numpy as np

    from . import reference
    from .fenwick import num_levels
    from .loglinear import loglinear_attention

    B, H, d = 1, 2, 64
    q, k, v = (rng.standard_normal((B, H, T, d)).astype(np.float32) for _ in range(3))
    q /= np.sqrt(d)
    lam = rng.random((B, H, T, num_levels(T))).astype(np.float32)
    a = (-0.05 * rng.random((B, H, T))).astype(np.float32)
    rT = min(T, 512)  # the quadratic float64 reference on a prefix (outputs are causal)
    pre = [x[..., :rT, :].astype(np.float64) for x in (q, k, v)] + [a[..., :rT].astype(np.float64), lam[..., :rT, :].astype(np.float64)]
    return {
        "fn": loglinear_attention, "args": (q, k, v, a, lam), "kwargs": {"chunk_size": 64},
        "ref": reference.loglinear_attention, "ref_args": pre, "ref_T": rT,
    }


def _loglinear_stream(rng):
    """Decode one token at a time: the state is one d x d matrix per Fenwick level, O(log T)."""
    import numpy as np

    from .loglinear import loglinear_attention

    d, L = 64, 24

    def step(state, n):
        for _ in range(n):
            q, k, v = (rng.standard_normal((1, 1, d)).astype(np.float32) for _ in range(3))
            lam = rng.random((1, 1, L)).astype(np.float32)
            a = np.full((1, 1), -0.01, dtype=np.float32)
            _, state = loglinear_attention(q, k, v, a, lam, state=state, return_state=True)
        return state

    return step, lambda state: state.nbytes


register_demo("loglinear_attention", _loglinear_demo)
register_stream("loglinear_attention", _loglinear_stream)


# ---- loglinear_gated_delta (log-linear Gated DeltaNet, lsattn/gated_delta.py) ---------------------

def _gated_delta_inputs(rng, B, H, T, d, L):
    """float32 q (scaled), k (L2-normalised), v, log_decay, beta in [0, 1], level weights."""
    import numpy as np

    q, k, v = (rng.standard_normal((B, H, T, d)).astype(np.float32) for _ in range(3))
    q /= np.sqrt(d)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    a = (-0.05 * rng.random((B, H, T))).astype(np.float32)
    beta = rng.random((B, H, T)).astype(np.float32)
    lam = rng.random((B, H, T, L)).astype(np.float32)
    return q, k, v, a, beta, lam


def _gated_delta_demo(rng, T):
    import numpy as np

    from . import reference
    from .fenwick import num_levels
    from .gated_delta import loglinear_gated_delta

    args = _gated_delta_inputs(rng, 1, 2, T, 64, num_levels(T))
    rT = min(T, 512)  # the quadratic float64 reference on a prefix (outputs are causal)
    pre = [x[..., :rT, :] if x.ndim == 4 else x[..., :rT] for x in args]
    return {
        "fn": loglinear_gated_delta, "args": args, "kwargs": {"chunk_size": 64},
        "ref": reference.loglinear_gated_delta, "ref_args": [x.astype(np.float64) for x in pre], "ref_T": rT,
    }


def _gated_delta_stream(rng):
    """Decode one token at a time: one d x d delta-rule state per Fenwick level, O(log T)."""
    from .gated_delta import loglinear_gated_delta

    def step(state, n):
        for _ in range(n):
            q, k, v, a, beta, lam = _gated_delta_inputs(rng, 1, 1, 1, 64, 24)
            _, state = loglinear_gated_delta(q, k, v, a, beta, lam, state=state, return_state=True)
        return state

    return step, lambda state: state.nbytes


register_demo("loglinear_gated_delta", _gated_delta_demo)
register_stream("loglinear_gated_delta", _gated_delta_stream)


# ---- log_attention / exp_kernel_attention (exp-kernel softmax attention, lsattn/exp_kernel.py) ----

def _exp_kernel_inputs(rng, B, H, T, d):
    """float32 q, k, values: q, k ~ N(0, 1) (similarity sum_i exp(q_i + k_i)), values N(0, 1)."""
    import numpy as np

    return tuple(rng.standard_normal((B, H, T, d)).astype(np.float32) for _ in range(3))


def _exp_kernel_case(name):
    def make(rng, T):
        import numpy as np

        from . import exp_kernel, reference

        args = _exp_kernel_inputs(rng, 1, 2, T, 64)
        rT = min(T, 512)  # the quadratic float64 reference on a prefix (outputs are causal)
        return {
            "fn": getattr(exp_kernel, name), "args": args,
            "ref": getattr(reference, name), "ref_args": [x[..., :rT, :].astype(np.float64) for x in args], "ref_T": rT,
        }

    return make


def _exp_kernel_stream(name):
    """Decode one token at a time: the state is d_k x d_v + 2 d_k (+ d_v) numbers, whatever T."""

    def make(rng):
        from . import exp_kernel

        fn = getattr(exp_kernel, name)

        def step(state, n):
            for _ in range(n):
                q, k, v = _exp_kernel_inputs(rng, 1, 1, 1, 64)
                _, state = fn(q, k, v, state=state, return_state=True)
            return state

        return step, lambda state: state.nbytes

    return make


for _name in ("log_attention", "exp_kernel_attention"):
    register_demo(_name, _exp_kernel_case(_name))
    register_stream(_name, _exp_kernel_stream(_name))
