#!/usr/bin/env bash
# Session 29 (s29a, issue 16): gated_delta_bwd.TIER_BWD_STORES (default on): tier_backward's dQp (K1 stores it; period
# 0's rows zeroed) and dqe / dek / dph (K3 gd_tier1x_bwd's st: stored, K4 adds after it) allocated empty, not zeroed.
# NOTES "Session 29 — s29a" has the prediction.
#   OUT=... bash benchmarks/device/run_s29a.sh tests   the two tier files' GPU tests (test_cupy_gated_delta_tier_bwd.py:
#                                                      K1 / K3 stores on NaN-filled buffers; test_cupy_gated_delta_tier_grad.py:
#                                                      test_gpu_training_tier_bwd_stores, the step on / off with
#                                                      NaN-filled empties, and the rest), memcheck / initcheck of
#                                                      gd_train16_small_s29a.py (bf16 S16 steps and float32 steps with
#                                                      the switch on, CuPy's pool off)
#   OUT=... bash benchmarks/device/run_s29a.sh times   ab_s29a.py public: the bf16 fwd+bwd step (B=2, H=16, d=64) with
#                                                      the switch off / on rotated in one process at 8K / 16K / 32K:
#                                                      medians, latency, peak memory, gd_ kernels, the other kernels
#                                                      (memsets) per mode, gradients on / off
set -u
( NAME=s29a_$1; . benchmarks/device/setup.sh
  export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
  if [ "$1" = tests ]; then
    PT="python3 -m pytest -v -s -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== tests $(date -u +%T)"
    timeout 220 $PT tests/test_cupy_gated_delta_tier_bwd.py > "$OUT/log_t_tierbwd.txt" 2>&1 &
    timeout 220 $PT tests/test_cupy_gated_delta_tier_grad.py > "$OUT/log_t_tiergrad.txt" 2>&1 &
    for tool in memcheck initcheck; do
      ( PYTORCH_CUDA_ALLOC_CONF= timeout 200 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/gd_train16_small_s29a.py > "$OUT/log_$tool.txt" 2>&1
        echo "rc=$?" >> "$OUT/log_$tool.txt" ) &
    done
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED|^E  " $f | head -8 | cut -c1-200; tail -n 1 $f | cut -c1-160; done
    grep -E "TIER_BWD_STORES=|on against off" "$OUT/log_t_tiergrad.txt" | cut -c1-220
    for f in "$OUT"/log_memcheck.txt "$OUT"/log_initcheck.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY' $f | tail -1), $(grep -c 'sanitize ok' $f) ok, $(tail -n 1 $f)"; grep -iE "error|uninitialized" $f | grep -v "ERROR SUMMARY" | head -4 | cut -c1-200; done
  elif [ "$1" = times ]; then
    echo "=== public bf16 fwd+bwd, TIER_BWD_STORES off / on $(date -u +%T)"
    timeout 300 python3 benchmarks/device/ab_s29a.py public 8192,16384,32768 9 > "$OUT/log_public.txt" 2>&1; echo "rc=$?"
    grep -E "^T=|^\|" "$OUT/log_public.txt" | cut -c1-300
  fi )
echo "=== done $(date -u +%T)"
