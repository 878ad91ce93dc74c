"""Training path of ``loglinear_gated_delta`` on the CuPy backend: CUDA torch tensors that require grad.

The per-chunk WY / UT quantities (``lsattn.gated_delta._chunk_forms``, ``_masked_intra``) are
computed with torch operations on the device, so torch autograd differentiates them; the scan over
chunks (``gd_scan``, ``gated_delta.cu``) is one ``torch.autograd.Function``
(``_autograd.apply_gated_delta_scan``) whose backward is the kernel ``gd_scan_bwd``
(``gated_delta_bwd.cu``: the formulas are in its header): a reverse scan over the chunks with
adjoint level states, giving the gradients of ``qeff``, ``e^G K``, ``phi``, ``H``, the chunk log
decays ``g``, the level weights the scan reads and the incoming state's levels. torch's autograd
then carries them through the WY forms to ``q, k, v, log_decay, beta, level_weights``.

Memory: the backward recomputes the slot states before every chunk into a scratch of
``n x (n_old + NLC)`` states of ``d_k x d_v`` (``n = T / C`` chunks, ``NLC ~ log2(T / C)`` chunk
levels, ``n_old = bit_length(offset)`` incoming slots): ``(n_old + NLC) / C`` of one ``T d_k d_v``
tensor (C = 64, T = 32768: 10 / 64), freed when the backward returns; nothing of it is held
between forward and backward. The column-block partial sums of the reductions (``d qeff``,
``d e^G K``, ``d phi``: ``ceil(d_v / 16)`` copies of a ``T d_k`` tensor each) are summed on the
device. Saved for the backward by the Function: the WY quantities (``O(T (C + d_k) + n d_k d_v)``),
which torch's autograd of the WY forms holds anyway.
"""
from __future__ import annotations

import dataclasses
import math

from ..._chunktree import chunk_layout, from_chunks, to_chunks
from ...gated_delta import _chunk_forms, _masked_intra
from ...loglinear import _ns
from ._compile import make_config
from .gated_delta import chunk_slots

__all__ = ["Scan", "scan", "scan_backward", "differentiable"]


@dataclasses.dataclass(frozen=True)
class Scan:
    """The static arguments of one scan: the compiled variant, the call's length and offset, its
    first absolute chunk, chunk count, chunk-level slots and whether the last chunk merges."""

    cfg: object
    T: int
    p: int
    F: int
    n: int
    NLC: int
    merge_last: bool


def scan(ops, sc, qe, ek, ph, H, g, lam, intra, old):
    """The forward scan on arrays of ``ops.xp`` (inputs unchanged).

    qe, ek (BH, n, C, d_k), ph (BH, n, d_k, C), H (BH, n, d_k, d_v), g (BH, n), lam (BH, T, L),
    intra (BH, n, C, d_v) the intra-chunk output, old (BH, n_old, d_k, d_v) or None
    -> (BH, n, C, d_v): intra + the reads of the chunk-level and incoming slots."""
    xp = ops.xp
    BH, DK, DV = qe.shape[0], qe.shape[-1], intra.shape[-1]
    out = xp.array(intra, copy=True)
    lev = xp.zeros((BH, sc.NLC, DK, DV), dtype=qe.dtype)
    n_old = 0 if old is None else old.shape[1]
    oldc = xp.zeros((1,), dtype=qe.dtype) if old is None else xp.array(old, copy=True)
    ops.gd_scan(sc.cfg, qe, ek, ph, H, g, lam, out, lev, oldc, sc.T, DK, DV, lam.shape[-1], sc.p, sc.F, sc.n, n_old,
                sc.NLC, sc.merge_last, BH)
    return out


