#!/usr/bin/env bash
# Session 25, s25d (issue 16): the two-tier scan's backward, host side (gated_delta_bwd.TIER_BWD: the training forward
# keeps gd_tiers' Qp, Z, Sb; the backward runs K1-K4). Needs the kernel branches s25a / s25b / s25c merged.
#   OUT=... bash benchmarks/device/run_s25d.sh tests   the gradient GPU tests (test_cupy_gated_delta_grad.py and
#                                                      test_cupy_gated_delta_tier_grad.py, TIER_BWD on: the default)
#                                                      and memcheck of small bf16 training steps (two-tier from 3 chunks)
#   OUT=... bash benchmarks/device/run_s25d.sh times   the bf16 training step at B=2, H=16, d=64, T = 8K / 16K / 32K,
#                                                      TIER_BWD on / off rotated in one process (ab_s25d.py); the 32K
#                                                      step's kernels with it on (profile_gd.py train 32768)
set -u
if [ "$1" = tests ]; then
  ( NAME=s25d_tests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== tests $(date -u +%T)"
    timeout 140 $PT -s tests/test_cupy_gated_delta_tier_grad.py > "$OUT/log_t_tier_grad.txt" 2>&1 &
    timeout 140 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_gdgrad.txt" 2>&1 &
    PYTORCH_CUDA_ALLOC_CONF= timeout 140 compute-sanitizer --tool memcheck --print-limit 10 python3 \
        benchmarks/device/gd_train16_small_s24a.py > "$OUT/log_memcheck_train16.txt" 2>&1 &
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c 'PASSED' $f) passed, $(grep -c 'FAILED' $f) failed"; grep -E "^FAILED" $f | head -8 | cut -c1-220; tail -n 1 $f | cut -c1-160; done
    grep -E "^T=" "$OUT/log_t_tier_grad.txt" | cut -c1-200
    f="$OUT/log_memcheck_train16.txt"; echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY' $f | tail -1) $(grep -c 'sanitize ok' $f) ok" )
fi
if [ "$1" = times ]; then
  ( NAME=s25d_times; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
    echo "=== A/B $(date -u +%T)"
    timeout 85 python3 benchmarks/device/ab_s25d.py 8192,16384,32768 7 > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
    grep -E "^\||^T=" "$OUT/log_ab.txt" | cut -c1-400
    echo "=== profile train 32K, TIER_BWD on $(date -u +%T)"
    timeout 30 python3 benchmarks/device/profile_gd.py train 32768 > "$OUT/log_prof_train.txt" 2>&1; echo "rc=$?"
    grep -E "====|gd_|Self CUDA time total|Self CPU time total" "$OUT/log_prof_train.txt" | cut -c1-200 | head -30 )
fi
echo "=== done $(date -u +%T)"
