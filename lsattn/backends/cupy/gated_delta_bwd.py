"""Training path of ``loglinear_gated_delta`` on the CuPy backend: CUDA torch tensors that require grad.

Two ``torch.autograd.Function`` s (``_autograd.py``). The per-chunk WY / UT quantities
(``lsattn.gated_delta._chunk_forms``, ``_masked_intra``) come from the forward kernel ``gd_forms``
(``apply_gated_delta_forms``: nothing recorded); their backward, ``forms_backward``, is a
hand-derived chain of torch operations (its docstring) that recomputes the chunk's decay table,
``(I + N)^{-1}`` (a batched triangular solve) and ``attn`` from the saved inputs. The scan over
chunks (``gd_scan``, ``gated_delta.cu``; ``apply_gated_delta_scan``) has the kernel ``gd_scan_bwd``
(``gated_delta_bwd.cu``: the formulas are in its header) as its backward: a reverse scan over the
chunks with adjoint level states, giving the gradients of ``qeff``, ``e^G K``, ``phi``, ``H``, the
chunk log decays ``g``, the level weights the scan reads and the incoming state's levels, which
``forms_backward`` carries to ``q, k, v, log_decay, beta, level_weights``.

Memory: the backward recomputes the slot states before every chunk into a scratch of
``n x (n_old + NLC)`` states of ``d_k x d_v`` (``n = T / C`` chunks, ``NLC ~ log2(T / C)`` chunk
levels, ``n_old = bit_length(offset)`` incoming slots): ``(n_old + NLC) / C`` of one ``T d_k d_v``
tensor (C = 64, T = 32768: 10 / 64), freed when the backward returns; nothing of it is held
between forward and backward. The column-block partial sums of the reductions (``d qeff``,
``d e^G K``, ``d phi``: ``ceil(d_v / 16)`` copies of a ``T d_k`` tensor each) are summed on the
device. Saved between forward and backward: the inputs (forms) and the WY quantities the scan
reads (``O(T (C + d_k) + n d_k d_v)``); ``forms_backward``'s temporaries (a dozen ``C x C`` arrays
per chunk) live only during the backward.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from ..._chunktree import chunk_layout, from_chunks, segsum, suffix_after, to_chunks
from ...loglinear import _chunk_levels, _ns
from ._compile import make_config
from .gated_delta import chunk_slots

__all__ = ["Scan", "scan", "scan_backward", "differentiable", "forms_backward"]


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
                sc.NLC, sc.merge_last, BH, False)
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
    """``loglinear_gated_delta``'s output on torch tensors, differentiable through the kernels.

    q, k (..., T, d_k), v (..., T, d_v), a, beta (..., T), lam (..., T, L): float32 / float64 torch
    tensors (CUDA), ``T >= 1``; old (..., n_old, d_k, d_v) the incoming state's levels or None.
    context: ``_arrays.on_gpu`` (default), or the tests' NumPy twin context. -> (..., T, d_v)

    The WY forms come from ``gd_forms`` (``_autograd.apply_gated_delta_forms``; nothing of them is
    recorded), their backward is ``forms_backward`` (torch operations recomputing from the saved
    inputs); the scan is ``apply_gated_delta_scan``."""
    from ._autograd import apply_gated_delta_forms, apply_gated_delta_scan

    ns = _ns(q)
    batch = tuple(q.shape[:-2])
    BH, T, DK, DV, L = math.prod(batch), q.shape[-2], q.shape[-1], v.shape[-1], lam.shape[-1]
    cfg = make_config("double" if q.dtype == ns.float64 else "float", DK, 16, chunk_size)
    lay = chunk_layout(p, T, cfg.CH)
    merge_last = (p + T) % cfg.CH == 0
    sc = Scan(cfg, T, p, lay.first_chunk, lay.n_chunks, chunk_slots(lay.first_chunk, lay.n_chunks, merge_last), merge_last)
    q3, k3, v3 = (ns.reshape(x, (BH, T, x.shape[-1])) for x in (q, k, v))
    a2, b2 = (ns.reshape(x, (BH, T)) for x in (a, beta))
    lam3 = ns.reshape(lam, (BH, T, L))
    qe, ek, ph, H, g, intra = apply_gated_delta_forms(sc, q3, k3, v3, a2, b2, lam3, context)
    old3 = None if old is None else ns.reshape(old, (BH,) + tuple(old.shape[-3:]))
    out = apply_gated_delta_scan(sc, qe, ek, ph, H, g, lam3, intra, old3, context)
    return ns.reshape(from_chunks(ns, out, lay, -2), batch + (T, DV))


@functools.lru_cache(maxsize=64)
def _chunk_level_index(C, L, device):
    """The (C, C) int64 torch tensor of ``_masked_intra``'s level index ``clip(level(t, s), 0, L - 1)`` on
    ``device``, made once (a host-to-device copy from pageable memory waits for the stream)."""
    import torch

    return torch.as_tensor(np.clip(_chunk_levels(C), 0, L - 1), device=device)


def forms_backward(sc, q, k, v, a, beta, lam, grads):
    """Gradients of the WY forms (``gated_delta._chunk_forms`` + ``_masked_intra``, as ``gd_forms``
    computes them) by torch operations that recompute what they need from the inputs.

    q, k (BH, T, d_k), v (BH, T, d_v), a, beta (BH, T), lam (BH, T, L) torch tensors (no grad);
    grads: those of (qeff, eGK, phi, H, g, intra), chunked as ``forms`` returns them (None: zero)
    -> (dq, dk, dv, da, dbeta, dlam) shaped as the inputs.

    Per chunk (``X = (I + N)^{-1}`` by a triangular solve, ``W = M X``, ``Y = X diag(beta)``):
      intra = (Lam * attn) V:   dV = (Lam * attn)^T dI,  P = dI V^T,  d attn = Lam * P,  d Lam = attn * P
      H = phi V:                d phi += dH V^T,  dV += phi^T dH
      qeff = e^G Q - attn eGK:  dQ = e^G d qeff,  dG = e^G rowsum(Q d qeff),  d attn -= d qeff eGK^T,
                                d eGK -= attn^T d qeff
      eGK = e^G K:              dK = e^G d eGK,  dG += e^G rowsum(K d eGK)
      attn = W diag(beta):      dW = d attn diag(beta),  d beta = colsum(W * d attn)
      W = M X:                  dM = dW X^T,  dX = M^T dW
      phi = Z^T Y:              dZ = Y d phi^T,  dY = Z d phi;  dX += dY diag(beta),  d beta += colsum(X * dY)
      Z = e^S K:                dK += e^S dZ,  dS_s = e^S_s rowsum(K dZ)_s   (S_s = a_{s+1} + ... + a_{C-1})
      X = (I + N)^{-1}:         dN = -X^T dX X^T, strictly below the diagonal
      N = beta_i D_ir (K K^T)_ir:  d(KK^T) = dN beta_i D,  d beta += rowsum(dN D KK^T),  dD = dN beta_i KK^T
      M = D * Q K^T:            dD += dM * QK^T,  dQ += (dM * D) K,  dK += (dM * D)^T Q + (dKK + dKK^T) K
      to the log decays: D_ts = e^{a_{s+1} + ... + a_t}: da_r += sum_{t >= r > s} D_ts dD_ts; G_t: da_r +=
      sum_{t >= r} dG_t; g = G_{C-1}: da_r += dg; S_s: da_r += sum_{s < r} dS_s.
    """
    import torch

    ns = _ns(q)
    lay = chunk_layout(sc.p, sc.T, sc.cfg.CH)
    Q, K, V = (to_chunks(ns, x, lay, -2) for x in (q, k, v))  # (BH, n, C, d)
    A, Bt = (to_chunks(ns, x, lay, -1) for x in (a, beta))  # (BH, n, C)
    Lc = to_chunks(ns, lam, lay, -2)  # (BH, n, C, L)
    C, L = Q.shape[-2], Lc.shape[-1]
    shapes = [Q.shape, Q.shape, Q.shape[:-2] + (Q.shape[-1], C), Q.shape[:-2] + (Q.shape[-1], V.shape[-1]), A.shape[:-1],
              V.shape]
    dqe, dek, dph, dH, dg, dI = (torch.zeros(s, dtype=q.dtype, device=q.device) if x is None else x
                                 for x, s in zip(grads, shapes))

    def tr(x):
        return x.transpose(-1, -2)

    strict = torch.ones((C, C), dtype=torch.bool, device=q.device).tril(-1)
    zero = torch.zeros((), dtype=q.dtype, device=q.device)
    bc, br = Bt[..., None, :], Bt[..., :, None]  # beta as a column / row factor
    eG = torch.exp(torch.cumsum(A, -1))[..., None]
    eS = torch.exp(suffix_after(ns, A))[..., None]
    eGK, Z = eG * K, eS * K
    D = torch.exp(segsum(ns, A))  # (BH, n, C, C), zero above the diagonal
    KK = K @ tr(K)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    X = torch.linalg.solve_triangular(eye + torch.where(strict, br * D * KK, zero), eye.expand(Q.shape[:-2] + (C, C)),
                                      upper=False, unitriangular=True)
    # (the C x C temporaries are dropped after their last use: the backward's peak memory)
    QK = Q @ tr(K)
    M = D * QK
    W = M @ X
    attn = W * bc
    lev = _chunk_level_index(C, L, q.device)  # (C, C) level of (t, s) in the chunk
    Lam = torch.take_along_dim(Lc, lev.expand(Lc.shape[:-2] + (C, C)), dim=-1)  # lam[t, level(t, s)]
    # intra, H, qeff, eGK
    P = dI @ tr(V)
    dV = tr(Lam * attn) @ dI + (tr(X * bc) @ Z) @ dH  # phi^T = (X diag(beta))^T Z
    dlam = torch.zeros_like(Lc).scatter_add_(-1, lev.expand(P.shape), attn * P)
    dattn = Lam * P - dqe @ tr(eGK)
    del Lam, P
    deGK = dek - tr(attn) @ dqe
    del attn
    dQ = eG * dqe
    dG = eG[..., 0] * (torch.sum(Q * dqe, -1) + torch.sum(K * deGK, -1))
    dK = eG * deGK
    # attn, W, phi, Y, Z
    dbeta = torch.sum(W * dattn, -2)
    del W
    dW = dattn * bc
    del dattn
    dM, dX = dW @ tr(X), tr(M) @ dW
    del dW, M
    dphi = dph + dH @ tr(V)
    dZ, dY = (X * bc) @ tr(dphi), Z @ dphi
    dX = dX + dY * bc
    dbeta = dbeta + torch.sum(X * dY, -2)
    del dY
    dK = dK + eS * dZ
    dS = eS[..., 0] * torch.sum(K * dZ, -1)
    # the solve, N, M
    dN = torch.where(strict, -(tr(X) @ dX @ tr(X)), zero)
    del dX, X
    dbeta = dbeta + torch.sum(dN * D * KK, -1)
    dKK = dN * br * D
    dD = dN * br * KK + dM * QK
    del dN, KK, QK
    dQK = dM * D
    del dM
    dQ = dQ + dQK @ K
    dK = dK + (dKK + tr(dKK)) @ K + tr(dQK) @ Q
    del dKK, dQK
    # the log decays
    E = torch.where(strict, D * dD, zero)
    del D, dD
    below = torch.flip(torch.cumsum(torch.flip(E, [-2]), -2), [-2])  # [r, s]: sum over t >= r of E[t, s]
    da = torch.sum(torch.where(strict, below, zero), -1)
    da = da + torch.flip(torch.cumsum(torch.flip(dG, [-1]), -1), [-1]) + dg[..., None] + torch.cumsum(dS, -1) - dS
    back = [from_chunks(ns, x, lay, -2) for x in (dQ, dK, dV)]
    back += [from_chunks(ns, x, lay, -1) for x in (da, dbeta)]
    return tuple(back) + (from_chunks(ns, dlam, lay, -2),)
