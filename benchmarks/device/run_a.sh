#!/usr/bin/env bash
# session 4, call A (2 x H200): GPU regression + stepper + Dask on CuPy blocks
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/res; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/res.tgz" -C /tmp res' EXIT
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
export PYTHONPATH=/tmp/site
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; python3 -m lsattn info; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
CUDA_VISIBLE_DEVICES=0 timeout 260 python3 -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_gpu_stepper.py tests/test_gpu_dispatch.py tests/test_cupy_backend.py tests/test_nonfinite.py tests/test_training.py > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; tail -15 "$OUT/log_tests.txt"
echo "=== stepper bench $(date -u +%T)"
CUDA_VISIBLE_DEVICES=0 timeout 100 python3 benchmarks/bench_stepper_gpu.py --out "$OUT" > "$OUT/log_stepper.txt" 2>&1
echo "rc=$?"; tail -25 "$OUT/log_stepper.txt"
echo "=== dask $(date -u +%T)"
OUT=/tmp/res/dask T1=150 T2=150 bash benchmarks/device/dask_gpu_session.sh > "$OUT/log_dask_session.txt" 2>&1
tail -30 "$OUT/log_dask_session.txt"
echo "=== done $(date -u +%T)"
