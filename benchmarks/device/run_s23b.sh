#!/usr/bin/env bash
# Session 23, s23b (issue 16): the two-tier scan's programmatic dependent launches (gated_delta.PDL).
#   OUT=... bash benchmarks/device/run_s23b.sh tests   the GPU tests the change touches (PDL on / off bit for bit, the
#                                                      two-tier / fork / direct-output / bf16 tests with PDL on, the
#                                                      default), memcheck / racecheck of gd_tier_small, gd_small bf16
#   OUT=... bash benchmarks/device/run_s23b.sh times   gd_s23b.py: public bf16 latency at 2K / 8K / 32K, PDL off /
#                                                      on, interleaved; the 8K timeline with PDL on (its trace under
#                                                      $OUT/on)
# (batch 1, 2c951f4: 8K / 32K, modes off, pdl (then the early trigger), pdl-late, off1, pdl1; timelines on / off;
#  batch 2, ebe89dc: modes off, pdl, pdl-early (the early-trigger build, since removed))
set -u
if [ "$1" = tests ]; then
  ( NAME=s23b_tests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== tests $(date -u +%T)"
    timeout 140 $PT tests/test_cupy_gated_delta.py -k "pdl_bit_equal" > "$OUT/log_t_pdl.txt" 2>&1 &
    timeout 140 $PT tests/test_cupy_gated_delta.py -k "two_tier or fork or direct_output" > "$OUT/log_t_gd.txt" 2>&1 &
    for tool in memcheck racecheck; do
      ( for s in "gd_tier_small 95" "gd_small 40 bf16"; do set -- $s
          PYTORCH_CUDA_ALLOC_CONF= timeout $2 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/$1.py ${3:-} > "$OUT/log_${tool}_$1${3:+_$3}.txt" 2>&1
          echo "rc=$?" >> "$OUT/log_${tool}_$1${3:+_$3}.txt"
        done ) &
    done
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED|^E  " $f | head -8 | cut -c1-200; tail -n 1 $f | cut -c1-160; done
    for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) $(grep -c tier-vs-main $f) calls, $(tail -n 1 $f)"; grep -iE "error|race|hazard" $f | grep -v "SUMMARY" | head -3 | cut -c1-160; done )
fi
if [ "$1" = times ]; then
  ( NAME=s23b_times; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    echo "=== warm $(date -u +%T)"
    timeout 35 python3 benchmarks/device/gd_s23b.py warm 2048 1 off,pdl > "$OUT/log_warm.txt" 2>&1; echo "rc=$?"; tail -n 2 "$OUT/log_warm.txt" | cut -c1-160
    echo "=== ab $(date -u +%T)"
    timeout 45 python3 benchmarks/device/gd_s23b.py ab 2048,8192,32768 31 off,pdl > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
    grep -vE "^ *$|Warning|warn" "$OUT/log_ab.txt" | tail -n 24 | cut -c1-200
    echo "=== timeline PDL on $(date -u +%T)"
    mkdir -p "$OUT/on"
    OUT="$OUT/on" timeout 18 python3 benchmarks/device/gd_timeline.py 8192 bf16 nochecks > "$OUT/log_timeline_on.txt" 2>&1; echo "rc=$?"
    grep -E "====|per kernel|GPU:|first launch|gpu " "$OUT/log_timeline_on.txt" | cut -c1-160 )
fi
echo "=== done $(date -u +%T)"
