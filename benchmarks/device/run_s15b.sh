#!/usr/bin/env bash
# Session 15, s15b16 (issue 16): gd_tier3 (chunks of a period per block) and gd_coarse at 32K.
#   OUT=... bash benchmarks/device/run_s15b.sh tests   GPU tests of the two-tier scan, its sanitizers, the A/B's builds compiled (150 s)
#   OUT=... bash benchmarks/device/run_s15b.sh times   ab_s15b16.py alone on the GPU (50 s)
set -u
NAME=s15b_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
AB=benchmarks/device/ab_s15b16.py
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  timeout 140 $PT tests/test_cupy_gated_delta.py -k "two_tier or bfloat16_in or matches" > "$OUT/log_pytest.txt" 2>&1 &
  timeout 140 compute-sanitizer --tool memcheck --print-limit 5 --kernel-name kns=gd_ python3 benchmarks/device/gd_tier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  timeout 140 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_tier3 python3 benchmarks/device/gd_tier_small.py > "$OUT/log_racecheck_t3.txt" 2>&1 &
  timeout 140 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_c python3 benchmarks/device/gd_tier_small.py > "$OUT/log_racecheck_c.txt" 2>&1 &
  for cfg in x1 f32; do for builds in main,new r1,r2; do
    timeout 140 python3 $AB --compile-only $cfg $builds > "$OUT/log_compile_${cfg}_$builds.txt" 2>&1 &
  done; done
  wait
  echo "-- pytest: $(tail -1 "$OUT/log_pytest.txt")"; grep -E "^FAILED|^ERROR" "$OUT/log_pytest.txt" | head -5 | cut -c1-200
  for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck_*.txt; do
    echo "-- $(basename $f): $(grep -c tier-vs-main $f) calls, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) $(grep -c 'sanitize ok' $f) ok"
    grep -E "tier-vs-main" $f | cut -c1-80 | tr '\n' ';'; echo
  done
  for f in "$OUT"/log_compile_*.txt; do echo "-- $(basename $f): $(tail -1 $f | cut -c1-150)"; done
else
  echo "=== times $(date -u +%T)"
  timeout 50 python3 $AB > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
  grep -E "^public|^T=" "$OUT/log_ab.txt" | sed -e 's/(t1\/coarse\/t3 //' -e 's/; vs gd_scan/ e/' | cut -c1-90
fi
echo "=== done $(date -u +%T)"
