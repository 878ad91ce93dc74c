#!/usr/bin/env bash
# issue 17, loglinear_log_attention on the cupy kernels (hierarchical.cu), one H200, < 150 s: the GPU
# tests of the operator (the kernels' CPU emulation runs in CI), compute-sanitizer memcheck
# over small calls, the benchmark at T = 8192 (and 32768) and the forward at chunk 32 / 64.
#   OUT=... bash benchmarks/device/run_s7b17.sh      (results and logs: $OUT/s7b17.tgz)
set -u
NAME=s7b17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
echo "=== tests $(date -u +%T)"
timeout 45 python3 -m pytest -p no:cacheprovider -rs -m gpu -x -v tests/test_gpu_dispatch.py tests/test_cupy_hierarchical.py \
    -k "gpu_16bit or gpu_stream or loglinear_log or gpu_matches" > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "passed|failed|Error|assert|PASS|FAIL" "$OUT/log_tests.txt" | tail -22
echo "=== sanitize $(date -u +%T)"
if command -v compute-sanitizer > /dev/null; then
    timeout 15 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_memcheck.txt" 2>&1
    echo "rc=$?"; grep -E "ERROR SUMMARY|sanitize ok" "$OUT/log_memcheck.txt" | tail -3
fi
echo "=== bench $(date -u +%T)"
timeout 30 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192,32768 > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_bench.txt"
timeout 10 python3 benchmarks/bench_gpu_hierarchical.py kernels --T 8192 > "$OUT/log_kernels.txt" 2>&1
echo "rc=$?"; tail -3 "$OUT/log_kernels.txt"
echo "=== done $(date -u +%T)"
