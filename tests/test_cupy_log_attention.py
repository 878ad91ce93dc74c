"""log_attention on the CuPy backend (the exp-kernel kernels in their LOGV mode) against
lsattn.reference.

* CPU (runs in CI): the host logic (``exp_kernel.compute(..., logv=True)``) driven by the NumPy twin
  of the kernels (``test_cupy_backend.Twin``, whose exp-kernel methods transcribe the LOGV mode):
  log values of magnitude up to 1e3, ``-inf`` entries and columns, T not a multiple of the chunk,
  streams and states, d_v above one column block, late value spikes (the exact rows).
* GPU (``@pytest.mark.gpu``; skipped cleanly without CuPy or a CUDA device): the same on the kernels,
  float64 / float32 / bfloat16 / float16; bfloat16 on the tensor-core kernels in LOGV mode
  (``exp_kernel_tc.cu``) against the bound :func:`assert_bf16_log`.

Tolerances: log_attention's promised bound (tests/test_exp_kernel.py), relative to max |log y| and
as an absolute error in log y; infinities must match exactly.
"""
from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import lsattn
from lsattn import reference as ref
from lsattn.backends.cupy import exp_kernel as cek
from lsattn.backends.cupy._arrays import narrow, widen

from helpers import assert_close, cupy_source, emulation
from strategies import batch_shapes, head_dims, magnitudes, seeds, seq_lens, split_points
from test_cupy_backend import BF16, F64, GRAD_TOL, Twin, _cp, _gpu_ready, chunks, ek_inputs, gpu_dtypes


# ---- CPU: the host logic with the twin -----------------------------------------------------------

def lv_inputs(seed, batch, T, dk, dv, scale=1.0, lv_scale=1.0, p_inf=0.0, Tk=None):
    """q, k as :func:`ek_inputs` and log values uniform in [-lv_scale, lv_scale], each ``-inf`` (a zero
    value) with probability ``p_inf``; with ``p_inf > 0`` the last column is all ``-inf``."""
    q, k, v = ek_inputs(seed, batch, T, dk, dv, scale, Tk)
    rng = np.random.default_rng(seed + 1)
    lv = rng.uniform(-lv_scale, lv_scale, v.shape)
    if p_inf:
        lv = np.where(rng.random(lv.shape) < p_inf, -np.inf, lv)
        lv[..., -1] = -np.inf
    return q, k, lv


lv_scales = st.sampled_from([1.0, 30.0, 1e3])


