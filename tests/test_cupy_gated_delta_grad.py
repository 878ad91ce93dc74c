"""The training path of loglinear_gated_delta on the CuPy backend (``gated_delta_bwd.py`` +
``gated_delta_bwd.cu``, ``gated_delta_bwd_scan.cu``) against float64 torch autograd of lsattn.reference.

* CPU (runs in CI): ``gated_delta_bwd.differentiable`` on CPU torch tensors with ``twin_context``:
  the forms Function's forward driven by ``Twin.gd_forms`` (the array-API formulation) and its
  backward by ``TwinOps.gd_forms_bwd`` (``torch_forms_backward``: the hand-derived torch operations
  of gd_forms_bwd's formulas), the scan Function's forward driven by ``Twin`` (the NumPy
  transcription of ``gd_scan``, tests/test_cupy_gated_delta.py) and its backward by
  ``TwinOps.gd_scan_bwd`` (the NumPy transcription of ``gd_scan_bwd``: same phases, loops over
  column blocks, chunks and slots, same index arithmetic). Gradients with respect to every input
  and the incoming state's levels against float64 torch autograd of the reference (inputs) and of
  the array-API path (the state).
  The CUDA sources of the backward kernels also run on the CPU (``cuda_emu_gd_forms_bwd.cpp``: a
  fiber per CUDA thread), driven the same way, and gd_forms_bwd's against the torch twin on
  random output gradients (chunks 16 / 32 / 64, padded head dims, value passes, offsets, hard resets).
* GPU (``@pytest.mark.gpu``; skipped without CuPy or a CUDA device): the public operator on CUDA
  torch tensors that require grad, backend chosen automatically: gradcheck in float64 (chunk
  splits, incoming states), float32 gradients against float64 autograd of the reference up to
  T = 1024, bfloat16 inputs (widened to float32 by the registry) against the reference on the
  rounded inputs.

Bounds (max |grad - ref| <= tol * max |ref| per gradient; the log-decay gradient, a difference of
row and column sums, also within tol * sum_t |dO_t . o_t|): float64 ``F64``, float32 ``F32``,
bfloat16 ``BF16``, those of tests/test_cupy_backend.GRAD_TOL.
"""
from __future__ import annotations

import contextlib
import ctypes
import shutil

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lsattn
from lsattn import reference as ref
from lsattn._chunktree import chunk_layout, from_chunks, segsum, suffix_after, to_chunks
from lsattn.backends.cupy import gated_delta_bwd as gdb
from lsattn.backends.cupy._compile import make_config
from lsattn.loglinear import _chunk_levels, _ns
from lsattn.fenwick import _bit_length
from lsattn.state import State

from helpers import assert_close, cupy_source, emulation
from strategies import seeds
from test_cupy_gated_delta import BV, Emulated, Twin, make, scan_source
from test_training import _cuda

F64, F32, BF16 = 1e-10, 1e-4, 5e-2
X1 = 4e-3  # gd_forms_bwd_x1 (1xTF32 products, operands rounded to 2^-11; measured 1.5e-3) against the float64 twin, of max |twin|: 2^-8
torch = pytest.importorskip("torch")


def held(c, m, F):
    """gd_held of gated_delta_bwd.cu: chunk-level slot m holds keys before chunk c (first chunk F)."""
    return bool((c >> (m - 1)) & 1) and ((c >> (m - 1)) << (m - 1)) > F


def torch_forms_backward(C, p, q, k, v, a, beta, lam, grads):
    """The twin of gd_forms_bwd (gated_delta_forms_bwd.cu, the formulas in its header): torch operations
    on (BH, T, ..) torch tensors (offset p, chunk C) and the gradients of (qeff, eGK, phi, H, g, intra),
    chunked -> (dq, dk, dv, da, dbeta, dlam)."""
    ns = _ns(q)
    lay = chunk_layout(p, q.shape[-2], C)
    Q, K, V = (to_chunks(ns, x, lay, -2) for x in (q, k, v))  # (BH, n, C, d)
    A, Bt = (to_chunks(ns, x, lay, -1) for x in (a, beta))  # (BH, n, C)
    Lc = to_chunks(ns, lam, lay, -2)  # (BH, n, C, L)
    L = Lc.shape[-1]
    dqe, dek, dph, dH, dg, dI = grads

    def tr(x):
        return x.transpose(-1, -2)

    strict = torch.ones((C, C), dtype=torch.bool).tril(-1)
    zero = torch.zeros((), dtype=q.dtype)
    bc, br = Bt[..., None, :], Bt[..., :, None]  # beta as a column / row factor
    eG = torch.exp(torch.cumsum(A, -1))[..., None]
    eS = torch.exp(suffix_after(ns, A))[..., None]
    eGK, Z = eG * K, eS * K
    D = torch.exp(segsum(ns, A))  # (BH, n, C, C), zero above the diagonal
    KK = K @ tr(K)
    eye = torch.eye(C, dtype=q.dtype)
    X = torch.linalg.solve_triangular(eye + torch.where(strict, br * D * KK, zero), eye.expand(Q.shape[:-2] + (C, C)),
                                      upper=False, unitriangular=True)
    QK = Q @ tr(K)
    M = D * QK
    W = M @ X
    attn = W * bc
    lev = torch.as_tensor(np.clip(_chunk_levels(C), 0, L - 1))  # (C, C) level of (t, s) in the chunk
    Lam = torch.take_along_dim(Lc, lev.expand(Lc.shape[:-2] + (C, C)), dim=-1)  # lam[t, level(t, s)]
    P = dI @ tr(V)
    dV = tr(Lam * attn) @ dI + (tr(X * bc) @ Z) @ dH  # phi^T = (X diag(beta))^T Z
    dlam = torch.zeros_like(Lc).scatter_add_(-1, lev.expand(P.shape), attn * P)
    dattn = Lam * P - dqe @ tr(eGK)
    deGK = dek - tr(attn) @ dqe
    dQ = eG * dqe
    dG = eG[..., 0] * (torch.sum(Q * dqe, -1) + torch.sum(K * deGK, -1))
    dK = eG * deGK
    dbeta = torch.sum(W * dattn, -2)
    dW = dattn * bc
    dM, dX = dW @ tr(X), tr(M) @ dW
    dphi = dph + dH @ tr(V)
    dZ, dY = (X * bc) @ tr(dphi), Z @ dphi
    dX = dX + dY * bc
    dbeta = dbeta + torch.sum(X * dY, -2)
    dK = dK + eS * dZ
    dS = eS[..., 0] * torch.sum(K * dZ, -1)
    dN = torch.where(strict, -(tr(X) @ dX @ tr(X)), zero)
    dbeta = dbeta + torch.sum(dN * D * KK, -1)
    dKK = dN * br * D
    dD = dN * br * KK + dM * QK
    dQK = dM * D
    dQ = dQ + dQK @ K
    dK = dK + (dKK + tr(dKK)) @ K + tr(dQK) @ Q
    E = torch.where(strict, D * dD, zero)
    below = torch.flip(torch.cumsum(torch.flip(E, [-2]), -2), [-2])  # [r, s]: sum over t >= r of E[t, s]
    da = torch.sum(torch.where(strict, below, zero), -1)
    da = da + torch.flip(torch.cumsum(torch.flip(dG, [-1]), -1), [-1]) + dg[..., None] + torch.cumsum(dS, -1) - dS
    back = [from_chunks(ns, x, lay, -2) for x in (dQ, dK, dV)]
    back += [from_chunks(ns, x, lay, -1) for x in (da, dbeta)]
    return tuple(back) + (from_chunks(ns, dlam, lay, -2),)


