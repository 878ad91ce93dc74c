"""The backend registry: automatic choice, forced choice, clear errors, LSATTN_BACKEND."""
import numpy as np
import pytest

from lsattn import backends
from lsattn.backends import Backend


@pytest.fixture
def fake_backends(monkeypatch):
    """Two throw-away backends implementing a fake op; the registry is restored afterwards."""
    registry = dict(backends._REGISTRY)
    monkeypatch.setattr(backends, "_REGISTRY", registry)
    backends.register(Backend("fast", "numpy only", {"op": "numpy:add"}, probe=lambda: None,
                              serves=lambda xp, a: None if isinstance(a, np.ndarray) else "NumPy arrays only", priority=1))
    backends.register(Backend("gone", "never available", {"op": "numpy:subtract"}, probe=lambda: "package missing", serves=lambda xp, a: None, priority=0))
    backends.register(Backend("generic", "everything", {"op": "numpy:multiply"}, probe=lambda: None, serves=lambda xp, a: None, priority=50))
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    return registry


def test_auto_picks_best_available_that_serves(fake_backends):
    assert backends.select("op", np, np.zeros(2)) is np.add  # "gone" has higher priority but is unavailable
    assert backends.select("op", None, [1.0]) is np.multiply  # "fast" does not serve lists


def test_forced_backend_is_never_a_silent_fallback(fake_backends):
    assert backends.select("op", np, np.zeros(2), "generic") is np.multiply
    with pytest.raises(RuntimeError, match="'gone' is not available here: package missing"):
        backends.select("op", np, np.zeros(2), "gone")
    with pytest.raises(ValueError, match="'fast' cannot compute op on these arrays: NumPy arrays only"):
        backends.select("op", None, [1.0], "fast")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        backends.select("op", np, np.zeros(2), "nope")
    with pytest.raises(ValueError, match="does not implement other"):
        backends.select("other", np, np.zeros(2), "fast")


def test_auto_serves_narrows_only_the_automatic_choice(fake_backends):
    """A backend can be forced onto more arrays than backend=None sends it (cupy: torch CUDA)."""
    backends.register(Backend("narrow", "forced only for NumPy", {"op": "numpy:divide"}, probe=lambda: None,
                              serves=lambda xp, a: None, auto_serves=lambda xp, a: "not automatically", priority=0))
    assert backends.select("op", np, np.zeros(2)) is np.add
    assert backends.select("op", np, np.zeros(2), "narrow") is np.divide


def test_environment_variable_sets_the_default(fake_backends, monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "generic")
    assert backends.select("op", np, np.zeros(2)) is np.multiply
    monkeypatch.setenv(backends.ENV_VAR, "gone")
    with pytest.raises(RuntimeError, match="not available"):
        backends.select("op", np, np.zeros(2))


def test_available_lists_status_and_reason(fake_backends):
    rows = {name: (ok, reason, ops) for name, ok, reason, ops in backends.available()}
    assert rows["gone"] == (False, "package missing", ["op"])
    assert rows["fast"] == (True, "ok", ["op"])
    assert rows["array_api"][0] is True


def test_probe_that_raises_is_reported_unavailable(fake_backends):
    def boom():
        raise ImportError("no module named cupy")

    backends.register(Backend("broken", "", {"op": "numpy:add"}, probe=boom, serves=lambda xp, a: None, priority=0))
    assert backends.get("broken").status() == (False, "ImportError: no module named cupy")
    assert backends.select("op", np, np.zeros(2)) is np.add


def test_cli_info_prints_the_table(capsys):
    from lsattn.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "array_api" in out and "available" in out