def key_spike(k, lv=None, lv_scale=1.0):
    """A key spike (+60, every feature) at token 2T/3 (T > 2), and in ``lv`` a dominant log value
    (80 + lv_scale, column 0) there: the earlier keys then weigh ~e^-65 while their log values dominate
    the outputs, pair factors e^(lv_s - o_t) of e^65 .. e^69 (in place)."""
    T = k.shape[-2]
    if T > 2:
        k[..., (2 * T) // 3, :] += 60.0
        if lv is not None:
            lv[..., (2 * T) // 3, 0] = 80.0 + lv_scale


#: s12i17's failing draws (batch, T, d_k, d_v, scale, lv_scale, p_inf, P, seed) of the key spike: the float
#: paths capped e^(lv_s - o_t) at e^64 (errors 0.35 .. 24)
SPIKE_CASES = [((), 129, 16, 2, 3.0, 1e3, 0.0, 0, 0), ((), 150, 3, 16, 3.0, 30.0, 0.3, 0, 32),
               ((), 129, 16, 40, 3.0, 1e3, 0.0, 0, 376043), ((2,), 150, 16, 2, 3.0, 1e3, 0.0, 40, 149671270)]


def assert_log_state(tensors, q, k, lv, tol):
    """``tensors`` (m, S, z, n; any array kind) equal the array-API backend's state after q, k, lv."""
    _, st_api = lsattn.log_attention(q, k, lv, return_state=True, backend="array_api")
    for name, mine in zip("mSzn", tensors):
        assert_close(mine, st_api.tensors[name], tol, what=name)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # the reference takes log 0
@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunks, scale=magnitudes, lv_scale=lv_scales,
       p_inf=st.sampled_from([0.0, 0.3]), seed=seeds)
def test_twin_log_attention_matches_reference(batch, T, dk, dv, C, scale, lv_scale, p_inf, seed):
    """log_attention through the host logic and the kernels' LOGV mode (twin): log values of any
    magnitude, -inf entries and columns, T not a multiple of the chunk."""
    q, k, lv = lv_inputs(seed, batch, T, dk, dv, scale, lv_scale, p_inf)
    out, _ = cek.compute(Twin(), q, k, lv, True, None, False, C, logv=True)
    assert_close(out, ref.log_attention(q, k, lv), F64, atol=F64, what=f"T={T} C={C}")


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@given(Tq=st.integers(1, 70), Tk=st.integers(1, 70), C=chunks, lv_scale=lv_scales, p_inf=st.sampled_from([0.0, 0.3]),
       seed=seeds)
def test_twin_log_attention_noncausal(Tq, Tk, C, lv_scale, p_inf, seed):
    q, k, lv = lv_inputs(seed, (2,), Tq, 3, 4, 2.0, lv_scale, p_inf, Tk=Tk)
    out, _ = cek.compute(Twin(), q, k, lv, False, None, False, C, logv=True)
    assert_close(out, ref.log_attention(q, k, lv, causal=False), F64, atol=F64)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@given(T=st.integers(1, 200), C=chunks, lv_scale=lv_scales, seed=seeds, data=st.data())
@settings(max_examples=12)
def test_twin_log_attention_stream_and_state(T, C, lv_scale, seed, data):
    """Streams cut anywhere (pieces of one token: one chunk) equal one call, and the final state is
    the array-API backend's (m, S, z, n)."""
    q, k, lv = lv_inputs(seed, (2,), T, 3, 2, 3.0, lv_scale, 0.2)
    cuts = data.draw(split_points(T, max_splits=5))
    bounds = [0] + cuts + [T]
    outs, state = [], None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        o, state = cek.compute(Twin(), q[..., lo:hi, :], k[..., lo:hi, :], lv[..., lo:hi, :], True, state, True, C,
                               logv=True)
        outs.append(o)
    assert_close(np.concatenate(outs, axis=-2), ref.log_attention(q, k, lv), F64, atol=F64, what=f"cuts={cuts}")
    assert_log_state(state, q, k, lv, F64)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_twin_log_attention_wide_values_and_single_tokens():
    """d_v = 130 (two column blocks: m, z shared, S and n split by columns), a prefix of one token,
    then single-token calls (one chunk each, no decoding kernel), then the rest."""
    q, k, lv = lv_inputs(11, (2,), 45, 3, 130, 2.0, 1e3, 0.2)
    outs, state = [], None
    for lo, hi in ((0, 1), (1, 2), (2, 3), (3, 45)):
        o, state = cek.compute(Twin(), q[..., lo:hi, :], k[..., lo:hi, :], lv[..., lo:hi, :], True, state, True, 16,
                               logv=True)
        outs.append(o)
    assert_close(np.concatenate(outs, axis=-2), ref.log_attention(q, k, lv), F64, atol=F64)
    assert_log_state(state, q, k, lv, F64)


def log_spike_case():
    """Column 0: values e^-700 early in the chunk, e^+700 from token 40 on (a shift over the whole
    chunk underflows every earlier row: the exact path); column 1: zeros (-inf) before token 20;
    a key spike at token 50 as in the exp-kernel case."""
    q, k, lv = lv_inputs(7, (1,), 64, 4, 3)
    lv[..., :40, 0], lv[..., 40:, 0] = -700.0, 700.0
    lv[..., :20, 1] = -np.inf
    k[..., 50, :] = 400.0
    return q, k, lv


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_twin_log_attention_late_spikes():
    q, k, lv = log_spike_case()
    expected = ref.log_attention(q, k, lv)
    assert np.isneginf(expected[..., :20, 1]).all() and expected[..., 39, 0] < -690
    out, _ = cek.compute(Twin(), q, k, lv, True, None, False, 64, logv=True)
    assert_close(out, expected, F64, atol=F64)


def test_bf16_log_attention_takes_the_tensor_core_kernels():
    """Host routing: the bfloat16 forward of log_attention runs the tensor-core kernels in LOGV mode
    (CH = 64 whatever chunk_size, bf16 summaries), whose shared memory holds the column shifts and
    fits; so does its backward (both modes: ekb_dq_tc / ekb_dkdv_tc on fp32 summaries of
    ek_chunk_tc5f) for every head dim up to 128; float16 and the fp32 / fp64 inputs keep the FFMA kernels."""
    from lsattn.backends.cupy._compile import SMEM_MAX, grad_tc, make_config

    for dk, dv in [(1, 2), (16, 16), (33, 100), (64, 64), (128, 128)]:
        for C in (16, 64):
            cfg = make_config("float", dk, dv, C, "bf16", logv=True)
            assert cfg.logv and cfg.CH == 64
            assert cfg.kernel("ek_chunk") == ("ek_chunk_tc5", 128) and cfg.kernel("ek_output") == ("ek_output_tc5", 128)
            assert cfg.kernel("ek_output_f32") == ("ek_output_tc5f", 128)  # the training forward's float32 log y
            plain = make_config("float", dk, dv, C, "bf16")  # exp_kernel_attention's variant
            for name in ("ek_chunk_tc5", "ek_output_tc5"):
                assert plain.smem(name) < cfg.smem(name) <= SMEM_MAX
            for logv in (False, True):
                back = make_config("float", dk, dv, 32, "bf16", grad="exp_kernel", logv=logv)
                assert back.bwd and back.CH == 64 and grad_tc(dk, dv, logv)
                assert [back.kernel(n) for n in ("ek_chunk", "ekb_dq", "ekb_dkdv")] == [
                    ("ek_chunk_tc5f", 128), ("ekb_dq_tc", 128), ("ekb_dkdv_tc", 128)]
                assert max(back.smem(n) for n in ("ek_chunk_tc5f", "ekb_dq_tc", "ekb_dkdv_tc")) <= SMEM_MAX
                f16 = make_config("float", dk, dv, 32, "f16", grad="exp_kernel", logv=logv)
                assert not f16.bwd and f16.kernel("ekb_dq")[0] == "ekb_dq"
            for ta, half in (("float", ""), ("float", "f16"), ("double", "")):
                assert make_config(ta, dk, dv, C, half, logv=True).kernel("ek_output")[0] == "ek_output"


# ---- backward (exp_kernel_bwd.cu in LOGV mode) ---------------------------------------------------------

#: the finite stand-in the gradient oracle uses for log_v = -inf: exp(-1e5 - anything near 1e3) is 0 in float64
ORACLE_NEG = -1e5


def log_grad_oracle(torch, q, k, lv, do, prefix=None, device="cpu", dtype=None, causal=True):
    """Gradients of ``sum(log_attention(q, k, lv) * do)`` (and of the incoming state's m, S, z, n when
    ``prefix`` = (q, k, lv) of the tokens before) by float64 torch autograd: of ``lsattn.reference``
    without a state, of the array-API path with the state's tensors as inputs otherwise.

    The reference takes ``log 0`` where an output has no non-zero visible value, whose gradient is
    NaN; the oracle therefore uses ``ORACLE_NEG`` for ``-inf`` log values (their terms still vanish
    exactly) and zero output gradients where the output is ``-inf`` (it depends on no input: the
    kernels give those zero gradient whatever ``do`` holds). ``dtype``: compute in this torch dtype
    (float32 / bfloat16 inputs rounded first) before the float64 autograd. ``causal=False``: the
    non-causal reference (no prefix).
    Returns (grads [dq, dk, dlv (, dm, dS, dz, dn)] float64 NumPy, output float64 NumPy)."""
    from lsattn.state import State

    from test_cupy_backend import _autograd

    def safe(x):
        return np.where(np.isneginf(x), ORACLE_NEG, x)

    arrays = [q, k, safe(lv)]
    if prefix is None:
        def fn(*x):
            return ref.log_attention(*x, causal=causal)
    else:
        _, st0 = lsattn.log_attention(*[np.asarray(x, np.float64) for x in prefix[:2]] + [safe(prefix[2])],
                                      return_state=True, backend="array_api")
        arrays += [np.asarray(st0.tensors[n], np.float64) for n in "mSzn"]
        P, batch, (dk, dv) = prefix[0].shape[-2], q.shape[:-2], (q.shape[-1], lv.shape[-1])

        def fn(q, k, lv, m, S, z, n):
            state = State("log_attention", P, batch, dk, dv, torch.float64, {"m": m, "S": S, "z": z, "n": n})
            return lsattn.log_attention(q, k, lv, state=state, backend="array_api")

    out = _ref_out(torch, q, k, lv, device, causal) if prefix is None else None
    if out is None:
        _, st = lsattn.log_attention(*prefix, return_state=True, backend="array_api")
        out = np.asarray(lsattn.log_attention(q, k, lv, state=st, backend="array_api"), np.float64)
    do0 = np.where(np.isneginf(out), 0.0, do)
    want, _ = _autograd(fn, arrays, do0, torch, device=device, dtype=dtype)
    return want, out


def _ref_out(torch, q, k, lv, device, causal=True):
    """The reference's float64 output, computed by torch on ``device`` (NumPy float64)."""
    with torch.no_grad():
        xs = [torch.tensor(np.asarray(x, np.float64), device=device) for x in (q, k, lv)]
        return ref.log_attention(*xs, causal=causal).cpu().numpy()


def check_log_grads(got, want, do, tol, what):
    """Each gradient within ``tol * (max |ref| + d_v max |dO|)``: every one is a sum of terms
    ``P_i(t,s) (sum_j g_tj pi_tsj - delta_t)`` or ``g_tj pi_tsj`` with weights in [0, 1]
    (``pi_tsj = P(t,s) v_sj / y_tj``), so ``d_v max |dO|`` is the scale of one term; it matters where
    a gradient cancels to 0."""
    atol = tol * do.shape[-1] * float(np.max(np.abs(do), initial=0.0))
    for name, g, w in zip(["dq", "dk", "dlv", "dm", "dS", "dz", "dn"], got, want):
        assert_close(g, w, tol, atol=atol, what=f"{name} {what}")


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, scale=magnitudes, lv_scale=lv_scales,
       p_inf=st.sampled_from([0.0, 0.3]), P=st.sampled_from([0, 0, 1, 40]), seed=seeds)