class TwinOps(Twin):
    """The twins of gd_scan (``Twin``), gd_scan_bwd (``gd_scan_bwd``, below) and gd_forms_bwd
    (``torch_forms_backward``)."""

    def gd_forms_bwd(self, cfg, *arrays_and_ints, x1=False, dlw=None):
        arrays, p = arrays_and_ints[:18], arrays_and_ints[22]  # (.., T, DK, DV, L, p, F, n, BH)
        got = torch_forms_backward(cfg.CH, p, *[torch.from_numpy(x) for x in arrays[:6]],
                                   [torch.from_numpy(x) for x in arrays[6:12]])
        for out, g in zip(arrays[12:], got):
            out[...] = g.numpy()
        if dlw is not None:
            arrays[17] += dlw

    def gd_scan_bwd(self, cfg, qe, ek, ph, H, g, lam, dout, oldc, sv, dS, dqe, dek, dph, dH, dg, dlam, T, DK, DV, L,
                    p, F, n, n_old, NLC, merge_last, BH, x1=False):
        CH = cfg.CH
        log2c = CH.bit_length() - 1
        NS = n_old + NLC
        assert sv.shape == (BH, n, NS, DK, DV) and dS.shape == (BH, NS, DK, DV)

        def holds(c, s):
            return bool((p >> s) & 1) if s < n_old else held(c, s - n_old + 1, F)

        for c0 in range(0, DV, BV):
            cs = slice(c0, min(DV, c0 + BV))
            # phase 1: the slots before every chunk
            for s in range(n_old):
                if (p >> s) & 1:
                    sv[:, 0, s, :, cs] = oldc[:, s, :, cs]
            for j in range(n - 1):
                c = F + j
                eg = np.exp(g[:, j])[:, None, None]
                for s in range(NS):
                    if holds(c, s):
                        S = sv[:, j, s, :, cs]
                        sv[:, j + 1, s, :, cs] = eg * S - ph[:, j] @ (ek[:, j] @ S)
                z = ((c + 1) & -(c + 1)).bit_length() - 1
                x = H[:, j, :, cs].copy()
                for m in range(1, z + 1):
                    if held(c, m, F):
                        x += sv[:, j + 1, n_old + m - 1, :, cs]
                sv[:, j + 1, n_old + z, :, cs] = x
            # phase 2: the reverse scan
            for j in range(n - 1, -1, -1):
                c = F + j
                if j < n - 1 or merge_last:
                    z = ((c + 1) & -(c + 1)).bit_length() - 1
                    x = dS[:, n_old + z, :, cs].copy()
                    dH[:, j, :, cs] = x
                    dS[:, n_old + z, :, cs] = 0
                    for m in range(1, z + 1):
                        if held(c, m, F):
                            dS[:, n_old + m - 1, :, cs] = x
                eg = np.exp(g[:, j])
                tabs = c * CH + np.arange(CH)
                gi = tabs - p
                ok = (gi >= 0) & (gi < T)
                aq, ae = np.zeros((BH, CH, DK)), np.zeros((BH, CH, DK))
                ap, dga = np.zeros((BH, DK, CH)), np.zeros(BH)
                for s in range(NS):
                    if not holds(c, s):
                        continue
                    S, dSn = sv[:, j, s, :, cs], dS[:, s, :, cs].copy()
                    level = np.maximum(s + 1, _bit_length(np, p ^ tabs)) if s < n_old else np.full(CH, log2c + s - n_old + 1)
                    r, W = qe[:, j] @ S, ek[:, j] @ S  # (BH, CH, w)
                    dW = -(np.swapaxes(ph[:, j], -1, -2) @ dSn)
                    dO = np.zeros_like(r)
                    dO[:, ok] = dout[:, j, ok, cs]
                    lm = np.zeros((BH, CH))
                    lm[:, ok] = lam[:, gi[ok], level[ok]]  # an IndexError: a level beyond L
                    dr = lm[..., None] * dO
                    dlam[:, gi[ok], level[ok]] += np.sum(r * dO, axis=-1)[:, ok]  # the kernel's atomicAdd
                    St = np.swapaxes(S, -1, -2)
                    aq += dr @ St
                    ae += dW @ St
                    ap -= dSn @ np.swapaxes(W, -1, -2)
                    dga += np.sum(S * dSn, axis=(-1, -2))
                    dS[:, s, :, cs] = (eg[:, None, None] * dSn + np.swapaxes(qe[:, j], -1, -2) @ dr
                                       + np.swapaxes(ek[:, j], -1, -2) @ dW)
                dqe[:, j] += aq  # every column block adds its share (atomicAdd)
                dek[:, j] += ae
                dph[:, j] += ap
                dg[:, j] += eg * dga


@contextlib.contextmanager
def twin_context(like):
    """``on_gpu``'s interface on CPU torch tensors: NumPy views in, torch tensors out, the twins."""
    yield (lambda x: (x.numpy(), "")), (lambda x, half: torch.from_numpy(np.ascontiguousarray(x))), TwinOps()


def _grads(fn, arrays, do):
    """Gradients of sum(fn(*arrays) * do) by torch autograd, float64 CPU; (grads, output)."""
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in arrays]
    out = fn(*ts)
    (out * torch.tensor(do)).sum().backward()
    return [np.zeros(t.shape) if t.grad is None else t.grad.numpy() for t in ts], out.detach().numpy()  # None: unused


def check(got, want, out, do, tol, what, P=0):
    """Each gradient within tol * max |ref|; the log-decay gradient (index 3) also within
    tol * sum_t |dO_t . o_t| (a difference of row and column sums: zero where nothing decays); the
    incoming state's on its occupied levels (bits of the offset P: the others are zero in every
    state, never read by the kernels, and get zero gradient; the array-API decode form reads them)."""
    rows = float(np.max(np.sum(np.abs(np.sum(do * out, axis=-1)), axis=-1), initial=0.0))
    for name, g, w in zip(["dq", "dk", "dv", "da", "dbeta", "dlam", "dold"], got, want):
        if name == "dold":
            occupied = [j for j in range(P.bit_length()) if (P >> j) & 1]
            assert not np.any(np.delete(g, occupied, axis=-3)), "unoccupied levels get zero gradient"
            g, w = np.take(g, occupied, axis=-3), np.take(w, occupied, axis=-3)
        assert_close(g, w, tol, atol=tol * rows if name == "da" else 0.0, what=f"{name} {what}")


def _sl(arrays, lo, hi):
    return [x[..., lo:hi] if x.ndim == arrays[3].ndim else x[..., lo:hi, :] for x in arrays]


# ---- CPU: the host logic and the Function with the twins -------------------------------------------

def test_held_matches_the_forward_occupancy():
    """gd_held (the backward's closed form) equals the occupancy gd_scan builds by its merges."""
    for F in range(0, 70):
        for n in range(1, 40):
            occ = 0
            for j in range(n):
                c = F + j
                assert occ == sum(1 << (m - 1) for m in range(1, 12) if held(c, m, F)), (F, j)
                z = ((c + 1) & -(c + 1)).bit_length() - 1
                occ = (occ & ~((1 << z) - 1)) | (1 << z)


@given(batch=st.sampled_from([(), (2,), (1, 2)]), T=st.one_of(st.sampled_from([1, 15, 16, 17, 33, 64, 65]),
       st.integers(1, 130)), dk=st.sampled_from([1, 3, 5]), dv=st.sampled_from([1, 2, 17]),
       C=st.sampled_from([16, 32]), keys=st.sampled_from([("normalised", 0.5), ("raw", 0.3), ("raw", 1.0)]),
       decay=st.sampled_from(["moderate", "strong", "mixed", "zero"]), resets=st.booleans(), P=st.sampled_from([0, 0, 1, 5, 16, 77]),
       extra=st.integers(0, 1), seed=seeds)
@settings(max_examples=12, deadline=None)
def test_twin_gradients_match_reference(batch, T, dk, dv, C, keys, decay, resets, P, extra, seed):
    """Gradients of every input (and of the incoming state's levels after P tokens) through the
    twin-driven scan equal float64 torch autograd: of the reference over the P + T tokens (the
    inputs), of the array-API path with the state's levels as an input (the state). Strong decays
    (-1e3, -1e6 per token: finite, where autograd of the reference is defined)."""
    arrays = make(seed, batch, P + T, dk, dv, keys=keys[0], key_scale=keys[1], decay=decay, extra=extra)
    if resets:  # strong single-token decays (hard resets of -inf have no derivative in the reference)
        rng = np.random.default_rng(seed + 1)
        for _ in range(rng.integers(1, 4)):
            arrays[3][..., rng.integers(P + T)] = rng.choice([-1e3, -1e6])
    do = np.random.default_rng(seed + 2).standard_normal(batch + (T, dv))
    prefix, cont = _sl(arrays, 0, P), _sl(arrays, P, P + T)
    old = None
    if P:
        _, st0 = lsattn.loglinear_gated_delta(*prefix, return_state=True, backend="array_api")
        old = st0.tensors["levels"]

    def ours(q, k, v, a, beta, lam, *lv):
        return gdb.differentiable(q, k, v, a, beta, lam, C, P, lv[0] if lv else None, context=twin_context)

    got, out = _grads(ours, cont + ([old] if P else []), do)

    def reference(*xs):
        full = [torch.cat([torch.tensor(x0), x], dim=-1 if x.ndim == len(batch) + 1 else -2) for x0, x in zip(prefix, xs)]
        return ref.loglinear_gated_delta(*full)[..., P:, :]

    want, want_out = _grads(reference, cont, do)
    assert_close(out, want_out, F64, what="out")
    if P:
        def api(lv, *xs):
            state = State("loglinear_gated_delta", P, batch, dk, dv, torch.float64, {"levels": lv})
            return lsattn.loglinear_gated_delta(*xs, chunk_size=C, state=state, backend="array_api")

        want.append(_grads(api, [old] + cont, do)[0][0])
    check(got, want, out, do, F64, f"T={T} C={C} P={P} {keys} {decay}", P)


