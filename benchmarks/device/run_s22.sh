#!/usr/bin/env bash
# Session 22, the lead's calls on main:
#   OUT=... bash benchmarks/device/run_s22.sh first   test_gpu_s16_bound (fixed in 39b048d, never GPU-run), then where
#                                                     the 8K / 32K bf16 public forward spends its time: the timeline
#                                                     (every GPU op, the idle gaps) and the host stamps
set -u
if [ "$1" = first ]; then
  ( NAME=s22_first; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    echo "=== s16 test $(date -u +%T)"
    timeout 150 python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short tests/test_cupy_gated_delta.py -k s16_bound > "$OUT/log_t_s16.txt" 2>&1
    echo "rc=$? $(grep -c ' PASSED' $OUT/log_t_s16.txt) passed, $(grep -c ' FAILED' $OUT/log_t_s16.txt) failed"; tail -n 3 "$OUT/log_t_s16.txt" | cut -c1-200
    echo "=== timeline $(date -u +%T)"
    timeout 90 python3 benchmarks/device/gd_timeline.py 8192,32768 bf16 nochecks > "$OUT/log_timeline.txt" 2>&1; echo "rc=$?"
    grep -v "^ *$" "$OUT/log_timeline.txt" | tail -n 60 | cut -c1-160
    echo "=== host $(date -u +%T)"
    timeout 60 python3 benchmarks/device/gd_host_s16a16.py 8192 bf16 20 > "$OUT/log_host.txt" 2>&1; echo "rc=$?"
    tail -n 25 "$OUT/log_host.txt" | cut -c1-160 )
fi
echo "=== done $(date -u +%T)"