@settings(max_examples=12)
def test_twin_log_attention_backward(batch, T, dk, dv, scale, lv_scale, p_inf, P, seed):
    """The backward's host logic and the LOGV mode of the backward kernels (twin) equal float64 torch
    autograd of the reference: log values up to 1e3, -inf entries and columns (exact zero
    gradients), T not a multiple of the chunk, an incoming state (its m, S, z, n get gradients)."""
    torch = pytest.importorskip("torch")
    q, k, lv = lv_inputs(seed, batch, T, dk, dv, scale, lv_scale, p_inf)
    do = np.random.default_rng(seed + 2).standard_normal(batch + (T, dv))
    prefix = init = None
    if P:
        prefix = lv_inputs(seed + 3, batch, P, dk, dv, scale, lv_scale, p_inf)
        _, st0 = lsattn.log_attention(*prefix, return_state=True, backend="array_api")
        init = tuple(np.asarray(st0.tensors[n], np.float64) for n in "mSzn")
    want, out_ref = log_grad_oracle(torch, q, k, lv, do, prefix)
    out, _ = cek.compute(Twin(), q, k, lv, True, init, False, logv=True)
    assert_close(out, out_ref, F64, atol=F64)
    dq, dk_, dlv, dst = cek.backward(Twin(), q, k, lv, init, out, do, P > 0, logv=True)
    assert not np.any(dlv[np.isneginf(lv)]), "-inf log values get exactly zero gradient"
    check_log_grads([dq, dk_, dlv] + (list(dst) if P else []), want, do, GRAD_TOL["float64"], f"T={T} P={P}")


class EmuTC(Twin):
    """The twin (``ek_chunk`` on the widened bf16 inputs, ``ek_scan``, ``ekb_rscan``) with the
    tensor-core backward kernels ``ekb_dq_tc`` / ``ekb_dkdv_tc`` run on the CPU
    (``tests/cuda_emu_ek_bwd.cpp``, built once per session and variant: ``helpers.emulation``)."""

    def _lib(self, cfg):
        caps = [ln for ln in cupy_source("exp_kernel_bwd.cu").splitlines() if ln.startswith("__device__ __forceinline__ ta ex_cap")]
        assert len(caps) == 3, "exp_kernel_bwd.cu's ex_capv, ex_capr, ex_cap (one line each)"
        return emulation("cuda_emu_ek_bwd.cpp", {"CH": cfg.CH, "DKP": cfg.DKP, "DVP": cfg.DVP, "LOGV": int(cfg.logv)},
                         {"KERNEL": cupy_source("exp_kernel_bwd_tc.cu"), "CAPS": "\n".join(caps) + "\n"})

    @staticmethod
    def _args(*xs):
        return [ctypes.c_int(x) if isinstance(x, int) else (None if x is None else x.ctypes.data_as(ctypes.c_void_p))
                for x in xs]

    def ek_chunk(self, cfg, k, v, *args, **kw):
        super().ek_chunk(cfg, widen(np, k, "bf16"), widen(np, v, "bf16"), *args, **kw)

    def ekb_dq(self, cfg, q, k, v, y, do, m_in, S, z, dq, lden, dl, T, DK, DV, n, BH, n_in=None, Wc=None):
        assert cfg.kernel("ekb_dq") == ("ekb_dq_tc", 128)
        self._lib(cfg).run_dq(*self._args(q, k, v, y, do, m_in, S, z, dq, lden, dl, T, DK, DV, n, n_in, Wc, BH),
                              ctypes.c_uint(cfg.smem("ekb_dq_tc")))

    def ekb_dkdv(self, cfg, q, k, v, do, lden, dl, U, Z, m_next, dk, dv, T, DK, DV, n, BH, y=None, Wn=None):
        self._lib(cfg).run_dkdv(*self._args(q, k, v, do, lden, dl, U, Z, m_next, dk, dv, T, DK, DV, n, y, Wn, BH),
                                ctypes.c_uint(cfg.smem("ekb_dkdv_tc")))


def bf16_bits(x):
    """float64 ``x`` rounded to bfloat16: (its 16-bit patterns, the float64 values they hold)."""
    b = narrow(np, np.ascontiguousarray(x, np.float32), "bf16").view(np.uint16)
    return b, widen(np, b, "bf16").astype(np.float64)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@given(logv=st.booleans(), batch=batch_shapes, T=st.one_of(st.integers(1, 80), st.sampled_from([129, 150])),
       dk=st.sampled_from([3, 16, 24]), dv=st.sampled_from([2, 16, 40]), scale=magnitudes, lv_scale=lv_scales,
       p_inf=st.sampled_from([0.0, 0.3]), spike=st.booleans(), P=st.sampled_from([0, 0, 40]), seed=seeds)
@settings(max_examples=6, deadline=None)
# A key spike (+60) behind a dominant log value: pair factors e^(lv_s - o_t) of e^65 .. e^69 (exact rows,
# U'', the state's sum; the incoming state's dS0 on the host), beyond the float cap 64 they had (errors 0.8 .. 24)
@example(logv=True, batch=(), T=129, dk=16, dv=2, scale=3.0, lv_scale=1e3, p_inf=0.0, spike=True, P=0, seed=0)
@example(logv=True, batch=(), T=150, dk=3, dv=16, scale=3.0, lv_scale=30.0, p_inf=0.3, spike=True, P=0, seed=32)
@example(logv=True, batch=(), T=129, dk=16, dv=40, scale=3.0, lv_scale=1e3, p_inf=0.0, spike=True, P=0, seed=376043)
@example(logv=True, batch=(2,), T=150, dk=16, dv=2, scale=3.0, lv_scale=1e3, p_inf=0.0, spike=True, P=40, seed=149671270)
def test_emulated_bf16_backward_tensor_cores(logv, batch, T, dk, dv, scale, lv_scale, p_inf, spike, P, seed):
    """The tensor-core backward kernels (both modes) on the CPU emulation through the backward's host
    logic with bf16 inputs: T within / across chunks of 64, padded head dims, magnitudes, log values up
    to 1e3 with -inf entries and columns, late key / value spikes (the exact rows), an incoming state
    (log_attention, with its gradients). Against float64 autograd of the reference on the rounded
    inputs within ``GRAD_TOL["bfloat16"]`` (log_attention: plus the float32 rounding of log y, as the
    GPU test); -inf log values get exactly zero gradient."""
    torch = pytest.importorskip("torch")
    if shutil.which("g++") is None:
        pytest.skip("no g++ to build the CPU emulation of the kernels")
    from test_cupy_backend import _autograd, check_ek_grads

    seed %= 2**31
    q, k, v = lv_inputs(seed, batch, T, dk, dv, scale, lv_scale, p_inf) if logv else ek_inputs(seed, batch, T, dk, dv, scale)
    if spike:
        key_spike(k, v if logv else None, lv_scale)
    (qb, q), (kb, k), (vb, v), (dob, do) = (bf16_bits(x) for x in (q, k, v, np.random.default_rng(seed + 1).standard_normal(
        batch + (T, dv))))
    prefix = init = None
    if logv and P:
        prefix = [bf16_bits(x)[1] for x in lv_inputs(seed + 3, batch, P, dk, dv, scale, lv_scale, p_inf)]
        _, st0 = lsattn.log_attention(*prefix, return_state=True, backend="array_api")
        lo = -float(np.finfo(np.float32).max) / 8  # the float32 states' "no key / no value yet"
        init = tuple(np.maximum(np.asarray(st0.tensors[n]), lo).astype(np.float32) for n in "mSzn")
    if logv:
        want, out = log_grad_oracle(torch, q, k, v, do, prefix)
        y = out.astype(np.float32)  # the float32 log output the backward reads
    else:
        want, out = _autograd(ref.exp_kernel_attention, [q, k, v], do, torch)
        out = out.detach().numpy()
        y = bf16_bits(out)[0]
    dq, dk_, dv_, dst = cek.backward(EmuTC(), qb, kb, vb, init, y, dob, init is not None, "bf16", logv)
    got = [widen(np, g, "bf16").astype(np.float64) for g in (dq, dk_, dv_)] + [np.asarray(g, np.float64) for g in dst or ()]
    for g in got:
        assert np.isfinite(g).all()
    what = f"logv={logv} T={T} dk={dk} dv={dv} scale={scale} spike={spike} P={P}"
    if logv:
        assert not np.any(got[2][np.isneginf(v)]), "-inf log values get exactly zero gradient"
        finite = [np.abs(x[np.isfinite(x)]).max(initial=0.0) for x in (q, k, v)]
        check_log_grads(got, want, do, GRAD_TOL["bfloat16"] + 16 * float(np.finfo(np.float32).eps) * sum(finite), what)
    else:
        check_ek_grads(got, want, out, do, v, GRAD_TOL["bfloat16"], what)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
