"""Backward of loglinear_log_attention on the CuPy backend (``hierarchical_bwd.cu``,
``hierarchical_bwd_{chunk,dq,dkdv}.cu`` + ``hierarchical_bwd.py``) against float64 torch autograd of ``lsattn.reference``.

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
import shutil

import math

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import lsattn
from lsattn import reference as ref
from lsattn.backends.cupy import hierarchical as chi, hierarchical_bwd as chb

from helpers import assert_close, cupy_source, emulation
from strategies import batch_shapes, decays_or_none, seeds
from test_cupy_backend import GRAD_TOL, _autograd
from test_cupy_gated_delta import _gpu_ready, _torch_cuda
from test_cupy_hierarchical import Emu, _with_neg_inf, hier_source
from test_hierarchical import make

#: the oracle's stand-in for -inf log values / level weights / decays (their terms vanish exactly in float64)
ORACLE_NEG = -1e5


def hier_bwd_source():
    """The backward's kernels as one source (``hierarchical_bwd.cu``, ``hierarchical_bwd_chunk.cu``, ``_dq.cu``,
    ``_dkdv.cu``, in that order)."""
    return "\n".join(cupy_source(f"hierarchical_bwd{x}.cu") for x in ("", "_chunk", "_dq", "_dkdv"))


class EmuBwd(Emu):
    """``Emu`` (hi_intra, hi_merge, hi_snap, hi_read) plus hib_dq / hib_blocks / hib_dkdv on the CPU."""

    defines = {}  # more -D options (a switch's off build)

    def _lib(self, cfg):
        defines = {"TA": cfg.ta, "CH": cfg.CH, "DKP": cfg.DKP, "DVP": cfg.DVP, "HIB_PMIN": chb.PMIN, "HIB_NPC": chb.NPC,
                   "HIB_TC": int(cfg.tc), "HIB_UNB": cfg.hib_unb, **self.defines}
        return emulation("cuda_emu_hier_bwd.cpp", defines,
                         {"KERNEL": hier_source(), "KERNEL_BWD": hier_bwd_source()})

    def _sizes(self, *xs):
        return [ctypes.c_int(x) for x in xs[:4]] + [ctypes.c_longlong(x) for x in xs[4:6]] + [ctypes.c_int(xs[6])]

    def hib_dq(self, cfg, q, k, lv, lam, a, gm, om, delta, lden0, msnap, wz, wn, wS, lden, dq, dlam, Pg, Dg, Fg, dsum, T,
               DK, DV, L, p, F, n, n_old, NLC, alo, BH):
        self._lib(cfg).run_dq(*self._ptrs(cfg, (q, k, lv, lam, a, gm, om, delta, lden0, msnap, wz, wn, wS, lden, dq, dlam,
                                                Pg, Dg, Fg, dsum)),
                              *self._sizes(T, DK, DV, L, p, F, n), ctypes.c_int(n_old), ctypes.c_int(NLC),
                              self._s(cfg, alo), ctypes.c_int(wz.shape[1]), ctypes.c_int(BH),
                              ctypes.c_uint(cfg.smem("hib_dq")))

    def hib_blocks(self, cfg, q, lam, a, gm, om, delta, lden, gch, U, Z, M, W, gt, Up, Zp, Mp, Wp, gp, T, DK, DV, L, p,
                   F, n, alo, items, slots, BH):
        self._lib(cfg).run_blocks(*self._ptrs(cfg, (q, lam, a, gm, om, delta, lden, gch, U, Z, M, W, gt, Up, Zp, Mp, Wp, gp)),
                                  *self._sizes(T, DK, DV, L, p, F, n), self._s(cfg, alo), ctypes.c_int(items),
                                  ctypes.c_int(slots), ctypes.c_int(BH), ctypes.c_uint(cfg.smem("hib_blocks")))

    def hib_bmerge(self, cfg, Up, Zp, Mp, Wp, gp, U, Z, M, W, gt, DK, DV, F, n, split, slots, BH):
        self._lib(cfg).run_bmerge(*self._ptrs(cfg, (Up, Zp, Mp, Wp, gp, U, Z, M, W, gt)), ctypes.c_int(DK),
                                  ctypes.c_int(DV), ctypes.c_longlong(F), ctypes.c_int(n), ctypes.c_int(split),
                                  ctypes.c_int(slots), ctypes.c_int(BH), ctypes.c_uint(cfg.smem("hib_bmerge")))

    def hib_dkdv(self, cfg, q, k, lv, lam, a, gm, om, delta, lden, U, Z, M, W, gt, Pg, Dg, Fg, dk, dlv, dsum, T, DK, DV, L,
                 p, F, n, alo, BH):
        self._lib(cfg).run_dkdv(*self._ptrs(cfg, (q, k, lv, lam, a, gm, om, delta, lden, U, Z, M, W, gt, Pg, Dg, Fg, dk,
                                                  dlv, dsum)),
                                *self._sizes(T, DK, DV, L, p, F, n), self._s(cfg, alo), ctypes.c_int(BH),
                                ctypes.c_uint(cfg.smem("hib_dkdv")))


@pytest.fixture(scope="module")
def emu_bwd():
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    return EmuBwd()


def grad_oracle(torch, arrays, do, prefix=None, device="cpu", dtype=None):
    """Gradients of ``sum(loglinear_log_attention(*arrays) * do)`` by torch autograd (float64 unless
    ``dtype``, then float64 autograd of the inputs rounded to it) of ``lsattn.reference``, or with
    ``prefix`` (the P tokens before, NumPy) of the array-API path continuing their state (not
    differentiated). ``-inf`` inputs become ``ORACLE_NEG`` (exactly zero terms, finite gradients) and
    outputs ``-inf`` get zero output gradient (they depend on no input): which ones, by the reference on
    the -inf inputs themselves, over the prefix and the call (the array-API path's clamps leave a finite
    output near -1e305 where a decay -inf cuts off every visible nonzero value, e.g. an incoming state's).
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

    whole = arrays if prefix is None else [None if x is None else np.concatenate([p_, x], axis=-1 if i == 4 else -2)
                                           for i, (p_, x) in enumerate(zip(prefix, arrays))]
    with torch.no_grad():  # with the -inf inputs themselves: which outputs are -inf
        out = ref.loglinear_log_attention(*[None if x is None else torch.tensor(x, device=device) for x in whole[:4]],
                                          log_decay=None if not has_a else torch.tensor(whole[4], device=device))
        out = out.double().cpu().numpy()[..., out.shape[-2] - arrays[0].shape[-2]:, :]
    want, _ = _autograd(fn, safe if has_a else safe[:4], np.where(np.isneginf(out), 0.0, do), torch, device=device,
                        dtype=dtype)
    return want, out


def check_grads(got, want, do, tol, what, T):
    atol = tol * do.shape[-1] * float(np.max(np.abs(do), initial=0.0))
    for name, g, w in zip(["dq", "dk", "dlv", "dlam", "da"], got, want):
        f = T if name == "da" else 1
        assert_close(g, w, tol * f, atol=atol * f, what=f"{name} {what}")


def _emu_grads(emu, arrays, do, dtype, C, p=0, old=None, tc=False):
    q, k, lv, lam, a = (None if x is None else np.ascontiguousarray(x, dtype=dtype) for x in arrays)
    out = chi.compute(emu, q, k, lv, lam, a, p, old, C)
    got = chb.backward(emu, q, k, lv, lam, a, p, old, out, np.ascontiguousarray(do, dtype=dtype), C, tc)
    return [g for g in got if g is not None], out


# ---- CPU: the kernels' source, emulated, through the host logic ------------------------------------

@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@given(batch=batch_shapes, T=st.integers(1, 90), dk=st.sampled_from([1, 3, 16]), dv=st.sampled_from([1, 5]),
       C=st.sampled_from([16, 32]), decay=decays_or_none, weights=st.sampled_from(["zero", "random", "off"]),
       dtype=st.sampled_from(["float64", "float32"]), scale=st.sampled_from([1.0, 30.0]), neg_inf=st.booleans(),
       seed=seeds)
@settings(max_examples=8, deadline=None)
# issue 17 (s13d17): row 47 of sequence (1, 1) takes the exact path with an output near -77.6 whose terms need
# factors ~e^76 (the exact rows' D and the right blocks' V' were capped at e^64: dq .. da off by 1.0-1.9)
@example(batch=(2, 3), T=90, dk=16, dv=5, C=16, decay="mixed", weights="random", dtype="float32", scale=30.0,
         neg_inf=True, seed=1)
# (s13i17) row 57 of sequence 1: output -92 at column 3 dominated by its own value, e^(lv - o) ~ e^93 (past float32)
@example(batch=(2,), T=90, dk=16, dv=5, C=16, decay="mixed", weights="random", dtype="float32", scale=30.0,
         neg_inf=True, seed=7)
# (s30) row 46 of sequence (1, 0): output -109 (a -inf value beside a key 110 lower); hib_blocks' W_j = max_t -o_tj
# left the right block's other rows' U terms at e^-109, below float32 (dk, dlv off 0.11, da 0.18 of ~4.4)
@example(batch=(2, 2), T=72, dk=1, dv=1, C=16, decay="zero", weights="zero", dtype="float32", scale=30.0,
         neg_inf=True, seed=0)
# (s30) row 82 of sequence (0, 1): output -79 behind a -inf value; hib_dq cut a held slot's value factors e^(n - o)
# at e^64 (dq, dlam off 0.41 of 2.5)
@example(batch=(3, 3), T=85, dk=16, dv=1, C=16, decay="zero", weights="zero", dtype="float32", scale=30.0,
         neg_inf=True, seed=463)
# (s30) one token whose three key features _with_neg_inf all turned off (0 / 0; the reference's log y 0 by absorption
# into the -3.4e38 / 8 stand-in): _with_neg_inf now leaves every key a finite feature
@example(batch=(), T=1, dk=3, dv=5, C=16, decay="none", weights="zero", dtype="float32", scale=1.0, neg_inf=True,
         seed=3319)
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
@settings(max_examples=4, deadline=None)
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


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("dtype,spike,seed", [("float64", 0.0, 0), ("float32", 0.0, 1), ("float32", 60.0, 2),
                                              ("float64", 400.0, 3)])
def test_backward_emulated_factorised_and_exact_rows(emu_bwd, monkeypatch, dtype, spike, seed):
    """hib_dq's pairs as products (hib_fpairs) with the rows past HIB_LIM on the per-pair path: both
    kinds of rows occur (a key spike late in a chunk, a large log value: the earlier rows of that chunk
    are exact) and the gradients equal the oracle."""
    torch = pytest.importorskip("torch")
    q, k, lv, lam, a = make(seed, (2,), 70, 6, 5, decay="mixed", weights="random")
    if spike:
        k[0, 29, :] += spike / 10  # chunk [16, 32) of C = 16: rows 16 .. 28 meet a dominating later key
        lv[1, 45, 2] += spike      # and a dominating later log value in [32, 48)
    arrays = [x.astype(dtype).astype(np.float64) for x in (q, k, lv, lam, a)]
    flags = []
    orig = emu_bwd.hib_dq

    def spy(cfg, *args):
        orig(cfg, *args)
        flags.append(np.array(args[18]))  # Fg
    monkeypatch.setattr(emu_bwd, "hib_dq", spy)
    do = np.random.default_rng(seed + 1).standard_normal((2, 70, 5))
    got, _ = _emu_grads(emu_bwd, arrays, do, dtype, 16)
    fl = flags[0]
    assert np.any(fl == 0), "some rows on the products"
    if spike:
        assert np.any(fl == 1) and not np.all(fl == 1), "some rows exact, not all"
    want, _ = grad_oracle(torch, arrays, do)
    check_grads(got, want, do, GRAD_TOL[dtype], f"{dtype} spike={spike}", 70)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("T,C,dk,dv,scale,spike,P,seed", [(70, 16, 6, 5, 1.0, 0.0, 0, 0), (90, 16, 16, 16, 1.0, 60.0, 0, 1),
                                                        (61, 32, 33, 17, 30.0, 0.0, 0, 2), (45, 16, 5, 3, 1.0, 0.0, 21, 3),
                                                        (77, 16, 6, 5, 1.0, -1.0, 0, 4), (100, 32, 64, 64, 1.0, 0.0, 0, 5)])
def test_backward_emulated_tensor_cores(emu_bwd, T, C, dk, dv, scale, spike, P, seed):
    """The bfloat16 callers' variant (``tc=True``, -DHIB_TC=1: the products on bf16 mma.sync, emulated
    per warp): on bf16-rounded inputs its gradients are within GRAD_TOL['bfloat16'] of float64 autograd
    of the reference (pairs as products and exact rows, slots, right blocks, after a state; spike -1:
    -inf inputs and levels switched off, -inf log values with exactly zero gradient; d 64 at chunk 32: the slot copies'
    fast path and hib_slot_rows' DKP >= 64 branch, as the bf16 training calls run them)."""
    torch = pytest.importorskip("torch")
    arrays = make(seed, (2,), P + T, dk, dv, scale=scale, decay="mixed", weights="off" if spike < 0 else "random")
    if spike < 0:
        arrays = _with_neg_inf(arrays, np.random.default_rng(seed), values=True)
    elif spike:
        arrays[1][0, P + 29, :] += spike / 10
        arrays[2][1, P + 45, 2] += spike
    arrays = [torch.tensor(x).to(torch.bfloat16).double().numpy() for x in arrays]
    pre = [x[..., :P] if x.ndim == 2 else x[..., :P, :] for x in arrays]
    cur = [x[..., P:] if x.ndim == 2 else x[..., P:, :] for x in arrays]
    old = None
    if P:
        _, state = lsattn.loglinear_log_attention(*pre[:4], log_decay=pre[4], return_state=True, backend="array_api")
        old = tuple(np.ascontiguousarray(state.tensors[x], dtype="float32") for x in ("m", "n", "S", "z"))
    do = np.random.default_rng(seed + 1).standard_normal((2, T, dv))
    got, _ = _emu_grads(emu_bwd, cur, do, "float32", C, P, old, tc=True)
    want, _ = grad_oracle(torch, cur, do, prefix=pre if P else None)
    tol = GRAD_TOL["bfloat16"]
    check_grads(got, want, do, tol, f"tc T={T} C={C} dk={dk} dv={dv} scale={scale} spike={spike} P={P}", T)
    assert not np.any(got[2][np.isneginf(cur[2])]), "-inf log values get exactly zero gradient"
    exact, _ = _emu_grads(emu_bwd, cur, do, "float32", C, P, old)  # the FFMA variant on the same inputs
    assert max(float(np.max(np.abs(g - e))) for g, e in zip(got, exact)) > 0, "the tensor-core variant ran"


def test_pieces_cover_the_right_blocks():
    """hib_blocks' grid (``pieces``): every right block r0 (F < r0 < F + n, 2^(l'-1) chunks, l' = 1 +
    trailing zeros) once, in min(2^(l'-1) / PMIN, NPC) pieces when that is more than one."""
    for F in range(0, 70):
        for n in range(2, 140, 3):
            items = split = 0
            for r0 in range(F + 1, F + n):
                h = r0 & -r0
                np_ = min(chb.NPC, max(1, h // chb.PMIN))
                items += np_
                split += np_ > 1
            got = chb.pieces(F, n)
            assert got[:2] == (items, split), (F, n)
            assert got[2] >= items - (n - 1)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("dtype,T,P,pmin,npc,seed", [("float64", 90, 0, 1, 4, 0), ("float32", 77, 0, 2, 2, 1),
                                                    ("float64", 60, 19, 1, 8, 2)])
def test_backward_emulated_split_blocks(emu_bwd, monkeypatch, dtype, T, P, pmin, npc, seed):
    """hib_blocks' right blocks split into pieces (PMIN, NPC made small: blocks of 2 and 4 chunks at
    C = 16) and merged by hib_bmerge: the gradients still equal the oracle (decay, random level weights,
    magnitude 30, after a state)."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(chb, "PMIN", pmin)
    monkeypatch.setattr(chb, "NPC", npc)
    arrays = make(seed, (2,), P + T, 5, 3, scale=30.0, decay="mixed", weights="random")
    arrays = [x.astype(dtype).astype(np.float64) for x in arrays]
    pre = [x[..., :P] if x.ndim == 2 else x[..., :P, :] for x in arrays]
    cur = [x[..., P:] if x.ndim == 2 else x[..., P:, :] for x in arrays]
    old = None
    if P:
        _, state = lsattn.loglinear_log_attention(*pre[:4], log_decay=pre[4], return_state=True, backend="array_api")
        old = tuple(np.ascontiguousarray(state.tensors[x], dtype=dtype) for x in ("m", "n", "S", "z"))
    do = np.random.default_rng(seed + 1).standard_normal((2, T, 3))
    assert chb.pieces(P // 16, -(-(P + T) // 16) - P // 16)[1] > 0, "some block is split"
    got, _ = _emu_grads(emu_bwd, cur, do, dtype, 16, P, old)
    want, _ = grad_oracle(torch, cur, do, prefix=pre if P else None)
    check_grads(got, want, do, GRAD_TOL[dtype], f"{dtype} T={T} P={P} PMIN={pmin} NPC={npc}", T)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("dtype,decay,P,frozen", [("float64", "moderate", 0, False), ("float32", "none", 0, False),
                                                   ("float64", "mixed", 21, False), ("float32", "moderate", 0, True)])
def test_autograd_function_emulated(emu_bwd, monkeypatch, dtype, decay, P, frozen):
    """The torch autograd Function (``hierarchical_bwd.apply``) on CPU torch tensors with the emulated
    kernels (its ``on_gpu`` replaced): the plumbing (inputs widened, saved tensors, no decay, an
    incoming state that does not require grad, gradients in the inputs' dtype) equals the oracle;
    ``frozen``: level weights and decay without grad (none returned, the decay's sums skipped)."""
    torch = pytest.importorskip("torch")
    import contextlib

    @contextlib.contextmanager
    def on_emu(like):
        yield (lambda x: (x.detach().numpy(), "")), (lambda x, half: torch.from_numpy(np.ascontiguousarray(x))), emu_bwd

    monkeypatch.setattr(chb, "on_gpu", on_emu)
    arrays = make(4, (2,), P + 40, 3, 2, decay=decay, weights="off")
    arrays = [None if x is None else x.astype(dtype).astype(np.float64) for x in arrays]
    cur = [None if x is None else (x[..., P:] if x.ndim == 2 else x[..., P:, :]) for x in arrays]
    pre = [None if x is None else (x[..., :P] if x.ndim == 2 else x[..., :P, :]) for x in arrays]
    old = None
    if P:
        _, state = lsattn.loglinear_log_attention(*pre[:4], log_decay=pre[4], return_state=True, backend="array_api")
        old = tuple(torch.tensor(np.asarray(state.tensors[x], dtype)) for x in ("m", "n", "S", "z"))
    xs = [None if x is None else torch.tensor(x, dtype=getattr(torch, dtype), requires_grad=not (frozen and i > 2))
          for i, x in enumerate(cur)]
    do = np.random.default_rng(5).standard_normal((2, 40, 2))
    out = chb.apply(*xs, old, 16, P)
    assert out.dtype == getattr(torch, dtype)
    out.backward(torch.tensor(do, dtype=out.dtype))
    got = [x.grad.double().numpy() for x in xs if x is not None and x.requires_grad]
    assert all(x.grad.dtype == x.dtype for x in xs if x is not None and x.requires_grad)
    assert all(x.grad is None for x in xs if x is not None and not x.requires_grad)
    assert len(got) == (3 if frozen else 4 + (cur[4] is not None))
    want, _ = grad_oracle(torch, cur, do, prefix=pre if P else None)
    check_grads(got, want, do, GRAD_TOL[dtype], f"{dtype} P={P}", 40)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_backward_emulated_kept_slots(emu_bwd, dtype):
    """The forward's slots kept for the backward (``hierarchical.compute(keep=True)`` at the backward's
    chunk, ``hierarchical_bwd.keep``): the gradients equal those of the backward that recomputes them,
    bit for bit (the same kernels on the same inputs), after an incoming state."""
    P, T, C = 21, 70, 16
    arrays = make(6, (2,), P + T, 3, 5, decay="mixed", weights="random")
    _, state = lsattn.loglinear_log_attention(*[x[..., :P, :] for x in arrays[:4]], log_decay=arrays[4][..., :P],
                                              return_state=True, backend="array_api")
    old = tuple(np.ascontiguousarray(state.tensors[x], dtype=dtype) for x in ("m", "n", "S", "z"))
    q, k, lv, lam = (np.ascontiguousarray(x[..., P:, :], dtype=dtype) for x in arrays[:4])
    a = np.ascontiguousarray(arrays[4][..., P:], dtype=dtype)
    do = np.random.default_rng(7).standard_normal((2, T, 5)).astype(dtype)
    out, w = chi.compute(emu_bwd, q, k, lv, lam, a, P, old, C, keep=True)
    assert w.CH == chb.config("double" if dtype == "float64" else "float", 3, 5, C).CH
    got = chb.backward(emu_bwd, q, k, lv, lam, a, P, old, out, do, C, kept=chb.keep(w))
    want = chb.backward(emu_bwd, q, k, lv, lam, a, P, old, out, do, C)
    for g, x in zip(got, want):
        np.testing.assert_array_equal(g, x)


class _NanEmpty:
    """NumPy whose ``empty`` is filled with NaN (an array read before it is written shows)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float):
        return np.full(shape, np.nan, dtype=dtype)


@pytest.mark.parametrize("P,pmin,npc", [(0, 8, 8), (21, 1, 4)])
def test_backward_emulated_scratch_written(emu_bwd, monkeypatch, P, pmin, npc):
    """Every array the backward allocates uninitialised (the right blocks' U, Z, M, W, gt, delta, the decay's row
    sums, dlam, the pairs, the outputs; the slots when recomputed) is written before it is read: filled with NaN
    the gradients are bit-equal to those of ordinary ``empty`` arrays (split right blocks, after a state)."""
    monkeypatch.setattr(chb, "PMIN", pmin)
    monkeypatch.setattr(chb, "NPC", npc)
    arrays = make(9, (2,), P + 70, 5, 3, decay="mixed", weights="random")
    _, state = lsattn.loglinear_log_attention(*[x[..., :P, :] for x in arrays[:4]], log_decay=arrays[4][..., :P],
                                              return_state=True, backend="array_api")
    old = tuple(np.ascontiguousarray(state.tensors[x], dtype="float32") for x in ("m", "n", "S", "z")) if P else None
    q, k, lv, lam = (np.ascontiguousarray(x[..., P:, :], dtype="float32") for x in arrays[:4])
    a = np.ascontiguousarray(arrays[4][..., P:], dtype="float32")
    do = np.random.default_rng(10).standard_normal((2, 70, 3)).astype("float32")
    out = chi.compute(emu_bwd, q, k, lv, lam, a, P, old, 16)
    want = chb.backward(emu_bwd, q, k, lv, lam, a, P, old, out, do, 16)
    monkeypatch.setattr(emu_bwd, "xp", _NanEmpty())
    got = chb.backward(emu_bwd, q, k, lv, lam, a, P, old, out, do, 16)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


#: cuda_emu_hier.cpp's poison: the bits of a NaN no arithmetic makes, by compute dtype
POISON = {"float32": np.array([0x7FDEAD01], dtype=np.uint32).view(np.float32)[0],
          "float64": np.array([0x7FFDEAD00000BE01], dtype=np.uint64).view(np.float64)[0]}


class _PoisonEmpty(_NanEmpty):
    """NumPy whose ``empty`` of float32 / float64 is filled with ``POISON``'s bits."""

    @staticmethod
    def empty(shape, dtype=float):
        name = np.dtype(dtype).name
        return np.full(shape, POISON[name], dtype=dtype) if name in POISON else np.empty(shape, dtype=dtype)


def _poisoned(x):
    x = np.ascontiguousarray(x)
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint64) == POISON[x.dtype.name].view(
        np.uint32 if x.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("dtype,P,T,dk,dv,C,tc", [("float64", 0, 70, 5, 3, 16, False), ("float32", 21, 61, 5, 19, 16, False),
                                                 ("float32", 0, 77, 6, 5, 16, True), ("float32", 37, 90, 16, 16, 32, False)])
def test_emulated_reads_only_written_memory(dtype, P, T, dk, dv, C, tc):
    """The forward and the backward kernels read no memory that no kernel or the host wrote (compute-sanitizer
    initcheck's question, asked on the CPU): every uninitialised allocation filled with ``POISON``, the emulation
    counts the loads (``ld``, the asynchronous copies; masked ones too, whose value a select drops) that see it: none;
    hi_intra writes every chunk's total decay (``gch``, the call's last one too); the gradients bit-equal to those of
    ordinary ``empty`` arrays. The switches' off build (``HIB_IRD=0 HI_GCHW=0``, main's fallback addresses) counts
    such loads and leaves the last total unwritten where its cases reach them (head dims below their padding)."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    arrays = make(11, (2,), P + T, dk, dv, decay="mixed", weights="random")
    old = None
    if P:
        _, state = lsattn.loglinear_log_attention(*[x[..., :P, :] for x in arrays[:4]], log_decay=arrays[4][..., :P],
                                                  return_state=True, backend="array_api")
        old = tuple(np.ascontiguousarray(state.tensors[x], dtype=dtype) for x in ("m", "n", "S", "z"))
    q, k, lv, lam = (np.ascontiguousarray(x[..., P:, :], dtype=dtype) for x in arrays[:4])
    a = np.ascontiguousarray(arrays[4][..., P:], dtype=dtype)
    do = np.random.default_rng(12).standard_normal((2, T, dv)).astype(dtype)

    class Counting(EmuBwd):  # the builds it used (the forward's and the backward's), whose counts are summed
        def _lib(self, cfg):
            lib = super()._lib(cfg)
            lib.emu_poison_reads.restype = ctypes.c_longlong
            self.libs[id(lib)] = lib
            return lib

    def run(emu, xp):
        for lib in emu.libs.values():
            lib.emu_poison_reads()  # (reset)
        emu.xp = xp
        out, w = chi.compute(emu, q, k, lv, lam, a, P, old, C, keep=True)
        grads = chb.backward(emu, q, k, lv, lam, a, P, old, out, do, C, tc, kept=chb.keep(w))
        return grads, w.gch, sum(lib.emu_poison_reads() for lib in emu.libs.values())

    clean, off = Counting(), Counting()
    clean.libs, off.libs = {}, {}
    off.defines = {"HIB_IRD": 0, "HI_GCHW": 0}
    want, _, _ = run(clean, np)
    run(off, np)  # (its builds, before the poisoned run's reset)
    got, gch, reads = run(clean, _PoisonEmpty())
    assert reads == 0, f"{reads} loads of unwritten memory"
    assert not _poisoned(gch).any()
    for g, x in zip(got, want):
        np.testing.assert_array_equal(g, x)
    got_off, gch_off, reads_off = run(off, _PoisonEmpty())
    for g, x in zip(got_off, want):  # (the off build: the same values, its masked loads' dropped)
        np.testing.assert_array_equal(g, x)
    assert _poisoned(gch_off)[:, -1].all() and not _poisoned(gch_off)[:, :-1].any()
    if dk % 16 or dv % 16:
        assert reads_off > 0


@pytest.mark.parametrize("dtype,P,T,pmin,npc", [("float32", 0, 70, 2, 4), ("float64", 0, 90, 1, 8), ("float32", 21, 73, 1, 8)])
def test_emulated_blocks_read_only_the_calls_totals(monkeypatch, dtype, P, T, pmin, npc):
    """hib_blocks reads the chunks' total decays (``gch``, ``(BH, n)``) of the call's chunks only: the empty pieces of a
    split right block at the call's end (their first chunk past the call's last) read none past their sequence's row
    (session 20, s20i: initcheck's 39 reports on hier_bwd_small.py's T = 1100 case were those loads, past the last
    sequence's row; an earlier sequence's read the next one's). ``gch`` handed to hib_blocks as the first ``BH n``
    entries of a buffer whose tail is ``POISON``: the emulation counts no load of it, the gradients bit-equal to those
    of the unpadded buffer (chunk 16: n = 5 / 6 with an empty piece that read chunk n / n, 6; after a state: F = 1)."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    monkeypatch.setattr(chb, "PMIN", pmin)
    monkeypatch.setattr(chb, "NPC", npc)
    arrays = make(13, (2,), P + T, 5, 3, decay="mixed", weights="random")
    old = None
    if P:
        _, state = lsattn.loglinear_log_attention(*[x[..., :P, :] for x in arrays[:4]], log_decay=arrays[4][..., :P],
                                                  return_state=True, backend="array_api")
        old = tuple(np.ascontiguousarray(state.tensors[x], dtype=dtype) for x in ("m", "n", "S", "z"))
    q, k, lv, lam = (np.ascontiguousarray(x[..., P:, :], dtype=dtype) for x in arrays[:4])
    a = np.ascontiguousarray(arrays[4][..., P:], dtype=dtype)
    do = np.random.default_rng(14).standard_normal((2, T, 3)).astype(dtype)

    class Padded(EmuBwd):  # gch in a longer buffer, poisoned past its BH n entries; the loads of poison counted
        pad = False

        def hib_blocks(self, cfg, q, lam, a, gm, om, delta, lden, gch, *rest):
            lib = self._lib(cfg)
            lib.emu_poison_reads.restype = ctypes.c_longlong
            lib.emu_poison_reads()  # (reset)
            if self.pad:
                buf = np.full(gch.size + 4 * gch.shape[-1] + 64, POISON[gch.dtype.name], dtype=gch.dtype)
                buf[:gch.size] = gch.ravel()
                gch = buf[:gch.size].reshape(gch.shape)
            super().hib_blocks(cfg, q, lam, a, gm, om, delta, lden, gch, *rest)
            self.reads = lib.emu_poison_reads()

    emu = Padded()
    F, n = chi._layout(P, T, 16).first_chunk, chi._layout(P, T, 16).n_chunks
    assert any(first >= F + n for first in _piece_firsts(F, n)), "no empty piece past the call's last chunk"
    out = chi.compute(emu, q, k, lv, lam, a, P, old, 16)
    want = chb.backward(emu, q, k, lv, lam, a, P, old, out, do, 16)
    emu.pad = True
    got = chb.backward(emu, q, k, lv, lam, a, P, old, out, do, 16)
    for g, x in zip(got, want):  # (also before the fix: the empty pieces' G0, NaN then, reaches no output)
        np.testing.assert_array_equal(g, x)
    assert emu.reads == 0, f"{emu.reads} loads past the call's chunk totals"


def _piece_firsts(F, n):
    """The first chunks of hib_blocks' pieces of the split right blocks (hib_piece's order does not matter here)."""
    firsts, lp = [], 1
    while (h := 1 << (lp - 1)) <= F + n - 1:
        np_ = min(chb.NPC, max(1, h // chb.PMIN))
        if np_ > 1:
            for m in range((F + h) >> lp, ((F + n - 1 - h) >> lp) + 1):
                firsts += [(2 * m + 1) * h + kk * (h // np_) for kk in range(np_)]
        lp += 1
    return firsts


def test_backward_registered():
    assert chb.fits("float", 64, 64) and chb.fits("float", 128, 128) and not chb.fits("float", 64, 129)
    for ta in ("float", "double"):
        cfg = chb.config(ta, 64, 64)
        assert cfg.CH in (16, 32, 64) and max(cfg.smem(k) for k in chb._KERNELS) <= 227 * 1024


def test_raw_launches_pass_cupys_arguments(monkeypatch):
    """Every hierarchical launch of ``CupyOps`` (forward and backward) through ``_rawlaunch``'s prebuilt argument
    blocks passes what CuPy's RawKernel call passes: the grid, block and shared bytes, each pointer (null for None),
    each scalar in its C type, the trailing pointers of hi_read; a repeated launch reuses its block."""
    import types

    from lsattn.backends.cupy import _compile, _rawlaunch

    class Arr:  # a CuPy array as the launches read it
        def __init__(self, ptr):
            self.data, self.shape = types.SimpleNamespace(ptr=ptr), (3, 5, 7)

    got = []

    class Fn:
        kernel = types.SimpleNamespace(ptr=11)

        def __call__(self, grid, block, args, shared_mem=0):
            got.append((tuple(grid) + (1,) * (3 - len(grid)), block[0], shared_mem, list(args)))

    def driver(func, gx, gy, gz, bx, by, bz, smem, stream, params, extra):
        assert func == 11 and stream == 42 and (by, bz) == (1, 1) and extra == 0
        want = got[-1][3]
        assert (gx, gy, gz) == got[-1][0] and bx == got[-1][1] and smem == got[-1][2]
        params = (ctypes.c_void_p * len(want)).from_address(params)  # (the block's address)
        for addr, w in zip(params, want):
            if isinstance(w, Arr) or (isinstance(w, np.generic) and w.dtype == np.uint64):
                assert ctypes.c_uint64.from_address(addr).value == (w.data.ptr if isinstance(w, Arr) else int(w))
            else:
                ct = {np.int32: ctypes.c_int32, np.int64: ctypes.c_int64, np.float32: ctypes.c_float,
                      np.float64: ctypes.c_double}[type(w)]
                assert ct.from_address(addr).value == w.item(), (w, ct.from_address(addr).value)
        raw.append(func)
        return 0

    raw = []
    monkeypatch.setattr(_compile, "_launch", lambda op, dev, cfg, name: (Fn(), (128,), 5000))
    monkeypatch.setattr(_rawlaunch, "_DRIVER", [driver])
    monkeypatch.setattr(_compile, "_RAW", {})
    ops = _compile.CupyOps.__new__(_compile.CupyOps)
    ops.xp = types.SimpleNamespace(cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=42)))
    ops.device_id = 0
    A = [Arr(4096 * (i + 1)) for i in range(20)]
    for ta in ("float", "double"):
        cfg = chb.config(ta, 64, 64)
        calls = [("hi_intra", (*A[:4], None, *A[5:12], 100, 64, 64, 8, 3, 1, 9, 2, -1.5e30, 4)),
                 ("hi_merge", (*A[:6], 64, 64, 1, 9, 2, 5, 3, 4, 4)),
                 ("hi_snap", (*A[:3], 64, 3, 1, 9, 2, 6, 4)),
                 ("hi_read", (A[0], A[1], None, *A[3:10], 100, 64, 64, 8, 3, 1, 9, 2, 6, -2.5, 4)),
                 ("hi_read", (*A[:10], 100, 64, 64, 8, 3, 1, 9, 2, 6, -2.5, 4), {"ltot": A[11], "wide": True}),
                 ("hib_dq", (*A[:4], None, *A[5:19], None, 100, 64, 64, 8, 3, 1, 9, 2, 6, -0.5, 4)),
                 ("hib_blocks", (*A[:2], None, *A[3:18], 100, 64, 64, 8, 3, 1, 9, 0.25, 12, 30, 4)),
                 ("hib_bmerge", (*A[:10], 64, 64, 1, 9, 3, 12, 4)),
                 ("hib_dkdv", (*A[:20], 100, 64, 64, 8, 3, 1, 9, 0.5, 4))]
        for name, args, *kw in calls:
            for raw_on in (False, True, True):  # CuPy's call, then the block, then the block again
                monkeypatch.setattr(_compile, "RAW_LAUNCH", raw_on)
                before = len(raw)
                getattr(ops, name)(cfg, *args, **(kw[0] if kw else {}))
                assert len(raw) == before + raw_on, name
    assert len(_compile._RAW) == 2 * 8  # one block per (kernel, cfg, grid, scalars): hi_read's two calls share one


@pytest.mark.parametrize("dtype,decay,batch,T,dims", [("float32", True, (2, 3), 100, (16, 20)),
                                                     ("bfloat16", False, (5,), 37, (64, 64)),
                                                     ("float64", True, (1,), 1, (5, 7))])
def test_direct_intra_launches_what_slots_launches(monkeypatch, dtype, decay, batch, T, dims):
    """``hierarchical_direct``'s launch of hi_intra from torch tensors' pointers (CPU tensors here, the driver
    recorded) passes what ``hierarchical.slots`` passes to ``CupyOps.hi_intra``: the same kernel, geometry and scalars
    (one prebuilt block each, compared), the inputs' pointers (null for no decay) and buffers of slots' shapes and
    dtype, 256-byte aligned and disjoint, the kept ones (wz, wn, wS, lden, gch) apart from wm and lnum; the views of
    those buffers (``_Launched.views``) are those shapes at those addresses."""
    torch = pytest.importorskip("torch")
    import types

    from lsattn.backends.cupy import _compile, _rawlaunch, hierarchical as chi, hierarchical_direct as hd

    class Fn:
        kernel = types.SimpleNamespace(ptr=11)

    calls = []

    def driver(func, gx, gy, gz, bx, by, bz, smem, stream, params, extra):
        params = (ctypes.c_void_p * 12).from_address(params)  # (the block's address)
        calls.append((func, (gx, gy, gz, bx, by, bz, smem), stream,
                      [ctypes.c_uint64.from_address(params[i]).value for i in range(12)]))
        return 0

    monkeypatch.setattr(_compile, "_launch", lambda op, dev, cfg, name: (Fn(), (128,), 5000))
    monkeypatch.setattr(hd, "_launch", lambda op, dev, cfg, name: (Fn(), (128,), 5000))
    monkeypatch.setattr(_rawlaunch, "_DRIVER", [driver])
    monkeypatch.setattr(_compile, "_RAW", {})
    monkeypatch.setattr(_compile, "RAW_LAUNCH", True)
    monkeypatch.setattr(hd, "_PLANS", {})
    DK, DV = dims
    L = lsattn.num_levels(T)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(*batch, T, d, generator=g).to(getattr(torch, dtype)) for d in (DK, DK, DV, L)]
    a = torch.randn(*batch, T, generator=g).to(getattr(torch, dtype)) if decay else None
    ta = "double" if dtype == "float64" else "float"
    CH = chb.config(ta, DK, DV, None).CH
    launched = hd._launch_on(*xs, a, CH, 0, lambda dev: 42)
    assert launched is not None and len(calls) == 1
    plan = launched.plan
    # slots' own launch (NumPy arrays, the kernel recorded), then CupyOps.hi_intra on the direct path's pointers
    half = {"bfloat16": "bf16"}.get(dtype, "")
    seen = {}

    class Rec:
        xp = np

        def hi_intra(self, cfg, *args):
            seen["cfg"], seen["args"] = cfg, args

        def hi_merge(self, *args):
            pass

        def hi_snap(self, *args):
            pass

    npx = [None if x is None else (x.view(torch.int16) if half else x).numpy() for x in xs + [a]]
    cfg = chi.config(ta, DK, DV, CH, half)
    chi.slots(Rec(), cfg, *npx, 0, None)
    assert seen["cfg"] == plan.cfg == cfg
    args = seen["args"]
    names = ("lden", "lnum", "wm", "wz", "wn", "wS", "gch")
    base = [t.data_ptr() for t in launched.parts]
    at = {x: base[plan.offsets[x][0]] + plan.offsets[x][1] for x in names}
    for x, arr in zip(names, args[5:12]):
        assert plan.shapes[x] == arr.shape and plan.np_dtype == arr.dtype, x
        assert plan.offsets[x][1] % 256 == 0  # (torch CUDA allocations start 512-byte aligned)
        assert plan.offsets[x][0] == int(x in ("wm", "lnum")), x
    spans = sorted((at[x], at[x] + arr.nbytes) for x, arr in zip(names, args[5:12]))
    assert all(e0 <= s1 for (_, e0), (s1, _) in zip(spans, spans[1:]))
    assert all(launched.parts[p].numel() >= plan.offsets[x][1] + math.prod(plan.shapes[x]) * plan.np_dtype.itemsize
               for x in names for p in (plan.offsets[x][0],))

    class Arr:
        def __init__(self, ptr, shape=()):
            self.data, self.shape = types.SimpleNamespace(ptr=ptr), shape

    ptr_args = [None if x is None else Arr(x.data_ptr()) for x in xs + [a]]
    ptr_args += [Arr(at[x], arr.shape) for x, arr in zip(names, args[5:12])]
    ops = _compile.CupyOps.__new__(_compile.CupyOps)
    ops.xp = types.SimpleNamespace(cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=42)))
    ops.device_id = 0
    _compile.CupyOps.hi_intra(ops, cfg, *ptr_args, *args[12:])
    assert len(calls) == 2 and calls[0] == calls[1]
    (theirs,) = _compile._RAW.values()
    assert theirs.geometry == plan.raw.geometry and theirs.func == plan.raw.func
    assert [(type(c), c.value) for c in theirs.scalars] == [(type(c), c.value) for c in plan.raw.scalars]
    # the views: slots' shapes on the buffers, each part kept alive by its memory
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        UnownedMemory=lambda ptr, size, owner, dev: types.SimpleNamespace(ptr=ptr, size=size, owner=owner),
        MemoryPointer=lambda mem, off: (mem, off)),
        ndarray=lambda shape, dtype, memptr: types.SimpleNamespace(shape=shape, dtype=dtype, mem=memptr))
    views = launched.views(fake)
    for x, v, arr in zip(("wm", "wz", "wn", "wS", "lden", "lnum", "gch"), views,
                         [args[5 + names.index(y)] for y in ("wm", "wz", "wn", "wS", "lden", "lnum", "gch")]):
        mem, off = v.mem
        assert v.shape == arr.shape and v.dtype == arr.dtype and mem.ptr + off == at[x], x
        assert mem.owner is launched.parts[plan.offsets[x][0]] and off + arr.nbytes <= mem.size


# ---- GPU ------------------------------------------------------------------------------------------

def _on_kernels(out):
    """True when ``out`` was recorded by the backward kernels' autograd Function."""
    return out.grad_fn is not None and "Hierarchical" in type(out.grad_fn).__name__


def _gpu_grads(torch, arrays, do, dtype, **kw):
    """Gradients of sum(out * do) through the public call on CUDA tensors of ``dtype`` (no backend=)."""
    xs = [None if x is None else torch.tensor(x, device="cuda").to(dtype).requires_grad_(True) for x in arrays]
    out = lsattn.loglinear_log_attention(*xs[:4], log_decay=xs[4], **kw)
    (out.double() * torch.tensor(do, device="cuda")).sum().backward()
    return [x.grad.double().cpu().numpy() for x in xs if x is not None], out


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@given(batch=batch_shapes, T=st.one_of(st.integers(1, 70), st.integers(200, 700)), dk=st.sampled_from([5, 64]),
       dv=st.sampled_from([7, 64]), decay=decays_or_none, weights=st.sampled_from(["zero", "random", "off"]),
       dtype=st.sampled_from(["float32", "float64"]), scale=st.sampled_from([1.0, 30.0, 1e3]), neg_inf=st.booleans(),
       seed=seeds)
@settings(max_examples=8, deadline=None)
def test_gpu_backward_matches_reference(batch, T, dk, dv, decay, weights, dtype, scale, neg_inf, seed):
    """CUDA torch tensors that require grad, no backend=: the backward kernels, within GRAD_TOL[dtype]
    plus the inputs' own rounding (4 eps (max |q| + max |k|): magnitudes up to 1e3 in float32) of
    float64 autograd of the reference."""
    _gpu_ready()
    torch = _torch_cuda()
    if dtype == "float64":
        scale = min(scale, 30.0)
    arrays = make(seed, batch, T, dk, dv, scale=scale, decay=decay, weights=weights)
    if neg_inf:
        arrays = _with_neg_inf(arrays, np.random.default_rng(seed), values=scale == 1.0)
    arrays = [None if x is None else x.astype(dtype).astype(np.float64) for x in arrays]
    do = np.random.default_rng(seed + 1).standard_normal(batch + (T, dv))
    got, out = _gpu_grads(torch, arrays, do, getattr(torch, dtype))
    assert _on_kernels(out)
    want, _ = grad_oracle(torch, arrays, do)
    tol = GRAD_TOL[dtype] + 4 * np.finfo(dtype).eps * (np.abs(arrays[0]).max() + np.abs(arrays[1]).max())
    check_grads(got, want, do, tol, f"T={T} dk={dk} dv={dv} {dtype} scale={scale}", T)


@pytest.mark.gpu
@pytest.mark.parametrize("T,P", [(1, 0), (37, 0), (70, 0), (40, 13)])
def test_gpu_gradcheck(T, P):
    """torch.autograd.gradcheck (float64) through the public call on the backward kernels (several
    chunks: the default chunk is 32; P: after a state that does not require grad)."""
    _gpu_ready()
    torch = _torch_cuda()
    arrays = [torch.tensor(x, device="cuda") for x in make(5, (2,), P + T, 3, 2, decay="moderate", weights="random")]
    state = None
    if P:
        pre = [x[..., :P] if x.ndim == 2 else x[..., :P, :] for x in arrays]
        _, state = lsattn.loglinear_log_attention(*pre[:4], log_decay=pre[4], return_state=True)
    xs = [(x[..., P:] if x.ndim == 2 else x[..., P:, :]).clone().requires_grad_(True) for x in arrays]

    def f(q, k, lv, lam, a):
        out = lsattn.loglinear_log_attention(q, k, lv, lam, log_decay=a, state=state)
        assert _on_kernels(out)
        return out

    assert torch.autograd.gradcheck(f, xs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=T > 40)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_gpu_backward_16bit(dtype):
    """16-bit inputs (the 16-bit forward, the backward from float32 copies): gradients in the inputs' dtype within
    GRAD_TOL['bfloat16'] of float64 autograd of the reference on the rounded inputs."""
    _gpu_ready()
    torch = _torch_cuda()
    half = getattr(torch, dtype)
    arrays = [torch.tensor(x).to(half).double().numpy() for x in make(7, (2, 2), 300, 64, 64, decay="moderate")]
    do = np.random.default_rng(8).standard_normal((2, 2, 300, 64))
    xs = [torch.tensor(x, device="cuda").to(half).requires_grad_(True) for x in arrays]
    out = lsattn.loglinear_log_attention(*xs[:4], log_decay=xs[4])
    assert _on_kernels(out) and out.dtype == half
    (out.double() * torch.tensor(do, device="cuda")).sum().backward()
    assert all(x.grad.dtype == half for x in xs)
    want, _ = grad_oracle(torch, arrays, do)
    check_grads([x.grad.double().cpu().numpy() for x in xs], want, do, GRAD_TOL["bfloat16"], dtype, 300)


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@given(batch=batch_shapes, T=st.one_of(st.integers(1, 70), st.integers(200, 400)), P=st.sampled_from([0, 21]),
       dims=st.sampled_from([(5, 7), (64, 64)]), decay=decays_or_none, weights=st.sampled_from(["zero", "random"]),
       dtype=st.sampled_from(["bfloat16", "float16"]), scale=st.sampled_from([1.0, 30.0]), neg_inf=st.booleans(),
       seed=seeds)
@settings(max_examples=8, deadline=None)  # (head dims in pairs: each pair and dtype compiles its kernels once)
# (s23e) a decay -inf at token 3 of the call cuts off the state and every earlier token: output (3, 5), whose own
# value is 0, is -inf; the oracle took the array-API path's finite -1.2e305 there and differentiated it (dlam, dq off
# by 2)
@example(batch=(), T=26, P=21, dims=(5, 7), decay="zero", weights="zero", dtype="bfloat16", scale=1.0, neg_inf=True,
         seed=1)
@example(batch=(), T=26, P=21, dims=(5, 7), decay="zero", weights="random", dtype="bfloat16", scale=1.0, neg_inf=True,
         seed=1)
def test_gpu_16bit_training_forward(batch, T, P, dims, decay, weights, dtype, scale, neg_inf, seed):
    """16-bit inputs under autograd run the 16-bit tensor-core forward writing log y in float32: the
    returned output equals the call without grad bit for bit (the same kernels, the same rounding; under
    autograd the forward runs at the backward's chunk, 32 as the default below 8K tokens), and
    the gradients (after an incoming state that does not require grad, -inf values / keys / decays)
    are within GRAD_TOL['bfloat16'] of float64 autograd of the reference on the rounded inputs."""
    _gpu_ready()
    torch = _torch_cuda()
    half = getattr(torch, dtype)
    dk, dv = dims
    cur, pre, do = _training_inputs(torch, half, batch, T, P, dims, decay, weights, scale, neg_inf, seed)
    state = None
    if P:
        pre_t = [None if x is None else torch.tensor(x, device="cuda").to(half) for x in pre]
        _, state = lsattn.loglinear_log_attention(*pre_t[:4], log_decay=pre_t[4], return_state=True)
    xs = [None if x is None else torch.tensor(x, device="cuda").to(half).requires_grad_(True) for x in cur]
    out = lsattn.loglinear_log_attention(*xs[:4], log_decay=xs[4], state=state)
    assert _on_kernels(out) and out.dtype == half
    with torch.no_grad():
        plain = lsattn.loglinear_log_attention(*xs[:4], log_decay=xs[4], state=state)
    np.testing.assert_array_equal(out.detach().float().cpu().numpy(), plain.float().cpu().numpy())
    (out.double() * torch.tensor(do, device="cuda")).sum().backward()
    assert all(x.grad.dtype == half for x in xs if x is not None)
    want, _ = grad_oracle(torch, cur, do, prefix=pre if P else None)
    check_grads([x.grad.double().cpu().numpy() for x in xs if x is not None], want, do, GRAD_TOL["bfloat16"],
                f"{dtype} T={T} P={P} dk={dk} dv={dv} scale={scale}", T)


def _training_inputs(torch, half, batch, T, P, dims, decay, weights, scale, neg_inf, seed):
    """test_gpu_16bit_training_forward's inputs: the call's and its prefix's (NumPy float64 of the values rounded
    to torch dtype ``half``; ``-inf`` at random tokens of either), the output gradient (batch + (T, d_v))."""
    dk, dv = dims
    arrays = make(seed, batch, P + T, dk, dv, scale=scale, decay=decay, weights=weights)
    if neg_inf:
        arrays = _with_neg_inf(arrays, np.random.default_rng(seed), values=scale == 1.0)
    arrays = [None if x is None else torch.tensor(x).to(half).double().numpy() for x in arrays]
    cut = lambda x, s: None if x is None else (x[..., s] if x.ndim == len(batch) + 1 else x[..., s, :])  # noqa: E731
    cur, pre = [cut(x, slice(P, None)) for x in arrays], [cut(x, slice(None, P)) for x in arrays]
    return cur, pre, np.random.default_rng(seed + 1).standard_normal(batch + (T, dv))


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("weights", ["zero", "random"])
def test_backward_emulated_neg_inf_after_a_state(emu_bwd, weights):
    """test_gpu_16bit_training_forward's example (s23e) on the emulated kernels, as the bf16 training call runs
    them (tc, chunk 32, the state of the host's ``new_state`` on the prefix's float32 copies): a decay -inf at the
    call's token 3 (global 24) leaves output (3, 5), whose own value is 0, at -inf (the reference's -inf: no output
    gradient there; the array-API path's clamps give -1.2e305), and the gradients are within GRAD_TOL['bfloat16']
    of the oracle."""
    torch = pytest.importorskip("torch")
    P, T = 21, 26
    cur, pre, do = _training_inputs(torch, torch.bfloat16, (), T, P, (5, 7), "zero", weights, 1.0, True, 1)
    f32 = [None if x is None else np.ascontiguousarray(x, dtype=np.float32) for x in pre]
    state = chi.new_state(np, f32[1], f32[2], f32[4], None, 0)
    old = tuple(np.ascontiguousarray(state.tensors[x]) for x in ("m", "n", "S", "z"))
    got, out = _emu_grads(emu_bwd, cur, do, "float32", 32, P, old, tc=True)
    assert cur[4][3] == -np.inf and np.isneginf(out[3, 5]), "the example's cut-off output"
    want, wout = grad_oracle(torch, cur, do, prefix=pre)
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(wout))
    check_grads(got, want, do, GRAD_TOL["bfloat16"], f"tc T={T} P={P} weights={weights}", T)


@pytest.mark.gpu
def test_gpu_state_gradients_take_the_array_api_path():
    """A returned state, or an incoming one that requires grad: the array-API formulation on the
    device (its gradients, the state's included, by torch); the values equal the kernels'."""
    _gpu_ready()
    torch = _torch_cuda()
    arrays = [torch.tensor(x, device="cuda") for x in make(3, (2,), 90, 4, 3, decay="moderate")]
    xs = [x[..., 50:] if x.ndim == 2 else x[..., 50:, :] for x in arrays]
    pre = [x[..., :50] if x.ndim == 2 else x[..., :50, :] for x in arrays]
    _, state = lsattn.loglinear_log_attention(*pre[:4], log_decay=pre[4], return_state=True)
    q = xs[0].clone().requires_grad_(True)
    out, _ = lsattn.loglinear_log_attention(q, *xs[1:4], log_decay=xs[4], state=state, return_state=True)
    assert not _on_kernels(out)
    S = state.tensors["S"].clone().requires_grad_(True)
    st_g = state.__class__(state.op, state.offset, state.batch_shape, state.d_k, state.d_v, state.dtype,
                           dict(state.tensors, S=S))
    out2 = lsattn.loglinear_log_attention(q, *xs[1:4], log_decay=xs[4], state=st_g)
    assert not _on_kernels(out2)
    out2.sum().backward()
    assert S.grad is not None and torch.isfinite(S.grad).all()
    out3 = lsattn.loglinear_log_attention(q, *xs[1:4], log_decay=xs[4], state=state)
    assert _on_kernels(out3)
    assert_close(out3.detach().cpu().numpy(), out2.detach().cpu().numpy(), 1e-10)
