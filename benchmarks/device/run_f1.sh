#!/usr/bin/env bash
# session 5, call F1 (one H200): the whole GPU test suite after merging the cupy log_attention kernels
# (LOGV mode of the exp-kernel kernels) and the fused cupy decoding step; compute-sanitizer on both.
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/resf1; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/resf1.tgz" -C /tmp resf1' EXIT
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
export PYTHONPATH=/tmp/site:$PWD
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== gpu tests $(date -u +%T)"
timeout ${TT:-330} python3 -m pytest -q -p no:cacheprovider -m gpu -rs --tb=short tests --ignore=tests/test_dask_gpu.py > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "^FAILED|^ERROR|passed|failed" "$OUT/log_tests.txt" | tail -20
echo "=== sanitize $(date -u +%T)"
timeout 60 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/bench_gpu.py sanitize > "$OUT/log_sanitize_ek.txt" 2>&1
echo "rc=$?"; grep -E "ERROR SUMMARY" "$OUT/log_sanitize_ek.txt" | tail -3; grep -c "sanitize ok" "$OUT/log_sanitize_ek.txt"
timeout 45 compute-sanitizer --tool memcheck --leak-check no --print-limit 10 python3 benchmarks/device/step_small.py > "$OUT/log_memcheck_step.txt" 2>&1
echo "rc=$?"; tail -3 "$OUT/log_memcheck_step.txt"
timeout 45 compute-sanitizer --tool racecheck --print-limit 10 python3 benchmarks/device/step_small.py > "$OUT/log_racecheck_step.txt" 2>&1
echo "rc=$?"; tail -3 "$OUT/log_racecheck_step.txt"
echo "=== done $(date -u +%T)"