def test_inputs_unchanged_and_no_grad_path():
    """The training path leaves its inputs as they were; without requires_grad the same call is
    the plain forward (the twin scan), equal to the reference."""
    arrays = make(5, (2,), 50, 3, 2)
    ts = [torch.tensor(x, requires_grad=True) for x in arrays]
    before = [t.detach().clone() for t in ts]
    out = gdb.differentiable(*ts, 16, 0, None, context=twin_context)
    out.square().sum().backward()
    for t, b in zip(ts, before):
        assert torch.equal(t.detach(), b)
    assert_close(out.detach().numpy(), ref.loglinear_gated_delta(*arrays), F64)


def _graph(fn, seen=None):
    """The names of the autograd nodes reachable from ``fn``."""
    seen = set() if seen is None else seen
    if fn is not None and fn not in seen:
        seen.add(fn)
        for nxt, _ in fn.next_functions:
            _graph(nxt, seen)
    return {type(f).__name__ for f in seen}


def test_backend_forward_takes_the_training_path(monkeypatch):
    """The backend's ``forward`` on tensors that require grad (here CPU tensors, the kernels' twins
    standing in for ``on_gpu``): the scan Function, gradients of the inputs and of the incoming
    state's levels as the array-API path's; with ``return_state`` the array-API path itself."""
    from lsattn.backends.cupy import _autograd, gated_delta as cgd

    monkeypatch.setattr(_autograd, "on_gpu", twin_context)
    P, T, C = 21, 50, 16
    arrays = make(11, (2,), P + T, 3, 2)
    _, st0 = lsattn.loglinear_gated_delta(*_sl(arrays, 0, P), return_state=True, backend="array_api")
    do = np.random.default_rng(12).standard_normal((2, T, 2))

    def run(fn, lv, *xs):
        return fn(*xs, State("loglinear_gated_delta", P, (2,), 3, 2, torch.float64, {"levels": lv}))

    def ours(lv, *xs):
        out, st = run(lambda *a: cgd.forward(*a[:6], C, a[6], False), lv, *xs)
        assert st is None and "GatedDeltaScanBackward" in _graph(out.grad_fn)
        return out

    def api(lv, *xs):
        return run(lambda *a: lsattn.loglinear_gated_delta(*a[:6], chunk_size=C, state=a[6], backend="array_api"), lv, *xs)

    inputs = [st0.tensors["levels"]] + _sl(arrays, P, P + T)
    got, out = _grads(ours, inputs, do)
    want, want_out = _grads(api, inputs, do)
    assert_close(out, want_out, F64, what="out")
    check(got[1:] + got[:1], want[1:] + want[:1], out, do, F64, "backend forward", P)
    xs = [torch.tensor(x, requires_grad=True) for x in _sl(arrays, P, P + T)]
    out2, st2 = cgd.forward(*xs, C, None, True)  # return_state under grad: the array-API path
    _, st_api = lsattn.loglinear_gated_delta(*_sl(arrays, P, P + T), chunk_size=C, return_state=True, backend="array_api")
    assert_close(st2.tensors["levels"].detach().numpy(), st_api.tensors["levels"], F64, what="state")


@pytest.mark.parametrize("answers, special", [(True, None), (True, np.nan), (False, None)])
def test_kernel_check_under_grad(answers, special):
    """Inputs that require grad: the prologue hands an implementation with ``checks_grad_inputs`` (the cupy
    forward: its training path's gd_forms answers) a ``KernelCheck`` as ``check=`` (a set flag: the call again,
    sanitised, without it); without the attribute, none (its own checks, as before s19g16). CPU torch tensors
    checked as CUDA ones, the array-API implementation standing in; outputs and gradients the ordinary call's."""
    from unittest import mock

    from lsattn import _nonfinite, backends
    from lsattn.gated_delta import _forward

    arrays = [torch.as_tensor(x) for x in make(3, (2,), 40, 4, 3)]
    if special is not None:
        arrays[1][0, 17] = special
    want = lsattn.loglinear_gated_delta(*arrays, backend="array_api")
    calls = []

    def impl(*a, check=None):
        calls.append(type(check).__name__)
        if check is not None:
            check._wait = lambda: int(special is not None)  # what pointer() / launched() arrange on a GPU
        return _forward(*a)

    impl.checks_inputs = True
    if answers:
        impl.checks_grad_inputs = True
    xs = [x.clone().requires_grad_(True) for x in arrays]
    with mock.patch.object(_nonfinite, "_cuda_checks", lambda xp, arrays: True), \
            mock.patch.object(backends.Backend, "implementation", lambda self, name, **kw: impl):
        got = lsattn.loglinear_gated_delta(*xs, backend="array_api")
    assert calls == (["KernelCheck"] + (["NoneType"] if special is not None else []) if answers else ["NoneType"]), calls
    ok = ~torch.isnan(want)
    assert torch.equal(torch.isnan(got.detach()), ~ok)
    assert_close(got.detach()[ok].numpy(), want[ok].numpy(), F64)
    if special is None:
        got.sum().backward()
        assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in xs)


def bwd_source():
    """gd_scan_bwd as one source (``gated_delta_bwd.cu``: its formulas, switches and helpers; then the kernels,
    ``gated_delta_bwd_scan.cu``)."""
    return cupy_source("gated_delta_bwd.cu") + "\n" + cupy_source("gated_delta_bwd_scan.cu")


class EmulatedOps(Emulated):
    """``ops`` whose gd_scan, gd_scan_bwd and gd_forms_bwd run the kernels' CUDA sources on the CPU
    (``cuda_emu_gd_forms_bwd.cpp``), built with g++ once per session and (compute type, CH, DKP)."""

    gd_forms = Twin.gd_forms

    extra = {}  # gated_delta_bwd.cu's switches of a timing build (name -> value)

    def _lib(self, cfg):
        defines = {"TA": cfg.ta, "CH": cfg.CH, "DKP": cfg.DKP} | ({"TI_BF16": 1} if cfg.half == "bf16" else {})
        defines |= ({"GD_S16": 1} if cfg.s16 else {}) | self.extra  # (S16_TRAIN: _compile.defines)
        defines |= {"FB_XIN": 1} if cfg.xs else {}  # (FORMS_X_SAVED: _compile.defines)
        defines |= {"GD_DO16": 1} if cfg.do16 else {}  # (TRAIN_OUT16: _compile.defines)
        return emulation("cuda_emu_gd_forms_bwd.cpp", defines,
                         {"KERNEL": scan_source(), "BWD_KERNEL": bwd_source(),
                          "FORMS_BWD_KERNEL": cupy_source("gated_delta_forms_bwd.cu")})

    def gd_forms_bwd(self, cfg, *arrays_and_ints, x1=False, dlw=None, xin=None):
        arrays, (T, DK, DV, L, p, F, n, BH) = arrays_and_ints[:18], arrays_and_ints[18:]
        ints = [ctypes.c_int(x) for x in (T, DK, DV, L)] + [ctypes.c_longlong(p), ctypes.c_longlong(F)]
        opt = None if dlw is None else dlw.ctypes.data_as(ctypes.c_void_p)
        assert xin is None or (cfg.xs and xin.flags.c_contiguous and xin.dtype == arrays[6].dtype), "xin: FB_XIN's"
        xp_ = None if xin is None else xin.ctypes.data_as(ctypes.c_void_p)
        assert (arrays[11].dtype.itemsize == 2) == cfg.do16, "dI: bfloat16 patterns in the GD_DO16 build (TRAIN_OUT16)"
        ptrs = (self._ptrs(arrays[:6]) + self._ptrs(arrays[6:11]) + self._ptrs(arrays[11:12])  # (bf16: inputs, outputs
                + self._ptrs(arrays[12:]))  # int16; dI where cfg.do16)
        self._lib(cfg).run_forms_bwd(*ptrs, opt, *ints, ctypes.c_int(n), ctypes.c_int(BH),
                                     ctypes.c_uint(cfg.smem("gd_forms_bwd")), ctypes.c_int(int(x1)), xp_)

    def gd_scan_bwd(self, cfg, *arrays_and_ints, x1=False):
        arrays, (T, DK, DV, L, p, F, n, n_old, NLC, merge_last, BH) = arrays_and_ints[:16], arrays_and_ints[16:]
        assert all(a.flags.c_contiguous for a in arrays)  # (cfg.s16: qe, ek, ph, H as bfloat16 patterns, 16-bit)
        assert all(a.dtype == (np.int16 if cfg.s16 and i < 4 else arrays[4].dtype) for i, a in enumerate(arrays))
        ints = [ctypes.c_int(x) for x in (T, DK, DV, L)] + [ctypes.c_longlong(p), ctypes.c_longlong(F)]
        ints += [ctypes.c_int(x) for x in (n, n_old, NLC, int(merge_last), BH, int(x1))]
        self._lib(cfg).run_bwd(*[a.ctypes.data_as(ctypes.c_void_p) for a in arrays], *ints,
                               ctypes.c_uint(cfg.smem("gd_scan_bwd")))


