#!/usr/bin/env bash
# session 4, call B (2 x H200): exp-kernel backward tests + sanitizer + training bench; stepper and Dask re-runs
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/res; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/res.tgz" -C /tmp res' EXIT
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
export PYTHONPATH=/tmp/site
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== train tests $(date -u +%T)"
CUDA_VISIBLE_DEVICES=0 timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu -x tests/test_training.py tests/test_gpu_stepper.py > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "passed|failed|Error|error " "$OUT/log_tests.txt" | tail -8
echo "=== sanitize $(date -u +%T)"
CUDA_VISIBLE_DEVICES=0 timeout 120 compute-sanitizer --tool memcheck --leak-check no --print-limit 10 python3 benchmarks/device/ek_bwd_small.py > "$OUT/log_sanitize.txt" 2>&1
echo "rc=$?"; tail -4 "$OUT/log_sanitize.txt"
CUDA_VISIBLE_DEVICES=0 timeout 120 compute-sanitizer --tool racecheck --print-limit 10 python3 benchmarks/device/ek_bwd_small.py > "$OUT/log_racecheck.txt" 2>&1
echo "rc=$?"; tail -4 "$OUT/log_racecheck.txt"
echo "=== train bench $(date -u +%T)"
CUDA_VISIBLE_DEVICES=0 timeout 200 python3 benchmarks/bench_gpu_train.py --out "$OUT" > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; tail -12 "$OUT/log_train.txt"
echo "=== dask $(date -u +%T)"
OUT=/tmp/res/dask T1=120 T2=120 bash benchmarks/device/dask_gpu_session.sh > "$OUT/log_dask_session.txt" 2>&1
grep -E "passed|failed" /tmp/res/dask/log_tests_dask_gpu.txt | tail -3; tail -15 /tmp/res/dask/log_bench_dask_gpu.txt
echo "=== done $(date -u +%T)"
