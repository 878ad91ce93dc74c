"""Torch autograd for the CuPy kernels: ``loglinear_attention``, ``exp_kernel_attention`` /
``log_attention`` (causal: backward kernels; non-causal: ``exp_kernel.backward_noncausal``, CuPy
array operations on the one summary) and the chunk scan of ``loglinear_gated_delta``, forward and
backward on the GPU.

``apply_loglinear`` / ``apply_exp_kernel`` run the forward kernels and record a
``torch.autograd.Function`` whose backward is ``loglinear.backward`` / ``exp_kernel.backward``
(the host logic, tested on the CPU with the kernels' NumPy twin) on ``loglinear_bwd.cu`` /
``exp_kernel_bwd.cu`` (``log_attention``: its LOGV mode), computing in float32 for 16-bit inputs
(log-linear: from float32 copies made for the backward; ``log_attention``: the forward's; exp-kernel:
read as such) and in float64 for float64; bfloat16 exp-kernel / ``log_attention`` backwards run on
tensor cores (``exp_kernel_bwd_tc.cu``) reading the bf16 inputs. The backward of ``log_attention``
needs log y to float32 accuracy (a 16-bit log output carries an absolute error ``|log y| 2^-9`` into
every ``exp(log v - log y)``): bf16 calls that record it run the tensor-core forward writing the log
output in float32 (``ek_output_tc5f``), keep that and return it rounded; float16 calls (and
non-causal exp-kernel ones) run their forward on float32 copies and keep them and the float32 output
(the FFMA kernels reading 16-bit inputs measured ~1.5x slower than on float32 copies: benchmarks/NOTES.md).

``apply_gated_delta_forms`` / ``apply_gated_delta_scan``: the WY forms (``gd_forms``, backward
``gd_forms_bwd`` through ``gated_delta_bwd.forms_backward``) and the chunk scan (``gd_scan``, backward
``gd_scan_bwd``) of ``loglinear_gated_delta`` (``gated_delta_bwd.py``).

Saved for the backward (log-linear, exp-kernel): the inputs, the incoming state and the output, O(T (d_k + d_v + L)); the
backward's temporaries are one ``d_k x d_v`` matrix per chunk, never ``T d_k d_v``. torch is
imported here only, when a CUDA tensor that requires grad arrives.
"""
from __future__ import annotations

import functools

import numpy as np

from . import exp_kernel as _ek, loglinear as _ll
from ._arrays import inputs, on_gpu
from ._compile import grad_tc

__all__ = ["apply_loglinear", "apply_exp_kernel", "apply_gated_delta_forms", "apply_gated_delta_scan",
           "apply_gated_delta_s16"]

#: the Gated DeltaNet scan's forward adds its level reads into gd_forms' intra output in place (a forms output
#: that nothing saves: its gradient is the output's; the scan's output shares its memory) instead of into a copy of
#: it (False: the copy, for A/B timing; s19g16)
SCAN_IN_PLACE = True


@functools.lru_cache(maxsize=None)
def _function():
    import torch

    class LogLinear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, a, lam, old, chunk_size, p):
            with on_gpu(q) as (to_cp, back, ops):
                args, half = inputs(to_cp, (q, k, v, a, lam))
                old_cp = None if old is None else to_cp(old.detach())[0]
                out, _ = _ll.compute(ops, *args, chunk_size, p, old_cp, False, half)
                out = back(out, half)
            ctx.save_for_backward(q, k, v, a, lam, old, out)
            ctx.chunk_size, ctx.p = chunk_size, p
            return out

        @staticmethod
        def backward(ctx, do):
            q, k, v, a, lam, old, out = ctx.saved_tensors
            # 16-bit inputs as float32 copies: the FFMA backward kernels reading bf16 as such measured
            # ~45% slower at T >= 8K (benchmarks/NOTES.md), for ~0.1 GB less peak memory at T = 8K
            f = (lambda x: x.detach().contiguous()) if q.dtype == torch.float64 else (lambda x: x.detach().float().contiguous())  # noqa: E731
            with on_gpu(q) as (to_cp, back, ops):
                arrays, half = inputs(to_cp, [f(x) for x in (q, k, v, a, lam)])
                out_cp, do_cp = (to_cp(f(x))[0] for x in (out, do))
                old_cp = None if old is None else to_cp(old.detach().contiguous())[0]
                grads = _ll.backward(ops, *arrays, old_cp, out_cp, do_cp, ctx.chunk_size, ctx.p,
                                     old is not None and ctx.needs_input_grad[5], half)
                kinds = (half, half, half, "", "", "")  # dq, dk, dv in the inputs' kind; the rest float
                # contiguous before DLPack: the reverse cumsum's flip has negative strides
                grads = [None if g is None else back(ops.xp.ascontiguousarray(g), h) for g, h in zip(grads, kinds)]
            cast = lambda g, x: None if g is None else g.to(x.dtype)  # noqa: E731
            return tuple(cast(g, x) for g, x in zip(grads, (q, k, v, a, lam, old))) + (None, None)

    return LogLinear


