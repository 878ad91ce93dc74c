"""The code examples of the documentation are executed, so they cannot rot.

- Every fenced ``python`` block of ``docs/*.md`` and ``README.md`` runs, page by page in one
  namespace (a page reads like a notebook), in a fresh interpreter (examples may register audit
  formulations or set backends). Blocks with ``>>>`` prompts are doctests (their printed output is
  compared); other blocks are executed and must not raise. A block that cannot run here (a GPU, a
  cluster-sized run, pseudo-code) is preceded by ``<!-- docs-test: skip (reason) -->``.
- The ``Examples`` sections of the docstrings of every public module are doctests; the public
  functions must have one.
"""
from __future__ import annotations

import doctest
import importlib
import os
import pathlib
import pkgutil
import re
import subprocess
import sys

import numpy as np
import pytest

import lsattn

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
SKIP_EXIT = 77
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# A fence opening a python block, with the line before it (for the skip marker).
_FENCE = re.compile(r"(?P<before>^[^\n]*\n)?^```python[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.S | re.M)
_OPTIONAL = re.compile(r"^\s*(?:>>>\s*)?(?:import|from)\s+(torch|jax|dask|distributed|cupy|numba)\b", re.M)


def python_blocks(text):
    """``(line, code, skipped)`` for each fenced python block of a Markdown text."""
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start("code")) + 1
        yield line, m.group("code"), "docs-test: skip" in (m.group("before") or "")


def run_page(path):
    """Execute a page's python blocks in one namespace (the body of the subprocess)."""
    import importlib.util

    text = pathlib.Path(path).read_text()
    blocks = [(line, code) for line, code, skipped in python_blocks(text) if not skipped]
    lacking = sorted({m for _, code in blocks for m in _OPTIONAL.findall(code) if importlib.util.find_spec(m) is None})
    if lacking:
        print(f"needs {', '.join(lacking)}, not installed")
        return SKIP_EXIT
    print(f"lsattn from {pathlib.Path(lsattn.__file__).parent}")
    ns, failed = {"__name__": "__docs__"}, 0
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for line, code in blocks:
        if ">>>" in code:
            test = doctest.DocTestParser().get_doctest(code, ns, f"{path}:{line}", str(path), line - 1)
            failed += runner.run(test, clear_globs=False).failed
            ns.update(test.globs)
        else:
            exec(compile(code, f"{path}:{line}", "exec"), ns)
    return 1 if failed else 0


def _pages_with_code():
    return [p for p in PAGES if any(not skipped for _, _, skipped in python_blocks(p.read_text()))]


@pytest.mark.parametrize("page", _pages_with_code(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_examples_run(page, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # this tree's lsattn
    run = subprocess.run([sys.executable, __file__, str(page)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    if run.returncode == SKIP_EXIT:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-6000:]
    assert f"lsattn from {ROOT / 'lsattn'}" in run.stdout, run.stdout[:500]  # this tree's, not an installed one


def test_skip_markers_only_on_python_blocks():
    """A skip marker that does not sit right above a python block would silently not apply."""
    for page in PAGES:
        text = page.read_text()
        marked = sum(skipped for _, _, skipped in python_blocks(text))
        assert text.count("docs-test: skip") == marked, page


def public_modules():
    names = ["lsattn"] + [m.name for m in pkgutil.walk_packages(lsattn.__path__, "lsattn.")
                          if not m.name.rsplit(".", 1)[-1].startswith("_")]
    return sorted(names)


def docstring_examples():
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = {}
    for name in public_modules():
        try:
            module = importlib.import_module(name)
        except ImportError:  # a backend module whose framework is not installed
            continue
        # the convention of NumPy's docstrings: examples assume ``import numpy as np`` (and here
        # ``import lsattn``) without repeating it
        for test in finder.find(module, name, globs={**vars(module), "np": np, "lsattn": lsattn}):
            if test.examples and test.name.startswith(name):  # defined here, not re-exported
                tests.setdefault(test.name, test)
    return tests


DOCTESTS = docstring_examples() if __name__ != "__main__" else {}


@pytest.mark.parametrize("name", sorted(DOCTESTS))
def test_docstring_examples(name):
    test = DOCTESTS[name]
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, clear_globs=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"


@pytest.mark.parametrize("name", ["num_levels", "fenwick_level", "level_matrix", "log_attention", "exp_kernel_attention",
                                  "loglinear_attention", "loglinear_gated_delta", "loglinear_log_attention", "stepper"])
def test_public_functions_have_examples(name):
    fn = getattr(lsattn, name)
    assert any(t.endswith(f".{name}") for t in DOCTESTS), f"lsattn.{name}'s docstring has no Examples section"
    assert fn.__doc__ and "Examples\n    --------" in fn.__doc__


if __name__ == "__main__":  # the subprocess of test_page_examples_run: python tests/test_docs.py PAGE
    sys.exit(run_page(sys.argv[1]))
