"""Session 15, branch s15d17 (issue 17): the bf16 ``log_attention`` backward's tensor-core kernels
(``exp_kernel_bwd_tc.cu``) before / after this branch in one process (a development aid; results in NOTES.md).

    python benchmarks/device/ek_ab_s15d17.py equal BASE_DIR
        # gradients of bf16 log_attention / exp_kernel_attention (public calls, torch autograd) under the base
        # kernels (BASE_DIR/exp_kernel_bwd_tc.cu.txt: main's at 26378e6) and the tree's: bitwise equal
        # expected (the same arithmetic); cases: d=64 at 4096 tokens, log values up to 1e3 with -inf entries
        # and an all -inf column, a key spike (exact rows; U'' beyond e^80: its slow path), T off the chunk,
        # d = 40 and d = 2 (o staged: DV % 4 != 0), a +100 key spike (U'' past e^80: the slow pass); and the
        # tree's kernels run twice (deterministic)
    python benchmarks/device/ek_ab_s15d17.py ab BASE_DIR T[,T..] DTYPES [ROUNDS]
        # ek_ab_s14e17's A/B (fwd+bwd medians, interleaved; then per kernel) at each T, this file swapped only
"""
import sys

import torch

sys.path[:0] = ["benchmarks", "benchmarks/device", "tests"]
import lsattn  # noqa: E402
import ek_ab_s13a17  # noqa: E402
import ek_ab_s14e17  # noqa: E402

ek_ab_s13a17.FILES = ("exp_kernel_bwd_tc.cu",)  # the only file this branch changes


def _case(T, d, lv_scale, p_inf, spike, seed):
    from test_cupy_log_attention import key_spike, lv_inputs

    q, k, lv = lv_inputs(seed, (2,), T, d, d, 3.0 if spike else 1.0, lv_scale, p_inf)
    if spike:  # test_cupy_log_attention's key spike (+60), or +spike (+100: U'' past e^80, ekb_dkdv_tc's slow pass)
        key_spike(k, lv, lv_scale)
        if spike is not True:
            k[..., (2 * T) // 3, :] += spike - 60.0
    return [torch.tensor(x, device="cuda").to(torch.bfloat16) for x in (q, k, lv)]


def _grads(op, xs):
    xs = [x.clone().requires_grad_(True) for x in xs]
    out = op(*xs)
    do = torch.randn(out.shape, generator=torch.Generator("cuda").manual_seed(1), device="cuda").to(out.dtype)
    torch.autograd.backward(out, do)
    return [x.grad.clone() for x in xs]


def equal(base):
    cases = [(4096, 64, 1.0, 0.0, False), (4096, 64, 1e3, 0.3, False), (4000, 64, 30.0, 0.3, True),
             (300, 64, 1e3, 0.0, True), (150, 40, 30.0, 0.3, True), (129, 2, 1e3, 0.3, True), (200, 16, 1.0, 0.0, False),
             (300, 64, 1e3, 0.0, 100.0), (129, 16, 1e3, 0.0, 100.0)]
    bad = 0
    for T, d, lv_scale, p_inf, spike in cases:
        xs = _case(T, d, lv_scale, p_inf, spike, T + d)
        for op in (lsattn.log_attention, lsattn.exp_kernel_attention):
            res = {}
            for name, dd in (("base", base), ("new", None), ("new2", None)):
                ek_ab_s14e17.use(dd)
                res[name] = _grads(op, xs)
            same = all(torch.equal(a, b) for a, b in zip(res["base"], res["new"]))
            det = all(torch.equal(a, b) for a, b in zip(res["new"], res["new2"]))
            fin = all(bool(torch.isfinite(g).all()) for g in res["new"])
            diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(res["base"], res["new"]))
            bad += not (same and fin)
            print(f"equal {op.__name__:20s} T={T} d={d} lv_scale={lv_scale} p_inf={p_inf} spike={spike}: "
                  f"{'bitwise equal' if same else 'DIFFER max %.3g' % diff} (new repeat {'equal' if det else 'differs'})"
                  f"{'' if fin else ' NONFINITE'}", flush=True)
    ek_ab_s14e17.use(None)
    print(f"equal: {len(cases) * 2 - bad} of {len(cases) * 2} cases bitwise equal and finite", flush=True)


def main():
    what, base = sys.argv[1], sys.argv[2]
    if what == "equal":
        return equal(base)
    argv = list(sys.argv)
    for T in argv[3].split(","):
        sys.argv = [argv[0], base, T] + argv[4:]
        ek_ab_s14e17.main()


if __name__ == "__main__":
    main()
