#!/usr/bin/env bash
# Session 22, s22a16 (issue 16): the two-tier scan's gd_tier1x on a second stream beside gd_tier1 (gated_delta.TIER_FORK)
# and bfloat16 inputs' grouped coarse form from 33 periods (COARSE_GROUP_BF16), on / off (gd_s22a.py's docstring). Host
# switches: one compiled build for every mode. Batch 1 at a9258ba (also TIER_SPLIT_PERIODS / _LEVELS, removed after it);
# batch 2 (the final build) at the request's commit.
#   OUT=... bash benchmarks/device/run_s22a.sh tests   (<= 100 s, beside other helpers: GPU tests of the two-tier path,
#                                                       sanitizers of gd_fork_small_s22a.py, the warm-up compile)
#   OUT=... bash benchmarks/device/run_s22a.sh times   (<= 40 s, alone: scan span and public forward per mode)
set -u
NAME=s22a_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
echo "=== $1 $(date -u +%T)"
if [ "$1" = tests ]; then
  ( timeout 90 python3 $D/gd_s22a.py warm 2048,4096,8192,16384,32768 1 "fork,fork@f32" > "$OUT/log_warm.txt" 2>&1 ) &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "tier_fork" > "$OUT/log_pytest_fork.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "two_tier or tier3_fill or direct_output or bfloat16_in" > "$OUT/log_pytest.txt" 2>&1 &
  for tool in memcheck racecheck initcheck; do
    k=""; [ $tool = racecheck ] && k="--kernel-name kns=gd_"
    PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool $tool $k --print-limit 5 python3 $D/gd_fork_small_s22a.py > "$OUT/log_$tool.txt" 2>&1 &
  done
  wait
  for f in pytest_fork pytest; do
    echo "-- $f: $(tail -1 $OUT/log_$f.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_$f.txt | head -8 | cut -c1-220
  done
  for tool in memcheck racecheck initcheck; do
    echo "-- $tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/log_$tool.txt | tail -1) calls $(grep -c -E 'bit-equal|DIFFER' $OUT/log_$tool.txt)"
    grep -E "DIFFER|Error|error|Uninit|Hazard|Invalid" $OUT/log_$tool.txt | head -6 | cut -c1-160
  done
  echo "-- warm: $(grep -c '^compiled' $OUT/log_warm.txt) of 5"; grep -h -E "Error|error" $OUT/log_warm.txt | head -3 | cut -c1-200
else
  timeout 37 python3 $D/gd_s22a.py ab 8192,32768,16384,4096,2048 11 "8192=off,fork;32768=off,fork;16384=off,fork,fork-g,off-g,fork@f32,fork+g@f32;4096=off,fork;2048=off,fork" > "$OUT/log_ab.txt" 2>&1
  echo "ab rc=$?"; grep -v "^ *$" "$OUT/log_ab.txt" | grep -v -i warn | cut -c1-200
fi
echo "=== done $(date -u +%T)"
