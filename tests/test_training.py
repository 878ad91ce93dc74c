"""Training through the operators: torch.compile (CPU, CI) and, on the GPU (``@pytest.mark.gpu``),
the CuPy backward kernels of ``loglinear_attention`` and ``exp_kernel_attention`` chosen
automatically for CUDA tensors that require grad: gradcheck in float64 (chunk splits, incoming
states), float32 / bfloat16 gradients against float64 autograd of ``lsattn.reference`` at
benchmark-like sizes (the bounds of ``test_cupy_backend.GRAD_TOL``, stated in docs/backends.md),
strong decays and hard resets (log-linear), |q|, |k| up to 1e3 (exp-kernel), peak memory,
torch.compile with inductor.
"""
from __future__ import annotations

import pytest

import lsattn
from lsattn import reference as ref

from test_cupy_backend import GRAD_TOL, check_ek_grads, check_grads, ek_inputs, ll_inputs


def _model(torch, d, T):
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Linear(d, 3 * d + 1 + lsattn.num_levels(T))

        def forward(self, x):
            y = self.p(x)
            q, k, v = y[..., :d], y[..., d:2 * d], y[..., 2 * d:3 * d]
            a = torch.nn.functional.logsigmoid(y[..., 3 * d])
            lam = torch.nn.functional.softplus(y[..., 3 * d + 1:])
            ll = lsattn.loglinear_attention(q, k, v, a, lam).square().mean()
            return ll + lsattn.exp_kernel_attention(q, k, v).square().mean()

    return M()


def _compiled_equals_eager(torch, device, dtype, backend):
    torch.manual_seed(0)
    m = _model(torch, 8, 40).to(device=device, dtype=dtype)
    x = torch.randn(2, 40, 8, device=device, dtype=dtype)
    loss = torch.compile(m, backend=backend)(x)
    loss.backward()
    g1 = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    loss0 = m(x)
    loss0.backward()
    assert torch.allclose(loss, loss0, rtol=1e-6, atol=0)
    for a, b in zip(g1, (p.grad for p in m.parameters())):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7 * float(b.abs().max()))


def test_torch_compile_cpu():
    """A model calling both operators compiles (each call is one graph break) and trains like eager."""
    torch = pytest.importorskip("torch")
    _compiled_equals_eager(torch, "cpu", torch.float64, "aot_eager")


# ---- GPU -----------------------------------------------------------------------------------------

def _cuda(torch):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import lsattn.backends.cupy as cb

    if cb.probe() is not None:
        pytest.skip(f"cupy backend unavailable: {cb.probe()}")


@pytest.mark.gpu
def test_gpu_torch_compile_inductor():
    torch = pytest.importorskip("torch")
    _cuda(torch)
    _compiled_equals_eager(torch, "cuda", torch.float64, "inductor")


@pytest.mark.gpu
@pytest.mark.parametrize("T,C,P", [(1, 16, 0), (37, 16, 0), (70, 32, 0), (130, 16, 0), (1, 16, 5), (40, 16, 77), (70, 64, 64)])
def test_gpu_loglinear_gradcheck(T, C, P):
    """torch.autograd.gradcheck (float64) through the public call, kernels chosen automatically;
    with an incoming state (offset P) its levels are an input too."""
    torch = pytest.importorskip("torch")
    _cuda(torch)
    from lsattn.state import State

    q, k, v, a, lam = (torch.tensor(x, device="cuda", requires_grad=True) for x in ll_inputs(3, (2,), T, 3, 2, offset=P))
    assert lsattn.backends.resolve("loglinear_attention", None, q, grad=True).name == "cupy"
    inputs = [q, k, v, a, lam]
    if P:
        prefix = [torch.tensor(x, device="cuda") for x in ll_inputs(4, (2,), P, 3, 2)]
        _, st = lsattn.loglinear_attention(*prefix, return_state=True)
        inputs.append(st.tensors["levels"].clone().requires_grad_(True))

    def f(q, k, v, a, lam, *lv):
        state = None if not lv else State("loglinear_attention", P, (2,), 3, 2, torch.float64, {"levels": lv[0]})
        return lsattn.loglinear_attention(q, k, v, a, lam, chunk_size=C, state=state)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("T,decay", [(2048, "moderate"), (1000, "strong"), (777, "spiky")])
def test_gpu_loglinear_grads_against_reference(dtype, T, decay):
    """B=2, H=2, d=64: every gradient (q, k, v, log_decay, level_weights) against float64 autograd of
    the reference on the same (rounded) inputs, within GRAD_TOL[dtype]; strong decays (down to -31
    per token) and hard resets give no NaN."""
    torch = pytest.importorskip("torch")
    _cuda(torch)
    arrays = ll_inputs(5, (2, 2), T, 64, 64, decay=decay)
    td = getattr(torch, dtype)
    xs = [torch.tensor(x, device="cuda").to(td).requires_grad_(True) for x in arrays]
    do = torch.randn(2, 2, T, 64, device="cuda", dtype=torch.float64, generator=torch.Generator("cuda").manual_seed(1))
    out = lsattn.loglinear_attention(*xs)
    assert out.dtype == td
    (out.double() * do).sum().backward()
    got = [x.grad.double() for x in xs]
    rs = [x.detach().double().requires_grad_(True) for x in xs]
    want_out = ref.loglinear_attention(*rs)
    (want_out * do).sum().backward()
    for g in got:
        assert torch.isfinite(g).all()
    check_grads([g.cpu().numpy() for g in got], [r.grad.cpu().numpy() for r in rs], want_out.detach().cpu().numpy(),
                do.cpu().numpy(), GRAD_TOL[dtype], f"{dtype} T={T} {decay}")


