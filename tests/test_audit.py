"""lsattn.audit: compare() on user functions, the planted overflow of the naive forms, the audit's
own formulations and row oracles against lsattn.reference, stable JSON records, the CLI."""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

import lsattn
from lsattn import audit
from lsattn.audit import EPS, RECORD_KEYS

from helpers import asarray, to_numpy

F32 = EPS["float32"]

# The exact record keys promised to JSON consumers; changing them breaks users' scripts.
KEYS = {
    "op", "formulation", "backend", "namespace", "dtype", "scale", "T",
    "max_abs_err", "max_rel_err", "normwise_rel_err", "err_in_eps", "nonfinite", "seconds", "skipped",
}


def _by(records, **match):
    return [r for r in records if all(r[k] == v for k, v in match.items())]


# ---- compare() on a user function -----------------------------------------------------------


def test_compare_user_function_with_a_known_perturbation(xp):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 4))
    x[0, 0, 0] = 0.0  # an exact zero the function reproduces: contributes 0, not 0/0
    pert = 1e-6 * rng.standard_normal(x.shape)
    pert[0, 0, 0] = 0.0
    xa = asarray(xp, x)

    def fn(a):
        return a + asarray(xp, pert)

    def ref(a):
        return a

    c = audit.compare(fn, ref, (xa,))
    # Expected figures, from the definitions, on the float64 values themselves.
    diff = np.abs((x + pert) - x)
    nz = x != 0
    assert c.max_abs_err == pytest.approx(diff.max(), rel=1e-12)
    assert c.max_rel_err == pytest.approx((diff[nz] / np.abs(x[nz])).max(), rel=1e-9)
    assert c.normwise_rel_err == pytest.approx(diff.max() / np.abs(x).max(), rel=1e-12)
    assert c.err_in_eps == pytest.approx(c.normwise_rel_err / 2.0**-52, rel=1e-12)
    assert (c.nan_count, c.inf_count, c.mismatched, c.size, c.dtype) == (0, 0, 0, x.size, "float64")
    assert c.finite and c.breakdown_scale is None
    # keyword inputs give the same figures
    assert audit.compare(fn, ref, {"a": xa}).as_dict() == c.as_dict()


def test_compare_float32_output_eps_and_nonfinite():
    x = np.linspace(-2.0, 3.0, 12)
    out32 = x.astype(np.float32)
    c = audit.compare(lambda a: a.astype(np.float32), lambda a: a, (x,))
    diff = np.abs(out32.astype(np.float64) - x)
    assert c.dtype == "float32"
    assert c.normwise_rel_err == pytest.approx(diff.max() / 3.0, rel=1e-12)
    assert c.err_in_eps == pytest.approx(diff.max() / 3.0 / F32, rel=1e-12)
    assert c.err_in_eps <= 0.5  # one rounding to nearest

    def broken(a):
        out = a.astype(np.float32)
        out[2], out[5] = np.nan, np.inf
        return out

    c = audit.compare(broken, lambda a: a, (x,))
    assert (c.nan_count, c.inf_count, c.mismatched) == (1, 1, 2)
    assert not c.finite and math.isinf(c.normwise_rel_err) and math.isinf(c.max_abs_err)


def test_compare_matching_infinities_are_not_errors():
    ref = np.array([1.0, -np.inf, 2.0])
    c = audit.compare(lambda: ref.copy(), lambda: ref, ())
    assert c.finite and c.normwise_rel_err == 0.0 and c.inf_count == 1


def test_compare_scales_finds_the_breakdown_scale():
    # exp in float32 overflows once the argument exceeds log(max float32) = 88.72...
    def make(scale):
        return (scale * np.linspace(0.0, 1.0, 11),)

    scales = [1.0, 50.0, 80.0, 100.0, 200.0]
    with np.errstate(over="ignore"):
        c = audit.compare(lambda a: np.exp(a.astype(np.float32)), np.exp, make, scales=scales)
    assert c.breakdown_scale == 100.0
    assert sorted(c.by_scale) == scales
    assert all(c.by_scale[s].finite for s in (1.0, 50.0, 80.0)) and not c.by_scale[100.0].finite
    assert c.by_scale[80.0].err_in_eps <= 0.5 + 1e-9  # exp correctly rounded to within an ulp
    with np.errstate(over="ignore"):
        assert audit.breakdown_scale(lambda a: np.exp(a.astype(np.float32)), make, scales) == 100.0
    assert audit.breakdown_scale(np.exp, make, scales) is None


