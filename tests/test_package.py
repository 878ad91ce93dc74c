"""Packaging facts: importing lsattn needs only NumPy and array-api-compat; the CLI runs."""
import subprocess
import sys

import lsattn


def test_import_does_not_import_frameworks():
    code = (
        "import sys, lsattn, lsattn.reference, lsattn.backends, lsattn.cli;"
        "heavy = sorted(m for m in ('torch', 'jax', 'cupy', 'numba', 'dask') if m in sys.modules);"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_public_names_from_the_contract():
    import lsattn

    for name in ("num_levels", "fenwick_level", "level_matrix", "reference", "backends"):
        assert hasattr(lsattn, name), name
    for name in ("log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta",
                 "loglinear_log_attention", "hierarchical_mask"):
        assert callable(getattr(lsattn.reference, name)), name


def test_module_entry_point_runs():
    run = subprocess.run([sys.executable, "-m", "lsattn", "info"], capture_output=True, text=True)
    assert run.returncode == 0 and "array_api" in run.stdout, run.stderr


def test_cli_demo_runs_every_operator_on_its_backends(capsys):
    """`lsattn demo` at a small size: one row per operator and backend, each within float32 accuracy."""
    from lsattn.cli import main

    assert main(["demo", "--T", "96", "--stream-log2", "5"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in lsattn.__all__]
    ops = {"log_attention", "exp_kernel_attention", "loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention"}
    assert {r[0] for r in rows} == ops
    assert {r[0] for r in rows if r[2] == "array_api"} == ops
    for r in rows:
        err = float(r[3] if r[3] != "(auto)" else r[4])
        assert err < 1e-5, r
    for op in ops:
        assert f"Streaming {op}: one token at a time" in out


def test_version_in_one_place():
    """``lsattn.__version__``, ``lsattn --version`` and the installed metadata agree."""
    import importlib.metadata

    from lsattn._version import __version__

    assert lsattn.__version__ == __version__ and __version__.count(".") >= 2
    run = subprocess.run([sys.executable, "-m", "lsattn", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == f"lsattn {__version__}", run.stdout + run.stderr
    try:
        installed = importlib.metadata.version("lsattn")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return
    assert installed == __version__, f"installed metadata says {installed}: reinstall (pip install -e .)"