def scan_backward(ops, sc, qe, ek, ph, H, g, lam, old, dout):
    """Gradients of ``scan`` for the output gradient ``dout`` (BH, n, C, d_v) (arrays of ``ops.xp``,
    contiguous, of one float dtype): (d qe, d ek, d ph, d H, d g, d lam, d old or None), shaped as
    the inputs; ``d intra`` is ``dout`` itself."""
    xp = ops.xp
    BH, n, C, DK = qe.shape
    DV, L = dout.shape[-1], lam.shape[-1]
    NB = -(-DV // 16)  # column blocks (GD_BV)
    n_old = 0 if old is None else old.shape[1]
    NS, dt = n_old + sc.NLC, qe.dtype
    sv = xp.empty((BH, n, NS, DK, DV), dtype=dt)
    dS = xp.zeros((BH, NS, DK, DV), dtype=dt)
    dqe, dek = xp.empty((NB, BH, n, C, DK), dtype=dt), xp.empty((NB, BH, n, C, DK), dtype=dt)
    dph = xp.empty((NB, BH, n, DK, C), dtype=dt)
    dH = xp.zeros((BH, n, DK, DV), dtype=dt)
    dg = xp.empty((NB, BH, n), dtype=dt)
    dlam = xp.zeros((NB, BH, sc.T, L), dtype=dt)
    oldc = xp.zeros((1,), dtype=dt) if old is None else old
    ops.gd_scan_bwd(sc.cfg, qe, ek, ph, H, g, lam, dout, oldc, sv, dS, dqe, dek, dph, dH, dg, dlam, sc.T, DK, DV, L,
                    sc.p, sc.F, n, n_old, sc.NLC, sc.merge_last, BH)
    del sv
    parts = [xp.sum(x, axis=0) for x in (dqe, dek, dph)]
    return (*parts, dH, xp.sum(dg, axis=0), xp.sum(dlam, axis=0), dS[:, :n_old] if n_old else None)


def differentiable(q, k, v, a, beta, lam, chunk_size, p, old, context=None):
    """``loglinear_gated_delta``'s output on torch tensors, differentiable through the scan kernels.

    q, k (..., T, d_k), v (..., T, d_v), a, beta (..., T), lam (..., T, L): float32 / float64 torch
    tensors (CUDA), ``T >= 1``; old (..., n_old, d_k, d_v) the incoming state's levels or None.
    context: ``_arrays.on_gpu`` (default), or the tests' NumPy twin context. -> (..., T, d_v)"""
    from ._autograd import apply_gated_delta_scan

    ns = _ns(q)
    batch = tuple(q.shape[:-2])
    BH, T, DK, DV, L = math.prod(batch), q.shape[-2], q.shape[-1], v.shape[-1], lam.shape[-1]
    cfg = make_config("double" if q.dtype == ns.float64 else "float", DK, 16, chunk_size)
    lay = chunk_layout(p, T, cfg.CH)
    merge_last = (p + T) % cfg.CH == 0
    sc = Scan(cfg, T, p, lay.first_chunk, lay.n_chunks, chunk_slots(lay.first_chunk, lay.n_chunks, merge_last), merge_last)
    Qc, Kc, Vc = (to_chunks(ns, ns.reshape(x, (BH, T, x.shape[-1])), lay, -2) for x in (q, k, v))  # (BH, n, C, d)
    a_c, bc = (to_chunks(ns, ns.reshape(x, (BH, T)), lay, -1) for x in (a, beta))  # (BH, n, C)
    lam3 = ns.reshape(lam, (BH, T, L))
    ch = _chunk_forms(ns, Qc, Kc, Vc, a_c, bc, transition=False)
    intra = _masked_intra(ns, ch["attn"], Vc, to_chunks(ns, lam3, lay, -2))  # (BH, n, C, DV)
    old3 = None if old is None else ns.reshape(old, (BH,) + tuple(old.shape[-3:]))
    out = apply_gated_delta_scan(sc, ch["qeff"], ch["eGK"], ch["phi"], ch["H"], ch["g"], lam3, intra, old3, context)
    return ns.reshape(from_chunks(ns, out, lay, -2), batch + (T, DV))
