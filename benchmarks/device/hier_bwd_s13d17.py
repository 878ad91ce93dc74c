"""Session 13, branch s13d17 (issue 17): loglinear_log_attention bf16 training against torch SDPA (a development
aid; results in NOTES.md).

    python benchmarks/device/hier_bwd_s13d17.py warm 256
        # compiles what the timings use: one bf16 fwd+bwd of the public call at the training chunk 32 and 64
    python benchmarks/device/hier_bwd_s13d17.py train 16384,32768 [SPECS]
        # bf16 fwd+bwd (bench_gpu_hierarchical's table calls: grad of q, k, v; loss out.float().square().mean()),
        # ours for each CHUNK:VARIANT of SPECS (default 32:new,64:new): the autograd forward and the backward at
        # that chunk (the training chunk when the caller gives none, hierarchical_bwd.config's default, set here),
        # the variant of the code ("new": the tree's; "pf0": hib_blocks without its prefetch of the next chunk,
        # -DHIB_PF=0); the specs of one variant timed interleaved with torch SDPA
        # (bench_gpu_hierarchical.interleaved_times), the variants one after another
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench_gpu_hierarchical import _table_calls, _train, interleaved_times  # noqa: E402  (puts the repository on sys.path)
from lsattn.backends.cupy import _compile, hierarchical_bwd as chb  # noqa: E402

what, Ts = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
specs = [(int(c), v) for c, v in (x.split(":") for x in (sys.argv[3] if len(sys.argv) > 3 else "32:new,64:new").split(","))]
variants = list(dict.fromkeys(v for _, v in specs))
config, source = chb.config, _compile._source


def use(name):
    """The variant ``name`` of the tree's backward; the compiled kernels dropped."""
    pre = {"pf0": "#define HIB_PF 0\n"}.get(name, "")
    _compile._source = lambda n: pre + source(n) if n == "hierarchical_bwd.cu" else source(n)
    _compile._kernels.cache_clear()
    _compile._launch.cache_clear()


def at(ch):
    """The call's training chunk ``ch`` (the autograd forward's and the backward's default)."""
    def run(fn):
        def f():
            chb.config = lambda ta, DK, DV, chunk_size=None, *a, **kw: config(ta, DK, DV, chunk_size or ch, *a, **kw)
            try:
                fn()
            finally:
                chb.config = config
        return f
    return run


for T in Ts:
    calls = _table_calls(torch, T, torch.bfloat16)
    for var in variants:
        use(var)
        fns = {f"hier c{ch} {var}": at(ch)(_train(torch, *calls["hier"])) for ch, v in specs if v == var}
        if what == "warm":
            for name, fn in fns.items():
                fn()
                print("warm", name, flush=True)
            torch.cuda.synchronize()
            continue
        fns["sdpa"] = _train(torch, *calls["sdpa"])
        res = interleaved_times(fns, reps=7, budget_s=5.0)
        print(f"T={T} bf16 fwd+bwd ms: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                     for k, v in res.items()), flush=True)
        if isinstance(res.get("sdpa"), float):
            print(f"T={T} / SDPA: " + ", ".join(f"{k} {v / res['sdpa']:.3f}" for k, v in res.items()
                                                if isinstance(v, float) and k != "sdpa"), flush=True)
        del fns
    use("new")
    del calls