def test_twin_log_attention_backward_spikes():
    """Late value spikes (e^-700 before e^+700 in one chunk, zeros before token 20) and a key spike:
    the per-pair exponents inside a chunk stay exact where a chunk-wide value shift would overflow."""
    torch = pytest.importorskip("torch")
    q, k, lv = log_spike_case()
    do = np.random.default_rng(5).standard_normal(lv.shape)
    want, _ = log_grad_oracle(torch, q, k, lv, do)
    out, _ = cek.compute(Twin(), q, k, lv, True, None, False, logv=True)
    got = cek.backward(Twin(), q, k, lv, None, out, do, False, logv=True)[:3]
    check_log_grads(got, want, do, GRAD_TOL["float64"], "spikes")


def float32_tol(*arrays):
    """The float32 gradient bound of log_attention: ``GRAD_TOL["float32"] + 16 eps32 (max |log v| + max |q|
    + max |k|)`` over the finite entries (the kernels compute in float32; exp(log v - log y) carries log y's
    rounding), as :func:`test_gpu_log_attention_grads_against_reference`."""
    finite = [np.abs(x[np.isfinite(x)]).max(initial=0.0) for x in arrays]
    return GRAD_TOL["float32"] + 16 * float(np.finfo(np.float32).eps) * sum(finite)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("batch,T,dk,dv,scale,lv_scale,p_inf,P,seed", SPIKE_CASES)
def test_twin_log_attention_backward_float32_spikes(causal, batch, T, dk, dv, scale, lv_scale, p_inf, P, seed):
    """The float32 backward's formulas (causal: the twin of the FFMA kernels through the host logic, with
    the incoming state's gradients; non-causal: :func:`exp_kernel.backward_noncausal` in NumPy) on
    s12i17's key-spike draws, whose pair factors e^(lv_s - o_t) reach e^65 .. e^69: against float64
    autograd of the reference on the float32 inputs within the float32 bound (the cap of 64 they had
    was off by 0.35 .. 16 here)."""
    torch = pytest.importorskip("torch")
    q, k, lv = lv_inputs(seed, batch, T, dk, dv, scale, lv_scale, p_inf)
    key_spike(k, lv, lv_scale)
    q, k, lv = (x.astype(np.float32) for x in (q, k, lv))
    do = np.random.default_rng(seed + 1).standard_normal(batch + (T, dv)).astype(np.float32)
    r64 = [x.astype(np.float64) for x in (q, k, lv)]
    prefix = init = None
    if P and causal:
        prefix = [x.astype(np.float32).astype(np.float64) for x in lv_inputs(seed + 3, batch, P, dk, dv, scale, lv_scale, p_inf)]
        _, st0 = lsattn.log_attention(*prefix, return_state=True, backend="array_api")
        lo = -float(np.finfo(np.float32).max) / 8
        init = tuple(np.maximum(np.asarray(st0.tensors[n]), lo).astype(np.float32) for n in "mSzn")
    want, _ = log_grad_oracle(torch, *r64, do.astype(np.float64), prefix, causal=causal)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        y, _ = cek.compute(Twin(), q, k, lv, causal, init, False, logv=True)
        if causal:
            dq, dk_, dlv, dst = cek.backward(Twin(), q, k, lv, init, y, do, init is not None, logv=True)
            got = [dq, dk_, dlv] + list(dst or ())
        else:
            got = list(cek.backward_noncausal(np, q, k, lv, y, do, True))
    got = [np.asarray(g, np.float64) for g in got]
    for g in got:
        assert np.isfinite(g).all()
    assert not np.any(got[2][np.isneginf(lv)]), "-inf log values get exactly zero gradient"
    check_log_grads(got, want, do.astype(np.float64), float32_tol(*r64), f"causal={causal} T={T} P={P} seed={seed}")


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@given(Tq=st.integers(1, 70), Tk=st.integers(1, 70), dk=head_dims, dv=head_dims, scale=magnitudes, lv_scale=lv_scales,
       p_inf=st.sampled_from([0.0, 0.3]), logv=st.booleans(), seed=seeds)
@settings(max_examples=12)
def test_noncausal_backward(Tq, Tk, dk, dv, scale, lv_scale, p_inf, logv, seed):
    """``exp_kernel.backward_noncausal`` (the non-causal backward, array operations; NumPy here) equals
    float64 torch autograd of the reference: log_attention (log values up to 1e3, -inf entries and
    columns) and exp_kernel_attention, Tq != Tk."""
    torch = pytest.importorskip("torch")
    q, k, lv = lv_inputs(seed, (2,), Tq, dk, dv, scale, lv_scale, p_inf, Tk=Tk)
    do = np.random.default_rng(seed + 2).standard_normal((2, Tq, dv))
    if logv:
        want, out = log_grad_oracle(torch, q, k, lv, do, causal=False)
    else:
        from test_cupy_backend import _autograd

        lv = np.random.default_rng(seed + 3).standard_normal(lv.shape)  # values of any sign
        want, out = _autograd(lambda *x: ref.exp_kernel_attention(*x, causal=False), [q, k, lv], do, torch)
        out = out.detach().numpy()
    got = cek.backward_noncausal(np, q, k, lv, out, do, logv)
    if logv:
        assert not np.any(got[2][np.isneginf(lv)]), "-inf log values get exactly zero gradient"
        check_log_grads(got, want, do, GRAD_TOL["float64"], f"Tq={Tq} Tk={Tk}")
    else:
        from test_cupy_backend import check_ek_grads

        check_ek_grads(got, want, out, do, lv, GRAD_TOL["float64"], f"Tq={Tq} Tk={Tk}")


