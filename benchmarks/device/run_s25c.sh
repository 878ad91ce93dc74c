#!/usr/bin/env bash
# Session 25, s25c (issue 16): K4 gd_tier1_bwd (gated_delta_tier1_bwd.cu), the two-tier scan's backward's low walks.
#   OUT=... bash benchmarks/device/run_s25c.sh tests   its GPU tests (against the float64 twin at d = C = 64, T = 8K + 100,
#                                                      32K; S16 x1 and float32 3xTF32) and memcheck / racecheck / initcheck
#                                                      of one small call of each build (gd_tier1_bwd_s25c.py small)
#   OUT=... bash benchmarks/device/run_s25c.sh times   gd_tier1_bwd_x1 alone at B H = 32, d = C = 64, T = 8K / 16K / 32K
#                                                      (S16; the production build and two timing builds), beside main's
#                                                      gd_scan_bwd_x1 at the same size
set -u
if [ "$1" = tests ]; then
  ( NAME=s25c_tests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    echo "=== tests $(date -u +%T)"
    timeout 140 python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short tests/test_cupy_gated_delta_tier_bwd.py \
        -k tier1_bwd > "$OUT/log_t_tier1_bwd.txt" 2>&1 &
    # (initcheck: the S16 call alone, its arrays' addresses printed, every kernel instrumented: under a --kernel-name
    # filter the writes of the kernels left out (gd_forms, CuPy's) are not tracked and their outputs read as
    # uninitialized, session 25's requests 1-2)
    for tool in memcheck racecheck initcheck; do
      PYTORCH_CUDA_ALLOC_CONF= timeout 140 compute-sanitizer --tool $tool --print-limit 40 \
          $([ $tool = initcheck ] || echo --kernel-name kns=gd_tier1_bwd) \
          python3 benchmarks/device/gd_tier1_bwd_s25c.py small $([ $tool = initcheck ] && echo s16) > "$OUT/log_${tool}.txt" 2>&1 &
    done
    timeout 140 python3 benchmarks/device/gd_tier1_bwd_s25c.py compile > "$OUT/log_compile.txt" 2>&1 &
    wait
    echo "-- compile: $(tail -n 1 $OUT/log_compile.txt | cut -c1-160)"
    f="$OUT/log_t_tier1_bwd.txt"; echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"
    grep -E "^FAILED|^E  " $f | head -8 | cut -c1-250; tail -n 1 $f | cut -c1-160
    for tool in memcheck racecheck initcheck; do f="$OUT/log_${tool}.txt"
      echo "-- $tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) | $(grep -cE 'small ok' $f) ok"; done
    f="$OUT/log_initcheck.txt"; grep -E "^\S+: \[0x" $f | cut -c1-100
    echo "initcheck: $(grep -c 'Uninitialized' $f) reports, addresses $(grep -oE 'Address 0x[0-9a-f]+' $f | sort -u | sed -n '1p;$p' | tr '\n' ' ')"
    grep -E "Uninitialized|at gd_|by thread" $f | head -6 | cut -c1-120 )
fi
if [ "$1" = times ]; then
  ( NAME=s25c_times; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    echo "=== times $(date -u +%T)"
    timeout 110 python3 benchmarks/device/gd_tier1_bwd_s25c.py times 8192,16384,32768 15 > "$OUT/log_times.txt" 2>&1
    echo "rc=$?"; grep -vE "^\s*$" "$OUT/log_times.txt" | tail -n 12 | cut -c1-200 )
fi
echo "=== done $(date -u +%T)"
