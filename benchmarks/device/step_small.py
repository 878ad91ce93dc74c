"""A few fused cupy decoding steps (both operators, float32 and bfloat16 torch inputs, a carry over
several levels), small enough for compute-sanitizer (memcheck / racecheck) in the device session."""
import torch

import lsattn
from lsattn.state import State

torch.manual_seed(0)
batch, d_k, d_v, P = (2, 3), 40, 70, 61  # two warps' rows over d_k, three column tiles
n = P.bit_length()
occ = torch.tensor([(P >> j) & 1 for j in range(n)], device="cuda", dtype=torch.float32)
levels = torch.randn(*batch, n, d_k, d_v, device="cuda") * occ[:, None, None]
st = State("loglinear_attention", P, batch, d_k, d_v, torch.float32, {"levels": levels})
_, se = lsattn.exp_kernel_attention(torch.randn(*batch, 5, d_k, device="cuda"), torch.randn(*batch, 5, d_k, device="cuda"),
                                    torch.randn(*batch, 5, d_v, device="cuda"), return_state=True)
for dtype in (torch.float32, torch.bfloat16):
    ll = lsattn.stepper("loglinear_attention", st, max_tokens=P + 8)
    ek = lsattn.stepper("exp_kernel_attention", se)
    assert ll.backend == ek.backend == "cupy", (ll.backend, ek.backend)
    for t in range(6):
        q, k = (torch.randn(*batch, 1, d_k, device="cuda", dtype=dtype) for _ in range(2))
        v = torch.randn(*batch, 1, d_v, device="cuda", dtype=dtype)
        a = -torch.rand(*batch, 1, device="cuda", dtype=dtype)
        lam = torch.rand(*batch, 1, 9, device="cuda", dtype=dtype)
        ll(q, k, v, a, lam)
        ek(q, k, v)
    torch.cuda.synchronize()
    print(dtype, "offsets", ll.state.offset, ek.state.offset)
