"""``python tests/numba_warm.py DTYPE...``: compile (or load) the numba backend's kernels for DTYPE
into Numba's cache. conftest.py runs one such process per dtype before pytest-xdist's workers start
(``make test``). Numba's cache takes no lock between processes: two processes saving overloads of one
kernel at once can leave an index entry naming the other's data file, so the saves take a file lock
beside the kernel's index here."""
import sys

from numba.core import caching

from lsattn.backends import numba_cpu

try:
    import fcntl
except ImportError:  # no fcntl (Windows): unlocked
    fcntl = None

_save = caching.IndexDataCacheFile.save


def _locked_save(self, key, data):
    with open(self._index_path + ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when f closes
        _save(self, key, data)


if fcntl is not None:
    caching.IndexDataCacheFile.save = _locked_save
numba_cpu.warm(dtypes=sys.argv[1:])
