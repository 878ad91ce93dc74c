"""JAX transforms through every operator (CPU JAX in CI): ``jax.grad`` with respect to any subset
of the inputs while closing over the others, ``jax.jit``, ``jax.vmap``, a ``State`` crossing a
``jit`` boundary, and ``jax.lax.scan`` over chunks with the state in the carry.

Gradients are compared with torch autograd's gradient of ``lsattn.reference`` (float64, the same
formulas computed quadratically; :func:`reference_grad`) at 1e-9 relative to the largest gradient
entry; outputs at 1e-12. (Eager ``jax.grad`` of the reference compiles every one of its many small
operations, 10-20 s a case on 2 cores, and the reference cannot be jitted: its level matrix checks
values; torch differentiates it in milliseconds.)
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


def _inputs(op, seed=0, T=T):
    """(positional inputs, keyword inputs) of ``op`` as float64 NumPy arrays, shapes (B, T, ...)."""
    rng = np.random.default_rng(seed)
    L = lsattn.num_levels(T)
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


def reference_grad(op, args, kw, w, argnums):
    """Torch autograd's gradient of ``sum(w * reference.op(*args, **kw))`` with respect to
    ``args[i]`` for ``i`` in ``argnums``: float64 NumPy arrays of the shapes of those inputs."""
    torch = pytest.importorskip("torch")
    targs = [torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=i in argnums) for i, x in enumerate(args)]
    tkw = {n: torch.tensor(np.asarray(x), dtype=torch.float64) for n, x in kw.items()}
    loss = torch.sum(torch.tensor(np.asarray(w)) * getattr(ref, op)(*targs, **tkw))
    return [g.numpy() for g in torch.autograd.grad(loss, [targs[i] for i in argnums])]


OPS = ["log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta",
       "loglinear_log_attention"]
#: (operator, index of the positional input to differentiate): q, and the last positional input
GRAD_CASES = [(op, i) for op in OPS for i in (0, len(_inputs(op)[0]) - 1)]


@pytest.mark.parametrize("op,i", GRAD_CASES)
def test_grad_wrt_one_input_closing_over_the_others(jnp, op, i):
    nargs, nkw = _inputs(op, 1)
    args = [jnp.asarray(x) for x in nargs]
    kw = {n: jnp.asarray(x) for n, x in nkw.items()}
    nw = np.random.default_rng(2).standard_normal((B, T, D))
    w = jnp.asarray(nw)

    def loss(x):
        full = args[:i] + [x] + args[i + 1:]
        return jnp.sum(w * getattr(lsattn, op)(*full, **kw))

    got = jax.jit(jax.grad(loss))(args[i])
    (want,) = reference_grad(op, nargs, nkw, nw, (i,))
    assert_close(np.asarray(got), want, 1e-9, what=f"d/d arg{i} of {op}")


@pytest.mark.parametrize("op", OPS)
def test_vmap_over_a_leading_axis(jnp, op):
    args, kw = _inputs(op, 3)
    jargs = [jnp.asarray(x) for x in args]
    jkw = {n: jnp.asarray(x) for n, x in kw.items()}
    f = getattr(lsattn, op)
    # vmap under jit: the same batching of the same trace, compiled once (eager vmap compiles each
    # operation, several times the cost)
    got = jax.jit(jax.vmap(lambda *xs: f(*xs, **jkw) if not kw else f(*xs[:-1], log_decay=xs[-1])))(
        *(jargs + list(jkw.values())))
    assert_close(np.asarray(got), getattr(ref, op)(*args, **kw), 1e-12, what=op)


def _cut(x, a, b):
    return x[:, a:b]


@pytest.mark.parametrize("op", ["loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention",
                                "exp_kernel_attention"])
def test_state_crosses_a_jit_boundary(jnp, op):
    """A State returned by one jitted call is passed into the next; it is a pytree of its tensors.
    (Both calls jitted: an eager first call compiles each operation, several times the cost; eager
    JAX streams are tested in each operator's own tests.)"""
    args, kw = _inputs(op, 4)
    jargs = [jnp.asarray(x) for x in args]
    jkw = {n: jnp.asarray(x) for n, x in kw.items()}
    f = getattr(lsattn, op)

    @jax.jit
    def call(state, xs, kws):
        return f(*xs, **kws, state=state, return_state=True)

    o1, s1 = jax.jit(lambda xs, kws: f(*xs, **kws, return_state=True))(
        [_cut(x, 0, 5) for x in jargs], {n: _cut(x, 0, 5) for n, x in jkw.items()})
    assert int(s1.offset) == 5
    assert len(jax.tree_util.tree_leaves(s1)) >= len(s1.tensors)
    o2, s2 = call(s1, [_cut(x, 5, T) for x in jargs], {n: _cut(x, 5, T) for n, x in jkw.items()})
    assert int(s2.offset) == T
    got = np.concatenate([np.asarray(o1), np.asarray(o2)], axis=1)
    assert_close(got, getattr(ref, op)(*args, **kw), 1e-12, what=op)


@pytest.mark.parametrize("op", OPS)
def test_lax_scan_over_chunks_with_the_state_in_the_carry(jnp, op):
    """Every operator: a jitted ``lax.scan`` over chunks carries the State (log-linear states have a
    fixed number of level slots under JAX and a traced offset), equals the reference, and is
    differentiated through with respect to q and to the last positional input (a subset of the
    inputs; the others closed over)."""
    n, C = 4, 2  # 8 tokens in 4 chunks (a traced offset unrolls each chunk's tokens: keep them few)
    Tn = n * C
    full, fkw = _inputs(op, 5, Tn)
    f = getattr(lsattn, op)
    jfull = [jnp.asarray(x) for x in full]
    jkw = {name: jnp.asarray(x) for name, x in fkw.items()}
    _, s0 = f(*[x[:, :0] for x in jfull], **{name: x[:, :0] for name, x in jkw.items()}, return_state=True)
    split = lambda x: jnp.moveaxis(jnp.reshape(x, (B, n, C) + x.shape[2:]), 1, 0)  # (n, B, C, ...)
    merge = lambda y: jnp.reshape(jnp.moveaxis(y, 0, 1), (B, Tn) + y.shape[3:])
    chunks = [split(x) for x in jfull]
    kchunks = {name: split(x) for name, x in jkw.items()}
    last = len(full) - 1

    def run(q, x_last):
        def body(state, xs):
            pos, kws = xs
            y, state = f(*pos, **kws, state=state, return_state=True)
            return state, y

        pos = (q,) + tuple(chunks[1:last]) + (x_last,)
        return jax.lax.scan(body, s0, (pos, kchunks))

    nw = np.random.default_rng(6).standard_normal((B, Tn, D))
    w = jnp.asarray(nw)

    def loss(q, x_last):
        state, ys = run(q, x_last)
        return jnp.sum(w * merge(ys)), (state, ys)

    # one compilation of the scan (its trace is the costly part): the primal of value_and_grad is
    # the jitted scan's outputs and final state, and its gradient goes back through the scan
    (_, (state, ys)), g = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(chunks[0], chunks[last])
    assert_close(np.asarray(merge(ys)), getattr(ref, op)(*full, **fkw), 1e-12, what=op)
    assert int(state.offset) == Tn
    # the carried state holds the plain call's state (the same array-API code, on NumPy: an eager
    # JAX call compiles each operation), in a fixed number of level slots
    _, plain = f(*full, **fkw, return_state=True, backend="array_api")
    for name, t in plain.tensors.items():
        got, want = np.asarray(state.tensors[name]), np.asarray(t)
        if op in ("loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"):
            axis = want.ndim - (3 if name in ("levels", "S") else 2)
            assert got.shape[axis] == lsattn.num_levels(Tn) >= want.shape[axis]
            got = np.take(got, np.arange(want.shape[axis]), axis=axis)
        assert_close(got, want, 1e-12, what=f"state {name}")
    # and differentiated through the scan, with respect to q and to the last positional input
    want = reference_grad(op, full, fkw, nw, (0, last))
    for i, (gi, wi) in enumerate(zip(g, want)):
        assert_close(np.asarray(merge(gi)), wi, 1e-9, what=f"grad through scan, {op}, input {i}")


@pytest.mark.parametrize("op", ["loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"])
def test_fixed_capacity_states_move_between_backends(jnp, op):
    """A JAX log-linear state (fixed capacity: more level slots than the offset needs, a JAX integer
    offset after ``jit``) continues the stream on NumPy (numba) and in a NumPy stepper; a NumPy
    state continues under ``jit``. Every piece equals the reference."""
    args, kw = _inputs(op, 7)
    f = getattr(lsattn, op)
    want = getattr(ref, op)(*args, **kw)
    cut = lambda xs, a, b: [x[:, a:b] for x in xs]
    cutkw = lambda a, b: {n: x[:, a:b] for n, x in kw.items()}
    jcall = jax.jit(lambda st, xs, kws: f(*xs, **kws, state=st, return_state=True))
    # the first state from a jitted call too (eager JAX compiles each operation; eager JAX streams
    # are tested in each operator's own tests)
    _, s0 = jax.jit(lambda xs, kws: f(*xs, **kws, return_state=True))(
        cut([jnp.asarray(x) for x in args], 0, 3), {n: jnp.asarray(x[:, :3]) for n, x in kw.items()})
    o1, s1 = jcall(s0, cut([jnp.asarray(x) for x in args], 3, 6), {n: jnp.asarray(x[:, 3:6]) for n, x in kw.items()})
    assert not isinstance(s1.offset, int) and int(s1.offset) == 6
    assert next(iter(s1.tensors.values())).shape[-2 if op == "loglinear_log_attention" else -3] == L > (6).bit_length()
    assert_close(np.asarray(o1), want[:, 3:6], 1e-12, what="jit, from a JAX state")
    s1np = s1.to(np)
    o2, s2 = f(*cut(args, 6, 9), **cutkw(6, 9), state=s1np, return_state=True, backend="numba")
    assert_close(o2, want[:, 6:9], 1e-12, what="numba, from a fixed-capacity JAX state")
    assert s2.offset == 9 and next(iter(s2.tensors.values())).shape[-2 if op == "loglinear_log_attention" else -3] == 4
    step = lsattn.stepper(op, s1np, max_tokens=T)
    outs = [step(*cut(args, t, t + 1), **cutkw(t, t + 1)) for t in range(6, 9)]
    assert_close(np.concatenate(outs, axis=1), want[:, 6:9], 1e-10, what="stepper, from a fixed-capacity JAX state")
    o3, s3 = jcall(s2.to(jnp), cut([jnp.asarray(x) for x in args], 9, T), {n: jnp.asarray(x[:, 9:]) for n, x in kw.items()})
    assert_close(np.asarray(o3), want[:, 9:], 1e-12, what="jit, from a NumPy state")
    assert int(s3.offset) == T
