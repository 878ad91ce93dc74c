#!/usr/bin/env bash
# issue 17, loglinear_log_attention on the cupy kernels (hierarchical.cu), one H200, < 150 s: the GPU
# tests of the operator (the kernels' CPU emulation runs in CI), compute-sanitizer memcheck + racecheck
# over small calls, the benchmark at T = 8192 (and 32768) and the forward at chunk 32 / 64.
#   OUT=... bash benchmarks/device/run_s7b17.sh      (results and logs: $OUT/s7b17.tgz)
set -u
NAME=s7b17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
echo "=== tests $(date -u +%T)"
timeout 50 python3 -m pytest -q -p no:cacheprovider -rs -m gpu -x tests/test_cupy_hierarchical.py tests/test_gpu_dispatch.py \
    -k "hierarchical or loglinear_log" > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "passed|failed|Error|error|assert" "$OUT/log_tests.txt" | tail -25
echo "=== sanitize $(date -u +%T)"
if command -v compute-sanitizer > /dev/null; then
    timeout 18 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_memcheck.txt" 2>&1
    echo "rc=$?"; grep -E "ERROR SUMMARY|sanitize ok" "$OUT/log_memcheck.txt" | tail -3
    timeout 18 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_racecheck.txt" 2>&1
    echo "rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok" "$OUT/log_racecheck.txt" | tail -3
fi
echo "=== bench $(date -u +%T)"
timeout 30 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192,32768 > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_bench.txt"
timeout 10 python3 benchmarks/bench_gpu_hierarchical.py kernels --T 8192 > "$OUT/log_kernels.txt" 2>&1
echo "rc=$?"; tail -3 "$OUT/log_kernels.txt"
echo "=== done $(date -u +%T)"
