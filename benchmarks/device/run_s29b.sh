#!/usr/bin/env bash
# Session 29 (s29b, issue 16): gated_delta_bwd.TRAIN_OUT16 (default on): the bf16 training step's output written in
# bfloat16 by gd_tier3 (no registry cast recorded), its gradient read as bfloat16 by K1 gd_tier3_bwd, K4 gd_tier1_bwd and
# gd_forms_bwd_x1 (their GD_DO16 builds, Config.do16); NOTES "Session 29 — s29b".
#   OUT=... bash benchmarks/device/run_s29b.sh tests   the touched GPU tests (test_cupy_gated_delta_tier_grad.py,
#                                                      test_cupy_gated_delta_tier_bwd.py, test_cupy_gated_delta_grad.py
#                                                      -m gpu; test_gpu_training_train_out16 runs the switch on / off);
#                                                      memcheck / initcheck of gd_train16_small_s29b.py (small bf16 steps
#                                                      with the switch on); racecheck of the same on K1 / K4
#   OUT=... bash benchmarks/device/run_s29b.sh times   ab_s29b.py public (the bf16 fwd+bwd step, TRAIN_OUT16 off / on
#                                                      rotated in one process, 8K / 16K / 32K: medians, latency, peak
#                                                      memory, aten::copy_ calls and copy kernels per step, the gd_
#                                                      kernels per step); the bf16 loss (no cast of its own), then
#                                                      ab_s24a's float32 loss at 32K
set -u
( NAME=s29b_$1; . benchmarks/device/setup.sh
  export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
  if [ "$1" = tests ]; then
    PT="python3 -m pytest -v -s -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== tests $(date -u +%T)"
    timeout 220 $PT tests/test_cupy_gated_delta_tier_grad.py > "$OUT/log_t_tiergrad.txt" 2>&1 &
    timeout 220 $PT tests/test_cupy_gated_delta_tier_bwd.py > "$OUT/log_t_tierbwd.txt" 2>&1 &
    timeout 220 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_grad.txt" 2>&1 &
    for tool in memcheck initcheck racecheck; do  # (racecheck: K1 and K4, the widening loads into their dout tiles)
      F=; [ $tool = racecheck ] && F="--kernel-name kns=gd_tier"
      ( PYTORCH_CUDA_ALLOC_CONF= timeout 200 compute-sanitizer --tool $tool $F --print-limit 10 python3 benchmarks/device/gd_train16_small_s29b.py > "$OUT/log_$tool.txt" 2>&1
        echo "rc=$?" >> "$OUT/log_$tool.txt" ) &
    done
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED|^E  " $f | head -8 | cut -c1-200; tail -n 1 $f | cut -c1-160; done
    grep -E "TRAIN_OUT16=" "$OUT/log_t_tiergrad.txt" | cut -c1-220
    for f in "$OUT"/log_memcheck.txt "$OUT"/log_initcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1), $(grep -c 'sanitize ok' $f) ok, $(tail -n 1 $f)"; grep -iE "error|hazard" $f | grep -vE "ERROR SUMMARY|RACECHECK SUMMARY" | head -3 | cut -c1-160; done
  elif [ "$1" = times ]; then
    echo "=== public bf16 fwd+bwd, TRAIN_OUT16 off / on, bf16 loss $(date -u +%T)"
    timeout 200 python3 benchmarks/device/ab_s29b.py public 8192,16384,32768 9 bf16 > "$OUT/log_public.txt" 2>&1; echo "rc=$?"
    grep -E "^T=|^\|" "$OUT/log_public.txt" | cut -c1-300
    echo "=== the same with ab_s24a's float32 loss, 32K $(date -u +%T)"
    timeout 90 python3 benchmarks/device/ab_s29b.py public 32768 7 f32 > "$OUT/log_public_f32.txt" 2>&1; echo "rc=$?"
    grep -E "^T=|^\|" "$OUT/log_public_f32.txt" | cut -c1-300
  fi )
echo "=== done $(date -u +%T)"
