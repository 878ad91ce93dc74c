"""Runnable examples of lsattn (not part of the installed package): ``python -m examples.<name>``."""
