#!/usr/bin/env bash
# Session 24, helper s24a (issue 16): bf16 training steps on the forward's GD_S16 build, gd_scan_bwd_x1 reading its
# bfloat16 intermediates (gated_delta_bwd.S16_TRAIN).
#   OUT=... bash benchmarks/device/run_s24a.sh tests   the training-path GPU tests (S16_TRAIN on / off), the nonfinite
#                                                      gated tests, memcheck / racecheck / initcheck of small bf16 steps
#   OUT=... bash benchmarks/device/run_s24a.sh times   the public bf16 fwd+bwd step, S16_TRAIN on / off alternated in one
#                                                      process, 8K and 32K: medians, latency, peak, kernels
set -u
if [ "$1" = tests ]; then
  ( NAME=s24a_tests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    PT="python3 -m pytest -v -s -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== tests $(date -u +%T)"
    timeout 140 $PT tests/test_cupy_gated_delta_grad.py -k "s16" > "$OUT/log_t_s16.txt" 2>&1 &
    timeout 140 $PT tests/test_cupy_gated_delta_grad.py -k "not s16" > "$OUT/log_t_grad.txt" 2>&1 &
    timeout 140 $PT tests/test_nonfinite.py -k gated > "$OUT/log_t_nonfinite.txt" 2>&1 &
    for tool in memcheck racecheck initcheck; do
      PYTORCH_CUDA_ALLOC_CONF= timeout 140 compute-sanitizer --tool $tool --print-limit 10 \
          python3 benchmarks/device/gd_train16_small_s24a.py > "$OUT/log_${tool}.txt" 2>&1 &
    done
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED" $f | head -5 | cut -c1-200; tail -n 1 $f | cut -c1-160; done
    grep -hE "S16_TRAIN=(True|False):" "$OUT/log_t_s16.txt" | cut -c1-200
    for tool in memcheck racecheck initcheck; do f="$OUT/log_$tool.txt"; echo "-- $(basename $f): $(grep -c 'sanitize ok' $f) ok; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1)"; done )
fi
if [ "$1" = times ]; then
  ( NAME=s24a_times; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
    echo "=== A/B S16_TRAIN $(date -u +%T)"
    timeout 110 python3 benchmarks/device/ab_s24a.py 8192,32768 15 > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
    grep -vE "^\s*$|UserWarning|_warn_once" "$OUT/log_ab.txt" | cut -c1-600 | tail -n 30 )
fi
echo "=== done $(date -u +%T)"
