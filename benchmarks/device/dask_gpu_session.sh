#!/usr/bin/env bash
# One device call for issue 22 (Dask arrays of CuPy blocks, one worker per GPU), from the repo root
# on the GPU machine, .whl/ carried (dask, distributed, dask-cuda and their missing pure-Python deps):
#   OUT=... bash benchmarks/device/dask_gpu_session.sh            # BENCH_ARGS="--T 1048576,2097152,4194304" to go further
# Installs the wheels (no index, no deps: the image's cupy/pandas/pynvml/cuda-core stay), says whether
# dask-cuda imports (else local_gpu_cluster falls back to one distributed worker pinned per GPU), runs the
# GPU tests of the Dask backend, then the benchmark into $OUT.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{ python3 -V; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } 2>&1 | tee "$OUT/log_env.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 \
  | tee -a "$OUT/log_env.txt" || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site
python3 -c "import dask, distributed, cupy; print('dask', dask.__version__, 'distributed', distributed.__version__, 'cupy', cupy.__version__)
try:
    import dask_cuda; print('dask_cuda', dask_cuda.__version__, '(LocalCUDACluster)')
except Exception as exc:
    print('dask_cuda not importable:', type(exc).__name__, exc, '-> SpecCluster fallback')" 2>&1 | tee -a "$OUT/log_env.txt"
echo "=== tests ($(date -u +%T))"
timeout ${T1:-240} python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_dask_gpu.py 2>&1 | tee "$OUT/log_tests_dask_gpu.txt" | tail -25
echo "=== bench ($(date -u +%T))"
timeout ${T2:-300} python3 benchmarks/bench_dask_gpu.py --out "$OUT" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/log_bench_dask_gpu.txt" | tail -20
echo "=== done ($(date -u +%T))"
