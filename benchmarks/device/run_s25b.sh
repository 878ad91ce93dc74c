#!/usr/bin/env bash
# Session 25, s25b (issue 16): K3 gd_tier1x_bwd, the two-tier scan backward's transfers kernel.
#   OUT=... bash benchmarks/device/run_s25b.sh tests   its GPU tests (against the twin at d = 64, C = 64, T = 8292 /
#                                                       32768, GD_S16 1xTF32 and float32 3xTF32); memcheck / racecheck /
#                                                       initcheck of one launch each at T = 1000 (150 s)
#   OUT=... bash benchmarks/device/run_s25b.sh times   gd_tier1x_bwd_x1 alone against gd_scan_bwd_x1 (GD_S16 builds),
#                                                       B H = 32, d = 64, C = 64, T = 8K / 16K / 32K (120 s, alone)
set -u
if [ "$1" = tests ]; then
  ( NAME=s25b_tests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    echo "=== tests $(date -u +%T)"
    timeout 140 python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short tests/test_cupy_gated_delta_tier_bwd.py \
        -k tier1x > "$OUT/log_t_k3.txt" 2>&1 &
    timeout 140 python3 benchmarks/device/gd_tier1x_bwd_s25b.py compile > "$OUT/log_compile.txt" 2>&1 &  # (for times)
    timeout 70 python3 benchmarks/device/gd_tier1x_bwd_s25b.py small > "$OUT/log_small.txt" 2>&1  # (compiles the family once)
    for tool in memcheck racecheck initcheck; do
      PYTORCH_CUDA_ALLOC_CONF= timeout 75 compute-sanitizer --tool $tool --print-limit 10 \
          python3 benchmarks/device/gd_tier1x_bwd_s25b.py small > "$OUT/log_${tool}.txt" 2>&1 &
    done
    wait
    f="$OUT/log_t_k3.txt"; echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"
    grep -E "^FAILED|^E  " $f | head -8 | cut -c1-220; tail -n 1 $f | cut -c1-160
    echo "-- log_small.txt: $(tail -n 3 $OUT/log_small.txt | tr '\n' ' ' | cut -c1-200)"
    echo "-- log_compile.txt: $(tail -n 1 $OUT/log_compile.txt | cut -c1-200)"
    for tool in memcheck racecheck initcheck; do f="$OUT/log_${tool}.txt"
      echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) $(grep -c 'sanitize ok' $f) ok"; done )
fi
if [ "$1" = times ]; then
  ( NAME=s25b_times; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    echo "=== times $(date -u +%T)"
    timeout 115 python3 benchmarks/device/gd_tier1x_bwd_s25b.py times 8192,16384,32768 15 > "$OUT/log_times.txt" 2>&1
    echo "rc=$?"; grep -vE "^\s*$" "$OUT/log_times.txt" | tail -n 12 | cut -c1-220 )
fi
echo "=== done $(date -u +%T)"