@pytest.fixture
def twin_autograd(monkeypatch):
    """``_autograd`` driving the NumPy twin on CPU torch tensors (its ``on_gpu`` replaced): the
    autograd Function's plumbing (inputs, saved tensors, the state's gradients) runs on the CPU."""
    torch = pytest.importorskip("torch")
    import contextlib

    from lsattn.backends.cupy import _autograd

    @contextlib.contextmanager
    def on_twin(like):
        yield (lambda x: (x.detach().numpy(), "")), (lambda a, half: torch.from_numpy(np.ascontiguousarray(a))), Twin()

    monkeypatch.setattr(_autograd, "on_gpu", on_twin)
    return torch, _autograd


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("T,P,lv_scale,causal", [(1, 0, 1.0, True), (37, 0, 1e3, True), (70, 40, 30.0, True),
                                                 (20, 1, 1e3, True), (37, 0, 1e3, False)])
def test_twin_log_attention_autograd(twin_autograd, T, P, lv_scale, causal):
    """The torch autograd Function of the cupy backend (``apply_exp_kernel(..., logv=True)``) on the
    twin: gradients of q, k, log_v and the incoming state's m, S, z, n equal the oracle's, with
    non-zero output gradients at -inf outputs; non-causal."""
    torch, _autograd = twin_autograd
    q, k, lv = lv_inputs(8, (2,), T, 3, 4, 2.0, lv_scale, 0.3)
    do = np.random.default_rng(9).standard_normal(lv.shape)
    prefix = lv_inputs(10, (2,), P, 3, 4, 2.0, lv_scale, 0.3) if P else None
    xs = [torch.tensor(x, requires_grad=True) for x in (q, k, lv)]
    init = None
    if P:
        _, st0 = lsattn.log_attention(*prefix, return_state=True, backend="array_api")
        init = [torch.tensor(np.asarray(st0.tensors[n], np.float64), requires_grad=True) for n in "mSzn"]
    out = _autograd.apply_exp_kernel(*xs, init, None, logv=True, causal=causal)
    out.backward(torch.tensor(do))
    want, out_ref = log_grad_oracle(torch, q, k, lv, do, prefix, causal=causal)
    assert_close(out.detach().numpy(), out_ref, F64, atol=F64)
    got = [x.grad.numpy() for x in xs + (init or [])]
    check_log_grads(got, want, do, GRAD_TOL["float64"], f"T={T} P={P}")


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@pytest.mark.parametrize("causal", [True, False])
def test_twin_log_attention_autograd_16bit(monkeypatch, causal):
    """16-bit inputs through the autograd Function (float16 on the twin, which the host sees as
    ``half = 'f16'``): the forward runs on float32 copies and returns its output rounded to float16,
    the backward reads the forward's float32 output (with |log y| ~ 1e3, the float16 one is off by up
    to 0.25 in log y, i.e. gradients off by e^0.25); gradients of the rounded inputs equal the
    oracle's within the GPU tests' float32 bound."""
    torch = pytest.importorskip("torch")
    import contextlib

    from lsattn.backends.cupy import _autograd

    @contextlib.contextmanager
    def on_twin(like):
        to = lambda x: (x.detach().numpy(), "f16" if x.dtype == torch.float16 else "")  # noqa: E731
        yield to, (lambda a, half: torch.from_numpy(np.ascontiguousarray(a))), Twin()

    monkeypatch.setattr(_autograd, "on_gpu", on_twin)
    q, k, lv = lv_inputs(12, (2,), 70, 3, 4, 2.0, 1e3, 0.3)
    xs = [torch.tensor(x).to(torch.float16).requires_grad_(True) for x in (q, k, lv)]
    rounded = [x.detach().double().numpy() for x in xs]
    do = np.random.default_rng(13).standard_normal(lv.shape)
    out = _autograd.apply_exp_kernel(*xs, None, None, logv=True, causal=causal)
    assert out.dtype == torch.float16
    out.double().backward(torch.tensor(do))
    want, out_ref = log_grad_oracle(torch, *rounded, do, causal=causal)
    assert_close(out.detach().double().numpy(), out_ref, 2.0**-10, atol=1e-3)
    got = [x.grad.double().numpy() for x in xs]
    finite = [np.abs(x[np.isfinite(x)]).max(initial=0.0) for x in rounded]
    check_log_grads(got, want, do, GRAD_TOL["float32"] + 16 * float(np.finfo(np.float32).eps) * sum(finite), f"causal={causal}")


# ---- GPU: the kernels ------------------------------------------------------------------------------

def _log_tol(dtype, q, k):
    """log_attention's promised bound (tests/test_exp_kernel.py): TOL + 2 eps (max |q| + max |k|),
    relative to max |log y| and as an absolute error in log y."""
    eps = float(np.finfo(dtype).eps)
    return (F64 if dtype == "float64" else 1e-5) + 2 * eps * float(np.abs(q).max() + np.abs(k).max())


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@given(batch=batch_shapes, T=seq_lens, dk=head_dims, dv=head_dims, C=chunks, dtype=gpu_dtypes, scale=magnitudes,
       lv_scale=lv_scales, p_inf=st.sampled_from([0.0, 0.3]), seed=seeds)
def test_gpu_log_attention_matches_reference(batch, T, dk, dv, C, dtype, scale, lv_scale, p_inf, seed):
    """log values up to 1e3 in magnitude (float32 too), -inf entries and columns."""
    _gpu_ready()
    q, k, lv = (x.astype(dtype) for x in lv_inputs(seed, batch, T, dk, dv, scale, lv_scale, p_inf))
    want, tol = ref.log_attention(q, k, lv), _log_tol(dtype, q, k)
    out = cek.log_forward(_cp(q, dtype), _cp(k, dtype), _cp(lv, dtype), True, None, False, chunk_size=C)[0]
    assert_close(out.get(), want, tol, atol=tol, what=f"T={T} C={C}")
    out2 = lsattn.log_attention(_cp(q, dtype), _cp(k, dtype), _cp(lv, dtype))  # the automatic choice
    assert_close(out2.get(), want, tol, atol=tol)


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@given(Tq=st.integers(1, 150), Tk=st.integers(1, 150), dtype=gpu_dtypes, lv_scale=lv_scales,
       p_inf=st.sampled_from([0.0, 0.3]), seed=seeds)
