#!/usr/bin/env bash
# Session 26, s26c (issue 16: K1 / K2 and tier_backward's zeroed buffers):
#   OUT=... bash benchmarks/device/run_s26c.sh tests   K1 / K2 GPU tests (both K2 forms), the tiered training step's GPU
#                                                      tests, memcheck / racecheck / initcheck of the bf16 training step
#                                                      through K1-K4 (gd_train16_small_s24a.py: d_v 17 / 33 / 64)
#   OUT=... bash benchmarks/device/run_s26c.sh times   K1, K2 chains vs walk, the zeroing, at 8K / 16K / 32K
#                                                      (k12_s26c.py); the bf16 step on / off at 16K / 32K (ab_s26c.py);
#                                                      ncu of one K2 walk launch at 32K
set -u
if [ "$1" = tests ]; then
  ( NAME=s26c_tests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci
    PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== tests $(date -u +%T)"
    timeout 140 $PT tests/test_cupy_gated_delta_tier_bwd.py -k "tier3_bwd or coarse_bwd" > "$OUT/log_t_k12.txt" 2>&1 &
    timeout 140 $PT tests/test_cupy_gated_delta_tier_grad.py > "$OUT/log_t_grad.txt" 2>&1 &
    for tool in memcheck racecheck initcheck; do
      PYTORCH_CUDA_ALLOC_CONF= timeout 140 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/gd_train16_small_s24a.py > "$OUT/log_${tool}.txt" 2>&1 &
    done
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED" $f | head -5 | cut -c1-200; tail -n 1 $f | cut -c1-160; done
    for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt "$OUT"/log_initcheck.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1)"; tail -n 3 $f | cut -c1-200; done )
fi
if [ "$1" = times ]; then
  ( NAME=s26c_times; . benchmarks/device/setup.sh
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
    echo "=== K1 / K2 / zeroing alone $(date -u +%T)"
    timeout 45 python3 benchmarks/device/k12_s26c.py 8192,16384,32768 15 32 > "$OUT/log_k12.txt" 2>&1; echo "rc=$?"
    grep -E "^\||H200|T=" "$OUT/log_k12.txt" | cut -c1-220
    echo "=== bf16 step on / off $(date -u +%T)"
    timeout 40 python3 benchmarks/device/ab_s26c.py 16384,32768 7 > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
    grep -E "^\||grad|kernels" "$OUT/log_ab.txt" | cut -c1-400
    echo "=== ncu: one K2 walk launch at 32K $(date -u +%T)"
    timeout 50 ncu --set full -k regex:gd_coarse_walk -c 1 python3 benchmarks/device/k12_s26c.py 32768 0 32 walk > "$OUT/log_ncu.txt" 2>&1; echo "rc=$?"
    grep -E "Duration|Registers|Achieved Occupancy|Theoretical Occupancy|Issue Slots Busy|Issued Ipc|No Eligible|Compute \(SM\) Throughput|Memory Throughput|L2 Hit|Block Limit|Stall|Executed Instructions  |Warp Cycles Per Issued" "$OUT/log_ncu.txt" | sed -E 's/  +/ /g' | head -40 )
fi
echo "=== done $(date -u +%T)"
