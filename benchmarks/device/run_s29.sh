#!/usr/bin/env bash
# Session 29, the lead's calls (issue 16):
#   OUT=... bash benchmarks/device/run_s29.sh first   the tier-grad GPU tests (session 28's _gpu_step_inputs mend, unrun
#                                                     on a GPU), then where the bf16 training step and the bf16 forward
#                                                     spend their time today (profile_gd.py: train 32K / 16K, forward 8K / 16K)
#   OUT=... bash benchmarks/device/run_s29.sh host       the same step's host side unprofiled (host_train_s29.py)
#   OUT=... bash benchmarks/device/run_s29.sh lines      the same step's host side line by line (host_lines_s29.py)
#   OUT=... bash benchmarks/device/run_s29.sh timeline   the fwd+bwd table's step under torch.profiler at 32K / 16K / 8K
#                                                     (gd_train_timeline.py: the GPU's idle gaps), the forward's at 8K / 16K
set -u
( NAME=s29_$1; . benchmarks/device/setup.sh
  export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
  . benchmarks/device/gd_gpu_tests.sh
  if [ "$1" = first ]; then
    echo "=== tier grad tests $(date -u +%T)"
    timeout 200 $GD_PT tests/test_cupy_gated_delta_tier_grad.py > "$OUT/log_t_tiergrad.txt" 2>&1; echo "rc=$?"
    gd_gpu_summary
    for T in 32768 16384; do
      echo "=== profile train $T $(date -u +%T)"
      timeout 90 python3 benchmarks/device/profile_gd.py train $T > "$OUT/log_prof_train_$T.txt" 2>&1; echo "rc=$?"
      cut -c1-200 "$OUT/log_prof_train_$T.txt" | grep -vE '^-+$' | head -40
    done
    echo "=== profile forward $(date -u +%T)"
    timeout 90 python3 benchmarks/device/profile_gd.py 8192,16384 > "$OUT/log_prof_fwd.txt" 2>&1; echo "rc=$?"
    grep -E '^====|gd_|Self CUDA time' "$OUT/log_prof_fwd.txt" | cut -c1-200
  elif [ "$1" = timeline ]; then
    timeout 150 python3 benchmarks/device/gd_train_timeline.py 32768,16384,8192 > "$OUT/log_train_timeline.txt" 2>&1; echo "rc=$?"
    grep -E "^====|call \(host|host phases|per kernel|GPU: first" "$OUT/log_train_timeline.txt" | cut -c1-900
    timeout 100 python3 benchmarks/device/gd_timeline.py 8192,16384 bf16 nochecks > "$OUT/log_fwd_timeline.txt" 2>&1; echo "rc=$?"
    grep -E "^====|latency|call \(host|host phases|per kernel|GPU: first" "$OUT/log_fwd_timeline.txt" | cut -c1-900
  elif [ "$1" = host ]; then
    timeout 200 python3 benchmarks/device/host_train_s29.py ${HOST_T:-32768,16384,8192} ${HOST_PROF:-} > "$OUT/log_host_train.txt" 2>&1; echo "rc=$?"
    cat "$OUT/log_host_train.txt" | cut -c1-300
  elif [ "$1" = lines ]; then
    timeout 150 python3 benchmarks/device/host_lines_s29.py ${HOST_T:-8192} > "$OUT/log_host_lines.txt" 2>&1; echo "rc=$?"
    tail -3 "$OUT/log_host_lines.txt"
  fi )
echo "=== done $(date -u +%T)"
