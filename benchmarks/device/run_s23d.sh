#!/usr/bin/env bash
# Session 23, s23d16 (issue 16): the two-tier scan's kernels at 8K bf16 (gd_s23d.py's switches and builds; batch 1 at
# f6bafd0: new, main, c32, s0, p2, p3; batch 2 at c3ae90c: new, main, c0, q0, rv, w16 and a memcheck of the then
# timing builds; this text: the final tree's new / main).
#   OUT=... bash benchmarks/device/run_s23d.sh tests   (<= 150 s, beside other helpers: the GPU tests of the two-tier
#          path, memcheck / racecheck / initcheck of gd_tier_small.py and gd_coarse_small_s23d.py, warm-up compiles)
#   OUT=... bash benchmarks/device/run_s23d.sh times   (<= 100 s, alone: kernels per build, scan span, public forward)
set -u
NAME=s23d_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
B=new,main
echo "=== $1 $(date -u +%T) $(git rev-parse --short HEAD 2>/dev/null)"
if [ "$1" = tests ]; then
  for b in ${B//,/ }; do ( timeout 120 python3 $D/gd_s23d.py warm 8192 1 $b > "$OUT/log_warm_$b.txt" 2>&1 ) & done
  timeout 140 $PT tests/test_cupy_gated_delta.py -k "two_tier or tier3 or fork or s16" > "$OUT/log_pytest.txt" 2>&1 &
  for s in gd_tier_small gd_coarse_small_s23d; do
    for tool in memcheck racecheck initcheck; do
      k=""; [ $tool = racecheck ] && k="--kernel-name kns=gd_"
      PYTORCH_CUDA_ALLOC_CONF= timeout 140 compute-sanitizer --tool $tool $k --print-limit 5 python3 $D/$s.py > "$OUT/log_${tool}_$s.txt" 2>&1 &
    done
  done
  wait
  echo "-- pytest (two_tier or tier3 or fork or s16): $(tail -1 $OUT/log_pytest.txt | cut -c1-160)"
  grep -E "^FAILED|^E  " $OUT/log_pytest.txt | head -8 | cut -c1-220
  for s in gd_tier_small gd_coarse_small_s23d; do
    for tool in memcheck racecheck initcheck; do
      f=$OUT/log_${tool}_$s.txt
      echo "-- $tool $s: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) calls $(grep -c 'tier-vs-main' $f), $(grep -c 'sanitize ok' $f) ok"
      grep -E "tier-vs-main" $f | head -8 | cut -c1-120
      grep -E "Error|error|Uninit|Hazard|Invalid|Race" $f | grep -v "ERROR SUMMARY\|RACECHECK SUMMARY" | head -5 | cut -c1-160
    done
  done
  echo "-- warm: $(cat $OUT/log_warm_*.txt | grep -c '^compiled') of 2 builds"; grep -h -E "Error|error" $OUT/log_warm_*.txt | head -3 | cut -c1-200
else
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader
  timeout 28 python3 $D/gd_s23d.py kernels 8192 6 $B > "$OUT/log_kernels8.txt" 2>&1; echo "kernels 8K rc=$?"
  grep -E "^T=|gd_|Error" "$OUT/log_kernels8.txt" | cut -c1-200
  timeout 16 python3 $D/gd_s23d.py kernels 32768 3 $B > "$OUT/log_kernels32.txt" 2>&1; echo "kernels 32K rc=$?"
  grep -E "^T=|gd_|Error" "$OUT/log_kernels32.txt" | cut -c1-200
  timeout 28 python3 $D/gd_s23d.py public 8192 9 $B > "$OUT/log_public.txt" 2>&1; echo "public 8K rc=$?"
  grep -E "^T=|scan|Error" "$OUT/log_public.txt" | cut -c1-200
  timeout 20 python3 $D/gd_s23d.py public 32768 7 $B > "$OUT/log_public32.txt" 2>&1; echo "public 32K rc=$?"
  grep -E "^T=|scan|Error" "$OUT/log_public32.txt" | cut -c1-200
fi
echo "=== done $(date -u +%T)"
