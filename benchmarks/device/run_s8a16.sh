#!/usr/bin/env bash
# issue 16, gd_scan with slot groups and shared-memory-resident slots (branch s8a16), one H200, < 150 s:
# the GPU tests of loglinear_gated_delta's cupy forward, the per-kernel profile, the forward benchmark
# at T = 8K / 32K against fla, compute-sanitizer racecheck of gd_small.py (named barriers, shared
# slots), then the backward's GPU tests as far as their timeout goes (the autograd path runs gd_scan).
#   OUT=... bash benchmarks/device/run_s8a16.sh       (logs under $OUT; summary on stdout)
set -u
NAME=s8a16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
echo "=== tests $(date -u +%T)"
timeout 35 python3 -m pytest -q -p no:cacheprovider -rs -x -m gpu tests/test_cupy_gated_delta.py > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "Error|assert|passed|failed" "$OUT/log_tests.txt" | tail -12
echo "=== profile $(date -u +%T)"
timeout 30 python3 benchmarks/device/profile_gd.py > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -E "====|cupy arrays|gd_forms|gd_scan|Self CUDA time total" "$OUT/log_profile.txt" | head -24
echo "=== bench $(date -u +%T)"
timeout 40 python3 benchmarks/bench_gpu_gated_delta.py --out "$OUT" --T 8192,32768 --api-max-T 0 > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_bench.txt"
echo "=== racecheck $(date -u +%T)"
timeout 20 compute-sanitizer --tool racecheck --racecheck-report all python3 benchmarks/device/gd_small.py > "$OUT/log_race.txt" 2>&1
echo "rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$OUT/log_race.txt" | head -6
echo "=== backward tests $(date -u +%T)"
timeout 10 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_cupy_gated_delta_grad.py > "$OUT/log_tests_grad.txt" 2>&1
echo "rc=$?"; grep -E "Error|assert|passed|failed" "$OUT/log_tests_grad.txt" | tail -8
echo "=== done $(date -u +%T)"