def test_gpu_log_attention_noncausal(Tq, Tk, dtype, lv_scale, p_inf, seed):
    _gpu_ready()
    q, k, lv = (x.astype(dtype) for x in lv_inputs(seed, (2,), Tq, 6, 5, 2.0, lv_scale, p_inf, Tk=Tk))
    out = lsattn.log_attention(_cp(q, dtype), _cp(k, dtype), _cp(lv, dtype), causal=False, backend="cupy")
    tol = _log_tol(dtype, q, k)
    assert_close(out.get(), ref.log_attention(q, k, lv, causal=False), tol, atol=tol)


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@given(T=st.integers(2, 300), dtype=gpu_dtypes, lv_scale=lv_scales, seed=seeds, data=st.data())
@settings(max_examples=12)
def test_gpu_log_attention_stream_decode_and_handover(T, dtype, lv_scale, seed, data):
    """Random cuts (single-token steps, an empty first call) with the state moving between cupy and
    array_api; the final state equals the array-API backend's."""
    _gpu_ready()
    q, k, lv = (x.astype(dtype) for x in lv_inputs(seed, (3,), T, 4, 3, 3.0, lv_scale, 0.2))
    cuts = data.draw(split_points(T, max_splits=6))
    bounds = [0, 0] + cuts + [T]
    outs, state = [], None
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        backend = "cupy" if i % 3 != 2 else "array_api"
        o, state = lsattn.log_attention(_cp(q[..., lo:hi, :], dtype), _cp(k[..., lo:hi, :], dtype),
                                        _cp(lv[..., lo:hi, :], dtype), state=state, return_state=True, backend=backend)
        outs.append(o.get())
    tol = _log_tol(dtype, q, k)
    assert_close(np.concatenate(outs, axis=-2), ref.log_attention(q, k, lv), tol, atol=tol, what=f"cuts={cuts}")
    assert_log_state([state.tensors[n] for n in "mSzn"], q, k, lv, tol)


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_log_attention_late_spikes_and_wide_values(dtype):
    """Values e^-700 of a later value of their chunk and zeros before the first non-zero stay exact
    (the exact rows); d_v = 200 (two column blocks), d_k = 128."""
    _gpu_ready()
    q, k, lv = (x.astype(dtype) for x in log_spike_case())
    out = lsattn.log_attention(_cp(q, dtype), _cp(k, dtype), _cp(lv, dtype), backend="cupy")
    tol = _log_tol(dtype, q, k)
    assert_close(out.get(), ref.log_attention(q, k, lv), tol, atol=tol)
    q, k, lv = (x.astype(dtype) for x in lv_inputs(17, (2,), 150, 128, 200, 1.0, 30.0, 0.1))
    out, st = lsattn.log_attention(_cp(q, dtype), _cp(k, dtype), _cp(lv, dtype), return_state=True, backend="cupy")
    tol = _log_tol(dtype, q, k)
    assert_close(out.get(), ref.log_attention(q, k, lv), tol, atol=tol)
    assert_log_state([st.tensors[n] for n in "mSzn"], q, k, lv, tol)


