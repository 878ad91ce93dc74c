"""Packaging facts: importing lsattn needs only NumPy and array-api-compat; the CLI runs."""
import subprocess
import sys


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
