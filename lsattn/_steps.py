"""Array-API decoding steps (``lsattn.stepper(..., backend="array_api")``): one token at a time on
preallocated state buffers, for every operator and every array-API namespace.

Each factory ``<operator>(state, max_tokens)`` copies the state's tensors into buffers (the incoming
State is never modified) and returns an object with ``step(p, *arrays) -> out`` (the token at
absolute position ``p``; arrays validated by ``lsattn.stepper``, in the compute dtype, T axis of
length 1) and ``tensors(p) -> dict`` (the State's tensors at offset ``p``, views of the buffers).
Buffers are updated in place (``buf[...] = new``); JAX arrays are immutable, so under JAX a step
rebinds its buffers to the new arrays (``.at[...].set``), the same values without the in-place write.

Step formulas, from the operators' state definitions (token at ``p``, ``h = bit_length(p XOR (p + 1))``;
the low ``h - 1`` bits of ``p`` are set, so levels ``1 .. h - 1`` are occupied and fold into ``h``):

- exp-kernel: the token's key joins the summary ``(m, n, S, z)`` (:func:`lsattn.exp_kernel.merge`
  with a one-key summary, written out), then the query reads the updated summary
  (:func:`lsattn.exp_kernel.read`): its own key included.
- log-linear Mamba-2: ``o = lam_0 (q . k) v + sum_l lam_l e^{a_p} q^T S_l``; then level ``h`` becomes
  ``e^{a_p} sum_{l < h} S_l + k v^T``, levels above ``h`` are scaled by ``e^{a_p}``, levels below are 0.
- log-linear Gated DeltaNet: every level ``S <- e^{a_p} (S - beta k (k^T S))``, then
  ``o = lam_0 beta (q . k) v + sum_l lam_l S_l^T q``; level ``h`` becomes ``beta k v^T + sum_{l < h} S_l``.
- hierarchical: the diagonal and every level's read (decay ``a_p``, weight ``lam_l``) combine in
  log space; level ``h`` becomes the merge of the token's key with the lower levels decayed by
  ``a_p``; levels above ``h`` are decayed (``m += a_p``), levels below are empty.
"""
from __future__ import annotations

import array_api_compat

from ._validate import device_of
from .exp_kernel import _clamp_log_values, _finish, _minus_inf, diagonal, merge, read

__all__ = ["log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta",
           "loglinear_log_attention"]


def _copy(xp, t):
    """A fresh buffer holding ``t`` (no autograd history)."""
    if hasattr(t, "detach"):
        t = t.detach()
    return xp.asarray(t, copy=True)


def level_slots(state, max_tokens):
    """Level slots the buffers hold: enough for offsets up to ``max_tokens``."""
    return max(int(max_tokens).bit_length(), state.offset.bit_length())


class _Buffers:
    """Named state buffers updated in place (rebound under JAX, whose arrays are immutable)."""

    def __init__(self, state, bufs):
        self.xp = array_api_compat.array_namespace(*bufs.values())
        self.mutable = not array_api_compat.is_jax_namespace(self.xp)
        self.buf = bufs

    def put(self, name, index, value):
        if self.mutable:
            self.buf[name][index] = value
        else:
            self.buf[name] = self.buf[name].at[index].set(value)


# ---- exp-kernel attention -----------------------------------------------------------------------

class _ExpKernel(_Buffers):
    def __init__(self, state, log_values):
        xp = array_api_compat.array_namespace(state.tensors["S"])
        super().__init__(state, {n: _copy(xp, t) for n, t in state.tensors.items()})
        self.log_values = log_values

    def step(self, p, q, k, vals):
        """q, k (..., 1, d_k), vals (..., 1, d_v) -> (..., 1, d_v).

        :func:`lsattn.exp_kernel.merge` of the summary with the one-key summary ``(k, vals, 1, 1)``,
        written out (no ones arrays): the larger shift gets factor exactly 1."""
        xp, b, lv = self.xp, self.buf, self.log_values
        vals = _clamp_log_values(xp, vals, lv)
        m, key = b["m"], k[..., 0, :]
        mm = xp.maximum(m, key)
        fa, fb = xp.exp(m - mm)[..., None], xp.exp(key - mm)[..., None]  # (..., d_k, 1)
        if lv:
            n = xp.maximum(b["n"], vals[..., 0, :])
            g = xp.exp(b["n"] - n)[..., None, :]
            S = (fa * g) * b["S"] + fb * xp.exp(vals - n[..., None, :])
        else:
            n, S = None, fa * b["S"] + fb * vals
        z = fa[..., 0] * b["z"] + fb[..., 0]
        out = _finish(xp, read(xp, q, (mm, n, S, z), lv), lv)
        for name, x in (("m", mm), ("n", n), ("S", S), ("z", z)):
            if x is not None:
                self.put(name, ..., x)
        return out

    def tensors(self, p):
        return dict(self.buf)


