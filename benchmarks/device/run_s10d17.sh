#!/usr/bin/env bash
# Session 10, branch s10d17 (issue 17: bf16 loglinear_log_attention forward), first request, one H200, <= 180 s.
# Tests: the hierarchical GPU tests (bf16 hi_intra on tensor cores with its exact rows; bf16 hi_read with warp-local
# rows and asynchronous slot copies), memcheck + racecheck of hier_small.py. TIMINGS: per-kernel forward at 8K / 16K /
# 32K fp32 and bf16 (chunks 32, 64), the public forward at 16K against SDPA, an ncu look at bf16 hi_read / hi_intra.
#   OUT=... bash benchmarks/device/run_s10d17.sh      (results and logs: $OUT/s10d17.tgz)
set -u
NAME=s10d17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests, sanitizers $(date -u +%T)"
timeout 95 $PT tests/test_cupy_hierarchical.py > "$OUT/t_hier.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_hierarchical_grad.py > "$OUT/t_grad.txt" 2>&1 &
( timeout 55 compute-sanitizer --tool memcheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/s_mem.txt" 2>&1
  timeout 45 compute-sanitizer --tool racecheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/s_race.txt" 2>&1 ) &
wait
for f in t_hier t_grad; do echo "-- $f: $(tail -1 "$OUT/$f.txt")"; grep -E "^FAILED|^ERROR|^E  " "$OUT/$f.txt" | head -8; done
for f in s_mem s_race; do echo "-- $f: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok" "$OUT/$f.txt" | tr '\n' ' ')"; done
# TIMINGS
echo "=== kernels $(date -u +%T)"
timeout 55 python3 benchmarks/bench_gpu_hierarchical.py kernels --T 8192,16384,32768 --dtypes float32,bfloat16 --chunks 32,64 \
    > "$OUT/kernels.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/kernels.txt"
echo "=== public forward 16K $(date -u +%T)"
timeout 25 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 16384 --api-max 0 > "$OUT/hier.txt" 2>&1; echo "rc=$?"
grep -E "^\|" "$OUT/hier.txt" | cut -c1-200
echo "=== ncu bf16 16K $(date -u +%T)"
if command -v ncu > /dev/null; then
  timeout 40 ncu --kernel-name regex:"hi_read|hi_intra" --launch-skip 2 --launch-count 2 --section SpeedOfLight \
      --section WarpStateStats --section Occupancy --section LaunchStats \
      python3 benchmarks/bench_gpu_hierarchical.py kernels --T 16384 --dtypes bfloat16 --chunks 64 > "$OUT/ncu.txt" 2>&1
  echo "rc=$?"; grep -E "hi_read|hi_intra|Duration|Throughput|Stall|Achieved Occupancy|Registers|Warp Cycles|Issued" "$OUT/ncu.txt" | head -60
else
  echo "no ncu"
fi
echo "=== done $(date -u +%T)"
