#!/usr/bin/env bash
# Session 19, s19g16 (issue 16): the Gated DeltaNet bf16 training step outside the scan backward (switches GRAD_BF16,
# forward.checks_grad_inputs in lsattn/backends/cupy/gated_delta.py; ab_s19g16.py's docstring).
#   OUT=... bash benchmarks/device/run_s19g.sh tests   (<= 100 s, beside other helpers: the GPU tests of the training path,
#                                                       memcheck / racecheck / initcheck of the bf16 path's kernels,
#                                                       warm-up compiles for times)
#   OUT=... bash benchmarks/device/run_s19g.sh times   (<= 40 s, alone: kernel-alone A/B and the public fwd+bwd step)
set -u
NAME=s19g_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
echo "=== $1 $(date -u +%T)"
if [ "$1" = tests ]; then
  ( timeout 90 python3 $D/ab_s19g16.py warm > "$OUT/log_warm.txt" 2>&1 ) &
  timeout 95 $PT tests/test_cupy_gated_delta_grad.py -k "grads_against_reference or check_answered or return_state" > "$OUT/log_grad.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta_grad.py -k "gradcheck" > "$OUT/log_gradcheck.txt" 2>&1 &
  SAN="compute-sanitizer --print-limit 5 --kernel-name kns=gd_forms"
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 $SAN --tool memcheck python3 $D/gd_bwd16_small_s19g16.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 $SAN --tool racecheck python3 $D/gd_bwd16_small_s19g16.py > "$OUT/log_racecheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 $SAN --tool initcheck python3 $D/gd_bwd16_small_s19g16.py > "$OUT/log_initcheck.txt" 2>&1 &
  wait
  echo "-- grad: $(tail -1 $OUT/log_grad.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_grad.txt | head -8 | cut -c1-220
  echo "-- gradcheck: $(tail -1 $OUT/log_gradcheck.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_gradcheck.txt | head -5 | cut -c1-220
  for f in memcheck racecheck initcheck; do
    echo "-- $f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/log_$f.txt | tail -1) cases $(grep -c '^bf16-small' $OUT/log_$f.txt) of 3"
    grep -E "Error|error|Uninit|Hazard|Invalid" $OUT/log_$f.txt | head -6 | cut -c1-160
  done
  grep -h "^bf16-small" $OUT/log_memcheck.txt | cut -c1-220
  echo "-- warm: $(grep -c '^compiled' $OUT/log_warm.txt) of 1"; grep -E "Error|error" $OUT/log_warm.txt | head -3 | cut -c1-200
else
  timeout 20 python3 $D/ab_s19g16.py public 8192,32768 6 > "$OUT/log_public.txt" 2>&1; echo "public rc=$?"
  grep -E "^public|^T=|Error" "$OUT/log_public.txt" | cut -c1-220
  timeout 15 python3 $D/ab_s19g16.py kernel 8192,32768 5 > "$OUT/log_kernel.txt" 2>&1; echo "kernel rc=$?"
  grep -E "^T=|Error" "$OUT/log_kernel.txt" | cut -c1-220
fi
echo "=== done $(date -u +%T)"
