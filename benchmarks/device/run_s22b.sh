#!/usr/bin/env bash
# Session 22, s22b16 (issue 16): gd_forms' GF_B16 (bf16 mma for the products after the solve), GF_ALDM (their A
# operands as 16-bit tiles by ldmatrix); builds as gd_b16_s22b.py's modes.
#   OUT=... bash benchmarks/device/run_s22b.sh tests   (<= 100 s, beside other helpers: GPU tests of the bf16 paths,
#          memcheck of gd_tier_small.py, racecheck of gd_forms in the default build and 15a; warm-up compiles)
#   OUT=... bash benchmarks/device/run_s22b.sh times   (<= 40 s, alone: gd_forms per build, the public bf16 forward)
# Batch 1 at 33a66ba (GF_VQ on then), batch 2 (final) at 73970b5 (also a racecheck of 15v: GF_VQ on, since removed).
set -u
NAME=s22b_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
RC="compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5"
M=15,15a,0,31
echo "=== $1 $(date -u +%T) $(git rev-parse --short HEAD 2>/dev/null)"
if [ "$1" = tests ]; then
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 $RC python3 $D/gd_race_s22b.py 15 > "$OUT/log_racecheck_15.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 $RC python3 $D/gd_race_s22b.py 15a > "$OUT/log_racecheck_15a.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/gd_tier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  for m in ${M//,/ }; do ( timeout 90 python3 $D/gd_b16_s22b.py warm 8192,32768 1 $m > "$OUT/log_warm_$m.txt" 2>&1 ) & done
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "s16_bound or bfloat16_in or two_tier or direct_output" > "$OUT/log_pytest.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "torch_direct_path" > "$OUT/log_direct.txt" 2>&1 &
  wait
  echo "-- pytest (S16 bound, bf16, two-tier, direct output): $(tail -1 $OUT/log_pytest.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_pytest.txt | head -8 | cut -c1-220
  echo "-- torch_direct_path: $(tail -1 $OUT/log_direct.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_direct.txt | head -5 | cut -c1-220
  echo "-- memcheck (default): $(grep -E 'ERROR SUMMARY' $OUT/log_memcheck.txt | tail -1)"; grep -E "Error|error" $OUT/log_memcheck.txt | head -4 | cut -c1-160
  for b in 15 15a; do
    echo "-- racecheck gd_forms, build $b: $(grep -E 'RACECHECK SUMMARY' $OUT/log_racecheck_$b.txt | tail -1) ($(grep -c 'tier-vs-main' $OUT/log_racecheck_$b.txt) calls)"
    grep -E "Error|Race|access" $OUT/log_racecheck_$b.txt | head -6 | cut -c1-160
  done
  echo "-- warm: $(cat $OUT/log_warm_*.txt | grep -c "^compiled") of 8 (4 builds x 2 T)"; grep -h -E "Error|error" $OUT/log_warm_*.txt | head -3 | cut -c1-200
else
  timeout 12 python3 $D/gd_b16_s22b.py kernels 8192 3 $M > "$OUT/log_kernels.txt" 2>&1; echo "kernels 8K rc=$?"
  grep -E "^T=|gd_|Error" "$OUT/log_kernels.txt" | cut -c1-200
  timeout 9 python3 $D/gd_b16_s22b.py kernels 32768 3 15,15a,0 > "$OUT/log_kernels32.txt" 2>&1; echo "kernels 32K rc=$?"
  grep -E "^T=|gd_|Error" "$OUT/log_kernels32.txt" | cut -c1-200
  timeout 15 python3 $D/gd_b16_s22b.py public 8192,32768 7 15,15a,0 > "$OUT/log_public.txt" 2>&1; echo "public rc=$?"
  grep -E "^public|Error" "$OUT/log_public.txt" | cut -c1-260
fi
echo "=== done $(date -u +%T)"
