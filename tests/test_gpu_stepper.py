"""Decoding steps captured in a CUDA graph (issue 18): on CUDA torch tensors a ``lsattn.stepper``
step has no host branch on the offset, no host-device sync, no new State per token, so
``torch.cuda.CUDAGraph`` captures it; replays (new tokens copied into the captured input tensors)
give what the eager steps give, and the stepper's state (its device offset) follows the replays.

On CUDA tensors every operator but ``log_attention`` steps through the cupy backend's fused kernel (one launch per token) when CuPy works; the capture test runs them forced
onto the array-API step too, and the tests at the end check the fused step against the array-API
step, the plain calls and the reference (torch and CuPy arrays, float32 / float64, 16-bit inputs,
4096 rows).

GPU-marked (skipped without CUDA). Bounds: replay vs eager steps 1e-6 relative (the same kernels;
float32), both vs the plain ``state=`` calls at the float32 bounds of ``test_stepper``.
"""
from __future__ import annotations

import numpy as np
import pytest

import lsattn

from helpers import assert_close, to_numpy
from test_gpu_dispatch import _torch
from test_cupy_step import assert_state_close, check_hier_infinities, hier_infinity_inputs, synthetic_state, twin_bound
from test_stepper import OPS, check, make, tokens

pytestmark = pytest.mark.gpu


#: operators with the cupy backend's fused step (the automatic choice on CUDA tensors when CuPy works)
CUPY_OPS = ("exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention")


def _auto_backend(op):
    return "cupy" if op in CUPY_OPS and lsattn.backends.get("cupy").status()[0] else "array_api"


@pytest.mark.parametrize("backend", [None, "array_api"])
@pytest.mark.parametrize("P", [0, 37])
@pytest.mark.parametrize("op", OPS)
def test_steps_capture_and_replay_in_a_cuda_graph(op, P, backend):
    if backend is not None and op not in CUPY_OPS:
        pytest.skip("the automatic choice is the array-API step already")
    torch = _torch()
    N = 12  # one warm-up step, then 11 replays: merges up to level 5 from P = 37
    batch = (2, 3)
    args, kw = make(op, 11, batch, P + N + 1, 8, 4, "moderate")
    args = [x.astype(np.float32) for x in args]
    kw = {n: x.astype(np.float32) for n, x in kw.items()}
    nb = len(batch)
    cuda = lambda xs: [torch.tensor(x, device="cuda") for x in xs]  # copies (the captured inputs are overwritten)  # noqa: E731
    inputs = lambda t: cuda(tokens(args, nb, t, t + 1)) + cuda(tokens(list(kw.values()), nb, t, t + 1))  # noqa: E731
    fn = getattr(lsattn, op)
    _, st = fn(*cuda(tokens(args, nb, 0, P)), **dict(zip(kw, cuda(tokens(list(kw.values()), nb, 0, P)))),
               return_state=True)
    eager = lsattn.stepper(op, st, max_tokens=P + N, backend=backend)
    graphed = lsattn.stepper(op, st, max_tokens=P + N, backend=backend)
    assert eager.backend == graphed.backend == (backend or _auto_backend(op))
    npos = len(args)

    def call(step, xs):
        return step(*xs[:npos], **dict(zip(kw, xs[npos:])))

    want = [to_numpy(call(eager, inputs(t))) for t in range(P, P + N)]

    static = inputs(P)  # the captured step reads these tensors; each replay's token is copied in
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (a real step: token P) off the capture stream, as torch advises
        got = [to_numpy(call(graphed, static))]
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = call(graphed, static)  # recorded, not run
    for t in range(P + 1, P + N):
        for dst, src in zip(static, inputs(t)):
            dst.copy_(src)
        graph.replay()
        got.append(to_numpy(out))
    torch.cuda.synchronize()

    got, want = np.concatenate(got, axis=-2), np.concatenate(want, axis=-2)
    if op == "loglinear_log_attention":
        assert_close(got, want, 0.0, atol=1e-6 * (1 + np.abs(want).max()), what="replays vs eager (log y)")
    else:
        assert_close(got, want, 1e-6, what="replays vs eager")
    f64 = [x.astype(np.float64) for x in args]
    kw64 = {n: x.astype(np.float64) for n, x in kw.items()}
    check(op, got, f64, kw64, "float32", P, "replayed steps vs reference")
    s_eager, s_graph = eager.state, graphed.state
    assert s_graph.offset == s_eager.offset == P + N  # read from the device offset the replays advanced
    for name, x in s_graph.tensors.items():
        assert_close(to_numpy(x), to_numpy(s_eager.tensors[name]), 1e-6, atol=1e-30, what=f"state {name}")


# ---- the cupy backend's fused step (lsattn/backends/cupy/step.cu) ----------------------------------

