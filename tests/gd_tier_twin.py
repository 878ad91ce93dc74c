"""A float64 twin of the CuPy backend's two-tier Gated DeltaNet scan (gated_delta_tier.cu / gated_delta_coarse.cu:
gd_tier1, gd_tier1x, the coarse slots, gd_tier3) and of its backward as a composition of per-kernel backwards (issue
16's design for replacing gd_scan_bwd's serial walk: benchmarks/NOTES.md "Session 24 — s24c"). Test-only code.

The scan's inputs per sequence (``gd_forms``' outputs, chunked, the call from chunk 0 without state): qe, ek (B, n, C,
d_k), ph (B, n, d_k, C), H (B, n, d_k, d_v), g (B, n), lam (B, T, L); the scan adds to the intra-chunk output the reads
of the chunk-level slots: out (B, n, C, d_v). Chunk c = 4 pp + i (period pp of TP = 4 chunks; TIER_M = 2 low levels),
transition P_c = e^{g_c} I - ph_c ek_c; token row t = c C + i_t reads only when t < T.

- tier1 (low walk): per period, slots m = 1, 2 (bit m - 1 of i set), read at lam column log2 C + m, carried, merged
  (z = tz(c + 1)); the last merge is the period's keys at its end Tot_pp = sum_i P_3 .. P_{i+1} H_i.
- tier1x (transfers): X_0 = I, X_{i+1} = P_{4pp+i} X_i, Qp_c = qe_c X_i, Z_pp = X_4.
- coarse: the slots of coarse level cl (chunk level 2 + cl) held at period pp (bit cl - 1 of pp set), S_cl(pp) =
  sum_{pp' in B_cl(pp)} Z_{pp-1} .. Z_{pp'+1} Tot_pp' (here by the merged walk over periods).
- tier3: out_c += lam[t, log2 C + 2 + cl] Qp_c S_cl(pp).

The forward pieces take the namespace (``numpy`` or ``torch``: the same code differentiated by torch autograd); the
backward (NumPy) is the design's: tier3_bwd, coarse_bwd (independent reverse chains per level and level period, or
their grouped form), tier1x_bwd, tier1_bwd (4-chunk reverse walks per period). ``mutate`` names one deliberate error for the tests that
show the comparison can fail."""
from __future__ import annotations

import numpy as np

TP = 4  # chunks per low period (gated_delta.TIER_M = 2)


def _tr(x):
    return x.swapaxes(-1, -2)


def _tz(x):
    return (x & -x).bit_length() - 1


def _zeros(xp, like, shape):
    return xp.zeros(shape, dtype=like.dtype) if xp is np else xp.zeros(shape, dtype=like.dtype, device=like.device)


def _eye(xp, like, d, batch):
    e = xp.eye(d, dtype=like.dtype) if xp is np else xp.eye(d, dtype=like.dtype, device=like.device)
    return e + _zeros(xp, like, (batch, d, d))