@pytest.mark.parametrize("dtype, dk, dv, C, P, T, x1", [  # (each emulated mma meets its warp twice: CPU time)
    ("float64", 20, 17, 16, 21, 60, False),  # FFMA
    ("float32", 20, 9, 16, 21, 40, False),   # gd_scan_bwd's tensor-core products, 3xTF32
    ("float32", 20, 17, 16, 0, 40, True),    # gd_scan_bwd_x1 (1xTF32: bfloat16 callers), within X1
])
def test_kernel_sources_emulated_on_cpu(dtype, dk, dv, C, P, T, x1):
    """The CUDA sources of gd_scan and gd_scan_bwd, run on the CPU through the training path: two
    column blocks (d_v > 16), padded head dims, an incoming state, strong single-token decays;
    gradients against float64 autograd of the reference on the same (rounded) inputs."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    # T = 60: 4 chunks, 3 of them merged; 256 CPU threads per block make larger calls slow
    arrays = make(8, (2,), P + T, dk, dv, keys="raw", key_scale=0.5)
    arrays[3][..., [10, P + T - 20]] = [-1e3, -1e6]
    arrays = [x.astype(dtype).astype(np.float64) for x in arrays]  # the rounded inputs are the reference's
    do = np.random.default_rng(9).standard_normal((2, T, dv))
    prefix, cont = _sl(arrays, 0, P), _sl(arrays, P, P + T)
    old = None
    if P:
        _, st0 = lsattn.loglinear_gated_delta(*prefix, return_state=True, backend="array_api")
        old = st0.tensors["levels"].astype(dtype).astype(np.float64)
    ops = EmulatedOps()

    @contextlib.contextmanager
    def emulated(like):
        yield (lambda x: (x.numpy(), "")), (lambda x, half: torch.from_numpy(np.ascontiguousarray(x))), ops

    def ours(*xs):
        xs = [x.to(getattr(torch, dtype)) for x in xs]
        return gdb.differentiable(*xs[:6], C, P, xs[6] if P else None, context=emulated, x1=x1).double()

    got, out = _grads(ours, cont + ([old] if P else []), do)

    def reference(*xs):
        full = [torch.cat([torch.tensor(x0), x], dim=-1 if x.ndim == 2 else -2) for x0, x in zip(prefix, xs)]
        return ref.loglinear_gated_delta(*full)[..., P:, :]

    want, want_out = _grads(reference, cont, do)
    if P:
        def api(lv, *xs):
            state = State("loglinear_gated_delta", P, (2,), dk, dv, torch.float64, {"levels": lv})
            return lsattn.loglinear_gated_delta(*xs, chunk_size=C, state=state, backend="array_api")

        want.append(_grads(api, [old] + cont, do)[0][0])
    tol = F64 if dtype == "float64" else F32
    assert_close(out, want_out, tol, what="out")
    check(got, want, out, do, X1 if x1 else tol, f"{dtype} C={C} P={P} x1={x1}", P)


@pytest.mark.parametrize("x1, P, T, dv", [(True, 0, 150, 16), (False, 37, 150, 16), (True, 37, 140, 20)])
def test_scan_bwd_emulated_two_slots_a_pass(x1, P, T, dv):
    """gd_scan_bwd's CUDA source on the CPU with session 19's switches (GDB_G, GDB_GF: two slots of a chunk a pass;
    GDB_MG: the merges' loads first; GDB_CB: a chunk's boundary, 2: in the 1xTF32 build too; GDB_LA: lambda a pass ahead) bit-equal to the build
    without them (all 0, G 1; dlambda, whose atomicAdd order
    differs where two incoming slots read one level, within 1e-6 of max), and within F32 / X1 of the NumPy twin (so is
    GDB_DS2, dS's products in two accumulators):
    10 chunks (up to 3 held slots a chunk, odd and even counts), incoming slots, a second partial column block."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    rng = np.random.default_rng(T + P + dv)
    C, dk, BH, L = 16, 20, 2, 12
    lay = chunk_layout(P, T, C)
    n, F, merge_last = lay.n_chunks, lay.first_chunk, (P + T) % C == 0
    from lsattn.backends.cupy.gated_delta import chunk_slots

    cfg = make_config("float", dk, 16, C)
    sc = gdb.Scan(cfg, T, P, F, n, chunk_slots(F, n, merge_last), merge_last, x1)

    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    n_old = P.bit_length()
    args = (r(BH, n, C, dk), r(BH, n, C, dk, scale=0.3), r(BH, n, dk, C, scale=0.3), r(BH, n, dk, dv),
            -rng.random((BH, n)).astype(np.float32), np.abs(r(BH, T, L)) + 0.5, r(BH, n_old, dk, dv) if P else None,
            r(BH, n, C, dv))
    outs = {}
    off = {"GDB_G": 1, "GDB_GF": 1, "GDB_MG": 0, "GDB_CB": 0, "GDB_LA": 0}
    for name, extra in {"new": {}, "off": off, "gf2": {"GDB_GF": 2}, "cb2": {"GDB_CB": 2}, "ds2": {"GDB_DS2": 1, "GDB_GF": 2}}.items():
        ops = EmulatedOps()
        ops.extra = extra
        outs[name] = gdb.scan_backward(ops, sc, *args)
    twin = gdb.scan_backward(TwinOps(), sc, *[None if x is None else x.astype(np.float64) for x in args])
    for j, what in enumerate(["dqe", "dek", "dph", "dH", "dg", "dlam", "dold"][:6 + bool(P)]):
        for b in ("new", "gf2", "cb2"):
            if what == "dlam":
                assert_close(outs[b][j], outs["off"][j], 1e-6, what=f"{what} {b}")
            else:
                np.testing.assert_array_equal(outs[b][j], outs["off"][j], err_msg=f"{what} {b}")
        for b in ("new", "ds2"):  # (ds2: dS's two products summed apart, not bit-equal)
            assert_close(outs[b][j], twin[j], X1 if x1 else F32, what=f"{what} {b} against the twin")


@pytest.mark.parametrize("dtype, C, dk, dv, T, P, L, x1", [
    ("float64", 16, 5, 40, 45, 21, 9, False),    # padded d_k, two value passes (the second partial), an offset, L > levels
    ("float64", 32, 20, 3, 70, 0, 3, False),     # clipped levels (L = 3 < log2 C + 1), T not a multiple of C
    ("float32", 64, 64, 33, 70, 100, 8, False),  # the production chunk and d_k (3xTF32 products); an offset inside a chunk
    ("float32", 64, 64, 33, 70, 100, 8, True),   # gd_forms_bwd_x1 (1xTF32 products: bfloat16 callers)
])
def test_forms_bwd_kernel_emulated_matches_twin(dtype, C, dk, dv, T, P, L, x1):
    """gd_forms_bwd's CUDA source on the CPU against the torch twin, on random output gradients
    (padding rows included, as the scan's backward gives them), strong and -inf single-token decays
    and zero betas: every gradient within F64 / F32 (gd_forms_bwd_x1: X1) of max |twin|."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    rng = np.random.default_rng(C + T + P)
    dt = np.dtype(dtype)
    arrays = [x.astype(dt) for x in make(C + dk, (2,), T, dk, dv, keys="raw", key_scale=0.5)]
    arrays[3][..., [3, T - 5]] = [-1e6, -np.inf]  # hard resets inside chunks
    arrays[4][..., 7] = 0.0
    arrays[5] = rng.standard_normal((2, T, L)).astype(dt)
    cfg = make_config("double" if dtype == "float64" else "float", dk, 16, C)
    lay = chunk_layout(P, T, C)
    sc = gdb.Scan(cfg, T, P, lay.first_chunk, lay.n_chunks, 1, False, x1)
    n = lay.n_chunks
    shapes = [(2, n, C, dk), (2, n, C, dk), (2, n, dk, C), (2, n, dk, dv), (2, n), (2, n, C, dv)]
    grads = [rng.standard_normal(s).astype(dt) for s in shapes]
    got = gdb.forms_backward(EmulatedOps(), sc, *arrays, grads)
    want = torch_forms_backward(C, P, *[torch.from_numpy(x).double() for x in arrays],
                                [torch.from_numpy(g).double() for g in grads])
    tol = F64 if dtype == "float64" else X1 if x1 else F32
    for name, g, w in zip(["dq", "dk", "dv", "da", "dbeta", "dlam"], got, want):
        assert g.dtype == dt
        assert_close(g, w.numpy(), tol, what=f"{name} {dtype} C={C} T={T} P={P} L={L}")


@pytest.mark.parametrize("C, dk, dv, T, P, L, x1", [
    (64, 64, 33, 70, 100, 8, True),   # bfloat16 callers' build: tensor cores (1xTF32), 8-byte bf16 tile loads
    (16, 5, 40, 45, 21, 9, False),    # FFMA register tiles, element loads (d_k = 5), two value passes
])
def test_forms_bwd_bf16_emulated_equals_float32_rounded(C, dk, dv, T, P, L, x1):
    """gd_forms_bwd's TI_BF16 build (GRAD_BF16: bfloat16 inputs as they are, gradients written in bfloat16,
    dk's partial sums kept across dk's and dq's halves, lam's float32 gradient ``dlw`` added into dlam) equals
    the float32 build on the widened inputs, dlam + dlw, rounded to nearest even: bit for bit."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    from lsattn.backends.cupy._arrays import narrow, widen

    rng = np.random.default_rng(C + T)
    arrays = list(make(C + dk, (2,), T, dk, dv, keys="raw", key_scale=0.5))
    arrays[3][..., [3, T - 5]] = [-1e6, -np.inf]  # hard resets inside chunks
    arrays[4][..., 7] = 0.0
    arrays[5] = rng.standard_normal((2, T, L))
    pats = [narrow(np, np.ascontiguousarray(x, dtype=np.float32), "bf16") for x in arrays]  # bfloat16 patterns (int16)
    wide = [widen(np, x, "bf16") for x in pats]
    cfg = make_config("float", dk, 16, C)
    lay = chunk_layout(P, T, C)
    n = lay.n_chunks
    shapes = [(2, n, C, dk), (2, n, C, dk), (2, n, dk, C), (2, n, dk, dv), (2, n), (2, n, C, dv)]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    dlw = rng.standard_normal((2, T, L)).astype(np.float32)
    ops = EmulatedOps()
    got = gdb.forms_backward(ops, gdb.Scan(cfg, T, P, lay.first_chunk, n, 1, False, x1, "bf16"), *pats, grads, dlw)
    want = list(gdb.forms_backward(ops, gdb.Scan(cfg, T, P, lay.first_chunk, n, 1, False, x1), *wide, grads))
    want[5] = want[5] + dlw
    for name, g, w in zip(["dq", "dk", "dv", "da", "dbeta", "dlam"], got, want):
        assert g.dtype == np.int16 and np.isfinite(w).all(), name
        assert np.array_equal(g, narrow(np, w, "bf16")), f"{name} C={C} x1={x1}"