def _cupy_ready():
    if not lsattn.backends.get("cupy").status()[0]:
        pytest.skip(f"cupy backend unavailable: {lsattn.backends.get('cupy').status()[1]}")


@pytest.mark.parametrize("kind", ["torch", "cupy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("P", [0, 5, 63, 200])
@pytest.mark.parametrize("op", CUPY_OPS)
def test_cupy_step_equals_array_api_step_plain_calls_and_reference(op, P, dtype, kind):
    """N = 9 fused steps (one launch each) = the array-API step (the twin tests' bounds: 1e-5 / 1e-12,
    ``twin_bound``) = the plain ``state=`` calls and the reference (test_stepper bounds); the states
    agree and continue a plain call; head dims over several warps' rows and two column tiles; a
    hard reset (``-inf`` decay) among the steps."""
    _cupy_ready()
    if kind == "torch":
        torch = _torch()
        dev = lambda xs: [torch.tensor(x, device="cuda") for x in xs]  # noqa: E731
    else:
        cp = pytest.importorskip("cupy")
        dev = lambda xs: [cp.asarray(x) for x in xs]  # noqa: E731
    batch, N, nb = (2, 3), 9, 2
    args, kw = make(op, 5, batch, P + N + 2, 19, 40, "moderate")
    if op == "loglinear_log_attention":
        kw["log_decay"][..., P + 2] = -np.inf
    elif op != "exp_kernel_attention":
        args[3][..., P + 2] = -np.inf  # a hard reset among the steps
    args = [x.astype(dtype) for x in args]
    kw = {n: x.astype(dtype) for n, x in kw.items()}
    kwt = lambda i0, i1: dict(zip(kw, dev(tokens(list(kw.values()), nb, i0, i1))))  # noqa: E731
    fn = getattr(lsattn, op)
    _, st = fn(*dev(tokens(args, nb, 0, P)), **kwt(0, P), return_state=True)
    step = lsattn.stepper(op, st, max_tokens=P + N + 2)
    ref_step = lsattn.stepper(op, st, max_tokens=P + N + 2, backend="array_api")
    assert step.backend == "cupy"
    got, want, plain, st_plain = [], [], [], st
    for t in range(P, P + N):
        xs, kws = dev(tokens(args, nb, t, t + 1)), kwt(t, t + 1)
        got.append(to_numpy(step(*xs, **kws)))
        want.append(to_numpy(ref_step(*xs, **kws)))
        o, st_plain = fn(*xs, **kws, state=st_plain, return_state=True)
        plain.append(to_numpy(o))
    got, want, plain = (np.concatenate(x, axis=-2) for x in (got, want, plain))
    f64 = [x.astype(np.float64) for x in args]
    kw64 = {n: x.astype(np.float64) for n, x in kw.items()}
    rtol, atol = twin_bound(op, dtype, f64, want, P, N)
    tol = rtol * (10 if op == "exp_kernel_attention" and dtype == "float64" else 1)
    assert_close(got, want, tol, atol=atol, what="cupy step vs array-API step")
    check(op, got, f64, kw64, dtype, P, "cupy step vs reference")
    check(op, plain, f64, kw64, dtype, P, "plain calls vs reference")
    s_c, s_a = step.state, ref_step.state
    assert s_c.offset == s_a.offset == st_plain.offset == P + N
    stol = {"float32": 1e-5, "float64": 1e-12}[dtype] * (10 if op == "exp_kernel_attention" and dtype == "float64" else 1)
    for name, x in s_c.tensors.items():
        assert type(x) is type(st_plain.tensors[name]) and tuple(x.shape) == tuple(st_plain.tensors[name].shape)
        if op == "loglinear_log_attention":  # shifts near the finite "minus infinity": each at its scale
            assert_state_close(x, s_a.tensors[name], 10 * stol, what=f"state {name}")
        else:
            assert_close(to_numpy(x), to_numpy(s_a.tensors[name]), 10 * stol, atol=1e-30, what=f"state {name}")
    out = fn(*dev(tokens(args, nb, P + N, P + N + 2)), **kwt(P + N, P + N + 2), state=s_c)
    check(op, to_numpy(out), f64, kw64, dtype, P + N, "continued from the cupy step's state")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mag", [1.0, 1e3])
def test_cupy_hier_step_infinities_and_magnitudes(dtype, mag):
    """``hier_step`` on the GPU with the twin test's inputs (``hier_infinity_inputs``: ``-inf`` log
    values, level weights, decays, rows of no visible weight, ``|q|, |k|`` up to ``mag``): NaN exactly
    in the rows the reference leaves undefined, ``-inf`` exact, the rest within its bound."""
    _cupy_ready()
    torch = _torch()
    args, kw, nb, P, T = hier_infinity_inputs(dtype, mag)
    dev = lambda xs: [torch.tensor(x, device="cuda") for x in xs]  # noqa: E731
    _, st = lsattn.loglinear_log_attention(*dev(tokens(args, nb, 0, P)), log_decay=dev([kw["log_decay"][..., :P]])[0],
                                           return_state=True)
    step = lsattn.stepper("loglinear_log_attention", st, max_tokens=T)
    assert step.backend == "cupy"
    got = [to_numpy(step(*dev(tokens(args, nb, t, t + 1)), log_decay=dev([kw["log_decay"][..., t : t + 1]])[0]))
           for t in range(P, T)]
    check_hier_infinities(np.concatenate(got, axis=-2), args, kw, P, dtype, "cupy step")


@pytest.mark.parametrize("half", ["bfloat16", "float16"])
@pytest.mark.parametrize("op", CUPY_OPS)
def test_cupy_step_half_inputs_read_as_they_are(op, half):
    """16-bit torch inputs reach the fused step as they are (float32 state): the output has their
    dtype and equals the step on the same values in float32, to the output's rounding."""
    _cupy_ready()
    torch = _torch()
    batch, N, nb, P = (2, 4), 5, 2, 21
    args, _ = make(op, 8, batch, P + N, 16, 24, "moderate")
    hd = getattr(torch, half)
    dev = lambda xs, d: [torch.tensor(x, device="cuda", dtype=torch.float32).to(hd).to(d) for x in xs]  # noqa: E731
    _, st = getattr(lsattn, op)(*dev(tokens(args, nb, 0, P), torch.float32), return_state=True)
    s16 = lsattn.stepper(op, st, max_tokens=P + N)
    s32 = lsattn.stepper(op, st, max_tokens=P + N)
    for t in range(P, P + N):
        o16 = s16(*dev(tokens(args, nb, t, t + 1), hd))
        o32 = s32(*dev(tokens(args, nb, t, t + 1), torch.float32))
        assert o16.dtype == hd
        eps = float(torch.finfo(hd).eps)
        assert_close(to_numpy(o16.float()), to_numpy(o32), eps, what=f"{half} step {t}")
    assert_close(to_numpy(s16.state.tensors[next(iter(st.tensors))]), to_numpy(s32.state.tensors[next(iter(st.tensors))]),
                 1e-6, atol=1e-30, what="states")


@pytest.mark.parametrize("op", CUPY_OPS)
def test_cupy_step_batched_4096_rows(op):
    """4096 rows (256 x 16), d = 64, offset 1000 (log-linear: a synthetic state, ``synthetic_state``):
    three fused steps = three array-API steps."""
    _cupy_ready()
    torch = _torch()
    gen = torch.Generator(device="cuda").manual_seed(0)
    batch, P = (256, 16), 1000
    randn = lambda *s: torch.randn(*s, device="cuda", generator=gen)  # noqa: E731
    rand = lambda *s: torch.rand(*s, device="cuda", generator=gen)  # noqa: E731
    if op == "exp_kernel_attention":
        _, st = lsattn.exp_kernel_attention(randn(*batch, 8, 64), randn(*batch, 8, 64), randn(*batch, 8, 64),
                                            return_state=True)
    else:
        st = synthetic_state(op, P, batch, 64, 64, np.random.default_rng(0), np.float32)
        scale = 0.1 if op != "loglinear_log_attention" else 1.0
        st = lsattn.state.State(op, P, batch, 64, 64, torch.float32,
                                {n: scale * torch.tensor(x, device="cuda") for n, x in st.tensors.items()})
    a = lsattn.stepper(op, st, max_tokens=P + 8)
    b = lsattn.stepper(op, st, max_tokens=P + 8, backend="array_api")
    assert a.backend == "cupy"
    for _ in range(3):
        xs = [randn(*batch, 1, 64) for _ in range(3)]
        kws = {}
        if op == "loglinear_gated_delta":
            xs[1] = xs[1] / xs[1].norm(dim=-1, keepdim=True)
            xs += [-rand(*batch, 1), rand(*batch, 1), rand(*batch, 1, 12)]
        elif op == "loglinear_attention":
            xs += [-rand(*batch, 1), rand(*batch, 1, 12)]
        elif op == "loglinear_log_attention":
            xs += [randn(*batch, 1, 12)]
            kws = {"log_decay": -rand(*batch, 1)}
        got, want = to_numpy(a(*xs, **kws)), to_numpy(b(*xs, **kws))
        atol = 1e-5 * (1 + np.abs(want).max()) if op == "loglinear_log_attention" else 0.0
        assert_close(got, want, 1e-5 * (op != "loglinear_log_attention"), atol=atol, what="batched step")
    for name, x in a.state.tensors.items():
        if op == "loglinear_log_attention":
            assert_state_close(x, b.state.tensors[name], 1e-5, what=name)
        else:
            assert_close(to_numpy(x), to_numpy(b.state.tensors[name]), 1e-5, atol=1e-30, what=name)
