#!/usr/bin/env bash
# Session 17, s17e16 (issue 16): the two-tier scan's switches (ab_s17e16.py's docstring: GD_T3OLD_SET, GD_TAR_SET,
# GD_CPY_SET). Batch 1 at 1323221, batch 2 at d75a21f, batch 3 at 34454f0 (their builds: ab_s17e16.py at those
# commits), batch 4 (the final tree's tests; main / new / lwr0) at the request's commit.
#   OUT=... bash benchmarks/device/run_s17e.sh tests   (<= 100 s, beside other helpers: GPU tests, sanitizers, warm-up
#                                                       compiles of ab_s17e16.py's builds; batches 1-3: also an ncu)
#   OUT=... bash benchmarks/device/run_s17e.sh times   (<= 40 s, alone: ab_s17e16.py's kernel-alone A/B and public calls)
set -u
NAME=s17e_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
echo "=== $1 $(date -u +%T)"
if [ "$1" = tests ]; then  # (batch 4: the tests first; batch 3's were cut beside the other helpers' and 12 compiles)
  for cb in x1:main x1:new x1:lwr0 f32:main f32:new f32:lwr0; do
    ( timeout 75 python3 $D/ab_s17e16.py warm ${cb%:*} ${cb#*:} > "$OUT/log_warm_${cb%:*}_${cb#*:}.txt" 2>&1 ) &
  done
  ( timeout 75 python3 $D/ab_s17e16.py warm public > "$OUT/log_warm_public.txt" 2>&1 ) &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "two_tier or bfloat16_in or torch_direct" > "$OUT/log_pytest.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta_grad.py -k "gpu_grads_against_reference" > "$OUT/log_grad.txt" 2>&1 &
  timeout 95 $PT tests/test_nonfinite.py -k "gated and torch_cuda" > "$OUT/log_nonfinite.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/gd_tier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=gd_ --print-limit 5 python3 $D/gd_tier_small.py > "$OUT/log_racecheck.txt" 2>&1 &
  wait
  echo "-- pytest: $(tail -1 $OUT/log_pytest.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_pytest.txt | head -8 | cut -c1-220
  echo "-- grad (gd_scan_bwd's gd_copy): $(tail -1 $OUT/log_grad.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_grad.txt | head -5 | cut -c1-220
  echo "-- nonfinite: $(tail -1 $OUT/log_nonfinite.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_nonfinite.txt | head -5 | cut -c1-220
  for f in memcheck racecheck; do
    echo "-- $f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/log_$f.txt | tail -1) calls $(grep -c tier-vs-main $OUT/log_$f.txt)"
    grep -E "tier-vs-main|Error|error|Uninit|Hazard" $OUT/log_$f.txt | head -8 | cut -c1-160
  done
  echo "-- warm: $(cat $OUT/log_warm_*.txt | grep -c '^compiled') of 7 compiled"; grep -h -E "Error|error" $OUT/log_warm_*.txt | head -3 | cut -c1-200
else
  timeout 24 python3 $D/ab_s17e16.py ab 8192,32768 5 main new lwr0 > "$OUT/log_ab.txt" 2>&1; echo "ab rc=$?"
  grep -E "^T=|Error" "$OUT/log_ab.txt" | cut -c1-200
  timeout 14 python3 $D/ab_s17e16.py public 8192,32768 > "$OUT/log_public.txt" 2>&1; echo "public rc=$?"
  grep -E "^public|Error" "$OUT/log_public.txt" | cut -c1-150
fi
echo "=== done $(date -u +%T)"
