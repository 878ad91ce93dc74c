"""MQAR with every lsattn mixer side by side: ``python -m examples.mqar`` (docs/examples.md)."""