def bf16_context(ops):
    """``on_gpu``'s interface on CPU torch tensors for ``ops``: bfloat16 tensors as int16 NumPy views (kind 'bf16'),
    back as bfloat16 where asked."""
    @contextlib.contextmanager
    def emulated(like):
        def to_cp(x):
            return (x.view(torch.int16).numpy(), "bf16") if x.dtype == torch.bfloat16 else (x.numpy(), "")

        def back(x, half):
            t = torch.from_numpy(np.ascontiguousarray(x))
            return t.view(torch.bfloat16) if half == "bf16" else t

        yield to_cp, back, ops

    return emulated


def _bf16_step(ops):
    """The bfloat16 training call through ``ops`` (bf16_context: the CUDA sources emulated; C = 64 from token 0, no
    state, 1xTF32): ours(*xs) of float64 tensors -> the float64 output."""
    emulated = bf16_context(ops)

    def ours(*xs):
        xs = [x.to(torch.bfloat16) for x in xs]
        return gdb.differentiable(*xs, 64, 0, None, context=emulated, x1=True).double()

    return ours


def _forms_case(half, seed, x1):
    """The forms kernels' emulated case: 2 sequences of T = 70 tokens at offset P = 100 (inside a chunk), C = d_k = 64,
    d_v = 33, L = 8; strong and -inf decays, a zero beta; float32 or (half) bfloat16 patterns -> (C, dk, dv, T, P, L),
    arrays, rng, the chunk layout, the Scan (x1: the 1xTF32 products), the shapes of the six forms' gradients."""
    from lsattn.backends.cupy._arrays import narrow

    C, dk, dv, T, P, L = 64, 64, 33, 70, 100, 8
    rng = np.random.default_rng(seed)
    arrays = [x.astype(np.float32) for x in make(C + dk, (2,), T, dk, dv, keys="raw", key_scale=0.5)]
    arrays[3][..., [3, T - 5]] = [-1e6, -np.inf]
    arrays[4][..., 7] = 0.0
    arrays[5] = rng.standard_normal((2, T, L)).astype(np.float32)
    if half:
        arrays = [narrow(np, x, "bf16") for x in arrays]
    lay = chunk_layout(P, T, C)
    n = lay.n_chunks
    sc = gdb.Scan(make_config("float", dk, 16, C), T, P, lay.first_chunk, n, 1, False, x1, half)
    shapes = [(2, n, C, dk), (2, n, C, dk), (2, n, dk, C), (2, n, dk, dv), (2, n), (2, n, C, dv)]
    return (C, dk, dv, T, P, L), arrays, rng, lay, sc, shapes


