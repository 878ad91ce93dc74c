#!/usr/bin/env bash
# session 4, call D1 (2 x H200): exp-kernel backward re-test, packed cupy test, Dask on CuPy blocks (tests + bench)
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/res1; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/res1.tgz" -C /tmp res1' EXIT
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
export PYTHONPATH=/tmp/site:$PWD
echo "=== tests $(date -u +%T)"
CUDA_VISIBLE_DEVICES=0 timeout 75 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_training.py tests/test_cupy_backend.py -k "exp_kernel_grad or exp_kernel_backward or packed_segments" > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "passed|failed|Error |FAILED" "$OUT/log_tests.txt" | tail -8
echo "=== dask $(date -u +%T)"
OUT=/tmp/res1/dask T1=120 T2=80 BENCH_ARGS="--T 1048576" bash benchmarks/device/dask_gpu_session.sh > "$OUT/log_dask_session.txt" 2>&1
grep -E "passed|failed|FAILED" /tmp/res1/dask/log_tests_dask_gpu.txt | tail -12; tail -12 /tmp/res1/dask/log_bench_dask_gpu.txt
echo "=== done $(date -u +%T)"
