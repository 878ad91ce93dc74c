#!/usr/bin/env bash
# Session 22, s22b16 (issue 16): gd_forms' GF_B16 (bf16 mma for the products after the solve; gd_b16_s22b.py).
#   OUT=... bash benchmarks/device/run_s22b.sh tests   (<= 100 s, beside other helpers: GPU tests of the bf16 paths,
#                                                       memcheck / racecheck of gd_tier_small.py, warm-up compiles)
#   OUT=... bash benchmarks/device/run_s22b.sh times   (<= 40 s, alone: gd_forms per mask, the public bf16 forward)
set -u
NAME=s22b_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
M=15,15v,15av,0v,31,15ah
echo "=== $1 $(date -u +%T) $(git rev-parse --short HEAD 2>/dev/null)"
if [ "$1" = tests ]; then
  for m in ${M//,/ }; do ( timeout 90 python3 $D/gd_b16_s22b.py warm 8192,32768 1 $m > "$OUT/log_warm_$m.txt" 2>&1 ) & done
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "s16_bound or bfloat16_in or two_tier or direct_output" > "$OUT/log_pytest.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "torch_direct_path" > "$OUT/log_direct.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/gd_tier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_tier_small.py > "$OUT/log_racecheck.txt" 2>&1 &
  wait
  echo "-- pytest (S16 bound, bf16, two-tier, direct output): $(tail -1 $OUT/log_pytest.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_pytest.txt | head -8 | cut -c1-220
  echo "-- torch_direct_path: $(tail -1 $OUT/log_direct.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_direct.txt | head -5 | cut -c1-220
  for f in memcheck racecheck; do
    echo "-- $f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/log_$f.txt | tail -1)"
    grep -E "Error|error|Hazard" $OUT/log_$f.txt | head -6 | cut -c1-160
  done
  echo "-- warm: $(cat $OUT/log_warm_*.txt | grep -c "^compiled") of 12 (6 builds x 2 T)"; grep -h -E "Error|error" $OUT/log_warm_*.txt | head -3 | cut -c1-200
else
  timeout 14 python3 $D/gd_b16_s22b.py kernels 8192 3 $M > "$OUT/log_kernels.txt" 2>&1; echo "kernels 8K rc=$?"
  grep -E "^T=|gd_|Error" "$OUT/log_kernels.txt" | cut -c1-200
  timeout 9 python3 $D/gd_b16_s22b.py kernels 32768 3 15,15av,0v > "$OUT/log_kernels32.txt" 2>&1; echo "kernels 32K rc=$?"
  grep -E "^T=|gd_|Error" "$OUT/log_kernels32.txt" | cut -c1-200
  timeout 14 python3 $D/gd_b16_s22b.py public 8192,32768 5 15,15av,0v > "$OUT/log_public.txt" 2>&1; echo "public rc=$?"
  grep -E "^public|Error" "$OUT/log_public.txt" | cut -c1-260
fi
echo "=== done $(date -u +%T)"