class Geo:
    """The call's geometry: B sequences, n chunks of C, T tokens, nP periods, lam's columns."""

    def __init__(self, qe, H, lam):
        self.B, self.n, self.C, self.dk = qe.shape
        self.dv, self.T, self.L = H.shape[-1], lam.shape[-2], lam.shape[-1]
        self.nP = -(-self.n // TP)
        self.lc0 = self.C.bit_length() - 1  # log2 C

    def rows(self, c):
        """Chunk c's rows of the call: a (C,) 0 / 1 mask and the global row indices (clipped)."""
        t = c * self.C + np.arange(self.C)
        return (t < self.T).astype(np.float64), np.minimum(t, self.T - 1)


def _w(xp, geo, lam, c, col):
    """lam's column ``col`` at chunk c's rows (zero past T): (B, C)."""
    mask, t = geo.rows(c)
    if xp is not np:
        mask, t = xp.as_tensor(mask, dtype=lam.dtype, device=lam.device), xp.as_tensor(t, device=lam.device)
    return lam[:, t, col] * mask


def _step(xp, ek, ph, g, c, S):
    """P_c S = e^{g_c} S - ph_c (ek_c S)."""
    return xp.exp(g[:, c])[:, None, None] * S - ph[:, c] @ (ek[:, c] @ S)


def _low_step(xp, ek, ph, H, g, c, i, slots):
    """Chunk c = 4 pp + i's transitions of the low slots {m: S}, then its merge (z = tz(i + 1): slots m <= z and H_c
    into slot z + 1; at i = 3 all of them into the period's keys Tot_pp) -> (the slots after, Tot_pp or None)."""
    slots = {m: _step(xp, ek, ph, g, c, S) for m, S in slots.items()}
    if i == TP - 1:
        return {}, H[:, c] + sum(slots.values())
    z = _tz(i + 1)
    new = H[:, c]
    for m in range(1, z + 1):
        new = new + slots.pop(m)
    slots[z + 1] = new
    return slots, None


# ---- the forward pieces (namespace-generic) ----


def tier1(xp, qe, ek, ph, H, g, lam):
    """The low walks: (reads (list of n chunks' (B, C, d_v)), Tot (list of nP (B, d_k, d_v), None where the period is
    the call's last))."""
    geo = Geo(qe, H, lam)
    reads, tot = [], []
    for pp in range(geo.nP):
        slots = {}
        for i in range(TP):
            c = TP * pp + i
            if c >= geo.n:
                break
            r = _zeros(xp, qe, (geo.B, geo.C, geo.dv))
            for m, S in slots.items():
                r = r + _w(xp, geo, lam, c, geo.lc0 + m)[..., None] * (qe[:, c] @ S)
            reads.append(r)
            slots, t = _low_step(xp, ek, ph, H, g, c, i, slots)
            if t is not None:
                tot.append(t)
        if len(tot) < pp + 1:
            tot.append(None)
    return reads, tot


def tier1x(xp, qe, ek, ph, g):
    """The transfers: (Qp (list of n (B, C, d_k)), Z (list of nP (B, d_k, d_k), None for an incomplete period))."""
    B, n, C, dk = qe.shape
    qp, Z = [], []
    for pp in range(-(-n // TP)):
        X = _eye(xp, qe, dk, B)
        for i in range(TP):
            c = TP * pp + i
            if c >= n:
                break
            qp.append(qe[:, c] @ X)
            X = _step(xp, ek, ph, g, c, X)
        Z.append(X if TP * pp + TP <= n else None)
    return qp, Z


def coarse(xp, Z, tot, nP):
    """The coarse slots held at each period's start: a list of nP dicts {cl: (B, d_k, d_v)} (the merged walk)."""
    Sb, slots = [], {}
    for pp in range(nP):
        Sb.append(dict(slots))
        if pp == nP - 1:
            break
        slots = {cl: Z[pp] @ S for cl, S in slots.items()}
        z = _tz(pp + 1)
        new = tot[pp]
        for cl in range(1, z + 1):
            new = new + slots.pop(cl)
        slots[z + 1] = new
    return Sb


def tier3(xp, qp, Sb, lam, geo):
    """The coarse slots' reads: a list of n (B, C, d_v)."""
    reads = []
    for c in range(geo.n):
        r = _zeros(xp, lam, (geo.B, geo.C, geo.dv))
        for cl, S in Sb[c // TP].items():
            r = r + _w(xp, geo, lam, c, geo.lc0 + 2 + cl)[..., None] * (qp[c] @ S)
        reads.append(r)
    return reads


def forward(xp, qe, ek, ph, H, g, lam, keep=False):
    """The scan's reads (B, n, C, d_v) by the two tiers; keep: also the saved intermediates (Qp, Z, Tot, Sb)."""
    geo = Geo(qe, H, lam)
    low, tot = tier1(xp, qe, ek, ph, H, g, lam)
    qp, Z = tier1x(xp, qe, ek, ph, g)
    Sb = coarse(xp, Z, tot, geo.nP)
    hi = tier3(xp, qp, Sb, lam, geo)
    out = xp.stack([a + b for a, b in zip(low, hi)], 1)
    return (out, (qp, Z, tot, Sb)) if keep else out


# ---- the backward pieces (NumPy float64): the design ----


def tier3_bwd(qp, Sb, lam, dout, geo, mutate=None):
    """gd_tier3's backward: (dQp (B, n, C, d_k), dS {(cl, pp): (B, d_k, d_v)}, dlam (B, T, L) holding the coarse
    columns). Per chunk c and held slot S = S_cl(pp): U = dout S^T, dlam[t] = rowdot(Qp_t, U_t), dQp += lam U,
    dS_cl(pp) += Qp^T (lam dout): two products (the forward's r = Qp S not needed)."""
    dqp = np.zeros((geo.B, geo.n, geo.C, geo.dk))
    dS, dlam = {}, np.zeros((geo.B, geo.T, geo.L))
    for c in range(geo.n):
        pp = c // TP
        mask, t = geo.rows(c)
        for cl, S in Sb[pp].items():
            col = geo.lc0 + 2 + cl
            w = _w(np, geo, lam, c, col)[..., None]
            U = dout[:, c] @ _tr(S)
            np.add.at(dlam, (slice(None), t, col), np.sum(qp[c] * U, axis=-1) * mask)
            dqp[:, c] += (1.0 if mutate == "tier3" else w) * U
            dS[cl, pp] = dS.get((cl, pp), 0.0) + _tr(qp[c]) @ (w * dout[:, c])
    return dqp, dS, dlam


def _chain_steps(Z, Sb, dS, cl, mid, lo, hi, R, acc, mutate=None):
    """Level cl's reverse chain steps x = hi - 1 .. lo (held from mid), from R the adjoint of the state after step
    hi - 1 (None: dropped): dA(x) = [x held] dS_cl(x) + Z_x^T R, R <- dA; with ``acc`` (dtot, dZ) also
    dZ_x += R A(x)^T and, unheld, dTot_x += R. -> the adjoint after step lo - 1 (None: zero)."""
    for x in range(hi - 1, lo - 1, -1):
        held = x >= mid
        dA = dS.get((cl, x), 0.0) if held else 0.0
        if R is not None:
            if acc is not None:
                A = Sb[x][cl] if held else sum((Sb[x][m] for m in Sb[x] if m < cl), np.zeros_like(R))
                acc[1][x] += R @ _tr(A)
                if not held:
                    acc[0][x] += R
            dA = dA + (Z[x] if mutate == "coarse" else _tr(Z[x])) @ R
        R = dA if isinstance(dA, np.ndarray) else None
    return R


def coarse_bwd(Z, Sb, dS, geo, mutate=None, grouped=False):
    """The coarse slots' backward as independent reverse chains, one per (level cl, level period [b, b + 2^cl)) as
    gd_coarse's forward chains: x from the period's last call period down to b, R the adjoint of the chain's state
    after step x (zero at the top), dA(x) = [x held] dS_cl(x) + Z_x^T R(x), R(x - 1) = dA(x); on the way
    dZ_x += R(x) A(x)^T (A(x): S_cl(x) where held, else the sum of the held lower slots at x: the first half's
    accumulated keys) and, in the first half, dTot_x += R(x). -> (dTot, dZ): lists of nP (B, d_k, d_v) /
    (B, d_k, d_k) (zeros where unused).

    grouped (levels >= 3, as gd_cgroup / gd_coarse_g / gd_cfill backwards, groups of GC = 4 periods): (a) per group q
    of a second half J_q = the group's 4 steps from R = None without the adds (Horner: dS(4q) + Z_4q^T (dS(4q+1) +
    ..)); (b) the group chain R_g(q - 1) = J_q + P_4(q)^T R_g(q), P_4(q) = Z_{4q+3} .. Z_{4q}, from None after the
    last group; (c) per group the fill: its 4 steps again from R_g(q), with the adds."""
    nP = geo.nP
    dtot = [np.zeros((geo.B, geo.dk, geo.dv)) for _ in range(nP)]
    dZ = [np.zeros((geo.B, geo.dk, geo.dk)) for _ in range(nP)]
    for cl in range(1, (nP - 1).bit_length() + 1):
        for b in range(0, nP, 1 << cl):
            mid, end = b + (1 << (cl - 1)), min(b + (1 << cl), nP)
            if mid >= nP:  # no reads of this chain in the call
                continue
            if not grouped or cl < 3:
                _chain_steps(Z, Sb, dS, cl, mid, b, end, None, (dtot, dZ), mutate)
                continue
            groups = range(b // 4, -(-end // 4))
            J = {q: _chain_steps(Z, Sb, dS, cl, mid, 4 * q, min(4 * q + 4, end), None, None) if 4 * q >= mid else None
                 for q in groups}  # (a)
            after, R = {}, None  # (b): R_g(q), the adjoint after the group's last step
            for q in reversed(groups):
                after[q] = R
                if R is not None:
                    P4 = Z[4 * q + 3] @ Z[4 * q + 2] @ Z[4 * q + 1] @ Z[4 * q]
                    R = (P4 if mutate == "coarse_g" else _tr(P4)) @ R
                R = R if J[q] is None else (J[q] if R is None else J[q] + R)
            for q in groups:  # (c)
                _chain_steps(Z, Sb, dS, cl, mid, 4 * q, min(4 * q + 4, end), after[q], (dtot, dZ))
    return dtot, dZ


def tier1x_bwd(qe, ek, ph, g, dqp, dZ, geo, grads, mutate=None):
    """gd_tier1x's backward per period: X_i recomputed (X_0 = I, X_{i+1} = P X_i), then i = last .. 0 from dX = dZ_pp:
    dqe += dQp X_i^T; W = ek X_i, dW = -ph^T dX; dek += dW X_i^T, dph -= dX W^T, dg += e^g <dX, X_i>;
    dX <- e^g dX + ek^T dW + qe^T dQp. Adds into grads {dqe, dek, dph, dg}."""
    for pp in range(geo.nP):
        cs = [c for c in range(TP * pp, TP * pp + TP) if c < geo.n]
        X = [_eye(np, qe, geo.dk, geo.B)]
        for c in cs[:-1]:
            X.append(_step(np, ek, ph, g, c, X[-1]))
        dX = dZ[pp] if len(cs) == TP else np.zeros((geo.B, geo.dk, geo.dk))
        for i in range(len(cs) - 1, -1, -1):
            c, Xi = cs[i], X[i]
            eg = np.exp(g[:, c])[:, None, None]
            grads["dqe"][:, c] += dqp[:, c] @ _tr(Xi)
            W = ek[:, c] @ Xi
            dW = -_tr(ph[:, c]) @ dX
            grads["dek"][:, c] += dW @ _tr(Xi)
            grads["dph"][:, c] -= dX @ _tr(W)
            grads["dg"][:, c] += eg[:, 0, 0] * np.sum(dX * Xi, axis=(-1, -2))
            dX = (1.0 if mutate == "tier1x" else eg) * dX + _tr(ek[:, c]) @ dW + _tr(qe[:, c]) @ dqp[:, c]


def tier1_bwd(qe, ek, ph, H, g, lam, dout, dtot, geo, grads, mutate=None):
    """gd_tier1's backward per period (gd_scan_bwd's formulas on the period's low slots, started from dTot_pp at the
    period's last merge): slots before each chunk recomputed, then i = last .. 0: the merge's reverse (dH_c = dS^{z+1},
    the merged held slots' adjoints = dS^{z+1}; at i = 3: dH_c += dTot, every held slot's = dTot), then per held slot m
    with S before chunk c and dS' after: U = dout S^T, dlam[t, log2 C + m] = rowdot(qe_t, U_t), dr = lam dout,
    W = ek S, dW = -ph^T dS', dqe += lam U, dek += dW S^T, dph -= dS' W^T, dg += e^g <dS', S>,
    dS = e^g dS' + qe^T dr + ek^T dW (at i = 3, where both slots' dS' = dTot, W, dW and their adds once for S1 + S2).
    Adds into grads {dqe, dek, dph, dH, dg, dlam}."""
    zero = np.zeros((geo.B, geo.dk, geo.dv))
    for pp in range(geo.nP):
        cs = [c for c in range(TP * pp, TP * pp + TP) if c < geo.n]
        before, slots = [], {}
        for i, c in enumerate(cs):  # the slots before each chunk
            before.append(dict(slots))
            slots = _low_step(np, ek, ph, H, g, c, i, slots)[0]
        dsl = {}  # adjoints of the slots after the current chunk's merge
        for i in range(len(cs) - 1, -1, -1):
            c = cs[i]
            held = sorted(before[i])
            # reverse of the merge after chunk i: the slots after its transitions get their adjoints
            if i == TP - 1:
                grads["dH"][:, c] += dtot[pp]
                dpost = {m: dtot[pp] for m in held}
            else:
                z = _tz(i + 1)
                dn = dsl.get(z + 1, zero)
                grads["dH"][:, c] += dn
                dpost = {m: (dn if m <= z else dsl.get(m, zero)) for m in held}
                if mutate == "tier1":
                    dpost = {m: dsl.get(m, zero) for m in held}
            eg = np.exp(g[:, c])[:, None, None]
            mask, t = geo.rows(c)
            dsl = {}
            # at i = 3 every held slot's adjoint is dTot_pp: dW, and W, dek, dph, dg of the slots' sum, once
            for ms in ([held] if i == TP - 1 and held else [[m] for m in held]):
                dSp, Ssum = dpost[ms[0]], sum(before[i][m] for m in ms)
                W = ek[:, c] @ Ssum
                dW = -_tr(ph[:, c]) @ dSp
                grads["dek"][:, c] += dW @ _tr(Ssum)
                grads["dph"][:, c] -= dSp @ _tr(W)
                grads["dg"][:, c] += eg[:, 0, 0] * np.sum(dSp * Ssum, axis=(-1, -2))
                common = eg * dSp + _tr(ek[:, c]) @ dW
                for m in ms:
                    col = geo.lc0 + m
                    w = _w(np, geo, lam, c, col)[..., None]
                    U = dout[:, c] @ _tr(before[i][m])  # (the read's r = qe S not needed: dlam and dqe from U)
                    np.add.at(grads["dlam"], (slice(None), t, col), np.sum(qe[:, c] * U, axis=-1) * mask)
                    grads["dqe"][:, c] += w * U
                    dsl[m] = common + _tr(qe[:, c]) @ (w * dout[:, c])


def backward(qe, ek, ph, H, g, lam, dout, mutate=None, grouped=False):
    """The scan's gradients (dqe, dek, dph, dH, dg, dlam) for the reads' gradient dout (B, n, C, d_v), as the
    composition tier3_bwd -> coarse_bwd -> (tier1x_bwd, tier1_bwd), from the forward's saved Qp, Z, Sb (Tot is not
    needed); grouped: coarse_bwd's grouped form; ``mutate``: 'tier3' | 'coarse' | 'coarse_g' | 'tier1x' | 'tier1'
    puts a deliberate error into that piece."""
    geo = Geo(qe, H, lam)
    _, (qp, Z, _tot, Sb) = forward(np, qe, ek, ph, H, g, lam, keep=True)
    dqp, dS, dlam = tier3_bwd(qp, Sb, lam, dout, geo, mutate)
    dtot, dZ = coarse_bwd(Z, Sb, dS, geo, mutate, grouped)
    grads = {"dqe": np.zeros_like(qe), "dek": np.zeros_like(ek), "dph": np.zeros_like(ph), "dH": np.zeros_like(H),
             "dg": np.zeros_like(g), "dlam": dlam}
    tier1x_bwd(qe, ek, ph, g, dqp, dZ, geo, grads, mutate)
    tier1_bwd(qe, ek, ph, H, g, lam, dout, dtot, geo, grads, mutate)
    return tuple(grads[k] for k in ("dqe", "dek", "dph", "dH", "dg", "dlam"))
