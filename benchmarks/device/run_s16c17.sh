#!/usr/bin/env bash
# Session 16, s16c17 (issue 17): hib_dq's slot products with dq / q in registers, the terms' row sums by shuffles,
# G' as bf16 pairs, the pairs' operands as bf16 pairs, the slot epilogue without branches, the slot copies' and m / z
# loads' addresses (bf16 callers' variant). Request 1: 00b38f9; request 2: 51e2b3b (its ex2.ftz form since removed).
#   OUT=... bash benchmarks/device/run_s16c17.sh tests   (<= 100 s, beside other helpers: GPU tests, sanitizers, warm-up)
#   OUT=... bash benchmarks/device/run_s16c17.sh times   (<= 40 s, alone: hib_dq main vs tree, public fwd+bwd vs SDPA)
set -u
NAME=s16c17_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
G=tests/test_cupy_hierarchical_grad.py
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T) $(git log --oneline -1 2>/dev/null | cut -c1-60)"
  ( timeout 95 python3 $D/hier_dq_s16c17.py warm > "$OUT/log_warm.txt" 2>&1;
    timeout 30 python3 $D/hier_dq_s16c17.py pub 2048 2 > "$OUT/log_warm_pub.txt" 2>&1 ) &
  timeout 95 $PT $G -k "gpu_backward_16bit or gradcheck" > "$OUT/log_t16.txt" 2>&1 &
  timeout 95 $PT $G -k "gpu_backward_matches_reference" > "$OUT/log_tref.txt" 2>&1 &
  timeout 95 $PT $G -k "gpu_16bit_training_forward" > "$OUT/log_ttrain.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --kernel-name kns=hib_dq --print-limit 5 \
      python3 $D/hier_dq_small_s16c17.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=hib_dq --print-limit 5 \
      python3 $D/hier_dq_small_s16c17.py > "$OUT/log_racecheck.txt" 2>&1 &
  wait
  for f in log_t16 log_tref log_ttrain; do echo "-- $f: $(tail -1 $OUT/$f.txt | cut -c1-150)"; grep -E "^FAILED|^E  " $OUT/$f.txt | head -6 | cut -c1-200; done
  echo "-- warm: $(tail -1 $OUT/log_warm.txt | cut -c1-120) / $(tail -1 $OUT/log_warm_pub.txt | cut -c1-120)"
  for f in log_memcheck log_racecheck; do echo "-- $f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/$f.txt | tail -1)";
    grep -vE "^=========( |$)|^$" $OUT/$f.txt | tail -4 | cut -c1-160; done
else
  echo "=== times $(date -u +%T) $(git log --oneline -1 2>/dev/null | cut -c1-60)"
  timeout 25 python3 $D/hier_dq_s16c17.py kab 16384 main,new,nosl,nold 7 > "$OUT/log_kab.txt" 2>&1; echo "rc=$?"
  grep -E "^T=|Error" "$OUT/log_kab.txt" | cut -c1-220
  timeout 14 python3 $D/hier_dq_s16c17.py pub 16384 10 > "$OUT/log_pub.txt" 2>&1; echo "rc=$?"
  grep -E "^T=|Error" "$OUT/log_pub.txt" | cut -c1-200
fi
echo "=== done $(date -u +%T)"
