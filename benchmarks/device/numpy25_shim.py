"""Device-run shim: numba-cuda (<= 0.30.4) registers overloads for numpy functions removed in
NumPy 2.5 (np.row_stack), so its typing registries fail to import. Give Numba modules a stand-in
for removed names; everyone else still gets AttributeError."""
import sys

import numpy as np

_orig = np.__dict__.get("__getattr__")


def _getattr(name):
    try:
        if _orig is None:
            raise AttributeError(name)
        return _orig(name)
    except AttributeError:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith(("numba", "numba_cuda")):
            def removed(*args, **kwargs):
                raise AttributeError(f"numpy.{name} was removed from NumPy")
            removed.__name__ = name
            return removed
        raise


np.__getattr__ = _getattr
