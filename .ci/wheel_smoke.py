"""Build the sdist and wheel, install the wheel into a clean virtual environment, smoke-test it.

    python .ci/wheel_smoke.py            # from the repository root (make dist-check; CI runs it)

Fails when the wheel lacks a file of the source package (a missing package-data line: the .cu
kernel sources, py.typed) or carries anything else (tests, benchmarks, results), or when the
installed package does not import, run its CLI (``lsattn --version``, ``lsattn info``) or compute
each operator on NumPy. The checks of the installed package run with ``--installed`` inside the
clean environment, from a directory outside the source tree, so only the wheel is imported.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(*cmd, **kw):
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def source_package_files():
    """Files of the source package the wheel must carry (paths relative to the repository root):
    git's tracked and not-ignored files under lsattn/, or every file there outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "lsattn"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
        return {f for f in out if (ROOT / f).is_file()}
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "lsattn").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    }


def check_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = {n for n in names if not n.split("/")[0].endswith(".dist-info")}
    missing, extra = source_package_files() - package, package - source_package_files()
    assert not missing, f"the wheel lacks files of the source package (package-data?): {sorted(missing)}"
    assert not extra, f"the wheel carries files that are not the package's: {sorted(extra)}"
    assert any(n.endswith(".cu") for n in package) and "lsattn/py.typed" in package
    print(f"wheel contents: {len(package)} package files, every one of the source package, nothing else")


def outer():
    with tempfile.TemporaryDirectory(prefix="lsattn-wheel-") as tmp:
        tmp = pathlib.Path(tmp)
        # build from a copy without build leftovers: a stale *.egg-info/SOURCES.txt would add the
        # files it lists to the sdist and hide a missing package-data line
        src = tmp / "src"
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
            ".git", ".venv", "*.egg-info", "build", "dist", "_build", "__pycache__", ".hypothesis", ".pytest_cache"))
        _run(sys.executable, "-m", "build", "--outdir", tmp / "dist", src, stdout=subprocess.DEVNULL)
        (wheel,) = (tmp / "dist").glob("lsattn-*.whl")
        (sdist,) = (tmp / "dist").glob("lsattn-*.tar.gz")
        print(f"built {sdist.name} and {wheel.name}")
        check_wheel_contents(wheel)
        _run(sys.executable, "-m", "venv", tmp / "venv")
        bin_ = tmp / "venv" / ("Scripts" if os.name == "nt" else "bin")
        _run(bin_ / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
        work = tmp / "elsewhere"  # outside the source tree: only the installed wheel can be imported
        work.mkdir()
        _run(bin_ / "lsattn", "--version", cwd=work)
        _run(bin_ / "lsattn", "info", cwd=work)
        _run(bin_ / "python", pathlib.Path(__file__).resolve(), "--installed", cwd=work)
    print("wheel smoke test passed")


def installed():
    import importlib.metadata
    import importlib.resources

    import numpy as np

    import lsattn

    where = pathlib.Path(lsattn.__file__).resolve()
    assert ROOT not in where.parents, f"imported the source tree ({where}), not the installed wheel"
    assert lsattn.__version__ == importlib.metadata.version("lsattn"), lsattn.__version__
    extras = set(importlib.metadata.metadata("lsattn").get_all("Provides-Extra"))
    assert {"torch", "jax", "numba", "dask", "cupy12", "cupy13", "all", "docs"} <= extras, extras
    out = subprocess.run([sys.executable, "-m", "lsattn", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"lsattn {lsattn.__version__}", out.stdout
    def walk(node):
        for f in node.iterdir():
            yield from walk(f) if f.is_dir() else [f]

    cu = [f.name for f in walk(importlib.resources.files("lsattn")) if f.name.endswith(".cu")]
    assert cu, "no .cu kernel source in the installed package"
    assert importlib.resources.files("lsattn").joinpath("py.typed").is_file(), "py.typed missing"

    rng = np.random.default_rng(0)
    B, T, d = 2, 37, 4
    q, k, v = (rng.standard_normal((B, T, d)) for _ in range(3))
    a = -0.1 * rng.random((B, T))
    beta = rng.random((B, T))
    k_unit = k / np.linalg.norm(k, axis=-1, keepdims=True)
    lam = rng.random((B, T, lsattn.num_levels(T)))
    log_v = np.log(np.abs(v))
    calls = {
        "log_attention": (q, k, log_v),
        "exp_kernel_attention": (q, k, v),
        "loglinear_attention": (q, k, v, a, lam),
        "loglinear_gated_delta": (q, k_unit, v, a, beta, lam),
        "loglinear_log_attention": (q, k, log_v, np.log(lam)),
    }
    for op, args in calls.items():
        out = getattr(lsattn, op)(*args)
        ref = getattr(lsattn.reference, op)(*args)
        err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
        assert out.shape == ref.shape and err < 1e-10, (op, out.shape, err)
        print(f"{op}: shape {out.shape}, max rel err vs reference {err:.1e}")
    assert lsattn.level_matrix(5)[4, 0] == lsattn.fenwick_level(4, 0) == 3
    print(f"installed lsattn {lsattn.__version__} at {where.parent}: imports, CLI, {len(cu)} .cu files, 5 operators")


if __name__ == "__main__":
    installed() if sys.argv[1:] == ["--installed"] else outer()
