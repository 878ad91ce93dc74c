"""Small pre-norm language models for MQAR whose token mixer is softmax attention or an lsattn operator.

Every model: token embedding -> 2 blocks -> RMSNorm -> tied output head. A block is
``x + mixer(norm(x))`` then ``x + mlp(norm(x))``. Every mixer starts with the same short causal
depthwise convolution (kernel 4, as in Mamba-2 and Gated DeltaNet; the Zoology study finds MQAR
needs one for linear-time mixers, and the softmax reference gets it too instead of a positional
encoding), then q/k/v projections to ``H`` heads of size ``d = d_model / H`` and an output
projection. The lsattn mixers call the public functions with no ``backend=``; torch autograd
gives the gradients. What differs between mixers (all shapes ``(B, H, T, ...)``):

=====================  ===========================================================================
``softmax``            ``torch.nn.functional.scaled_dot_product_attention``, causal (the reference)
``exp_kernel``         ``lsattn.exp_kernel_attention(q, k, v)``, ``q, k`` scaled by ``d ** -0.5``
``mamba2``             ``lsattn.loglinear_attention(q, k, v, a, 1)``: ``q, k`` L2-normalised,
                       ``a = logsigmoid(W_a x)`` per head
``loglinear_mamba2``   the same with level weights ``lambda = softplus(W_l x)`` (``H * L`` outputs,
                       ``L = num_levels(T)``; bias set so ``lambda = 1`` at initialisation)
``gated_deltanet``     ``lsattn.loglinear_gated_delta(q, k, v, a, beta, 1)``, ``beta = sigmoid(W_b x)``
``loglinear_gdn``      the same with ``lambda = softplus(W_l x)``
``hier_exp_kernel``    ``lsattn.loglinear_log_attention(q, k, log_v, W_l x)``: the value projection is
                       ``log v`` (values ``exp(W_v x) > 0``), the output ``log y`` goes straight into
                       the output projection; log level weights ``W_l x`` (zero at initialisation,
                       where it equals causal exp-kernel attention); no decay
=====================  ===========================================================================
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

import lsattn

MIXERS = ("softmax", "exp_kernel", "mamba2", "loglinear_mamba2", "gated_deltanet",
          "loglinear_gdn", "hier_exp_kernel")
_SOFTPLUS_INV_1 = math.log(math.e - 1.0)   # softplus(_SOFTPLUS_INV_1) == 1


class Mixer(nn.Module):
    """One token mixer: ``(B, T, D) -> (B, T, D)``, causal."""

    def __init__(self, kind, d_model, n_heads, max_len):
        super().__init__()
        if kind not in MIXERS:
            raise ValueError(f"kind={kind!r} must be one of {MIXERS}")
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be a multiple of n_heads={n_heads}")
        self.kind, self.h, self.d = kind, n_heads, d_model // n_heads
        self.conv = nn.Conv1d(d_model, d_model, 4, groups=d_model, padding=3)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.levels = lsattn.num_levels(max_len)
        if kind in ("mamba2", "loglinear_mamba2", "gated_deltanet", "loglinear_gdn"):
            self.decay = nn.Linear(d_model, n_heads)
            nn.init.constant_(self.decay.bias, 3.0)            # decay sigmoid(3) ~ 0.95 at start
        if kind in ("gated_deltanet", "loglinear_gdn"):
            self.beta = nn.Linear(d_model, n_heads)
        if kind in ("loglinear_mamba2", "loglinear_gdn", "hier_exp_kernel"):
            self.level = nn.Linear(d_model, n_heads * self.levels)
            nn.init.zeros_(self.level.weight)
            nn.init.constant_(self.level.bias, 0.0 if kind == "hier_exp_kernel" else _SOFTPLUS_INV_1)

    def _heads(self, x, n):                      # (B, T, H * n) -> (B, H, T, n)
        return x.unflatten(-1, (self.h, n)).transpose(1, 2)

    def _per_head(self, proj, x):                # (B, T, D) -> (B, H, T)
        return proj(x).transpose(1, 2)

    def forward(self, x):
        T = x.shape[1]
        x = self.conv(x.transpose(1, 2))[..., :T].transpose(1, 2)                  # causal conv
        q, k, v = (self._heads(z, self.d) for z in self.qkv(x).chunk(3, dim=-1))   # (B, H, T, d)
        kind = self.kind
        if kind == "softmax":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif kind == "exp_kernel":
            s = self.d ** -0.5
            y = lsattn.exp_kernel_attention(q * s, k * s, v)
        elif kind == "hier_exp_kernel":
            s = self.d ** -0.5
            log_lam = self._heads(self.level(x), self.levels)                      # (B, H, T, L)
            y = lsattn.loglinear_log_attention(q * s, k * s, v, log_lam)           # v is log v
        else:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
            a = F.logsigmoid(self._per_head(self.decay, x))                        # (B, H, T) <= 0
            if kind.startswith("loglinear"):
                lam = F.softplus(self._heads(self.level(x), self.levels))          # (B, H, T, L)
            else:
                lam = x.new_ones(()).expand(*q.shape[:-1], self.levels)           # Mamba-2 / GDN
            if kind in ("mamba2", "loglinear_mamba2"):
                y = lsattn.loglinear_attention(q, k, v, a, lam)
            else:
                beta = torch.sigmoid(self._per_head(self.beta, x))                 # (B, H, T)
                y = lsattn.loglinear_gated_delta(q, k, v, a, beta, lam)
        return self.out(y.transpose(1, 2).flatten(2))


class Block(nn.Module):
    def __init__(self, kind, d_model, n_heads, max_len):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(d_model), nn.RMSNorm(d_model)
        self.mixer = Mixer(kind, d_model, n_heads, max_len)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model))

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class LM(nn.Module):
    """A 2-block pre-norm language model: int64 tokens ``(B, T)`` -> logits ``(B, T, vocab)``."""

    def __init__(self, kind, vocab, d_model=128, n_heads=2, max_len=1024, n_layers=2):
        super().__init__()
        self.kind = kind
        self.embed = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList(Block(kind, d_model, n_heads, max_len) for _ in range(n_layers))
        self.norm = nn.RMSNorm(d_model)

    def forward(self, tokens):
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x)
        return self.norm(x) @ self.embed.weight.T                                 # tied head

    def param_counts(self):
        """``(total, without the embedding)`` numbers of parameters."""
        total = sum(p.numel() for p in self.parameters())
        return total, total - self.embed.weight.numel()
