#!/usr/bin/env bash
# Session 21, s21a16 (issue 16): gated_delta.S16, the GD_S16 build (bfloat16 inputs' two-tier scan on bfloat16
# intermediates: qeff, e^G K, phi, H, Qp; O16: the output's partial sums too), on / off (gd_s16_s21a.py's docstring).
# Batch 1 at 85b50ed (S16, GD_T1X4_SET A/B), batch 2 at b6fbe67 (+ O16, GD_CVT16_SET A/B), batch 3 (final: the two
# hypothesis GPU tests batch 2 could not reach; times on / s16 / off again) at bb1f9d4, batch 4 (test_gpu_s16_bound
# alone; the public call at 32K) at the request's commit.
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
  # batch 4: test_gpu_s16_bound alone (batch 3 cut it at 95 s beside the warm-ups; its direct-path test passed there)
  ( timeout 90 python3 $D/gd_s16_s21a.py warm 32768 on,s16,off > "$OUT/log_warm.txt" 2>&1 ) &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "s16_bound" > "$OUT/log_pytest.txt" 2>&1
  echo "-- pytest s16_bound: $(tail -1 $OUT/log_pytest.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_pytest.txt | head -8 | cut -c1-220
  wait
  echo "-- warm: $(grep -c '^compiled' $OUT/log_warm.txt) of 1"; grep -h -E "Error|error" $OUT/log_warm*.txt | head -3 | cut -c1-200
else  # (batches 2, 3: the kernels measured; the public call at 32K, cut at 20 s in batch 3)
  timeout 35 python3 $D/gd_s16_s21a.py public 32768 7 on,s16,off > "$OUT/log_public.txt" 2>&1; echo "public rc=$?"
  grep -E "^T=|Error|fla not" "$OUT/log_public.txt" | cut -c1-330
fi
echo "=== done $(date -u +%T)"
