"""The version of lsattn, in one place: read by pyproject.toml (setuptools dynamic version), exported
as ``lsattn.__version__`` and printed by ``lsattn --version``."""

__version__ = "0.1.0"
