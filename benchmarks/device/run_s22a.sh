#!/usr/bin/env bash
# Session 22, s22a16 (issue 16): the two-tier scan's second stream (gated_delta.TIER_FORK: gd_tier1x beside gd_tier1;
# TIER_SPLIT_PERIODS / TIER_SPLIT_LEVELS: the top coarse levels' chains beside the other chains and gd_tier3's lower
# periods) and the coarse form at 8K / 16K (COARSE_GROUP_PERIODS), on / off (gd_s22a.py's docstring). Host switches: one compiled build for every mode.
#   OUT=... bash benchmarks/device/run_s22a.sh tests   (<= 100 s, beside other helpers: GPU tests of the two-tier path,
#                                                       sanitizers of gd_split_small_s22a.py, the warm-up compile)
#   OUT=... bash benchmarks/device/run_s22a.sh times   (<= 40 s, alone: scan span and public forward per mode)
set -u
NAME=s22a_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
echo "=== $1 $(date -u +%T)"
if [ "$1" = tests ]; then
  ( timeout 90 python3 $D/gd_s22a.py warm 8192,16384,32768 1 on2,on2+g > "$OUT/log_warm.txt" 2>&1 ) &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "tier_streams or two_tier or tier3_fill or direct_output or bfloat16_in" > "$OUT/log_pytest.txt" 2>&1 &
  for tool in memcheck racecheck initcheck; do
    k=""; [ $tool = racecheck ] && k="--kernel-name kns=gd_"
    PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool $tool $k --print-limit 5 python3 $D/gd_split_small_s22a.py > "$OUT/log_$tool.txt" 2>&1 &
  done
  wait
  echo "-- pytest: $(tail -1 $OUT/log_pytest.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_pytest.txt | head -8 | cut -c1-220
  for tool in memcheck racecheck initcheck; do
    echo "-- $tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/log_$tool.txt | tail -1) calls $(grep -c -E 'bit-equal|DIFFER' $OUT/log_$tool.txt)"
    grep -E "DIFFER|Error|error|Uninit|Hazard|Invalid" $OUT/log_$tool.txt | head -6 | cut -c1-160
  done
  echo "-- warm: $(grep -c '^compiled' $OUT/log_warm.txt) of 3"; grep -h -E "Error|error" $OUT/log_warm.txt | head -3 | cut -c1-200
else
  timeout 37 python3 $D/gd_s22a.py ab 8192,32768,16384 11 "8192=off,fork,split1,split2,on1,on2,on3,on2+g,off+g;32768=off,fork,split1,split2,on1,on2,on3;16384=off,on2,off+g,on2+g" > "$OUT/log_ab.txt" 2>&1
  echo "ab rc=$?"; grep -v "^ *$" "$OUT/log_ab.txt" | grep -v Warning | cut -c1-200
fi
echo "=== done $(date -u +%T)"