def log_attention(state, max_tokens):
    return _ExpKernel(state, True)


def exp_kernel_attention(state, max_tokens):
    return _ExpKernel(state, False)


# ---- log-linear Mamba-2 and Gated DeltaNet --------------------------------------------------------

class _Levels(_Buffers):
    """``levels`` (..., slots, d_k, d_v), zeros beyond the occupied ``bit_length(p)``."""

    def __init__(self, state, max_tokens, gated):
        old = state.tensors["levels"]
        xp = array_api_compat.array_namespace(old)
        n = old.shape[-3]
        buf = xp.zeros(tuple(old.shape[:-3]) + (level_slots(state, max_tokens),) + tuple(old.shape[-2:]),
                       dtype=old.dtype, device=device_of(old))
        super().__init__(state, {"levels": buf})
        if n:
            self.put("levels", (..., slice(0, n), slice(None), slice(None)), _copy(xp, old))
        self.gated = gated

    def tensors(self, p):
        return {"levels": self.buf["levels"][..., : p.bit_length(), :, :]}

    def step(self, p, q, k, v, log_decay, *rest):
        """q, k (..., 1, d_k), v (..., 1, d_v), log_decay (..., 1), [beta (..., 1)], lam (..., 1, L)
        -> (..., 1, d_v)."""
        xp, n, h = self.xp, p.bit_length(), (p ^ (p + 1)).bit_length()
        lam = rest[-1]
        decay = xp.exp(log_decay)[..., None, None]  # (..., 1, 1, 1)
        qk = xp.sum(q * k, axis=-1)[..., None]  # (..., 1, 1)
        if self.gated:
            beta = rest[0][..., None]  # (..., 1, 1)
            bk = beta * k
            out = (lam[..., :1] * beta * qk) * v
            write = xp.matrix_transpose(bk) @ v  # (..., d_k, d_v)
        else:
            out = (lam[..., :1] * qk) * v
            write = xp.matrix_transpose(k) @ v
        if n:
            old = self.buf["levels"][..., :n, :, :]  # (..., n, d_k, d_v)
            if self.gated:  # A_p on every level: S <- e^{a_p} (S - beta k (k^T S))
                kS = k[..., None, :, :] @ old  # (..., n, 1, d_v)
                old = decay * (old - xp.matrix_transpose(bk)[..., None, :, :] * kS)
                self.put("levels", (..., slice(0, n), slice(None), slice(None)), old)
                w = lam[..., 1 : n + 1]  # (..., 1, n)
            else:
                w = lam[..., 1 : n + 1] * decay[..., 0, 0][..., None]
            reads = (q[..., None, :, :] @ old)[..., 0, :]  # (..., n, d_v)
            out = out + w @ reads
            if h > 1:
                low = xp.sum(old[..., : h - 1, :, :], axis=-3)
                write = write + (low if self.gated else decay[..., 0] * low)
            if not self.gated and n > h:
                self.put("levels", (..., slice(h, n), slice(None), slice(None)), old[..., h:, :, :] * decay)
        self.put("levels", (..., h - 1, slice(None), slice(None)), write)
        if h > 1:
            self.put("levels", (..., slice(0, h - 1), slice(None), slice(None)), 0.0)
        return out


def loglinear_attention(state, max_tokens):
    return _Levels(state, max_tokens, False)


def loglinear_gated_delta(state, max_tokens):
    return _Levels(state, max_tokens, True)


# ---- hierarchical exp-kernel attention ---------------------------------------------------------

