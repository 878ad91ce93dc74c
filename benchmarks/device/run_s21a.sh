#!/usr/bin/env bash
# Session 21, s21a16 (issue 16): gated_delta.S16, the GD_S16 build (bfloat16 inputs' two-tier scan on bfloat16
# intermediates: qeff, e^G K, phi, H, Qp), on / off (gd_s16_s21a.py's docstring).
#   OUT=... bash benchmarks/device/run_s21a.sh tests   (<= 100 s, beside other helpers: GPU tests of the forward's
#                                                       two-tier path and training, sanitizers, warm-up compiles)
#   OUT=... bash benchmarks/device/run_s21a.sh times   (<= 40 s, alone: kernel times and the public forward, on / off, fla)
set -u
NAME=s21a_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
echo "=== $1 $(date -u +%T)"
if [ "$1" = tests ]; then
  ( timeout 90 python3 $D/gd_s16_s21a.py warm 8192,16384,32768 on,s16 > "$OUT/log_warm.txt" 2>&1 ) &
  ( timeout 90 python3 $D/gd_s16_s21a.py warm 8192,16384,32768 off,on-GD_CVT16_SET > "$OUT/log_warm2.txt" 2>&1 ) &
  # (batch 1: one process of these cut at 95 s by its compiles; the training path unchanged: its GPU tests passed there)
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "two_tier_matches or tier3_fill_matches or s16_bound" > "$OUT/log_pytest.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "direct_output_rounded or bfloat16_in_bfloat16 or half_inputs or torch_direct" > "$OUT/log_pytest2.txt" 2>&1 &
  timeout 95 $PT tests/test_nonfinite.py -k "gated" > "$OUT/log_nonfinite.txt" 2>&1 &
  for tool in memcheck racecheck initcheck; do
    k=""; [ $tool = racecheck ] && k="--kernel-name kns=gd_"
    PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool $tool $k --print-limit 5 python3 $D/gd_tier_small.py > "$OUT/log_$tool.txt" 2>&1 &
  done
  wait
  echo "-- pytest: $(tail -1 $OUT/log_pytest.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_pytest.txt | head -8 | cut -c1-220
  echo "-- pytest2: $(tail -1 $OUT/log_pytest2.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_pytest2.txt | head -8 | cut -c1-220
  echo "-- nonfinite: $(tail -1 $OUT/log_nonfinite.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_nonfinite.txt | head -5 | cut -c1-220
  for f in memcheck racecheck initcheck; do
    echo "-- $f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/log_$f.txt | tail -1) calls $(grep -c tier-vs-main $OUT/log_$f.txt)"
    grep -E "tier-vs-main|Error|error|Uninit|Hazard" $OUT/log_$f.txt | head -8 | cut -c1-160
  done
  echo "-- warm: $(cat $OUT/log_warm.txt $OUT/log_warm2.txt | grep -c '^compiled') of 6"; grep -h -E "Error|error" $OUT/log_warm*.txt | head -3 | cut -c1-200
else
  timeout 18 python3 $D/gd_s16_s21a.py kernels 8192,32768 3 on,s16,off,on-GD_CVT16_SET > "$OUT/log_kernels.txt" 2>&1; echo "kernels rc=$?"
  grep -vE "^\s*$|Warning|warn" "$OUT/log_kernels.txt" | cut -c1-160 | head -30
  timeout 20 python3 $D/gd_s16_s21a.py public 8192,16384,32768 7 on,s16,off,on-GD_CVT16_SET > "$OUT/log_public.txt" 2>&1; echo "public rc=$?"
  grep -E "^T=|Error|fla not" "$OUT/log_public.txt" | cut -c1-330
fi
echo "=== done $(date -u +%T)"
