#!/usr/bin/env bash
# issue 16, session 10 (branch s10b16), first run (one H200, <= 180 s): gd_forms rewritten (four tiles,
# 3 blocks per SM, the decay table in the products' stores, X = (I + N)^-1 by blocks). The GPU tests of
# loglinear_gated_delta (forward; backward + dispatch) beside compute-sanitizer memcheck / racecheck of
# gd_small.py and one Nsight Compute profile of gd_forms at 8K; then (# TIMINGS, quiet GPU) gd_forms
# alone in its variants and the public forward's profile at 8K.
#   OUT=... bash benchmarks/device/run_s10b16.sh       (logs in $OUT/s10b16.tgz; summary on stdout)
set -u
NAME=s10b16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers + ncu $(date -u +%T)"
timeout 95 $PT tests/test_cupy_gated_delta.py > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_tests_grad.txt" 2>&1 &
( timeout 45 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1
  timeout 50 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_forms python3 benchmarks/device/gd_small.py \
      > "$OUT/log_racecheck.txt" 2>&1 ) &
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then
  timeout 90 "$NCU" --kernel-name gd_forms --launch-skip 1 --launch-count 1 --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats --section SchedulerStats python3 benchmarks/device/gd_one_call.py \
      > "$OUT/log_ncu.txt" 2>&1 &
fi
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$f" | tail -3; done
echo "-- ncu"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Warp Cycles Per Issued|No Eligible|Block Limit" "$OUT/log_ncu.txt" | head -16
# TIMINGS
echo "=== gd_forms alone $(date -u +%T)"
timeout 45 python3 benchmarks/device/gd_forms_variants.py 8192 > "$OUT/log_variants.txt" 2>&1
echo "rc=$?"; cat "$OUT/log_variants.txt" | tail -6
echo "=== profile_gd 8192 $(date -u +%T)"
timeout 35 python3 benchmarks/device/profile_gd.py 8192 > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; tail -30 "$OUT/log_profile.txt"
echo "=== done $(date -u +%T)"
