"""bench_varlen_gpu.py with the rewrite's device index kept per layout (``lsattn._upload.kept``, s14d16) or
uploaded on every call as before s14d16 (``old``: ``kept`` builds every time), the rest of the arguments passed on.

    python benchmarks/device/varlen_ab_s14d16.py new|old [bench_varlen_gpu.py arguments]
"""
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.dirname(HERE))
from lsattn import _upload  # noqa: E402

mode = sys.argv[1]
assert mode in ("new", "old"), mode
if mode == "old":
    _upload.kept = lambda key, like, build: build()
sys.argv = [os.path.join(os.path.dirname(HERE), "bench_varlen_gpu.py")] + sys.argv[2:]
print("mode", mode, flush=True)
runpy.run_path(sys.argv[0], run_name="__main__")