def apply_loglinear(q, k, v, a, lam, old, chunk_size, p):
    """``loglinear_attention``'s output on CUDA torch tensors, differentiable through the kernels
    (old: the incoming state's levels or None)."""
    return _function().apply(q, k, v, a, lam, old, chunk_size, p)


@functools.lru_cache(maxsize=None)
def _exp_function():
    import torch

    class ExpKernel(torch.autograd.Function):
        """``exp_kernel_attention`` (v, y) or, ``logv``, ``log_attention`` (log values, log output; init
        with n0)."""

        @staticmethod
        def forward(ctx, q, k, v, m0, S0, z0, n0, chunk_size, logv, causal, starts):
            # 16-bit log_attention (its backward needs the float32 log output) and non-causal calls (no
            # 16-bit entry for the one-summary read): from float32 copies, the float32 output kept
            wide = q.dtype in (torch.float16, torch.bfloat16) and (logv or not causal)
            # bf16 causal log_attention whose backward runs on tensor cores: the tensor-core forward on the
            # bf16 inputs writing the log output in float32 (ek_output_tc5f); no float32 copies
            tc = wide and causal and q.dtype == torch.bfloat16 and grad_tc(q.shape[-1], v.shape[-1], logv)
            xs = (q, k, v) if tc or not wide else tuple(x.detach().float() for x in (q, k, v))
            with on_gpu(q) as (to_cp, back, ops):
                args, half = inputs(to_cp, xs)
                init = None if m0 is None else tuple(to_cp(x.detach())[0] for x in _init(m0, S0, z0, n0, logv))
                segs = None if starts is None else (starts, ops.seg_tokens(starts, args[0]))  # packed segments
                out, _ = _ek.compute(ops, *args, causal, init if causal else None, False, chunk_size, half, logv, tc,
                                     segs=segs)
                out = back(out, "" if tc else half)
            ctx.save_for_backward(*xs, m0, S0, z0, n0, out)  # wide: the float32 copies
            ctx.chunk_size, ctx.logv, ctx.causal, ctx.dtype, ctx.starts = chunk_size, logv, causal, q.dtype, starts
            return out.to(q.dtype) if wide else out

        @staticmethod
        def backward(ctx, do):
            q, k, v, m0, S0, z0, n0, out = ctx.saved_tensors  # 16-bit log_attention, non-causal: float32 copies
            logv, causal = ctx.logv, ctx.causal
            f = lambda x: x.detach().contiguous()  # noqa: E731
            with on_gpu(q) as (to_cp, back, ops):
                # do in the inputs' kind (the tensor-core log_attention backward: bf16 q, k, v, do, float32 out)
                arrays, half = inputs(to_cp, [f(x) for x in (q, k, v, out, do.to(q.dtype))])
                init = None if m0 is None else tuple(to_cp(f(x))[0] for x in _init(m0, S0, z0, n0, logv))
                want = m0 is not None and any(ctx.needs_input_grad[3:7])
                if causal:
                    dq, dk, dv, dst = _ek.backward(ops, *arrays[:3], init, *arrays[3:], want, half, logv, ctx.starts)
                else:
                    (dq, dk, dv), dst = _ek.backward_noncausal(ops.xp, *arrays, logv), None
                grads = [back(g, half) for g in (dq, dk, dv)]
                grads += [None if dst is None or i >= len(dst) else back(dst[i], "") for i in range(4)]
            cast = lambda g, x: None if g is None or x is None else g.to(x.dtype)  # noqa: E731
            grads = [g.to(ctx.dtype) for g in grads[:3]] + [cast(g, x) for g, x in zip(grads[3:], (m0, S0, z0, n0))]
            return tuple(grads) + (None, None, None, None)

    return ExpKernel


