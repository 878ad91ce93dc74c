#!/usr/bin/env bash
# Session 25, s25a (issue 16): K1 gd_tier3_bwd and K2 gd_coarse_bwd, the two-tier scan backward's first two kernels.
#   OUT=... bash benchmarks/device/run_s25a.sh tests   their GPU tests (the twin at d = 64, C = 64, T = 8292 / 32768; float32
#                                                      3xTF32 and GD_S16 1xTF32 builds); memcheck / racecheck / initcheck of
#                                                      both kernels on the real S16 forward's buffers (gd_tier_bwd_s25a.py
#                                                      small: T = 1000, 2600) (< 150 s)
#   OUT=... bash benchmarks/device/run_s25a.sh times   K1, K1 at R = 4 (a timing build), K2 and gd_scan_bwd_x1 alone, B H = 32,
#                                                      T = 8K / 16K / 32K, medians of CUDA events (< 120 s)
set -u
if [ "$1" = tests ]; then
  ( NAME=s25a_tests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    echo "=== tests $(date -u +%T)"
    timeout 140 python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short tests/test_cupy_gated_delta_tier_bwd.py \
        -k "gpu_tier3_bwd or gpu_coarse_bwd" > "$OUT/log_t_k12.txt" 2>&1 &
    # (the builds compiled into CuPy's cache outside the sanitizers first)
    timeout 45 python3 benchmarks/device/gd_tier_bwd_s25a.py small > "$OUT/log_small.txt" 2>&1; echo "small rc=$?"
    tail -n 3 "$OUT/log_small.txt" | cut -c1-200
    timeout 90 python3 benchmarks/device/gd_tier_bwd_s25a.py compile > "$OUT/log_compile.txt" 2>&1 &  # (times' builds)
    # (initcheck unfiltered: with a kernel filter the forward kernels' writes are likely untracked, their reads then
    # reported as uninitialized: request 2's ten reports in gd_tier3_bwd_x1, unresolved)
    for tool in memcheck racecheck initcheck; do
      PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool $tool --print-limit 10 \
          $([ $tool = initcheck ] || echo --kernel-name kns=_bwd_x1) \
          python3 benchmarks/device/gd_tier_bwd_s25a.py small > "$OUT/log_${tool}.txt" 2>&1 &
    done
    wait
    echo "-- compile for times: $(tail -n 1 $OUT/log_compile.txt | cut -c1-160)"
    f="$OUT/log_t_k12.txt"; echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"
    grep -E "^FAILED|^E  .*error" $f | head -8 | cut -c1-220; tail -n 1 $f | cut -c1-160
    for tool in memcheck racecheck initcheck; do f="$OUT/log_${tool}.txt"
      echo "-- $tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) | $(grep -c 'sanitize ok' $f) ok"; done )
fi
if [ "$1" = times ]; then
  ( NAME=s25a_times; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
    echo "=== times $(date -u +%T)"
    timeout 110 python3 benchmarks/device/gd_tier_bwd_s25a.py times 8192,16384,32768 21 > "$OUT/log_times.txt" 2>&1; echo "rc=$?"
    grep -E "^K1|^T=|^\||Error|error" "$OUT/log_times.txt" | cut -c1-260 )
fi
echo "=== done $(date -u +%T)"
