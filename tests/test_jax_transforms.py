"""JAX transforms through every operator (CPU JAX in CI): ``jax.grad`` with respect to any subset
of the inputs while closing over the others, ``jax.jit``, ``jax.vmap``, a ``State`` crossing a
``jit`` boundary, and ``jax.lax.scan`` over chunks with the state in the carry.

Gradients are compared with JAX's gradient of ``lsattn.reference`` (float64, the same formulas
computed quadratically) at 1e-9 relative to the largest gradient entry; outputs at 1e-12.
"""
from __future__ import annotations

import numpy as np
import pytest

import lsattn
from lsattn import reference as ref

from conftest import NAMESPACES
from helpers import assert_close

jax = pytest.importorskip("jax")


@pytest.fixture(scope="module")
def jnp():
    return NAMESPACES["jax"]()  # float64 enabled


B, T, D = 2, 13, 3
L = lsattn.num_levels(T)


def _inputs(op, seed=0):
    """(positional inputs, keyword inputs) of ``op`` as float64 NumPy arrays, shapes (B, T, ...)."""
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((B, T, D)) for _ in range(3))
    a = -rng.random((B, T))
    if op == "loglinear_attention":
        return [q, k, v, a, rng.random((B, T, L)) + 0.5], {}
    if op == "loglinear_gated_delta":
        k = k / np.linalg.norm(k, axis=-1, keepdims=True)
        return [q, k, v, a, rng.random((B, T)), rng.random((B, T, L)) + 0.5], {}
    if op == "loglinear_log_attention":
        return [q, k, v, -rng.random((B, T, L))], {"log_decay": a}
    return [q, k, v], {}


OPS = ["log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta",
       "loglinear_log_attention"]
#: (operator, index of the positional input to differentiate): q, and the last positional input
GRAD_CASES = [(op, i) for op in OPS for i in (0, len(_inputs(op)[0]) - 1)]


@pytest.mark.parametrize("op,i", GRAD_CASES)
def test_grad_wrt_one_input_closing_over_the_others(jnp, op, i):
    args, kw = _inputs(op, 1)
    args = [jnp.asarray(x) for x in args]
    kw = {n: jnp.asarray(x) for n, x in kw.items()}
    w = jnp.asarray(np.random.default_rng(2).standard_normal((B, T, D)))

    def loss(f):
        def g(x):
            full = args[:i] + [x] + args[i + 1:]
            return jnp.sum(w * f(*full, **kw))
        return g

    got = jax.jit(jax.grad(loss(getattr(lsattn, op))))(args[i])
    want = jax.grad(loss(getattr(ref, op)))(args[i])
    assert_close(np.asarray(got), np.asarray(want), 1e-9, what=f"d/d arg{i} of {op}")


@pytest.mark.parametrize("op", OPS)
def test_vmap_over_a_leading_axis(jnp, op):
    args, kw = _inputs(op, 3)
    jargs = [jnp.asarray(x) for x in args]
    jkw = {n: jnp.asarray(x) for n, x in kw.items()}
    f = getattr(lsattn, op)
    got = jax.vmap(lambda *xs: f(*xs, **jkw) if not kw else f(*xs[:-1], log_decay=xs[-1]))(
        *(jargs + list(jkw.values())))
    assert_close(np.asarray(got), getattr(ref, op)(*args, **kw), 1e-12, what=op)


def _cut(x, a, b):
    return x[:, a:b]


@pytest.mark.parametrize("op", ["loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention",
                                "exp_kernel_attention"])
def test_state_crosses_a_jit_boundary(jnp, op):
    """A State returned by one jitted call is passed into the next; it is a pytree of its tensors."""
    args, kw = _inputs(op, 4)
    jargs = [jnp.asarray(x) for x in args]
    jkw = {n: jnp.asarray(x) for n, x in kw.items()}
    f = getattr(lsattn, op)

    @jax.jit
    def call(state, xs, kws):
        return f(*xs, **kws, state=state, return_state=True)

    o1, s1 = f(*[_cut(x, 0, 5) for x in jargs], **{n: _cut(x, 0, 5) for n, x in jkw.items()}, return_state=True)
    assert len(jax.tree_util.tree_leaves(s1)) >= len(s1.tensors)
    o2, s2 = call(s1, [_cut(x, 5, T) for x in jargs], {n: _cut(x, 5, T) for n, x in jkw.items()})
    assert int(s2.offset) == T
    got = np.concatenate([np.asarray(o1), np.asarray(o2)], axis=1)
    assert_close(got, getattr(ref, op)(*args, **kw), 1e-12, what=op)


@pytest.mark.parametrize("op", ["log_attention", "exp_kernel_attention"])
def test_lax_scan_over_chunks_with_the_state_in_the_carry(jnp, op):
    """Exp-kernel states have a constant shape and a counting offset: a scan carries them."""
    args, _ = _inputs(op, 5)
    n, C = 4, 4  # 16 tokens in 4 chunks
    rng = np.random.default_rng(6)
    args = [rng.standard_normal((B, n * C, D)) for _ in range(3)]
    f = getattr(lsattn, op)
    jargs = [jnp.asarray(x) for x in args]
    _, s0 = f(*[x[:, :0] for x in jargs], return_state=True)
    chunks = [jnp.moveaxis(jnp.reshape(x, (B, n, C, D)), 1, 0) for x in jargs]

    def body(state, xs):
        y, state = f(*xs, state=state, return_state=True)
        return state, y

    def run(q):
        state, ys = jax.lax.scan(body, s0, (q, chunks[1], chunks[2]))
        return state, ys

    state, ys = jax.jit(run)(chunks[0])
    got = np.asarray(jnp.reshape(jnp.moveaxis(ys, 0, 1), (B, n * C, D)))
    assert_close(got, getattr(ref, op)(*args), 1e-12, what=op)
    assert int(state.offset) == n * C
    # and differentiated through the scan
    g = jax.jit(jax.grad(lambda q: jnp.sum(run(q)[1])))(chunks[0])
    want = jax.grad(lambda q: jnp.sum(getattr(ref, op)(q, *[jnp.asarray(x) for x in args[1:]])))(jargs[0])
    want = jnp.moveaxis(jnp.reshape(want, (B, n, C, D)), 1, 0)
    assert_close(np.asarray(g), np.asarray(want), 1e-9, what=f"grad through scan, {op}")
