#!/usr/bin/env bash
# issue 17, branch s8d17, one H200, < 150 s: the GPU tests of loglinear_log_attention (hierarchical.cu:
# fex, pairs over the triangle, the chunk tree's merges hi_merge / hi_snap instead of the sequential hi_scan) and of 16-bit log_attention training (FFMA forward reading bf16 and
# writing log y in float32, backward reading bf16), memcheck of small hierarchical calls, the
# hierarchical forward per kernel, its host profile and its table, log_attention fwd+bwd against SDPA, the bf16 step's
# profile. Everything to stdout (logs in $OUT/s8d17.tgz).
set -u
NAME=s8d17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests, memcheck (in parallel) $(date -u +%T)"
timeout 45 $PT tests/test_cupy_hierarchical.py > "$OUT/log_tests_hier.txt" 2>&1 &
timeout 45 $PT tests/test_cupy_log_attention.py -k "grads_against_reference or half_precision or gradcheck or backward_spikes" \
    > "$OUT/log_tests_log.txt" 2>&1 &
timeout 40 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
wait
for f in log_tests_hier log_tests_log; do grep -E "^FAILED|^ERROR" "$OUT/$f.txt" | head -8; echo "$f: $(tail -1 "$OUT/$f.txt")"; done
grep -E "ERROR SUMMARY|sanitize ok" "$OUT/log_memcheck.txt" | tail -2
echo "=== hierarchical per kernel $(date -u +%T)"
timeout 15 python3 benchmarks/bench_gpu_hierarchical.py kernels --T 8192,32768 2>&1 | tail -4
timeout 12 python3 benchmarks/device/profile_hier.py 8192 2>&1 | grep -v "^-" | head -45
echo "=== hierarchical table $(date -u +%T)"
timeout 25 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192,32768 > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -6 "$OUT/log_bench.txt"
echo "=== log_attention fwd+bwd $(date -u +%T)"
timeout 25 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T 16384,32768 --ops la,ek,sdpa > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; grep -v "^|---" "$OUT/log_train.txt" | tail -12
echo "=== profile bf16 step $(date -u +%T)"
timeout 15 python3 benchmarks/device/profile_log_train.py 16384 2>&1 | tail -30
echo "=== done $(date -u +%T)"