@pytest.mark.gpu
def test_gpu_loglinear_backward_memory():
    """Forward + backward at T = 16384 (B=1, H=2, d=64, float32) stays far below T * d_k * d_v:
    what is saved is O(T (d_k + d_v + L)), the backward's temporaries one d_k x d_v per chunk."""
    torch = pytest.importorskip("torch")
    _cuda(torch)
    T, d = 16384, 64
    xs = [torch.tensor(x, device="cuda", dtype=torch.float32).requires_grad_(True)
          for x in ll_inputs(6, (1, 2), T, d, d)]
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    lsattn.loglinear_attention(*xs).square().mean().backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    inputs = sum(x.numel() * 4 for x in xs)
    assert peak < 12 * inputs, f"peak {peak / 2**20:.1f} MiB for inputs of {inputs / 2**20:.1f} MiB"
    assert peak < T * d * d * 2 * 4 / 4, "a quarter of one T x d_k x d_v float32 tensor per head pair"


# ---- exp-kernel attention ------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("T,P,scale", [(1, 0, 1.0), (37, 0, 1.0), (70, 0, 3.0), (130, 0, 1.0), (1, 5, 1.0),
                                       (40, 77, 1.0), (70, 64, 2.0)])
def test_gpu_exp_kernel_gradcheck(T, P, scale):
    """gradcheck (float64) through the public causal call, kernels chosen automatically; with an
    incoming state (after P tokens) its m, S, z are inputs too."""
    torch = pytest.importorskip("torch")
    _cuda(torch)
    from lsattn.state import State

    q, k, v = (torch.tensor(x, device="cuda", requires_grad=True) for x in ek_inputs(3, (2,), T, 3, 2, scale))
    assert lsattn.backends.resolve("exp_kernel_attention", None, q, grad=True).name == "cupy"
    inputs = [q, k, v]
    if P:
        prefix = [torch.tensor(x, device="cuda") for x in ek_inputs(4, (2,), P, 3, 2, scale)]
        _, st = lsattn.exp_kernel_attention(*prefix, return_state=True)
        inputs += [st.tensors[n].clone().requires_grad_(True) for n in ("m", "S", "z")]

    def f(q, k, v, *mSz):
        state = None if not mSz else State("exp_kernel_attention", P, (2,), 3, 2, torch.float64, dict(zip("mSz", mSz)))
        return lsattn.exp_kernel_attention(q, k, v, state=state)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("T,scale", [(2048, 1.0), (1000, 30.0), (777, 1e3)])
def test_gpu_exp_kernel_grads_against_reference(dtype, T, scale):
    """B=2, H=2, d=64: dq, dk, dv against float64 autograd of the reference on the same (rounded)
    inputs, within GRAD_TOL[dtype]; |q|, |k| up to 1e3 give no overflow or NaN."""
    torch = pytest.importorskip("torch")
    _cuda(torch)
    arrays = ek_inputs(5, (2, 2), T, 64, 64, scale)
    td = getattr(torch, dtype)
    xs = [torch.tensor(x, device="cuda").to(td).requires_grad_(True) for x in arrays]
    do = torch.randn(2, 2, T, 64, device="cuda", dtype=torch.float64, generator=torch.Generator("cuda").manual_seed(1))
    out = lsattn.exp_kernel_attention(*xs)
    assert out.dtype == td
    (out.double() * do).sum().backward()
    got = [x.grad.double() for x in xs]
    rs = [x.detach().double().requires_grad_(True) for x in xs]
    want_out = ref.exp_kernel_attention(*rs)
    (want_out * do).sum().backward()
    for g in got:
        assert torch.isfinite(g).all()
    check_ek_grads([g.cpu().numpy() for g in got], [r.grad.cpu().numpy() for r in rs], want_out.detach().cpu().numpy(),
                   do.cpu().numpy(), arrays[2], GRAD_TOL[dtype], f"{dtype} T={T} scale={scale}")


@pytest.mark.gpu
def test_gpu_exp_kernel_backward_memory():
    """Forward + backward at T = 16384 (B=1, H=2, d=64, float32): O(T (d_k + d_v)) saved, one
    d_k x d_v summary per chunk of temporaries, never T x d_k x d_v."""
    torch = pytest.importorskip("torch")
    _cuda(torch)
    T, d = 16384, 64
    xs = [torch.tensor(x, device="cuda", dtype=torch.float32).requires_grad_(True) for x in ek_inputs(6, (1, 2), T, d, d)]
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    lsattn.exp_kernel_attention(*xs).square().mean().backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    inputs = sum(x.numel() * 4 for x in xs)
    assert peak < 12 * inputs, f"peak {peak / 2**20:.1f} MiB for inputs of {inputs / 2**20:.1f} MiB"
    assert peak < T * d * d * 2 * 4 / 4, "a quarter of one T x d_k x d_v float32 tensor per head pair"