def _init(m0, S0, z0, n0, logv):
    return (m0, S0, z0, n0) if logv else (m0, S0, z0)


def apply_exp_kernel(q, k, v, init, chunk_size, logv=False, causal=True, starts=None):
    """``exp_kernel_attention``'s output on CUDA torch tensors (``logv``: ``log_attention``'s, from
    log values), differentiable through the kernels (init: the incoming state's (m, S, z) /
    (m, S, z, n) or None; causal only). Non-causal: the backward is ``exp_kernel.backward_noncausal``.
    starts: None, or the offsets (N + 1,) int64 (host) of packed segments (causal, no init): the
    forward's segment masks, the backward on a chunk-aligned layout (``exp_kernel.backward``)."""
    m0, S0, z0, n0 = (None,) * 4 if init is None else tuple(init) + (None,) * (4 - len(init))
    return _exp_function().apply(q, k, v, m0, S0, z0, n0, chunk_size, logv, causal, starts)


@functools.lru_cache(maxsize=None)
def _gd_function():
    import torch

    from . import gated_delta as _gd, gated_delta_bwd as _gdb

    class GatedDeltaScan(torch.autograd.Function):
        """The chunk scan of ``loglinear_gated_delta`` (``gd_scan``) and its backward (``gd_scan_bwd``; where
        ``gated_delta_bwd.scan_tier`` plans the two-tier form, ``tier_backward`` on the forward's Qp, Z, Sb)."""

        @staticmethod
        def forward(ctx, qe, ek, ph, H, g, lam, intra, old, sc, context):
            xs = [None if x is None else x.detach().contiguous() for x in (qe, ek, ph, H, g, lam, intra, old)]
            tier = _gdb.scan_tier(sc, old, qe.shape[-1], intra.shape[-1])
            with context(qe) as (to_cp, back, ops):
                cps = [None if x is None else to_cp(x)[0] for x in xs]
                if tier is None:
                    out = back(_gdb.scan(ops, sc, *cps, in_place=SCAN_IN_PLACE), "")
                    kept = []
                else:  # the two-tier scan keeping Qp, Z, Sb for the backward (saved as torch tensors: freed after it
                    # unless the graph is retained)
                    out, kept = _gdb.scan_tiers(ops, sc, tier, *cps[:7], in_place=SCAN_IN_PLACE)
                    out, kept = back(out, ""), _tier_kept(ops.xp, back, kept)
            ctx.save_for_backward(*xs[:6], xs[7], *kept)
            ctx.sc, ctx.context, ctx.tier = sc, context, tier
            return out

        @staticmethod
        def backward(ctx, dout):
            xs = list(ctx.saved_tensors)
            with ctx.context(xs[0]) as (to_cp, back, ops):
                cps = [None if x is None else to_cp(x)[0] for x in xs[:7] + [dout.contiguous()]]
                if ctx.tier is None:
                    grads = _gdb.scan_backward(ops, ctx.sc, *cps)
                else:
                    kept = [to_cp(x)[0] for x in xs[7:]]
                    grads = _gdb.tier_backward(ops, ctx.sc, ctx.tier, kept, *cps[:6], cps[7]) + (None,)
                grads = [None if x is None else back(ops.xp.ascontiguousarray(x), "") for x in grads]
            dqe, dek, dph, dH, dg, dlam, dold = grads
            return dqe, dek, dph, dH, dg, dlam, dout, dold, None, None

    class GatedDeltaForms(torch.autograd.Function):
        """The WY forms of ``loglinear_gated_delta`` (``gd_forms``) and their backward (``forms_backward``).
        bfloat16 inputs (``sc.half``): read as they are (saved as they are), the forms in float32 and, a
        seventh output, gd_forms' float32 copy of lam (the scan's), whose gradient gd_forms_bwd adds into lam's;
        the input gradients in bfloat16, rounded once by gd_forms_bwd."""

        @staticmethod
        def forward(ctx, q, k, v, a, beta, lam, sc, context, check):
            # (bfloat16: 16-byte aligned, as ``_arrays.inputs`` keeps them for gd_forms' tensor-core tiles)
            xs = [_aligned(x.detach().contiguous(), sc.half) for x in (q, k, v, a, beta, lam)]
            with context(q) as (to_cp, back, ops):
                cps = [to_cp(x)[0] for x in xs]
                lamw = ops.xp.empty(cps[5].shape, dtype=ops.xp.float32) if sc.half else None
                bad = None if check is None else np.uint64(check.pointer())
                xo = _gdb.forms_x(ops, sc, cps[0].shape[0])  # (FORMS_X_SAVED: X kept for gd_forms_bwd, else None)
                outs = _gd.forms(ops, sc.fcfg, *cps, sc.p, lamw, bad, xo=xo)
                if check is not None:  # the prologue's finiteness check, answered by gd_forms
                    check.launched()
                outs = tuple(back(x, "") for x in outs + (() if lamw is None else (lamw,)))
                xkept = [] if xo is None else [back(xo, "")]
            ctx.save_for_backward(*xs, *xkept)
            ctx.sc, ctx.context = sc, context
            return outs

        @staticmethod
        def backward(ctx, *grads):
            xs = ctx.saved_tensors
            sc = ctx.sc
            with ctx.context(xs[0]) as (to_cp, back, ops):
                cps = [to_cp(x)[0] for x in xs]
                xin = cps.pop() if sc.xs else None  # (the forward's X: FORMS_X_SAVED)
                gs = [None if g is None else to_cp(g.contiguous())[0] for g in grads[:6]]
                dlw = to_cp(grads[6].contiguous())[0] if len(grads) > 6 and grads[6] is not None else None
                back_grads = tuple(back(x, sc.half) for x in _gdb.forms_backward(ops, sc, *cps, gs, dlw, xin=xin))
            return back_grads + (None, None, None)

    class GatedDeltaS16(torch.autograd.Function):
        """bfloat16 inputs on the two-tier path with ``gated_delta_bwd.S16_TRAIN``: ``gd_forms`` and the two-tier scan of
        the GD_S16 build (``sc.cfg.s16``), the forms' qeff, e^G K, phi, H kept as bfloat16 (beside the inputs, g and lam's
        float32 copy) for the backward: ``gd_scan_bwd_x1`` (its GD_S16 build reads them; with
        ``gated_delta_bwd.TIER_BWD`` the two-tier kernels' backwards ``tier_backward`` on the forward's Qp, Z, Sb
        instead), then ``gd_forms_bwd_x1``
        (the intra output's gradient the scan's output gradient, lam's float32 one added as ``dlw``). The output is
        the scan's (BH, n, C, d_v) float32, or where ``gated_delta_bwd.train_o16`` gd_tier3's (BH, T, d_v) bfloat16
        (no cast for torch to record; its gradient read as bfloat16 by K1, K4 and gd_forms_bwd_x1)."""

        @staticmethod
        def forward(ctx, q, k, v, a, beta, lam, sc, context, check):
            xs = [_aligned(x.detach().contiguous(), sc.half) for x in (q, k, v, a, beta, lam)]
            # gd_forms on the inputs' pointers first (``gated_delta.TRAIN_DIRECT``; None: through CuPy below)
            pre = _gd.train_forms(sc, xs, check) if context is on_gpu else None
            with context(q) as (to_cp, back, ops):
                xp = ops.xp
                if pre is None:
                    cps = [to_cp(x)[0] for x in xs]
                    lamw = xp.empty(cps[5].shape, dtype=xp.float32)
                    bad = None if check is None else np.uint64(check.pointer())
                    xo = _gdb.forms_x(ops, sc, cps[0].shape[0])  # (FORMS_X_SAVED: X kept for gd_forms_bwd_x1, else None)
                    qe, ek, ph, H, g, intra = _gd.forms(ops, sc.fcfg, *cps, sc.p, lamw, bad, xo=xo)
                    if check is not None:  # the prologue's finiteness check, answered by gd_forms
                        check.launched()
                else:  # (qe, ek, ph, H as the uint16 patterns forms returns)
                    qe, ek, ph, H, g, intra, lamw, xo = [None if x is None else to_cp(x)[0] for x in pre]
                    qe, ek, ph, H = (x.view(xp.uint16) for x in (qe, ek, ph, H))
                tier = _gdb.scan_tier(sc, None, qe.shape[-1], intra.shape[-1])
                if tier is None:
                    out = back(_gdb.scan(ops, sc, qe, ek, ph, H, g, lamw, intra, None, in_place=True), "")
                    tiers = []
                else:  # the two-tier scan keeping Qp, Z, Sb for the backward (train_o16: gd_tier3's bfloat16 output)
                    o16 = _gdb.train_o16(sc, tier)
                    out, tiers = _gdb.scan_tiers(ops, sc, tier, qe, ek, ph, H, g, lamw, intra, in_place=True, o16=o16)
                    out = back(out.view(xp.int16), "bf16") if o16 else back(out, "")
                    tiers = _tier_kept(xp, back, tiers)
                if pre is None:
                    kept = [back(x.view(xp.int16), "bf16") for x in (qe, ek, ph, H)] + [back(g, ""), back(lamw, "")]
                    xkept = [] if xo is None else [back(xo, "")]
                else:  # (the tensors themselves)
                    kept, xkept = pre[:5] + [pre[6]], [] if pre[7] is None else [pre[7]]
            ctx.save_for_backward(*xs, *kept, *tiers, *xkept)
            ctx.sc, ctx.context, ctx.tier = sc, context, tier
            return out

        @staticmethod
        def backward(ctx, dout):
            xs = ctx.saved_tensors
            sc = ctx.sc
            with ctx.context(xs[0]) as (to_cp, back, ops):
                cps = [to_cp(x)[0] for x in xs]
                xin = cps.pop() if sc.xs else None  # (the forward's X: FORMS_X_SAVED)
                if dout.dtype == torch.bfloat16:  # (train_o16: (BH, T, d_v), 16-byte aligned as the kernels load it)
                    d = _gdb.bf16_dout(ops.xp, to_cp(_aligned(dout.contiguous(), "bf16"))[0], sc.T, sc.n, sc.cfg.CH)
                else:
                    d = to_cp(dout.contiguous())[0]
                if ctx.tier is None:
                    dqe, dek, dph, dH, dg, dlam, _ = _gdb.scan_backward(ops, sc, *cps[6:12], None, d)
                else:
                    dqe, dek, dph, dH, dg, dlam = _gdb.tier_backward(ops, sc, ctx.tier, cps[12:], *cps[6:12], d)
                grads = _gdb.forms_backward(ops, sc, *cps[:6], (dqe, dek, dph, dH, dg, d), dlam, xin=xin)
                grads = tuple(back(x, sc.half) for x in grads)
            return grads + (None, None, None)

    return GatedDeltaScan, GatedDeltaForms, GatedDeltaS16


