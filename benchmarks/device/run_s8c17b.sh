#!/usr/bin/env bash
# issue 17, the backward of loglinear_log_attention, second H200 run (< 100 s): after the register
# tiles (mm_acc), the one-pass hib_blocks and hib_dkdv's overlaid tiles: gradcheck and 16-bit GPU
# tests, memcheck over small backward calls checked against the array-API path, fwd + bwd at 8192.
#   OUT=... bash benchmarks/device/run_s8c17b.sh      (results and logs: $OUT/s8c17b.tgz)
set -u
NAME=s8c17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
echo "=== tests $(date -u +%T)"
timeout 35 python3 -m pytest -p no:cacheprovider -rs -m gpu -v tests/test_cupy_hierarchical_grad.py -k "gradcheck or 16bit" \
    > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "passed|failed|Error|assert|PASS|FAIL|SKIP" "$OUT/log_tests.txt" | tail -12
echo "=== sanitize $(date -u +%T)"
timeout 30 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1
echo "rc=$?"; grep -E "ERROR SUMMARY|sanitize ok|Error|float|bfloat" "$OUT/log_memcheck.txt" | tail -8
echo "=== train $(date -u +%T)"
timeout 25 python3 benchmarks/bench_gpu_hierarchical.py train --out "$OUT" --T 8192 > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_train.txt"
echo "=== done $(date -u +%T)"