@pytest.mark.parametrize("xs", [False, True])
def test_forms_bwd_do16_bit_equal(xs):
    """gd_forms_bwd_x1's GD_DO16 build (``TRAIN_OUT16``: the intra output's gradient dI as bfloat16 patterns, widened
    where its tiles are loaded) equals the build reading float32 dI on the widened same values bit for bit (the
    bfloat16 callers' TI_BF16 build; an offset inside a chunk, padding rows, d_v odd); xs: the FB_XIN build (X given)."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    import dataclasses

    from lsattn.backends.cupy import gated_delta as cgd
    from lsattn.backends.cupy._arrays import narrow, widen

    (C, *_, P, _), arrays, rng, lay, sc, shapes = _forms_case("bf16", 64 + 70 + 3, True)
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    pats = narrow(np, grads[5], "bf16")
    xin = None
    if xs:  # the forward's X (gd_forms' GF_XO build)
        sc = dataclasses.replace(sc, xs=True)
        xin = np.empty((2, lay.n_chunks, C, C), dtype=np.float32)
        cgd.forms(Emulated(), sc.fcfg, *arrays, P, xo=xin)
    want = gdb.forms_backward(EmulatedOps(), sc, *arrays, grads[:5] + [widen(np, pats, "bf16")], xin=xin)
    got = gdb.forms_backward(EmulatedOps(), sc, *arrays, grads[:5] + [pats], xin=xin)
    for name, g, w in zip(["dq", "dk", "dv", "da", "dbeta", "dlam"], got, want):
        assert np.array_equal(g, w), f"{name} xs={xs}"


@pytest.mark.parametrize("half", ["", "bf16"])
def test_forms_bwd_x1_tf32_operands_emulated(half):
    """gd_forms_bwd_x1's TI_BF16 build with session 24's switches (the default: FB_XR, operands that are a tf32 already
    passed to the mma as they are: tiles rounded where stored, the bf16 input tiles; FB_XF: X^T as a whole tile; FB_BFREE;
    FB_P2: the epilogues' global accesses by pairs; FB_LDM: the tile operands by ldmatrix (here the CPU's element loads: the
    fused k-loops' order, the masks), products sharing B in one k-loop) equals all of them off (main's kernel) and FB_LDM
    0 alone bit for bit, and the float32 build (where session 24's are off) too (strong and -inf decays, a zero beta, an offset; d_v odd: dv's stores one by one)."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    _, arrays, rng, _, sc, shapes = _forms_case(half, 64 + 70 + 1, True)
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    outs = []
    for extra in ({"FB_XR": 0, "FB_XF": 0, "FB_BFREE": 0, "FB_P2": 0, "FB_LDM": 0, "FB_DLQ": 0}, {"FB_DLQ": 0},
                  {"FB_LDM": 0, "FB_DLQ": 0}, {}):
        ops = EmulatedOps()
        ops.extra = extra
        outs.append(gdb.forms_backward(ops, sc, *arrays, grads))
    for name, g, w, o, d in zip(["dq", "dk", "dv", "da", "dbeta", "dlam"], *outs[1:3], outs[0], outs[3]):
        assert np.array_equal(g, w), f"{name} the default against all switches off {half}"
        assert np.array_equal(g, o), f"{name} the default against FB_LDM 0 (session 24's engine) {half}"
        if name != "dlam":  # FB_DLQ (dlam's level sums by quads of lanes) moves dlam alone: fp32 sums in another order
            assert np.array_equal(d, g), f"{name} FB_DLQ 1 against 0 {half}"
    f32 = [(x.astype(np.uint32) << 16).view(np.float32) if half else x for x in (outs[3][5], outs[1][5])]
    # float32: the reordered sums' rounding (<= 32 terms, ~2e-6 of their magnitudes); bf16: one rounding step, 2^-8
    assert np.abs(f32[0] - f32[1]).max() <= (2.0**-8 if half else 1e-5) * np.abs(f32[1]).max(), f"dlam FB_DLQ {half}"


@pytest.mark.parametrize("half, x1", [("", False), ("bf16", True)])
def test_forms_x_saved_emulated(half, x1):
    """R1 (``FORMS_X_SAVED``, benchmarks/NOTES.md "Session 27 — s27p"), kernel by kernel on their CUDA sources on the CPU
    (float32 callers: 3xTF32 gd_forms / gd_forms_bwd; bfloat16 callers: the TI_BF16 builds, gd_forms_bwd_x1): gd_forms'
    GF_XO build writes the same outputs bit for bit as the default build and an X within float32 rounding of the float64
    inverse (I + N)^{-1}; forms_backward with ``sc.xs`` and no X takes the default build (bit for bit); gd_forms_bwd's
    FB_XIN build with the forward's X gives gradients within float32 roundings of the solved ones (1e-5 of max; bf16
    gradients: one rounding step, 2^-8 of max), and a perturbed X moves them (strong and -inf decays, a zero beta, an offset inside a chunk, padding rows)."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    import dataclasses

    from lsattn.backends.cupy import gated_delta as cgd
    from lsattn.backends.cupy._arrays import widen
    from lsattn.gated_delta import _unit_lower_inverse

    (C, dk, dv, T, P, L), arrays, rng, lay, sc0, shapes = _forms_case(half, 64 + 70 + 2, x1)
    n = lay.n_chunks
    sc1 = dataclasses.replace(sc0, xs=True)
    assert sc1.fcfg.xs and not sc0.fcfg.xs and sc1.fcfg == dataclasses.replace(sc0.fcfg, xs=True)
    fwd = Emulated()
    base = cgd.forms(fwd, sc0.fcfg, *arrays, P)
    xo = np.full((2, n, C, C), np.nan, dtype=np.float32)  # (every entry written)
    outs = cgd.forms(fwd, sc1.fcfg, *arrays, P, xo=xo)
    for b, o in zip(base, outs):
        assert np.array_equal(b, o, equal_nan=True), "gd_forms' GF_XO build: its outputs as the default build's"
    wide = [widen(np, x, "bf16") if half else x for x in arrays]
    X64 = _unit_lower_inverse(np, *(to_chunks(np, wide[i].astype(np.float64), lay, ax) for i, ax in ((1, -2), (3, -1),
                                                                                                        (4, -1))))
    assert np.isfinite(xo).all()
    assert np.array_equal(np.triu(xo, 1), np.zeros_like(xo)) and (np.diagonal(xo, axis1=-2, axis2=-1) == 1).all()
    print(f"forms_x_saved {half or 'float32'}: max |X - X64| / max |X64| {np.abs(xo - X64).max() / np.abs(X64).max():.2e}")
    assert np.abs(xo - X64).max() <= 1e-5 * np.abs(X64).max(), "the forward's X against the float64 inverse"
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    solved = gdb.forms_backward(EmulatedOps(), sc0, *arrays, grads)
    null = gdb.forms_backward(EmulatedOps(), sc1, *arrays, grads)  # no X: the default build, solved
    read = gdb.forms_backward(EmulatedOps(), sc1, *arrays, grads, xin=xo)
    for name, g0, gn, gr in zip(["dq", "dk", "dv", "da", "dbeta", "dlam"], solved, null, read):
        assert np.array_equal(g0, gn), f"{name}: sc.xs without X against the default {half}"
        f0, fr = ((x.astype(np.uint32) << 16).view(np.float32) if half else x for x in (g0, gr))
        assert np.isfinite(fr).all(), name
        err = np.abs(f0 - fr).max() / np.abs(f0).max()
        print(f"forms_x_saved {half or 'float32'} {name}: max |read - solved| / max |solved| {err:.2e}")
        assert err <= (2.0**-8 if half else 1e-5), f"{name}: the forward's X against fb_solve's, {err:.2e} {half}"
    # the X read is the one used: a perturbed X (strict lower triangle x 1.5) moves the gradients
    bent = gdb.forms_backward(EmulatedOps(), sc1, *arrays, grads, xin=np.where(np.tril(np.ones((C, C)), -1) > 0, 1.5 * xo,
                                                                             xo).astype(np.float32))
    assert not all(np.array_equal(g, b) for g, b in zip(read, bent)), "FB_XIN: xin read"


def test_bf16_training_path_emulated_on_cpu():
    """The bfloat16 training path (GRAD_BF16) through ``differentiable`` on the kernels' CUDA sources on the CPU:
    gd_forms reading bfloat16 (its TI_BF16 build, lam's float32 copy for the scan), gd_scan / gd_scan_bwd_x1 in
    float32, gd_forms_bwd_x1's TI_BF16 build; bfloat16 gradients against float64 autograd of the reference on the
    same inputs within BF16 (the bound of the GPU test), the float32 output within X1; an incoming state."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    from test_cupy_gated_delta import Emulated

    P, T, C, dk, dv = 21, 40, 16, 20, 17
    arrays = make(8, (2,), P + T, dk, dv, keys="raw", key_scale=0.5)
    arrays[3][..., [10, P + T - 20]] = [-1e3, -1e6]
    arrays = [torch.tensor(x).to(torch.bfloat16).double().numpy() for x in arrays]  # the rounded inputs are the reference's
    do = np.random.default_rng(9).standard_normal((2, T, dv))
    prefix, cont = _sl(arrays, 0, P), _sl(arrays, P, P + T)
    _, st0 = lsattn.loglinear_gated_delta(*prefix, return_state=True, backend="array_api")
    old = st0.tensors["levels"].astype(np.float32).astype(np.float64)

    class Ops(EmulatedOps):
        def gd_forms(self, cfg, *args, **kw):  # the CUDA source of gd_forms (cuda_emu_gd_forms.cpp)
            return Emulated().gd_forms(cfg, *args, **kw)

    ops = Ops()

    emulated = bf16_context(ops)

    seen = []

    def ours(*xs):
        xs = [x.to(torch.bfloat16) for x in xs[:6]] + [x.float() for x in xs[6:]]
        for x in xs[:6]:
            x.register_hook(lambda g: seen.append(g.dtype))
        return gdb.differentiable(*xs[:6], C, P, xs[6], context=emulated, x1=True).double()

    got, out = _grads(ours, cont + [old], do)
    assert seen == [torch.bfloat16] * 6  # the input gradients as gd_forms_bwd wrote them

    def reference(*xs):
        full = [torch.cat([torch.tensor(x0), x], dim=-1 if x.ndim == 2 else -2) for x0, x in zip(prefix, xs)]
        return ref.loglinear_gated_delta(*full)[..., P:, :]

    want, want_out = _grads(reference, cont, do)

    def api(lv, *xs):
        state = State("loglinear_gated_delta", P, (2,), dk, dv, torch.float64, {"levels": lv})
        return lsattn.loglinear_gated_delta(*xs, chunk_size=C, state=state, backend="array_api")

    want.append(_grads(api, [old] + cont, do)[0][0])
    assert_close(out, want_out, X1, what="out")
    check(got, want, out, do, BF16, "bf16 emulated", P)


def _rel_errors(got, want, out, do):
    """max |g - w| / max |w| per gradient (the log decay's: over max |w| + sum_t |dO_t . o_t|, check's atol)."""
    rows = float(np.max(np.sum(np.abs(np.sum(do * out, axis=-1)), axis=-1), initial=0.0))
    return {name: float(np.max(np.abs(g - w)) / (np.max(np.abs(w)) + (rows if name == "da" else 0.0)))
            for name, g, w in zip(["dq", "dk", "dv", "da", "dbeta", "dlam"], got, want)}


@pytest.mark.parametrize("T, dk, dv, decay", [
    (600, 64, 20, "moderate"),  # 10 chunks at C = 64: 3 periods, gd_scan_bwd's production tiles, 16-byte staged copies
    (330, 20, 17, "strong"),    # 6 chunks, padded d_k (20 of 32: element copies into the staging area), 2 column blocks
])
def test_bf16_training_s16_emulated_on_cpu(monkeypatch, T, dk, dv, decay):
    """``S16_TRAIN``: the bfloat16 training step on the two-tier path through ``differentiable`` on the kernels' CUDA
    sources on the CPU: the forward's GD_S16 build (gd_forms writing qeff, e^G K, phi, H as bfloat16 patterns, the
    two-tier scan reading them), gd_scan_bwd_x1's GD_S16 build reading the same patterns, gd_forms_bwd_x1; bfloat16
    gradients against float64 autograd of the reference on the same inputs within BF16 (the GPU test's bound), the
    float32 output within S16 (tests/test_cupy_gated_delta.py) and equal bit for bit to the inference path's on S16
    (``gated_delta.compute``: the same kernels); main's path (S16_TRAIN off: float32 intermediates) within the same
    bounds, both errors printed (hard resets, keys of norm ~0.5). (gd_scan_bwd: TIER_BWD off; on: its own tests,
    tests/test_cupy_gated_delta_tier_grad.py.)"""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    from lsattn.backends.cupy import gated_delta as cgd
    from test_cupy_gated_delta import S16, Emulated, kernel_inputs

    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)  # the small calls an emulation affords
    monkeypatch.setattr(gdb, "TIER_BWD", False)
    arrays = make(12, (2,), T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay=decay)
    arrays[3][..., [70, T - 90]] = [-1e3, -1e6]
    arrays = [torch.tensor(x).to(torch.bfloat16).double().numpy() for x in arrays]  # the rounded inputs are the reference's
    do = np.random.default_rng(3).standard_normal((2, T, dv))
    seen = []

    class Ops(EmulatedOps):
        def gd_forms(self, cfg, *args, **kw):  # the CUDA source of gd_forms (cuda_emu_gd_forms.cpp)
            seen.append(("forms", cfg.s16, args[6].dtype))
            return Emulated().gd_forms(cfg, *args, **kw)

        def gd_scan_bwd(self, cfg, *args, **kw):
            seen.append(("scan_bwd", cfg.s16, args[0].dtype))
            return super().gd_scan_bwd(cfg, *args, **kw)

    ops = Ops()
    ours = _bf16_step(ops)

    want, want_out = _grads(ref.loglinear_gated_delta, arrays, do)
    errs = {}
    for on in (True, False):
        monkeypatch.setattr(gdb, "S16_TRAIN", on)
        seen.clear()
        got, out = _grads(ours, arrays, do)
        assert seen == ([("forms", True, np.uint16), ("scan_bwd", True, np.int16)] if on else
                        [("forms", False, np.float32), ("scan_bwd", False, np.float32)]), seen
        errs[on] = _rel_errors(got, want, want_out, do) | {"out": float(np.max(np.abs(out - want_out)) / np.max(np.abs(want_out)))}
        assert_close(out, want_out, S16, what=f"out S16_TRAIN={on}")
        check(got, want, want_out, do, BF16, f"bf16 S16_TRAIN={on} T={T} dk={dk}")
        if on:
            monkeypatch.setattr(cgd, "S16", True)
            base, _ = cgd.compute(ops, *kernel_inputs(arrays, "bfloat16")[0], 64, 0, None, False, "bf16")
            assert np.array_equal(out, base.astype(np.float64)), "the inference forward's S16 output"
    print("\n".join(f"S16_TRAIN={on}: " + " ".join(f"{k} {v:.2e}" for k, v in e.items()) for on, e in errs.items()))


