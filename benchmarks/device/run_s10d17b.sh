#!/usr/bin/env bash
# Session 10, branch s10d17 (issue 17: bf16 loglinear_log_attention forward), second request, one H200, <= 180 s.
# Tests: the hierarchical GPU tests and the 16-bit / dispatch ones that reach hi_intra / hi_read, memcheck +
# racecheck of hier_small.py. TIMINGS: per-kernel forward at 8K / 16K / 32K fp32 / bf16, then the forward table (ours,
# loglinear_attention, SDPA; fp32 and bf16) at T = 8K, 16K, 32K, array-API at 8K.
#   OUT=... bash benchmarks/device/run_s10d17b.sh      (results and logs: $OUT/s10d17b.tgz)
set -u
NAME=s10d17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests, sanitizers $(date -u +%T)"
timeout 90 $PT tests/test_cupy_hierarchical.py > "$OUT/t_hier.txt" 2>&1 &
timeout 90 $PT tests/test_cupy_hierarchical_grad.py > "$OUT/t_grad.txt" 2>&1 &
timeout 90 $PT tests/test_gpu_dispatch.py tests/test_nonfinite.py -k loglinear_log_attention > "$OUT/t_disp.txt" 2>&1 &
( timeout 55 compute-sanitizer --tool memcheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/s_mem.txt" 2>&1
  timeout 45 compute-sanitizer --tool racecheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/s_race.txt" 2>&1 ) &
wait
for f in t_hier t_grad t_disp; do echo "-- $f: $(tail -1 "$OUT/$f.txt")"; grep -E "^FAILED|^ERROR|^E  " "$OUT/$f.txt" | head -8; done
for f in s_mem s_race; do echo "-- $f: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok" "$OUT/$f.txt" | tr '\n' ' ')"; done
# TIMINGS
echo "=== kernels $(date -u +%T)"
timeout 35 python3 benchmarks/bench_gpu_hierarchical.py kernels --T 8192,16384,32768 --dtypes float32,bfloat16 --chunks 64 \
    > "$OUT/kernels.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/kernels.txt"
echo "=== forward table $(date -u +%T)"
timeout 60 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192,16384,32768 --api-max 8192 > "$OUT/hier.txt" 2>&1
echo "rc=$?"; grep -E "^\||accuracy" "$OUT/hier.txt" | cut -c1-200
echo "=== done $(date -u +%T)"