def test_compare_rejects_mismatched_shapes_and_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        audit.compare(lambda: np.zeros(3), lambda: np.zeros(4), ())
    with pytest.raises(TypeError, match="inputs"):
        audit.compare(lambda a: a, lambda a: a, np.zeros(3))
    with pytest.raises(TypeError, match="scales"):
        audit.compare(lambda a: a, lambda a: a, (np.zeros(3),), scales=[1.0])


# ---- the planted overflow ---------------------------------------------------------------------


@pytest.mark.parametrize("op", ["exp_kernel_attention", "log_attention"])
def test_planted_overflow_of_naive_exp_kernel_in_float32(op):
    """At |q|, |k| up to 90 the naive exp(q) @ exp(k).T overflows float32 (exp(88.73) = inf);
    lsattn stays finite with the error of rounding q + k in float32, and is as good as the naive
    form where that one is finite."""
    scales = [1.0, 90.0]
    recs = audit.sweep([op], ["float32"], scales, [64], formulation_names=["lsattn", "naive"])
    naive = {r["scale"]: r for r in _by(recs, formulation="naive")}
    ours = {r["scale"]: r for r in _by(recs, formulation="lsattn")}
    assert ours, "no lsattn formulation audited"
    assert naive[90.0]["nonfinite"] > 0 and math.isinf(naive[90.0]["normwise_rel_err"])
    assert naive[1.0]["nonfinite"] == 0 and naive[1.0]["normwise_rel_err"] < 8 * F32
    for scale in scales:
        r = ours[scale]
        assert r["skipped"] is None and r["nonfinite"] == 0
        # Rounding q_i + k_i (|.| <= 2 scale) perturbs every weight by a relative 2 scale eps/2,
        # numerator and denominator alike: no float32 formulation can promise less.
        assert r["normwise_rel_err"] <= 2 * scale * F32 + 16 * F32, r
    # ... and the table says where the naive form breaks
    text = audit.table(recs)
    row = next(line for line in text.splitlines() if line.startswith(op) and " naive " in line)
    assert " 90 " in row


def test_breakdown_scale_of_naive_vs_lsattn():
    def make(scale):
        x = audit.make_inputs("exp_kernel_attention", 32, scale)
        return {n: a.astype(np.float32) for n, a in x.items()}

    scales = [1.0, 10.0, 20.0, 40.0, 90.0, 1e3, 1e4]
    with np.errstate(all="ignore"):
        naive = audit.breakdown_scale(audit.naive_exp_kernel_attention, make, scales)
    # q_i + k_i reaches ~2 * scale: products overflow from ~44, exp(q) alone from 88.7
    assert naive in (40.0, 90.0)
    assert audit.breakdown_scale(lsattn.exp_kernel_attention, make, scales) is None


def test_planted_underflow_of_linear_space_decays():
    # cumsum(a) reaches about -T scale / 2: exp underflows float32 (below e^-103) -> 0/0 = NaN
    recs = audit.sweep(["loglinear_attention"], ["float32"], [0.01, 10.0], [64], ["array_api"], ["lsattn", "naive"])
    naive = {r["scale"]: r for r in _by(recs, formulation="naive")}
    assert naive[10.0]["nonfinite"] > 0 and naive[0.01]["nonfinite"] == 0
    for r in _by(recs, formulation="lsattn"):
        assert r["nonfinite"] == 0 and r["normwise_rel_err"] < 1e-5


# ---- the audit's own formulations and oracles --------------------------------------------------


