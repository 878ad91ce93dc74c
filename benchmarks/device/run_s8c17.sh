#!/usr/bin/env bash
# issue 17, the backward of loglinear_log_attention (hierarchical_bwd.cu), one H200, < 150 s: its GPU
# tests, compute-sanitizer memcheck over small backward calls, forward + backward at T = 8192
# (ours fp32 / bf16, loglinear_attention, the array-API path) with the backward split by kernel.
#   OUT=... bash benchmarks/device/run_s8c17.sh      (results and logs: $OUT/s8c17.tgz)
set -u
NAME=s8c17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
echo "=== tests $(date -u +%T)"
timeout 75 python3 -m pytest -p no:cacheprovider -rs -m gpu -x -v tests/test_cupy_hierarchical_grad.py \
    > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "passed|failed|Error|assert|PASS|FAIL|SKIP" "$OUT/log_tests.txt" | tail -25
echo "=== sanitize $(date -u +%T)"
if command -v compute-sanitizer > /dev/null; then
    timeout 30 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1
    echo "rc=$?"; grep -E "ERROR SUMMARY|sanitize ok|Error" "$OUT/log_memcheck.txt" | tail -4
fi
echo "=== train $(date -u +%T)"
timeout 35 python3 benchmarks/bench_gpu_hierarchical.py train --out "$OUT" --T 8192 > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; tail -12 "$OUT/log_train.txt"
echo "=== done $(date -u +%T)"
