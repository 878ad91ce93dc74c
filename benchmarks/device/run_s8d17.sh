#!/usr/bin/env bash
# issue 17, branch s8d17, one H200, < 120 s (second run): the GPU tests of loglinear_log_attention
# (hierarchical.cu: hi_read one slot at a time over 64 value columns with a register-tiled E S; the chunk
# tree's merges hi_merge / hi_snap instead of the sequential hi_scan; fex; pairs over the triangle) and
# of bf16 log_attention gradients (float32 copies kept for the backward), memcheck of small
# hierarchical calls, the hierarchical forward per kernel and its table at 8K, the bf16 / fp32
# log_attention training step at 16K (profile_log_train.py, its timing lines). Everything to stdout (logs in $OUT/s8d17.tgz).
set -u
NAME=s8d17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests, memcheck (in parallel) $(date -u +%T)"
timeout 60 $PT tests/test_cupy_hierarchical.py > "$OUT/log_tests_hier.txt" 2>&1 &
timeout 60 $PT tests/test_cupy_log_attention.py -k "grads_against_reference and bfloat16" > "$OUT/log_tests_log.txt" 2>&1 &
timeout 58 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
wait
for f in log_tests_hier log_tests_log; do grep -E "^FAILED|^ERROR|^E  " "$OUT/$f.txt" | head -8; echo "$f: $(tail -1 "$OUT/$f.txt")"; done
grep -E "ERROR SUMMARY|sanitize ok" "$OUT/log_memcheck.txt" | tail -2
echo "=== hierarchical per kernel $(date -u +%T)"
timeout 13 python3 benchmarks/bench_gpu_hierarchical.py kernels --T 8192,32768 2>&1 | tail -4
echo "=== hierarchical table $(date -u +%T)"
timeout 14 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192 > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -4 "$OUT/log_bench.txt"
echo "=== log_attention training step $(date -u +%T)"
timeout 27 python3 benchmarks/device/profile_log_train.py 16384 > "$OUT/log_profile_log.txt" 2>&1
echo "rc=$?"; grep -E "ms$" "$OUT/log_profile_log.txt" | head -6
echo "=== done $(date -u +%T)"
