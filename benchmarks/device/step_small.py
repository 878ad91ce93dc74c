"""A few fused cupy decoding steps (every operator with a fused step, float32 and bfloat16 torch
inputs, a carry over several levels), small enough for compute-sanitizer (memcheck / racecheck) in
the device session."""
import torch

import lsattn
from lsattn.state import State

torch.manual_seed(0)
batch, d_k, d_v, P = (2, 3), 40, 70, 61  # two warps' rows over d_k, three column tiles
n = P.bit_length()
occ = torch.tensor([(P >> j) & 1 for j in range(n)], device="cuda", dtype=torch.float32)
levels = torch.randn(*batch, n, d_k, d_v, device="cuda") * occ[:, None, None]
st = State("loglinear_attention", P, batch, d_k, d_v, torch.float32, {"levels": levels})
sg = State("loglinear_gated_delta", P, batch, d_k, d_v, torch.float32, {"levels": 0.1 * levels})
lo = -torch.finfo(torch.float32).max / 8
sh = State("loglinear_log_attention", P, batch, d_k, d_v, torch.float32, {
    "m": torch.where(occ.bool()[:, None], torch.randn(*batch, n, d_k, device="cuda"), lo),
    "n": torch.where(occ.bool()[:, None], torch.randn(*batch, n, d_v, device="cuda"), lo),
    "S": torch.rand(*batch, n, d_k, d_v, device="cuda") * occ[:, None, None],
    "z": (1 + torch.rand(*batch, n, d_k, device="cuda")) * occ[:, None]})
_, se = lsattn.exp_kernel_attention(torch.randn(*batch, 5, d_k, device="cuda"), torch.randn(*batch, 5, d_k, device="cuda"),
                                    torch.randn(*batch, 5, d_v, device="cuda"), return_state=True)
for dtype in (torch.float32, torch.bfloat16):
    ll = lsattn.stepper("loglinear_attention", st, max_tokens=P + 8)
    gd = lsattn.stepper("loglinear_gated_delta", sg, max_tokens=P + 8)
    hi = lsattn.stepper("loglinear_log_attention", sh, max_tokens=P + 8)
    ek = lsattn.stepper("exp_kernel_attention", se)
    assert {ll.backend, gd.backend, hi.backend, ek.backend} == {"cupy"}, (ll, gd, hi, ek)
    for t in range(6):
        q, k = (torch.randn(*batch, 1, d_k, device="cuda", dtype=dtype) for _ in range(2))
        v = torch.randn(*batch, 1, d_v, device="cuda", dtype=dtype)
        a = -torch.rand(*batch, 1, device="cuda", dtype=dtype)
        beta = torch.rand(*batch, 1, device="cuda", dtype=dtype)
        lam = torch.rand(*batch, 1, 9, device="cuda", dtype=dtype)
        ll(q, k, v, a, lam)
        gd(q, k / k.float().norm(dim=-1, keepdim=True).to(dtype), v, a, beta, lam)
        hi(q, k, v, lam, log_decay=a if t % 2 else None)
        ek(q, k, v)
    torch.cuda.synchronize()
    print(dtype, "offsets", ll.state.offset, gd.state.offset, hi.state.offset, ek.state.offset)
print("sanitize ok")
