"""First-call latency of the numba backend (issue 21, point 8): one compiled specialisation per
kernel and dtype, whatever the inputs' flags (read-only, broadcast), and ``lsattn info --warm``
compiles (or loads) exactly those."""
from __future__ import annotations

import numpy as np
import pytest

import lsattn

pytest.importorskip("numba")

from lsattn.backends import numba_cpu  # noqa: E402

KERNELS = ("ek_causal", "ek_full", "loglinear_scan", "hier_scan")


def test_warm_then_read_only_inputs_compile_nothing_more(capsys):
    from lsattn.backends import _numba_kernels as K
    from lsattn.cli import main

    assert main(["info", "--warm"]) == 0
    printed = capsys.readouterr().out
    assert all(k in printed for k in KERNELS) and "float32" in printed and "float64" in printed
    before = {k: len(getattr(K, k).signatures) for k in KERNELS}
    assert all(n == 2 for n in before.values()), before  # float32 and float64
    rng = np.random.default_rng(0)
    for dt in ("float32", "float64"):
        n = lambda *s: rng.standard_normal(s).astype(dt)
        q, k, v = (np.broadcast_to(n(1, 3, 2), (1, 3, 2)) for _ in range(3))  # read-only views
        a = np.broadcast_to(-rng.random((1, 1)).astype(dt), (1, 3))
        lam = np.broadcast_to(n(1, 1, 3), (1, 3, 3))
        for x in (q, k, v, a, lam):
            assert not x.flags.writeable
        _, st = lsattn.loglinear_attention(q, k, v, a, lam, backend="numba", return_state=True)
        st.tensors["levels"].flags.writeable = False  # a read-only state too
        lsattn.loglinear_attention(q[:, :1], k[:, :1], v[:, :1], a[:, :1], lam[:, :1], state=st, backend="numba")
        lsattn.loglinear_gated_delta(q, k, v, a, a, lam, backend="numba")
        lsattn.log_attention(q, k, v, backend="numba")
        lsattn.exp_kernel_attention(q, k, v, causal=False, backend="numba")
        lsattn.loglinear_log_attention(q, k, v, lam, backend="numba")
    assert {k: len(getattr(K, k).signatures) for k in KERNELS} == before


@pytest.mark.parametrize("dtypes", ["float32", ("float16",), ("float32", "int8")])
def test_warm_rejects_other_dtypes(dtypes):
    with pytest.raises(ValueError, match="float32 and/or float64"):
        numba_cpu.warm(dtypes=dtypes)
