#!/usr/bin/env bash
# Session 19, s19c16 (issue 16): the two-tier scan's coarse kernels and gd_tier3 at 32K (ab_s19c16.py's docstring:
# T3FILL = gd_cfill folded into gd_tier3; s19c16's SUPERGROUPS and GD_CTP_SET removed
# in session 20, s20s).
#   OUT=... bash benchmarks/device/run_s19c.sh tests   (<= 100 s, beside other helpers: GPU tests, sanitizers, warm-up
#                                                       compiles of ab_s19c16.py's builds)
#   OUT=... bash benchmarks/device/run_s19c.sh times   (<= 40 s, alone: ab_s19c16.py's kernel-alone A/B and public calls)
set -u
NAME=s19c_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
echo "=== $1 $(date -u +%T)"
if [ "$1" = tests ]; then
  for cb in x1:off x1:new f32:off f32:new; do  # (fill0 / grp: new's kernels)
    ( timeout 80 python3 $D/ab_s19c16.py warm ${cb%:*} ${cb#*:} > "$OUT/log_warm_${cb%:*}_${cb#*:}.txt" 2>&1 ) &
  done
  ( timeout 80 python3 $D/ab_s19c16.py warm public > "$OUT/log_warm_public.txt" 2>&1 ) &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "tier3_fill or two_tier or bfloat16_in or direct_output" > "$OUT/log_pytest.txt" 2>&1 &
  S=$D/gd_sup_small_s19c16.py
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 $S > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=gd_tier3 --print-limit 5 python3 $S > "$OUT/log_racecheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=gd_c --print-limit 5 python3 $S > "$OUT/log_racecheck_c.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool initcheck --kernel-name kns=gd_ --print-limit 5 python3 $S > "$OUT/log_initcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/gd_tier_small.py > "$OUT/log_memcheck_t.txt" 2>&1 &
  wait
  echo "-- pytest: $(tail -1 $OUT/log_pytest.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_pytest.txt | head -8 | cut -c1-220
  for f in memcheck racecheck racecheck_c initcheck memcheck_t; do
    echo "-- $f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/log_$f.txt | tail -1) calls $(grep -c -E 'fill-vs-cfill|tier-vs-main' $OUT/log_$f.txt)"
    grep -E "fill-vs-cfill|tier-vs-main|Error|error|Uninit|Hazard" $OUT/log_$f.txt | head -8 | cut -c1-160
  done
  echo "-- warm: $(cat $OUT/log_warm_*.txt | grep -c '^compiled') of 7 compiled"; grep -h -E "Error|error" $OUT/log_warm_*.txt | head -3 | cut -c1-200
else
  timeout 26 python3 $D/ab_s19c16.py ab 8192,16384,32768 5 > "$OUT/log_ab.txt" 2>&1; echo "ab rc=$?"
  grep -E "^T=|Error" "$OUT/log_ab.txt" | cut -c1-220
  timeout 12 python3 $D/ab_s19c16.py public 8192,32768 > "$OUT/log_public.txt" 2>&1; echo "public rc=$?"
  grep -E "^public|Error" "$OUT/log_public.txt" | cut -c1-170
fi
echo "=== done $(date -u +%T)"
