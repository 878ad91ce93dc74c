#!/usr/bin/env bash
# session 5, call s5a (1 x H200, ~4 min): the cupy fused decoding step (issue 18): GPU stepper tests,
# the CPU twin tests, compute-sanitizer memcheck + racecheck on a few steps, the stepper benchmark.
#   OUT=... bash benchmarks/device/run_s5a.sh        (results: $OUT/res.tgz)
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/res; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/res.tgz" -C /tmp res' EXIT
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false HYPOTHESIS_PROFILE=ci
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
export PYTHONPATH=/tmp/site
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; python3 -m lsattn info; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
CUDA_VISIBLE_DEVICES=0 timeout 150 python3 -m pytest -q -p no:cacheprovider -rs -x tests/test_gpu_stepper.py tests/test_cupy_step.py > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; tail -15 "$OUT/log_tests.txt"
echo "=== sanitize $(date -u +%T)"
CUDA_VISIBLE_DEVICES=0 timeout 60 compute-sanitizer --tool memcheck --leak-check no --print-limit 10 python3 benchmarks/device/step_small.py > "$OUT/log_memcheck.txt" 2>&1
echo "rc=$?"; tail -4 "$OUT/log_memcheck.txt"
CUDA_VISIBLE_DEVICES=0 timeout 60 compute-sanitizer --tool racecheck --print-limit 10 python3 benchmarks/device/step_small.py > "$OUT/log_racecheck.txt" 2>&1
echo "rc=$?"; tail -4 "$OUT/log_racecheck.txt"
echo "=== stepper bench $(date -u +%T)"
CUDA_VISIBLE_DEVICES=0 timeout 150 python3 benchmarks/bench_stepper_gpu.py --out "$OUT" > "$OUT/log_stepper.txt" 2>&1
echo "rc=$?"; tail -40 "$OUT/log_stepper.txt"
echo "=== done $(date -u +%T)"
