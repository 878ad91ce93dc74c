"""Demo cases of ``lsattn demo``, one block per implemented operator (registered on import)."""
from __future__ import annotations

from .cli import register_demo, register_stream  # noqa: F401