def assert_bf16_log(out, want, what=""):
    """The bound of the bfloat16 tensor-core path in log space, per element:
    ``|log y - ref| <= BF16 + 2^-8 |ref|``, infinities exact. The exp-kernel tensor-core path is held
    to ``BF16 = 2e-2`` relative to max |y|; here every term of y is positive (v = e^lv), so the
    relative errors of the bf16 operands (2^-9 each: exp(k - m), exp(q + mm - R), exp(lv - nn), the
    masked scores, the bf16 summaries) stay relative in num and den, i.e. absolute in log y (a few
    2^-9: BF16), and the output's bf16 rounding adds 2^-9 |log y|."""
    out, want = np.asarray(out, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert out.shape == want.shape and not np.isnan(out).any(), what
    inf = np.isinf(want)
    np.testing.assert_array_equal(out[inf], want[inf], err_msg=f"{what} infinities differ")
    err = np.abs(out[~inf] - want[~inf]) - (BF16 + 2.0**-8 * np.abs(want[~inf]))
    assert err.size == 0 or err.max() <= 0, f"{what} exceeds the bf16 bound by {err.max():.3e}"


def _bf16_log(torch, seed, batch, T, dk, dv, scale, lv_scale, p_inf):
    """bfloat16 CUDA tensors of :func:`lv_inputs` and the float64 arrays they round to."""
    tb = [torch.tensor(x, device="cuda").to(torch.bfloat16) for x in lv_inputs(seed, batch, T, dk, dv, scale, lv_scale, p_inf)]
    return tb, [t.double().cpu().numpy() for t in tb]


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("half", ["bfloat16", "float16"])
def test_gpu_log_attention_half_precision(half):
    """16-bit torch tensors (bf16: the tensor-core kernels; fp16: FFMA kernels, fp32 compute): 16-bit
    outputs of the reference on the rounded inputs within :func:`assert_bf16_log` (bf16) / the
    exp-kernel's fp16 bound 2e-3, -inf entries exact."""
    _gpu_ready()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    dtype = torch.bfloat16 if half == "bfloat16" else torch.float16
    q, k, lv = lv_inputs(31, (2, 2), 300, 64, 64, 0.125, 30.0 if half == "bfloat16" else 5.0, 0.1)
    tb = [torch.tensor(x, device="cuda").to(dtype) for x in (q, k, lv)]
    back = [t.double().cpu().numpy() for t in tb]
    out = lsattn.log_attention(*tb)
    assert out.dtype == dtype
    if half == "bfloat16":
        assert_bf16_log(out.double().cpu().numpy(), ref.log_attention(*back))
    else:
        assert_close(out.double().cpu().numpy(), ref.log_attention(*back), 2e-3, atol=2e-3)


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@given(batch=batch_shapes, T=seq_lens, dk=st.sampled_from([1, 33, 64, 128]), dv=st.sampled_from([2, 64, 100, 200]),
       scale=magnitudes, lv_scale=lv_scales, p_inf=st.sampled_from([0.0, 0.3]), seed=seeds)
def test_gpu_log_attention_bf16_tensor_cores(batch, T, dk, dv, scale, lv_scale, p_inf, seed):
    """The mma.sync kernels in LOGV mode over head dims that pad to every tile width (d_v = 200: two
    column blocks), log values up to 1e3 with -inf entries and columns."""
    _gpu_ready()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    tb, back = _bf16_log(torch, seed, batch or (1,), T, dk, dv, scale, lv_scale, p_inf)
    out = lsattn.log_attention(*tb, backend="cupy")
    assert out.dtype == torch.bfloat16
    assert_bf16_log(out.double().cpu().numpy(), ref.log_attention(*back), f"T={T} dk={dk} dv={dv}")


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_gpu_log_attention_bf16_spikes_and_streams():
    """bfloat16 on the tensor-core kernels: the late-spike case (the exact rows, fp32 from the bf16
    inputs) and a stream cut at 1, 64, 65, 130 tokens (single-token calls, states in float32) equal
    to the reference; the final state equals the array-API backend's on the rounded inputs."""
    _gpu_ready()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    tb = [torch.tensor(x, device="cuda").to(torch.bfloat16) for x in log_spike_case()]
    back = [t.double().cpu().numpy() for t in tb]
    want = ref.log_attention(*back)
    assert np.isneginf(want[..., :20, 1]).all() and want[..., 39, 0] < -690
    assert_bf16_log(lsattn.log_attention(*tb, backend="cupy").double().cpu().numpy(), want, "spikes")
    tb, back = _bf16_log(torch, 41, (2, 3), 200, 64, 64, 1.0, 30.0, 0.2)
    outs, state = [], None
    for lo, hi in zip([0, 1, 64, 65, 130], [1, 64, 65, 130, 200]):
        o, state = lsattn.log_attention(*(t[..., lo:hi, :] for t in tb), state=state, return_state=True, backend="cupy")
        outs.append(o.double().cpu().numpy())
    assert_bf16_log(np.concatenate(outs, axis=-2), ref.log_attention(*back), "stream")
    _, st_api = lsattn.log_attention(*(x.astype(np.float32) for x in back), return_state=True, backend="array_api")
    for name in "mzn":  # shifts exact; S (bf16 products) and z within the bf16 bound
        assert_close(state.tensors[name].cpu().numpy(), st_api.tensors[name], BF16, what=name)
    assert_close(state.tensors["S"].cpu().numpy(), st_api.tensors["S"], BF16, what="S")


# ---- GPU: the backward kernels (torch autograd) ------------------------------------------------------

def _cuda_torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    _gpu_ready()
    return torch


@pytest.mark.gpu
@pytest.mark.parametrize("T,P,scale,lv_scale", [(1, 0, 1.0, 1.0), (37, 0, 1.0, 30.0), (70, 0, 3.0, 1.0), (130, 0, 1.0, 30.0),
                                                (1, 5, 1.0, 1.0), (40, 77, 1.0, 30.0), (70, 64, 2.0, 3.0)])
def test_gpu_log_attention_gradcheck(T, P, scale, lv_scale):
    """gradcheck (float64) through the public causal call, the cupy kernels chosen automatically;
    with an incoming state (after P tokens) its m, S, z, n are inputs too; some -inf log values
    (each column keeps a finite first value, so no output is -inf)."""
    torch = _cuda_torch()
    from lsattn.state import State

    q, k, lv = lv_inputs(3, (2,), T, 3, 2, scale, lv_scale)
    lv[..., 1::3, 0] = -np.inf
    q, k, lv = (torch.tensor(x, device="cuda", requires_grad=True) for x in (q, k, lv))
    assert lsattn.backends.resolve("log_attention", None, q, grad=True).name == "cupy"
    inputs = [q, k, lv]
    if P:
        prefix = [torch.tensor(x, device="cuda") for x in lv_inputs(4, (2,), P, 3, 2, scale, lv_scale)]
        _, st0 = lsattn.log_attention(*prefix, return_state=True)
        inputs += [st0.tensors[n].clone().requires_grad_(True) for n in "mSzn"]

    def f(q, k, lv, *mSzn):
        state = None if not mSzn else State("log_attention", P, (2,), 3, 2, torch.float64, dict(zip("mSzn", mSzn)))
        return lsattn.log_attention(q, k, lv, state=state)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    f(*inputs).sum().backward()
    assert not lv.grad[torch.isneginf(lv)].any(), "-inf log values get exactly zero gradient"


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("T,scale,lv_scale,p_inf", [(2048, 1.0, 1.0, 0.0), (1000, 3.0, 1e3, 0.0), (777, 1.0, 30.0, 0.2),
                                                    (300, 0.125, 1e3, 0.3)])
def test_gpu_log_attention_grads_against_reference(dtype, T, scale, lv_scale, p_inf):
    """B=2, H=2, d=64: dq, dk, d log_v against float64 autograd of the reference on the same
    (rounded) inputs; log values up to 1e3, -inf entries and columns (exactly zero gradients, also
    where the output gradient is non-zero at a -inf output), no overflow or NaN. Bound:
    ``GRAD_TOL[dtype] + 16 eps32 (max |log v| + max |q| + max |k|)``: the kernels compute in float32,
    and exp(log v - log y) carries log y's rounding."""
    torch = _cuda_torch()
    q, k, lv = lv_inputs(5, (2, 2), T, 64, 64, scale, lv_scale, p_inf)
    td = getattr(torch, dtype)
    xs = [torch.tensor(x, device="cuda").to(td).requires_grad_(True) for x in (q, k, lv)]
    do = np.random.default_rng(1).standard_normal(lv.shape)
    out = lsattn.log_attention(*xs)
    assert out.dtype == td
    (out.double() * torch.tensor(do, device="cuda")).sum().backward()
    got = [x.grad.double().cpu().numpy() for x in xs]
    rounded = [x.detach().double().cpu().numpy() for x in xs]
    want, _ = log_grad_oracle(torch, *rounded, do, device="cuda")
    for g in got:
        assert np.isfinite(g).all()
    assert not np.any(got[2][np.isneginf(rounded[2])]), "-inf log values get exactly zero gradient"
    finite = [np.abs(x[np.isfinite(x)]).max(initial=0.0) for x in rounded]
    tol = GRAD_TOL[dtype] + 16 * float(np.finfo(np.float32).eps) * sum(finite)
    check_log_grads(got, want, do, tol, f"{dtype} T={T} lv_scale={lv_scale}")


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@given(op=st.sampled_from(["log_attention", "exp_kernel_attention"]), batch=batch_shapes,
       T=st.one_of(seq_lens, st.sampled_from([129, 300])), dk=st.sampled_from([1, 24, 64]),
       dv=st.sampled_from([2, 64]), scale=magnitudes, lv_scale=lv_scales, p_inf=st.sampled_from([0.0, 0.3]),
       spike=st.booleans(), seed=seeds)
@example(op="log_attention", batch=(2,), T=129, dk=128, dv=128, scale=1.0, lv_scale=30.0, p_inf=0.3, spike=True, seed=3)
@settings(deadline=None)
def test_gpu_bf16_backward_tensor_cores(op, batch, T, dk, dv, scale, lv_scale, p_inf, spike, seed):
    """The bf16 backward on tensor cores (``exp_kernel_bwd_tc.cu``, both modes) over head dims that
    pad to 16, 32, 64 (and one example at 128), T within / across chunks of 64, magnitudes, log values
    up to 1e3 with -inf entries and columns; ``spike``: a late key (and, log_attention, value) spike inside a chunk,
    whose earlier rows take the exact path. Against float64 autograd of the reference on the rounded
    inputs within ``GRAD_TOL["bfloat16"]`` (plus, log_attention, the float32 rounding of log y as in
    :func:`test_gpu_log_attention_grads_against_reference`); -inf log values get exactly zero gradient."""
    torch = _cuda_torch()
    from lsattn.backends.cupy._compile import grad_tc
    from test_cupy_backend import _autograd, check_ek_grads

    logv = op == "log_attention"
    batch = batch or (1,)
    q, k, lv = lv_inputs(seed % 2**31, batch, T, dk, dv, scale, lv_scale, p_inf) if logv else \
        ek_inputs(seed % 2**31, batch, T, dk, dv, scale)
    if spike and T > 2:
        s = (2 * T) // 3
        k[..., s, :] += 60.0
        if logv:
            lv[..., s, 0] = 80.0 + lv_scale
    assert grad_tc(dk, dv, logv)
    xs = [torch.tensor(x, device="cuda").to(torch.bfloat16).requires_grad_(True) for x in (q, k, lv)]
    do = np.random.default_rng(seed % 2**31 + 1).standard_normal(batch + (T, dv))
    out = getattr(lsattn, op)(*xs)
    assert out.dtype == torch.bfloat16
    (out.double() * torch.tensor(do, device="cuda")).sum().backward()
    got = [x.grad.double().cpu().numpy() for x in xs]
    rounded = [x.detach().double().cpu().numpy() for x in xs]
    for g in got:
        assert np.isfinite(g).all()
    what = f"{op} T={T} dk={dk} dv={dv} scale={scale} spike={spike}"
    if logv:
        want, _ = log_grad_oracle(torch, *rounded, do, device="cuda")
        assert not np.any(got[2][np.isneginf(rounded[2])]), "-inf log values get exactly zero gradient"
        finite = [np.abs(x[np.isfinite(x)]).max(initial=0.0) for x in rounded]
        check_log_grads(got, want, do, GRAD_TOL["bfloat16"] + 16 * float(np.finfo(np.float32).eps) * sum(finite), what)
    else:
        want, ref_out = _autograd(ref.exp_kernel_attention, rounded, do, torch, device="cuda")
        check_ek_grads(got, want, ref_out.detach().cpu().numpy(), do, rounded[2], GRAD_TOL["bfloat16"], what)


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:overflow:RuntimeWarning")
@given(causal=st.booleans(), batch=batch_shapes, T=st.one_of(st.integers(3, 80), st.sampled_from([129, 150, 300])),
       dk=st.sampled_from([3, 16]), dv=st.sampled_from([2, 16, 40]), scale=magnitudes, lv_scale=st.sampled_from([30.0, 1e3]),
       p_inf=st.sampled_from([0.0, 0.3]), P=st.sampled_from([0, 40]), seed=seeds)
@example(causal=True, batch=(), T=129, dk=16, dv=2, scale=3.0, lv_scale=1e3, p_inf=0.0, P=0, seed=0)
@example(causal=True, batch=(), T=150, dk=3, dv=16, scale=3.0, lv_scale=30.0, p_inf=0.3, P=0, seed=32)
@example(causal=True, batch=(), T=129, dk=16, dv=40, scale=3.0, lv_scale=1e3, p_inf=0.0, P=0, seed=376043)
@example(causal=True, batch=(2,), T=150, dk=16, dv=2, scale=3.0, lv_scale=1e3, p_inf=0.0, P=40, seed=149671270)
@example(causal=False, batch=(), T=150, dk=3, dv=16, scale=3.0, lv_scale=30.0, p_inf=0.3, P=0, seed=32)
@settings(max_examples=6, deadline=None)
def test_gpu_log_attention_float32_spikes(causal, batch, T, dk, dv, scale, lv_scale, p_inf, P, seed):
    """float32 on the FFMA backward kernels (causal, an incoming state's gradients with P) and
    ``backward_noncausal``, behind a key spike (:func:`key_spike`: pair factors e^(lv_s - o_t) of e^65 ..
    e^69, beyond the cap of 64 the kernels had): against float64 autograd of the reference on the float32
    inputs within the float32 bound (:func:`float32_tol`); log values up to 1e3 with -inf entries and
    columns (exactly zero gradients)."""
    torch = _cuda_torch()
    from lsattn.state import State

    seed %= 2**31
    batch = batch or (1,)
    q, k, lv = lv_inputs(seed, batch, T, dk, dv, scale, lv_scale, p_inf)
    key_spike(k, lv, lv_scale)
    q, k, lv = (x.astype(np.float32).astype(np.float64) for x in (q, k, lv))
    do = np.random.default_rng(seed + 1).standard_normal(batch + (T, dv)).astype(np.float32).astype(np.float64)
    xs = [torch.tensor(x, device="cuda", dtype=torch.float32, requires_grad=True) for x in (q, k, lv)]
    prefix, inputs, state = None, list(xs), None
    if P and causal:
        prefix = [x.astype(np.float32).astype(np.float64) for x in lv_inputs(seed + 3, batch, P, dk, dv, scale, lv_scale, p_inf)]
        _, st0 = lsattn.log_attention(*prefix, return_state=True, backend="array_api")
        lo = -float(np.finfo(np.float32).max) / 8  # the float32 states' "no key / no value yet"
        ts = {n: torch.tensor(np.maximum(np.asarray(st0.tensors[n]), lo), device="cuda", dtype=torch.float32,
                              requires_grad=True) for n in "mSzn"}
        inputs += list(ts.values())
        state = State("log_attention", P, batch, dk, dv, torch.float32, ts)
    out = lsattn.log_attention(*xs, causal=causal, state=state)
    (out.double() * torch.tensor(do, device="cuda")).sum().backward()
    got = [x.grad.double().cpu().numpy() for x in inputs]
    want, _ = log_grad_oracle(torch, q, k, lv, do, prefix, device="cuda", causal=causal)
    for g in got:
        assert np.isfinite(g).all()
    assert not np.any(got[2][np.isneginf(lv)]), "-inf log values get exactly zero gradient"
    check_log_grads(got, want, do, float32_tol(q, k, lv), f"causal={causal} T={T} dk={dk} dv={dv} P={P} seed={seed}")


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_gpu_log_attention_backward_spikes(dtype):
    """The late-spike case (values e^-700 before e^+700 in one chunk, zeros, a key spike); bfloat16:
    the tensor-core backward's exact rows, against the oracle on the rounded inputs."""
    torch = _cuda_torch()
    xs = [torch.tensor(x, device="cuda").to(getattr(torch, dtype)).requires_grad_(True) for x in log_spike_case()]
    q, k, lv = (x.detach().double().cpu().numpy() for x in xs)
    do = np.random.default_rng(5).standard_normal(lv.shape)
    (lsattn.log_attention(*xs).double() * torch.tensor(do, device="cuda")).sum().backward()
    want, _ = log_grad_oracle(torch, q, k, lv, do)
    tol = GRAD_TOL["float64"] if dtype == "float64" else GRAD_TOL[dtype] + 16 * float(np.finfo(np.float32).eps) * 1100
    check_log_grads([x.grad.double().cpu().numpy() for x in xs], want, do, tol, dtype)


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("op", ["log_attention", "exp_kernel_attention"])
def test_gpu_noncausal_backward(op):
    """Non-causal calls that require grad (kernels forward, ``backward_noncausal`` on CuPy): gradcheck
    in float64 with Tq != Tk, and float32 / bfloat16 at d = 64 against float64 autograd of the
    reference (log values up to 1e3 with -inf entries and columns for log_attention)."""
    torch = _cuda_torch()
    fn = getattr(lsattn, op)
    q, k, lv = lv_inputs(21, (2,), 9, 3, 2, 2.0, 30.0, Tk=13)
    if op == "log_attention":
        lv[..., 1::3, 0] = -np.inf
    xs = [torch.tensor(x, device="cuda", requires_grad=True) for x in (q, k, lv)]
    assert torch.autograd.gradcheck(lambda *x: fn(*x, causal=False), xs, eps=1e-6, atol=1e-7, rtol=1e-5)
    for dtype in ("float32", "bfloat16"):
        logv = op == "log_attention"
        q, k, lv = lv_inputs(22, (2, 2), 300, 64, 64, 0.125, 1e3 if logv else 1.0, 0.3 if logv else 0.0, Tk=500)
        td = getattr(torch, dtype)
        xs = [torch.tensor(x, device="cuda").to(td).requires_grad_(True) for x in (q, k, lv)]
        do = np.random.default_rng(23).standard_normal((2, 2, 300, 64))
        out = fn(*xs, causal=False)
        assert out.dtype == td
        out.double().backward(torch.tensor(do, device="cuda"))
        got = [x.grad.double().cpu().numpy() for x in xs]
        rounded = [x.detach().double().cpu().numpy() for x in xs]
        finite = [np.abs(x[np.isfinite(x)]).max(initial=0.0) for x in rounded]
        tol = GRAD_TOL[dtype] + 16 * float(np.finfo(np.float32).eps) * sum(finite)
        if op == "log_attention":
            want, _ = log_grad_oracle(torch, *rounded, do, device="cuda", causal=False)
            assert not np.any(got[2][np.isneginf(rounded[2])])
            check_log_grads(got, want, do, tol, dtype)
        else:
            from test_cupy_backend import _autograd, check_ek_grads

            want, ref_out = _autograd(lambda *x: ref.exp_kernel_attention(*x, causal=False), rounded, do, torch, device="cuda")
            check_ek_grads(got, want, ref_out.detach().cpu().numpy(), do, rounded[2], tol, dtype)