@pytest.mark.parametrize("T, dk, dv, decay", [(600, 64, 20, "moderate")])
def test_forms_x_saved_training_emulated(monkeypatch, T, dk, dv, decay):
    """``FORMS_X_SAVED`` (R1) end to end: the bfloat16 training step (S16_TRAIN, gd_scan_bwd_x1) on the kernels' CUDA
    sources on the CPU, gd_forms' GF_XO build keeping X and gd_forms_bwd_x1's FB_XIN build reading it: bfloat16
    gradients against float64 autograd of the reference within BF16, as with the switch off, the two within BF16 of each
    other; the output identical bit for bit; X saved as (BH, n, 64, 64) float32 and passed to gd_forms_bwd."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    from lsattn.backends.cupy import gated_delta as cgd

    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(gdb, "TIER_BWD", False)
    arrays = make(12, (2,), T, dk, dv, keys="raw", key_scale=0.5 / np.sqrt(dk), decay=decay)
    arrays[3][..., [70, T - 90]] = [-1e3, -1e6]
    arrays = [torch.tensor(x).to(torch.bfloat16).double().numpy() for x in arrays]
    do = np.random.default_rng(3).standard_normal((2, T, dv))
    seen = []

    class Ops(EmulatedOps):
        def gd_forms(self, cfg, *args, xo=None, **kw):
            seen.append(("forms", cfg.xs, None if xo is None else (xo.shape, xo.dtype)))
            return Emulated().gd_forms(cfg, *args, xo=xo, **kw)

        def gd_forms_bwd(self, cfg, *args, xin=None, **kw):
            seen.append(("forms_bwd", cfg.xs, None if xin is None else (xin.shape, xin.dtype)))
            return super().gd_forms_bwd(cfg, *args, xin=xin, **kw)

    ops = Ops()
    ours = _bf16_step(ops)

    want, want_out = _grads(ref.loglinear_gated_delta, arrays, do)
    got, outs, n = {}, {}, -(-T // 64)
    for on in (True, False):
        monkeypatch.setattr(gdb, "FORMS_X_SAVED", on)
        seen.clear()
        got[on], outs[on] = _grads(ours, arrays, do)
        x = ((2, n, 64, 64), np.float32) if on else None
        assert seen == [("forms", on, x), ("forms_bwd", on, x)], seen
        check(got[on], want, want_out, do, BF16, f"bf16 FORMS_X_SAVED={on} T={T} dk={dk}")
    check(got[True], got[False], want_out, do, BF16, "FORMS_X_SAVED on against off")
    assert np.array_equal(outs[True], outs[False])
    print("\n".join(f"FORMS_X_SAVED={on}: " + " ".join(f"{k} {v:.2e}" for k, v in _rel_errors(got[on], want, want_out, do).items())
                    for on in (True, False)))


# ---- GPU ------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("T,C,P", [(1, 16, 0), (37, 16, 0), (70, 32, 0), (130, 16, 0), (1, 16, 5), (40, 16, 77),
                                   (70, 64, 64), (33, 16, 31)])
def test_gpu_gradcheck(T, C, P):
    """torch.autograd.gradcheck (float64) through the public call, backend chosen automatically
    (cupy); with an incoming state (offset P) its levels are an input too."""
    _cuda(torch)
    arrays = make(3, (2,), T, 3, 2, keys="raw", key_scale=0.5, offset=P)
    xs = [torch.tensor(x, device="cuda", requires_grad=True) for x in arrays]
    assert lsattn.backends.resolve("loglinear_gated_delta", None, xs[0], grad=True).name == "cupy"
    if P:
        prefix = [torch.tensor(x, device="cuda") for x in make(4, (2,), P, 3, 2)]
        _, st0 = lsattn.loglinear_gated_delta(*prefix, return_state=True)
        xs.append(st0.tensors["levels"].clone().requires_grad_(True))

    def f(q, k, v, a, beta, lam, *lv):
        state = None if not lv else State("loglinear_gated_delta", P, (2,), 3, 2, torch.float64, {"levels": lv[0]})
        return lsattn.loglinear_gated_delta(q, k, v, a, beta, lam, chunk_size=C, state=state)

    # fast mode (random projections of the Jacobian) above 40 tokens: thousands of inputs
    assert torch.autograd.gradcheck(f, xs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=T > 40)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("T,decay,resets", [(1024, "moderate", False), (1000, "strong", False), (777, "moderate", True),
                                            (100, "mixed", False)])
def test_gpu_grads_against_reference(dtype, T, decay, resets):
    """B=1, H=2, d=64: every gradient against float64 autograd of the reference on the same
    (rounded) inputs; strong decays and -1e3 .. -1e6 single-token decays give no NaN."""
    _cuda(torch)
    arrays = make(5, (1, 2), T, 64, 64, decay=decay)
    if resets:
        for i in (100, 400, 401):
            arrays[3][..., i] = -1e3 if i == 100 else -1e6
    td = getattr(torch, dtype)
    xs = [torch.tensor(x, device="cuda").to(td).requires_grad_(True) for x in arrays]
    do = torch.randn(1, 2, T, 64, device="cuda", dtype=torch.float64, generator=torch.Generator("cuda").manual_seed(1))
    out = lsattn.loglinear_gated_delta(*xs)
    assert out.dtype == td
    (out.double() * do).sum().backward()
    got = [x.grad.double().cpu().numpy() for x in xs]
    for g in got:
        assert np.isfinite(g).all()
    rs = [x.detach().double().requires_grad_(True) for x in xs]
    want_out = ref.loglinear_gated_delta(*rs)
    (want_out * do).sum().backward()
    check(got, [r.grad.cpu().numpy() for r in rs], want_out.detach().cpu().numpy(), do.cpu().numpy(),
          F32 if dtype == "float32" else BF16, f"{dtype} T={T} {decay}")


@pytest.mark.gpu
@pytest.mark.parametrize("T, decay, resets, grouped", [(1000, "moderate", True, False), (2100, "strong", False, True),
                                                       (1500, "mixed", True, False)])
def test_gpu_bf16_training_s16(monkeypatch, T, decay, resets, grouped):
    """``S16_TRAIN`` on and off in one process (B=1, H=2, d=64, the two-tier path from 16 chunks: TIER_MIN_CHUNKS 0):
    on, the step takes the GD_S16 Function (the forward's bfloat16 intermediates read by gd_scan_bwd_x1); every
    gradient of both against float64 autograd of the reference on the same inputs within BF16 (errors printed); the
    coarse slots' grouped form (2100: 33 chunks, COARSE_GROUP_PERIODS 0), gd_tier1x on its own stream (1000:
    TIER_FORK_PERIODS 0)."""
    _cuda(torch)
    from lsattn.backends.cupy import _autograd, gated_delta as cgd

    monkeypatch.setattr(cgd, "TIER_MIN_CHUNKS", 0)
    monkeypatch.setattr(cgd, "COARSE_GROUP_PERIODS", 0 if grouped else 10**9)
    monkeypatch.setattr(cgd, "TIER_FORK_PERIODS", 0 if T == 1000 else cgd.TIER_FORK_PERIODS)
    taken, real = [], _autograd.apply_gated_delta_s16
    monkeypatch.setattr(_autograd, "apply_gated_delta_s16", lambda *a, **k: taken.append(1) or real(*a, **k))
    arrays = make(5, (1, 2), T, 64, 64, decay=decay)
    if resets:
        for i in (100, 400, 401):
            arrays[3][..., i] = -1e3 if i == 100 else -1e6
    do = torch.randn(1, 2, T, 64, device="cuda", dtype=torch.float64, generator=torch.Generator("cuda").manual_seed(1))
    rs = [torch.tensor(x, device="cuda").to(torch.bfloat16).double().requires_grad_(True) for x in arrays]
    want_out = ref.loglinear_gated_delta(*rs)
    (want_out * do).sum().backward()
    want, want_out, do_np = [r.grad.cpu().numpy() for r in rs], want_out.detach().cpu().numpy(), do.cpu().numpy()
    errs = {}
    for on in (True, False):
        monkeypatch.setattr(gdb, "S16_TRAIN", on)
        taken.clear()
        xs = [r.detach().to(torch.bfloat16).requires_grad_(True) for r in rs]
        out = lsattn.loglinear_gated_delta(*xs)
        assert out.dtype == torch.bfloat16 and taken == ([1] if on else [])
        (out.double() * do).sum().backward()
        got = [x.grad.double().cpu().numpy() for x in xs]
        assert all(np.isfinite(g).all() for g in got)
        errs[on] = _rel_errors(got, want, want_out, do_np)
        check(got, want, want_out, do_np, BF16, f"bf16 S16_TRAIN={on} T={T} {decay}")
    print("\n".join(f"T={T} S16_TRAIN={on}: " + " ".join(f"{k} {v:.2e}" for k, v in e.items()) for on, e in errs.items()))


@pytest.mark.gpu
def test_gpu_return_state_under_grad():
    """return_state with inputs that require grad: the array-API formulation (differentiated by
    torch), equal to the kernel path's output."""
    _cuda(torch)
    arrays = make(6, (2,), 90, 4, 3)
    xs = [torch.tensor(x, device="cuda", requires_grad=True) for x in arrays]
    out, st1 = lsattn.loglinear_gated_delta(*xs, chunk_size=16, return_state=True)
    out2 = lsattn.loglinear_gated_delta(*xs, chunk_size=16)
    assert_close(out.detach().cpu().numpy(), out2.detach().cpu().numpy(), F64)
    (out.sum() + st1.tensors["levels"].sum()).backward()
    assert all(torch.isfinite(x.grad).all() for x in xs)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gpu_training_check_answered_by_gd_forms(dtype, monkeypatch):
    """Under autograd the prologue's finiteness check is a ``KernelCheck`` that gd_forms answers
    (``forward.checks_grad_inputs``: no pass of the prologue's own over finite inputs); a NaN value still gives
    the output the call without grad gives (the check fails, the call computes again sanitised)."""
    _cuda(torch)
    from lsattn import _nonfinite, _prologue

    made = []

    def spy(*args, **kw):
        made.append(_nonfinite.kernel_checks(*args, **kw))
        return made[-1]

    monkeypatch.setattr(_prologue, "kernel_checks", spy)
    td = getattr(torch, dtype)
    xs = [torch.tensor(x, device="cuda").to(td).requires_grad_(True) for x in make(7, (1, 2), 200, 64, 64)]
    out = lsattn.loglinear_gated_delta(*xs)
    assert len(made) == 1 and isinstance(made[0], _nonfinite.KernelCheck) and made[0]._wait is not None
    assert made[0].finite
    out.float().sum().backward()
    assert all(x.grad is not None and x.grad.dtype == td for x in xs)
    bad = [x.detach().clone() for x in xs]
    bad[2][0, 1, 50, 3] = float("nan")
    got = lsattn.loglinear_gated_delta(*[x.requires_grad_(True) for x in bad]).detach().double()
    want = lsattn.loglinear_gated_delta(*[x.detach() for x in bad]).double()
    assert not made[-1].finite
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    ok = ~torch.isnan(want)
    assert_close(got[ok].cpu().numpy(), want[ok].cpu().numpy(), F32 if dtype == "float32" else BF16, what=dtype)
