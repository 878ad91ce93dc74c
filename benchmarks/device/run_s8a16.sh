#!/usr/bin/env bash
# issue 16, gd_scan with slot groups, shared-memory-resident slots and cp.async tiles (branch
# s8a16), one H200, < 120 s: the GPU tests of loglinear_gated_delta's cupy forward, gd_scan alone in
# three layouts and the public forward at T = 2K / 8K / 32K (ab_gd_scan.py), the per-kernel profile,
# compute-sanitizer racecheck of gd_small.py (cp.async tiles, shared slots, block barriers).
#   OUT=... bash benchmarks/device/run_s8a16.sh       (logs under $OUT; summary on stdout)
set -u
NAME=s8a16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
echo "=== tests $(date -u +%T)"
timeout 60 python3 -m pytest -q -p no:cacheprovider -rs -x -m gpu tests/test_cupy_gated_delta.py > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "Error|assert|passed|failed" "$OUT/log_tests.txt" | tail -12
echo "=== gd_scan alone: host layout / slots in global memory / 4 groups; forward $(date -u +%T)"
timeout 20 python3 benchmarks/device/ab_gd_scan.py > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; tail -4 "$OUT/log_ab.txt"
echo "=== profile $(date -u +%T)"
timeout 14 python3 benchmarks/device/profile_gd.py > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -E "====|cupy arrays|gd_forms|gd_scan|Self CUDA time total" "$OUT/log_profile.txt" | head -24
echo "=== racecheck $(date -u +%T)"
timeout 20 compute-sanitizer --tool racecheck --racecheck-report all python3 benchmarks/device/gd_small.py > "$OUT/log_race.txt" 2>&1
echo "rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$OUT/log_race.txt" | head -6
echo "=== done $(date -u +%T)"
