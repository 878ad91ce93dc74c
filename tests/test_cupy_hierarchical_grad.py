"""Backward of loglinear_log_attention on the CuPy backend (``hierarchical_bwd.cu`` +
``hierarchical_bwd.py``) against float64 torch autograd of ``lsattn.reference``.

* CPU (runs in CI): the backward's host logic (``hierarchical_bwd.backward``) driving the kernels'
  CUDA source compiled for the CPU (``cuda_emu_hier_bwd.cpp`` on ``cuda_emu_hier.cpp``).
* GPU (``@pytest.mark.gpu``; skipped cleanly without CuPy or a CUDA device): CUDA torch tensors
  that require grad, no ``backend=``: float64 gradcheck, float32 / bfloat16 gradients against the
  float64 oracle, the array-API fallbacks (a returned state, a state that requires grad).

Bounds (``check_log_grads``, as ``log_attention``'s backward): each gradient within
``tol (max |ref| + d_v max |dO|)``; the level weights' and the decay's gradients are sums of the same
terms (the decay's over up to T rows: ``tol`` times T there).
"""
from __future__ import annotations

import ctypes
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lsattn
from lsattn import reference as ref
from lsattn.backends.cupy import hierarchical as chi, hierarchical_bwd as chb

from helpers import assert_close
from strategies import batch_shapes, decays_or_none, seeds
from test_cupy_backend import GRAD_TOL, _autograd
from test_cupy_gated_delta import _gpu_ready, _torch_cuda
from test_cupy_hierarchical import Emu, _with_neg_inf
from test_hierarchical import make

#: the oracle's stand-in for -inf log values / level weights / decays (their terms vanish exactly in float64)
ORACLE_NEG = -1e5


class EmuBwd(Emu):
    """``Emu`` (hi_intra, hi_scan, hi_read) plus hib_dq / hib_blocks / hib_dkdv on the CPU."""

    libs: dict = {}

    def _lib(self, cfg):
        key = (cfg.ta, cfg.CH, cfg.DKP, cfg.DVP)
        if key not in self.libs:
            here = pathlib.Path(__file__).parent
            src = here.parent / "lsattn" / "backends" / "cupy"
            so = pathlib.Path(self.folder) / f"hierb_{cfg.ta}_{cfg.CH}_{cfg.DKP}_{cfg.DVP}.so"
            cmd = [shutil.which("g++"), "-std=c++20", "-O1", "-shared", "-fPIC", f"-DTA={cfg.ta}", f"-DCH={cfg.CH}",
                   f"-DDKP={cfg.DKP}", f"-DDVP={cfg.DVP}", f'-DKERNEL="{src / "hierarchical.cu"}"',
                   f'-DKERNEL_BWD="{src / "hierarchical_bwd.cu"}"', str(here / "cuda_emu_hier_bwd.cpp"), "-o", str(so),
                   "-pthread"]
            subprocess.run(cmd, check=True)
            self.libs[key] = ctypes.CDLL(str(so))
        return self.libs[key]

    def _sizes(self, *xs):
        return [ctypes.c_int(x) for x in xs[:4]] + [ctypes.c_longlong(x) for x in xs[4:6]] + [ctypes.c_int(xs[6])]

    def hib_dq(self, cfg, q, k, lv, lam, a, gm, om, delta, lden0, msnap, wz, wn, wS, lden, dq, dlam, T, DK, DV, L, p, F,
               n, n_old, NLC, alo, BH):
        self._lib(cfg).run_dq(*self._ptrs(cfg, (q, k, lv, lam, a, gm, om, delta, lden0, msnap, wz, wn, wS, lden, dq, dlam)),
                              *self._sizes(T, DK, DV, L, p, F, n), ctypes.c_int(n_old), ctypes.c_int(NLC),
                              self._s(cfg, alo), ctypes.c_int(wz.shape[1]), ctypes.c_int(BH),
                              ctypes.c_uint(cfg.smem("hib_dq")))

    def hib_blocks(self, cfg, q, lam, a, gm, om, delta, lden, gch, U, Z, M, W, gt, T, DK, DV, L, p, F, n, alo, BH):
        self._lib(cfg).run_blocks(*self._ptrs(cfg, (q, lam, a, gm, om, delta, lden, gch, U, Z, M, W, gt)),
                                  *self._sizes(T, DK, DV, L, p, F, n), self._s(cfg, alo), ctypes.c_int(BH),
                                  ctypes.c_uint(cfg.smem("hib_blocks")))

    def hib_dkdv(self, cfg, q, k, lv, lam, a, gm, om, delta, lden, U, Z, M, W, gt, dk, dlv, T, DK, DV, L, p, F, n, alo,
                 BH):
        self._lib(cfg).run_dkdv(*self._ptrs(cfg, (q, k, lv, lam, a, gm, om, delta, lden, U, Z, M, W, gt, dk, dlv)),
                                *self._sizes(T, DK, DV, L, p, F, n), self._s(cfg, alo), ctypes.c_int(BH),
                                ctypes.c_uint(cfg.smem("hib_dkdv")))