class _Hierarchical(_Buffers):
    """One exp-kernel summary per level slot: ``m (..., slots, d_k)``, ``n (..., slots, d_v)``,
    ``S (..., slots, d_k, d_v)``, ``z (..., slots, d_k)``; empty slots ``m = n = lo``, ``S = z = 0``."""

    TAILS = {"m": 1, "n": 1, "S": 2, "z": 1}

    def __init__(self, state, max_tokens):
        t = state.tensors
        xp = array_api_compat.array_namespace(t["S"])
        slots, n = level_slots(state, max_tokens), state.offset.bit_length()
        self.lo = _minus_inf(xp, t["S"].dtype)
        self.lo_arr = xp.asarray(self.lo, dtype=t["S"].dtype, device=device_of(t["S"]))
        bufs = {}
        for name, x in t.items():
            tail = self.TAILS[name]
            shape = tuple(x.shape[: x.ndim - tail - 1]) + (slots,) + tuple(x.shape[x.ndim - tail:])
            bufs[name] = xp.full(shape, self.lo if name in "mn" else 0.0, dtype=x.dtype, device=device_of(x))
        super().__init__(state, bufs)
        if n:
            for name, x in t.items():
                self.put(name, self._slots(name, 0, n), _copy(xp, x))

    def _slots(self, name, lo, hi):
        return (..., slice(lo, hi)) + (slice(None),) * self.TAILS[name]

    def tensors(self, p):
        n = p.bit_length()
        return {name: b[self._slots(name, 0, n)] for name, b in self.buf.items()}

    def step(self, p, q, k, log_v, lam, log_decay):
        """q, k (..., 1, d_k), log_v (..., 1, d_v), lam (..., 1, L), log_decay (..., 1) or None
        -> log y (..., 1, d_v)."""
        xp, b, lo = self.xp, self.buf, self.lo
        n, h = p.bit_length(), (p ^ (p + 1)).bit_length()
        like = lambda x: xp.asarray(x, dtype=q.dtype, device=device_of(q))
        log_v = _clamp_log_values(xp, log_v, True)
        lam = xp.maximum(lam[..., 0, :], like(lo))  # (..., L); -inf (level off) -> finite stand-in
        # as a plain call of one token: decays clamped so that sums of them stay finite
        a = None if log_decay is None else xp.maximum(log_decay, like(lo / (4 * (p + 1))))  # (..., 1)
        r, den, y = diagonal(xp, q, k, log_v, True)  # over (..., 1)
        r = r + lam[..., :1]
        if n:
            slot = lambda name: b[name][self._slots(name, 0, n)]
            m, nn, S, z = slot("m"), slot("n"), slot("S"), slot("z")
            rl, dl, yl = read(xp, q[..., None, :, :], (m, nn, S, z), True)  # over (..., n, 1)
            shift = lam[..., 1 : n + 1] if a is None else lam[..., 1 : n + 1] + a
            rl = rl + shift[..., None]
            # combine the diagonal and the n level reads at the common shift R (log space)
            R = xp.maximum(r, xp.max(rl, axis=-2))  # (..., 1)
            den = xp.exp(r - R) * den + xp.sum(xp.exp(rl - R[..., None, :]) * dl, axis=-2)
            Y = xp.concat([(y + (r - R)[..., None])[..., None, :, :], yl + (rl - R[..., None, :])[..., None]], axis=-3)
            M = xp.max(Y, axis=-3)
            y = M + xp.log(xp.sum(xp.exp(Y - M[..., None, :, :]), axis=-3))
            r = R
        out = _finish(xp, (r, den, y), True)
        self._advance(p, n, h, k[..., 0, :], log_v[..., 0, :], a)
        return out

    def _advance(self, p, n, h, k, log_v, a):
        """Fenwick merge after the token at ``p``: the key and levels ``1 .. h - 1`` (decayed by
        ``a``) become level ``h``; levels above ``h`` decay; levels below are emptied."""
        xp, b, lo, lo_arr = self.xp, self.buf, self.lo, self.lo_arr
        ones_S = xp.ones(tuple(k.shape) + (log_v.shape[-1],), dtype=k.dtype, device=device_of(k))
        new = (k, log_v, ones_S, xp.ones_like(k))  # the summary of one key
        g = None if a is None else a[..., None]  # (..., 1, 1)
        if h > 1:  # levels 0 .. h-2 are all occupied
            low = [b[name][self._slots(name, 0, h - 1)] for name in "mnSz"]
            if g is not None:
                low[0] = low[0] + g
            mk = xp.max(low[0], axis=-2)
            nk = xp.max(low[1], axis=-2)
            fa, ga = xp.exp(low[0] - mk[..., None, :]), xp.exp(low[1] - nk[..., None, :])
            folded = (mk, nk, xp.sum((fa[..., :, None] * ga[..., None, :]) * low[2], axis=-3),
                      xp.sum(fa * low[3], axis=-2))
            new = merge(xp, folded, new)
        for name, x in zip("mnSz", new):
            self.put(name, (..., h - 1) + (slice(None),) * self.TAILS[name], xp.maximum(x, lo_arr) if name == "m" else x)
        if h > 1:
            for name in "mnSz":
                self.put(name, self._slots(name, 0, h - 1), lo if name in "mn" else 0.0)
        if g is not None and n > h:
            self.put("m", self._slots("m", h, n), xp.maximum(b["m"][self._slots("m", h, n)] + g, lo_arr))


def loglinear_log_attention(state, max_tokens):
    return _Hierarchical(state, max_tokens)
