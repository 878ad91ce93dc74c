"""Decoding steps captured in a CUDA graph (issue 18): on CUDA torch tensors a ``lsattn.stepper``
step has no host branch on the offset, no host-device sync, no new State per token, so
``torch.cuda.CUDAGraph`` captures it; replays (new tokens copied into the captured input tensors)
give what the eager steps give, and the stepper's state (its device offset) follows the replays.

GPU-marked (skipped without CUDA). Bounds: replay vs eager steps 1e-6 relative (the same kernels;
float32), both vs the plain ``state=`` calls at the float32 bounds of ``test_stepper``.
"""
from __future__ import annotations

import numpy as np
import pytest

import lsattn

from helpers import assert_close, to_numpy
from test_gpu_dispatch import _torch
from test_stepper import OPS, check, make, tokens

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("P", [0, 37])
@pytest.mark.parametrize("op", OPS)
def test_steps_capture_and_replay_in_a_cuda_graph(op, P):
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
    eager = lsattn.stepper(op, st, max_tokens=P + N)
    graphed = lsattn.stepper(op, st, max_tokens=P + N)
    assert eager.backend == graphed.backend == "array_api"
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