@pytest.fixture(scope="module")
def emu_bwd(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    EmuBwd.folder = tmp_path_factory.mktemp("hierb_emu")
    return EmuBwd()


def grad_oracle(torch, arrays, do, prefix=None, device="cpu", dtype=None):
    """Gradients of ``sum(loglinear_log_attention(*arrays) * do)`` by torch autograd (float64 unless
    ``dtype``, then float64 autograd of the inputs rounded to it) of ``lsattn.reference``, or with
    ``prefix`` (the P tokens before, NumPy) of the array-API path continuing their state (not
    differentiated). ``-inf`` inputs become ``ORACLE_NEG`` (exactly zero terms, finite gradients) and
    outputs ``-inf`` get zero output gradient (they depend on no input).
    Returns (grads [dq, dk, dlv, dlam(, da)] float64 NumPy, the float64 output)."""
    safe = [None if x is None else np.where(np.isneginf(x), ORACLE_NEG, x) for x in arrays]
    has_a = arrays[4] is not None
    state = None
    if prefix is not None:
        _, state = lsattn.loglinear_log_attention(*prefix[:4], log_decay=prefix[4], return_state=True,
                                                  backend="array_api")
        state = state.__class__(state.op, state.offset, state.batch_shape, state.d_k, state.d_v, torch.float64,
                                {n_: torch.tensor(np.asarray(x), device=device) for n_, x in state.tensors.items()})

    def fn(q, k, lv, lam, a=None):
        if state is None:
            return ref.loglinear_log_attention(q, k, lv, lam, log_decay=a)
        return lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a, state=state, backend="array_api")

    with torch.no_grad():  # with the -inf inputs themselves: which outputs are -inf
        out = fn(*[torch.tensor(x, device=device) for x in (arrays if has_a else arrays[:4])]).double().cpu().numpy()
    want, _ = _autograd(fn, safe if has_a else safe[:4], np.where(np.isneginf(out), 0.0, do), torch, device=device,
                        dtype=dtype)
    return want, out


def check_grads(got, want, do, tol, what, T):
    atol = tol * do.shape[-1] * float(np.max(np.abs(do), initial=0.0))
    for name, g, w in zip(["dq", "dk", "dlv", "dlam", "da"], got, want):
        f = T if name == "da" else 1
        assert_close(g, w, tol * f, atol=atol * f, what=f"{name} {what}")


def _emu_grads(emu, arrays, do, dtype, C, p=0, old=None):
    q, k, lv, lam, a = (None if x is None else np.ascontiguousarray(x, dtype=dtype) for x in arrays)
    out = chi.compute(emu, q, k, lv, lam, a, p, old, C)
    got = chb.backward(emu, q, k, lv, lam, a, p, old, out, np.ascontiguousarray(do, dtype=dtype), C)
    return [g for g in got if g is not None], out


# ---- CPU: the kernels' source, emulated, through the host logic ------------------------------------

@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@given(batch=batch_shapes, T=st.integers(1, 90), dk=st.sampled_from([1, 3, 16]), dv=st.sampled_from([1, 5]),
       C=st.sampled_from([16, 32]), decay=decays_or_none, weights=st.sampled_from(["zero", "random", "off"]),
       dtype=st.sampled_from(["float64", "float32"]), scale=st.sampled_from([1.0, 30.0]), neg_inf=st.booleans(),
       seed=seeds)
@settings(max_examples=12, deadline=None)
def test_backward_emulated_matches_reference(emu_bwd, batch, T, dk, dv, C, decay, weights, dtype, scale, neg_inf, seed):
    """dq, dk, d log_v, d log_level_weights, d log_decay of one call equal float64 torch autograd of
    the reference: several chunks (T up to 90 at C = 16: right blocks of several levels), levels
    switched off, -inf values / keys / decays (exactly zero gradients for -inf log values)."""
    torch = pytest.importorskip("torch")
    arrays = make(seed, batch, T, dk, dv, scale=scale, decay=decay, weights=weights)
    if neg_inf:
        arrays = _with_neg_inf(arrays, np.random.default_rng(seed), values=True)
    arrays = [None if x is None else x.astype(dtype).astype(np.float64) for x in arrays]
    do = np.random.default_rng(seed + 1).standard_normal(batch + (T, dv))
    got, out = _emu_grads(emu_bwd, arrays, do, dtype, C)
    want, _ = grad_oracle(torch, arrays, do)
    assert not np.any(got[2][np.isneginf(arrays[2])]), "-inf log values get exactly zero gradient"
    check_grads(got, want, do, GRAD_TOL[dtype], f"T={T} C={C} {dtype}", T)


@given(P=st.integers(1, 200), T=st.integers(1, 70), C=st.sampled_from([16, 32]), seed=seeds)
@settings(max_examples=6, deadline=None)
def test_backward_emulated_after_a_state(emu_bwd, P, T, C, seed):
    """A call continuing an array-API state at offset P (incoming slots read by every query; chunks
    not aligned to P): the inputs' gradients equal float64 autograd of the array-API path."""
    torch = pytest.importorskip("torch")
    arrays = make(seed, (2,), P + T, 4, 3, decay="mixed", weights="off")
    pre = [x[..., :P] if x.ndim == 2 else x[..., :P, :] for x in arrays]
    cur = [x[..., P:] if x.ndim == 2 else x[..., P:, :] for x in arrays]
    _, state = lsattn.loglinear_log_attention(*pre[:4], log_decay=pre[4], return_state=True, backend="array_api")
    old = tuple(np.ascontiguousarray(state.tensors[x]) for x in ("m", "n", "S", "z"))
    do = np.random.default_rng(seed + 1).standard_normal((2, T, 3))
    got, _ = _emu_grads(emu_bwd, cur, do, "float64", C, P, old)
    want, _ = grad_oracle(torch, cur, do, prefix=pre)
    check_grads(got, want, do, GRAD_TOL["float64"], f"P={P} T={T} C={C}", T)


def test_backward_registered():
    assert chb.fits("float", 64, 64) and chb.fits("float", 128, 128) and not chb.fits("float", 64, 129)
    for ta in ("float", "double"):
        cfg = chb.config(ta, 64, 64)
        assert cfg.CH in (16, 32, 64) and max(cfg.smem(k) for k in chb._KERNELS) <= 227 * 1024
