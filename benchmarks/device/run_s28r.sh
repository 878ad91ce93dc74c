#!/usr/bin/env bash
# Session 28 (request from s27r, issue 16): R1 of s27p's plan, gated_delta_bwd.FORMS_X_SAVED (gd_forms' GF_XO build keeps
# each chunk's X, gd_forms_bwd(_x1)'s FB_XIN build reads it instead of solving; default off, NOTES "Session 27 — s27r").
#   OUT=... bash benchmarks/device/run_s28r.sh tests   the touched GPU tests (test_cupy_gated_delta_grad.py,
#                                                      test_cupy_gated_delta_tier_grad.py -m gpu: its
#                                                      test_gpu_training_forms_x_saved runs the switch on / off;
#                                                      test_cupy_gated_delta.py -m gpu: the forward, switch off);
#                                                      memcheck / racecheck (gd_forms, gd_forms_bwd_x1 / gd_forms_bwd) /
#                                                      initcheck of gd_train16_small_s28r.py (gd_train16_small_s24a.py's
#                                                      steps with the switch on, then two float32 steps); ab_s28r.py
#                                                      kernel at 4K (the builds compiled, outputs compared)
#   OUT=... bash benchmarks/device/run_s28r.sh times   ab_s28r.py kernel (gd_forms f0 / f1, gd_forms_bwd_x1 b0 / b1 at
#                                                      8K / 16K / 32K), then ab_s28r.py public (the bf16 fwd+bwd step with
#                                                      the switch off / on rotated in one process, 8K / 16K / 32K: medians,
#                                                      latency, peak memory, the gd_ kernels per step, gradients on / off)
set -u
( NAME=s28r_$1; . benchmarks/device/setup.sh
  export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
  if [ "$1" = tests ]; then
    PT="python3 -m pytest -v -s -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== tests $(date -u +%T)"
    timeout 200 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_grad.txt" 2>&1 &
    timeout 200 $PT tests/test_cupy_gated_delta_tier_grad.py tests/test_cupy_gated_delta_tier_bwd.py > "$OUT/log_t_tiergrad.txt" 2>&1 &
    timeout 200 $PT tests/test_cupy_gated_delta.py > "$OUT/log_t_gd.txt" 2>&1 &
    timeout 200 python3 benchmarks/device/ab_s28r.py kernel 4096 2 > "$OUT/log_kernel_4k.txt" 2>&1 &
    for tool in memcheck racecheck initcheck; do  # (racecheck: the forms' kernels, both builds of each)
      F=; [ $tool = racecheck ] && F="--kernel-name kns=gd_forms"
      ( PYTORCH_CUDA_ALLOC_CONF= timeout 180 compute-sanitizer --tool $tool $F --print-limit 10 python3 benchmarks/device/gd_train16_small_s28r.py > "$OUT/log_$tool.txt" 2>&1
        echo "rc=$?" >> "$OUT/log_$tool.txt" ) &
    done
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED|^E  " $f | head -8 | cut -c1-200; tail -n 1 $f | cut -c1-160; done
    grep -E "FORMS_X_SAVED=" "$OUT/log_t_tiergrad.txt" | cut -c1-200
    echo "-- kernel 4K:"; grep -E "^T=" "$OUT/log_kernel_4k.txt" | cut -c1-220; tail -n 3 "$OUT/log_kernel_4k.txt" | grep -iE "error|Trace" | cut -c1-200
    for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt "$OUT"/log_initcheck.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1), $(grep -c 'sanitize ok' $f) ok, $(tail -n 1 $f)"; grep -iE "error|hazard" $f | grep -vE "ERROR SUMMARY|RACECHECK SUMMARY" | head -3 | cut -c1-160; done
  elif [ "$1" = times ]; then
    echo "=== kernels alone $(date -u +%T)"
    timeout 200 python3 benchmarks/device/ab_s28r.py kernel 8192,16384,32768 9 > "$OUT/log_kernel.txt" 2>&1; echo "rc=$?"
    grep -E "^T=|registers" "$OUT/log_kernel.txt" | cut -c1-240
    echo "=== public bf16 fwd+bwd, FORMS_X_SAVED off / on $(date -u +%T)"
    timeout 300 python3 benchmarks/device/ab_s28r.py public 8192,16384,32768 9 > "$OUT/log_public.txt" 2>&1; echo "rc=$?"
    grep -E "^T=|^\|" "$OUT/log_public.txt" | cut -c1-260
  fi )
echo "=== done $(date -u +%T)"