@pytest.mark.parametrize("op", list(audit.OPS))
def test_comparison_formulations_and_row_oracles_match_reference(op):
    x = audit.make_inputs(op, 37, 2.0, batch=(2, 3), d=5)
    ref = to_numpy(getattr(lsattn.reference, op)(**x))
    rows = np.array([0, 1, 2, 15, 16, 31, 36])
    np.testing.assert_allclose(audit.oracle(op, x, rows), ref[..., rows, :], rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    for f in audit.COMPARISONS[op]:
        np.testing.assert_allclose(to_numpy(f.fn(**x)), ref, rtol=1e-11, atol=1e-11 * np.abs(ref).max(), err_msg=f.name)


@pytest.mark.skipif(np.finfo(np.longdouble).eps > 1e-18, reason="needs an extended-precision long double")
def test_decay_oracle_sums_suffixes_exactly():
    """With strong decays the cumulative log decay reaches |A| ~ 1e5: exp(A_t - A_s) from float64
    cumulative sums is off by ~|A| eps ~ 1e-11; the audit's suffix sums hold 1e-15 against a
    long double (64-bit mantissa) evaluation of the same rows."""
    x = audit.make_inputs("loglinear_attention", 4096, 100.0, batch=(1,), d=4)
    rows = np.array([1000, 2047, 2048, 4095])
    ld = {n: a.astype(np.longdouble) for n, a in x.items()}
    A = np.cumsum(ld["log_decay"], axis=-1)
    exact = []
    for t in rows:
        lev = lsattn.fenwick_level(np.int64(t), np.arange(t + 1))
        coef = ld["level_weights"][..., t, lev] * np.exp(A[..., t, None] - A[..., : t + 1])
        exact.append(((coef * (ld["k"][..., : t + 1, :] @ ld["q"][..., t, :, None])[..., 0])[..., None] * ld["v"][..., : t + 1, :]).sum(-2))
    exact = np.stack(exact, axis=-2).astype(np.float64)
    got = audit.oracle("loglinear_attention", x, rows)
    assert np.abs(got - exact).max() <= 1e-15 * np.abs(exact).max()


def test_audit_rows_cover_ends_and_fenwick_boundaries():
    assert audit.audit_rows(audit.FULL_REFERENCE_T) is None
    rows = audit.audit_rows(4096)
    assert rows[0] == 0 and rows[-1] == 4095 and {1023, 1024, 2047, 2048} <= set(rows.tolist())
    assert np.all(np.diff(rows) > 0)


def test_long_sequence_uses_row_oracle(monkeypatch):
    monkeypatch.setattr(audit, "FULL_REFERENCE_T", 16)
    recs = audit.sweep(["loglinear_attention"], ["float64"], [1.0], [40], ["array_api"], ["lsattn"])
    assert recs[0]["skipped"] is None and recs[0]["normwise_rel_err"] < 1e-12


def test_paper_formulation_materialises_and_is_skipped_beyond_budget():
    recs = audit.sweep(["log_attention"], ["float32"], [1.0], [16, 256], formulation_names=["paper", "naive"], memory_budget=2**20)
    small, large = _by(recs, T=16), _by(recs, T=256)
    assert all(r["skipped"] is None for r in small)
    assert all(r["skipped"].startswith("exceeds the memory budget") for r in large)
    assert all(r[k] is None for r in large for k in ("normwise_rel_err", "nonfinite", "seconds"))


# ---- the sweep and its records ----------------------------------------------------------------


def test_json_keys_stable_and_deterministic(tmp_path):
    kw = dict(ops=["log_attention", "loglinear_gated_delta"], dtypes=["float16", "float32"], scales=[1.0, 100.0], lengths=[1, 8], backends=["array_api"])
    recs = audit.sweep(**kw)
    assert set(RECORD_KEYS) == KEYS
    path = tmp_path / "audit.json"
    audit.write_json(recs, path)
    loaded = json.loads(path.read_text())  # strict JSON: no NaN/Infinity tokens
    assert isinstance(loaded, list) and len(loaded) == len(recs)
    for r in loaded:
        assert set(r) == KEYS and list(r) == list(RECORD_KEYS)
        assert isinstance(r["op"], str) and isinstance(r["T"], int) and isinstance(r["scale"], float)
        if r["skipped"] is None:
            assert isinstance(r["nonfinite"], int) and r["seconds"] >= 0
            assert (r["normwise_rel_err"] is None) == (r["nonfinite"] > 0)
    assert "Infinity" not in path.read_text() and "NaN" not in path.read_text()
    # deterministic seeds: the same sweep gives the same figures
    again = audit.sweep(**kw)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in recs]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in again]
    other = audit.sweep(**kw, seed=1)
    assert [r["max_abs_err"] for r in other] != [r["max_abs_err"] for r in recs]


def test_dtypes_the_namespace_lacks():
    recs = audit.sweep(["exp_kernel_attention"], ["bfloat16"], [1.0], [4], namespace="numpy")
    assert recs and all(r["skipped"] == "namespace numpy has no bfloat16" for r in recs)
    default = audit.sweep(["exp_kernel_attention"], None, [1.0], [4], ["array_api"], namespace="numpy")
    assert sorted({r["dtype"] for r in default}) == ["float16", "float32", "float64"]


