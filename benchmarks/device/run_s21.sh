#!/usr/bin/env bash
# Session 21, the lead's first call on main (the split tree of s20k, never GPU-run):
#   OUT=... bash benchmarks/device/run_s21.sh first   every GPU test and the sanitizers (run_m.sh tests 110), then where
#                                                     the Gated DeltaNet forward spends its time at 8K / 32K, bf16 and
#                                                     fp32 (profile_gd.py: the per-kernel split)
#   OUT=... bash benchmarks/device/run_s21.sh tests   (a batch's tests wave) the gated delta GPU test files, which the
#                                                     first call's 110 s cap cut beside the sanitizers
#   OUT=... bash benchmarks/device/run_s21.sh times   nothing (a batch's times wave)
#   OUT=... bash benchmarks/device/run_s21.sh final   the merged main: the gated delta GPU test files (forward, gradients,
#                                                     nonfinite) beside memcheck / racecheck / initcheck of gd_tier_small
#                                                     and gd_small bf16, then the tables alone (run_m.sh bench)
set -u
if [ "$1" = final ]; then
  ( NAME=s21_final; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== final tests $(date -u +%T)"
    K="s16_bound or two_tier or tier3"  # (s21a16's GPU test of the S16 bound: cut by compiles in its batches)
    timeout 220 $PT tests/test_cupy_gated_delta.py -k "$K" > "$OUT/log_t_gd1.txt" 2>&1 &
    timeout 220 $PT tests/test_cupy_gated_delta.py -k "not ($K)" > "$OUT/log_t_gd2.txt" 2>&1 &
    timeout 220 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_gdgrad.txt" 2>&1 &
    timeout 220 $PT tests/test_nonfinite.py -k gated > "$OUT/log_t_nonfinite.txt" 2>&1 &
    for tool in memcheck racecheck initcheck; do
      ( for s in gd_tier_small "gd_small bf16"; do set -- $s
          PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/$1.py ${2:-} > "$OUT/log_${tool}_$1${2:+_$2}.txt" 2>&1
        done ) &
    done
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED" $f | head -5 | cut -c1-200; tail -n 1 $f | cut -c1-160; done
    for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt "$OUT"/log_initcheck_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1)"; done )
  bash benchmarks/device/run_m.sh bench
fi
if [ "$1" = tests ]; then
  ( NAME=s21_gdtests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
    timeout 200 $PT tests/test_cupy_gated_delta.py > "$OUT/log_t_gd.txt" 2>&1 &
    timeout 200 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_gdgrad.txt" 2>&1 &
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED" $f | head -5 | cut -c1-200; tail -n 1 $f | cut -c1-160; done )
fi
if [ "$1" = first ]; then
  bash benchmarks/device/run_m.sh tests 110
  ( NAME=s21_prof; . benchmarks/device/setup.sh; export CUDA_VISIBLE_DEVICES=0
    echo "=== profile $(date -u +%T)"
    timeout 90 python3 benchmarks/device/profile_gd.py 8192,32768 > "$OUT/log_prof.txt" 2>&1; echo "rc=$?"
    grep -E "^====|gd_|Self CUDA time total" "$OUT/log_prof.txt" | cut -c1-60,100-200 )
fi
echo "=== done $(date -u +%T)"