def _tier_kept(xp, back, kept):
    """The two-tier forward's [Qp, Z, Sb] (arrays of ``xp``; Qp bfloat16 patterns on the GD_S16 path) as the caller's
    tensors, for ``save_for_backward``."""
    return [back(x.view(xp.int16), "bf16") if x.dtype == xp.uint16 else back(x, "") for x in kept]


def apply_gated_delta_s16(sc, q, k, v, a, beta, lam, context=None, check=None):
    """gd_forms and the two-tier scan of the GD_S16 build on (BH, T, ..) bfloat16 torch tensors -> (BH, n, C, d_v)
    float32 (``gated_delta_bwd.train_o16``: (BH, T, d_v) bfloat16), differentiable through gd_scan_bwd_x1 (reading the
    forms' bfloat16 intermediates) and gd_forms_bwd_x1."""
    return _gd_function()[2].apply(q, k, v, a, beta, lam, sc, context or on_gpu, check)


def _aligned(x, half):
    """``x``, or a copy of a bfloat16 ``x`` whose data is not 16-byte aligned."""
    return x.clone() if half == "bf16" and x.data_ptr() % 16 else x


def apply_gated_delta_forms(sc, q, k, v, a, beta, lam, context=None, check=None):
    """``gd_forms`` on (BH, T, ..) torch tensors -> (qeff, eGK, phi, H, g, intra) chunked
    (``gated_delta.forms``), and lam in float32 (BH, T, L) after them for bfloat16 inputs (``sc.half``),
    differentiable through ``gated_delta_bwd.forms_backward``; check: a ``KernelCheck`` gd_forms answers, or None."""
    return _gd_function()[1].apply(q, k, v, a, beta, lam, sc, context or on_gpu, check)


def apply_gated_delta_scan(sc, qe, ek, ph, H, g, lam, intra, old, context=None):
    """The chunk scan of ``loglinear_gated_delta`` on torch tensors (``gated_delta_bwd.scan``),
    differentiable through ``gd_scan_bwd``; ``context``: ``on_gpu`` (default) or a twin's."""
    return _gd_function()[0].apply(qe, ek, ph, H, g, lam, intra, old, sc, context or on_gpu)