def test_bfloat16_on_torch():
    pytest.importorskip("torch")
    recs = audit.sweep(["log_attention"], ["bfloat16"], [1.0, 90.0], [16], namespace="torch")
    ours, naive, paper = (_by(recs, formulation=n) for n in ("lsattn", "naive", "paper"))
    assert all(r["skipped"] is None and r["nonfinite"] == 0 for r in ours)
    # computed in float32, rounded once to bfloat16 (log y of size ~1-3: a few ulps at most)
    assert all(r["err_in_eps"] <= 4 for r in ours)
    assert _by(naive, scale=90.0)[0]["nonfinite"] > 0  # bfloat16 has float32's range: exp(88.8) = inf
    assert all("bfloat16" in r["skipped"] for r in paper)


def test_array_api_strict_namespace():
    pytest.importorskip("array_api_strict")
    recs = audit.sweep(["exp_kernel_attention"], None, [1.0], [8], namespace="array_api_strict", formulation_names=["lsattn", "naive"])
    assert {r["dtype"] for r in recs} == {"float32", "float64"}  # no float16 in the standard
    assert all(r["skipped"] is None and r["normwise_rel_err"] < 1e-5 for r in recs)


def test_unavailable_backend_is_a_recorded_skip():
    recs = audit.sweep(["exp_kernel_attention"], ["float32"], [1.0], [4], backends=["cupy"], formulation_names=["lsattn"])
    assert recs and all(r["skipped"] and "cupy" in r["skipped"] for r in recs)


def test_register_formulation_audits_a_user_kernel():
    def sloppy(q, k, v):  # the naive form in float16, whatever the input dtype
        return audit.naive_exp_kernel_attention(q.astype(np.float16), k.astype(np.float16), v.astype(np.float16))

    f = audit.Formulation("exp_kernel_attention", "mine", "-", sloppy, "user kernel")
    audit.register_formulation(f)
    try:
        recs = audit.sweep(["exp_kernel_attention"], ["float64"], [1.0, 30.0], [16], formulation_names=["mine"])
    finally:
        audit.COMPARISONS["exp_kernel_attention"].remove(f)
    by_scale = {r["scale"]: r for r in recs}
    assert 1e-5 < by_scale[1.0]["normwise_rel_err"] < 1e-2  # float16 accuracy, measured in float64 eps
    assert by_scale[30.0]["nonfinite"] > 0


def test_progress_callback_counts_every_case():
    seen = []
    recs = audit.sweep(["exp_kernel_attention"], ["float32"], [1.0, 2.0], [4], ["array_api"], progress=lambda i, n, label: seen.append((i, n)))
    assert seen[-1] == (len(recs), len(recs)) and [i for i, _ in seen[:-1]] == list(range(len(recs)))


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(RuntimeError, match="matplotlib"):
        audit.plot([], tmp_path / "x.png")


# ---- the command ------------------------------------------------------------------------------


def test_cli_quick_writes_json_and_png(tmp_path, capsys):
    """`lsattn audit --quick` end to end (about 20 s on 2 idle cores)."""
    from lsattn.cli import main

    js, png = tmp_path / "audit.json", tmp_path / "audit.png"
    assert main(["audit", "--quick", "--quiet", "--json", str(js), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "non-finite from scale" in out and "wrote" in out
    recs = json.loads(js.read_text())
    n_forms = sum(len(audit.formulations(op)) for op in audit.OPS)
    assert len(recs) == n_forms * 3 * len(audit.QUICK_SCALES) * len(audit.QUICK_LENGTHS)
    assert {r["op"] for r in recs} == set(audit.OPS)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # every lsattn case that ran is finite
    assert all(r["nonfinite"] == 0 for r in recs if r["formulation"] == "lsattn" and r["skipped"] is None)


def test_cli_lists_and_filters(tmp_path, capsys):
    from lsattn.cli import main

    js = tmp_path / "a.json"
    argv = ["audit", "--ops", "exp_kernel_attention,log_attention", "--dtypes", "float32", "--scales", "1", "100",
            "--lengths", "8", "--formulations", "naive", "--quiet", "--json", str(js)]
    assert main(argv) == 0
    recs = json.loads(js.read_text())
    assert {(r["op"], r["scale"]) for r in recs} == {(o, s) for o in ("exp_kernel_attention", "log_attention") for s in (1.0, 100.0)}
    assert {r["formulation"] for r in recs} == {"naive"}


def test_progress_bar_rewrites_one_line():
    import io

    buf = io.StringIO()
    bar = audit.ProgressBar(buf, width=10)
    bar(0, 4, "first")
    bar(2, 4, "second")
    bar(4, 4, "done")
    text = buf.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "[#####.....] 2/4 second" in text and "[##########] 4/4 done" in text
