#!/usr/bin/env bash
# Session 20, the lead's merged branch (s19b16 + s19c16's T3FILL + s19e17 + s19f16 + s19g16):
#   OUT=... bash benchmarks/device/run_s20.sh tests   every GPU test and the sanitizers (run_m.sh tests 110)
#   OUT=... bash benchmarks/device/run_s20.sh times   alone: s19g16's switches on the public bf16 fwd+bwd step
#                                                     (ab_s19g16.py), s19e17's on / off (hier_ird_s19e17.py ab)
#   OUT=... bash benchmarks/device/run_s20.sh final   the GPU tests of the files the last merges touched (gated delta,
#                                                     hierarchical gradients) beside initcheck of hier_bwd_small and
#                                                     gd_tier_small, then the tables alone (run_m.sh bench)
set -u
if [ "$1" = tests ]; then bash benchmarks/device/run_m.sh tests 110; exit; fi
if [ "$1" = final ]; then
  ( NAME=s20_final; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== final tests $(date -u +%T)"
    timeout 110 $PT tests/test_cupy_gated_delta.py > "$OUT/log_t_gd.txt" 2>&1 &
    timeout 110 $PT tests/test_cupy_hierarchical_grad.py > "$OUT/log_t_hgrad.txt" 2>&1 &
    for s in hier_bwd_small gd_tier_small; do
      PYTORCH_CUDA_ALLOC_CONF= timeout 110 compute-sanitizer --tool initcheck --print-limit 10 python3 benchmarks/device/$s.py > "$OUT/log_initcheck_$s.txt" 2>&1 &
    done
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED" $f | head -5 | cut -c1-200; done
    for f in "$OUT"/log_initcheck_*.txt; do echo "-- $(basename $f): $(grep 'ERROR SUMMARY' $f | tail -1)"; grep -m3 -A1 Uninit $f | cut -c1-160; done )
  bash benchmarks/device/run_m.sh bench; exit
fi
NAME=s20_$1; . benchmarks/device/setup.sh
export CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
echo "=== times $(date -u +%T)"
timeout 70 python3 $D/ab_s19g16.py warm > "$OUT/log_g_warm.txt" 2>&1; echo "g warm rc=$?"
timeout 50 python3 $D/ab_s19g16.py public 8192,32768 6 > "$OUT/log_g_public.txt" 2>&1; echo "g public rc=$?"
grep -E "^public|^T=|Error" "$OUT/log_g_public.txt" | cut -c1-220
timeout 40 python3 $D/hier_ird_s19e17.py ab 16384 12 20 > "$OUT/log_e_ab.txt" 2>&1; echo "e ab rc=$?"
grep -E "^T=|^pub|Error" "$OUT/log_e_ab.txt" | cut -c1-220
echo "=== done $(date -u +%T)"
