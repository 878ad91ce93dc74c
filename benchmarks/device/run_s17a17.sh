#!/usr/bin/env bash
# Session 17, s17a17 (issue 17): hib_dq's held-slot mask, the old slots' row levels in shared, the held slots' m, z
# staged in shared for the log-normaliser pass, hib_shifts' column maxima; request 1-2's slot fold as variant "fold".
# Requests 1-3 ran at 64feae7, a7ce519, 6faca7f; the variants' sources (s17a17_base/, s17a17_var/) are at 6faca7f.
#   OUT=... bash benchmarks/device/run_s17a17.sh tests   (<= 100 s, beside other helpers: GPU tests, sanitizers, warm-up)
#   OUT=... bash benchmarks/device/run_s17a17.sh times   (<= 40 s, alone: hib_dq main vs tree (bf16 16K, float32 8K),
#                                                         ablations, public bf16 fwd+bwd vs SDPA at 16K)
set -u
NAME=s17a17_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
G=tests/test_cupy_hierarchical_grad.py
VB=main,sh,C,new,fold
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  timeout 95 python3 $D/hier_dq_s17a17.py warm bf16 main,sh > "$OUT/log_warm.txt" 2>&1 &
  timeout 95 python3 $D/hier_dq_s17a17.py warm bf16 C,new > "$OUT/log_warm2.txt" 2>&1 &
  timeout 95 python3 $D/hier_dq_s17a17.py warm bf16 fold,mainffma > "$OUT/log_warm3.txt" 2>&1 &
  timeout 95 python3 $D/hier_dq_s17a17.py warm f32 main,C > "$OUT/log_warm32.txt" 2>&1 &
  timeout 95 python3 $D/hier_dq_s17a17.py warm f32 new > "$OUT/log_warm33.txt" 2>&1 &
  timeout 95 python3 $D/hier_dq_s17a17.py pub 2048 2 > "$OUT/log_warm_pub.txt" 2>&1 &
  timeout 95 $PT $G -k "gpu_backward_16bit or gradcheck" > "$OUT/log_t16.txt" 2>&1 &
  timeout 95 $PT $G -k "gpu_backward_matches_reference" > "$OUT/log_tref.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --print-limit 5 \
      python3 $D/hier_dq_small_s17a17.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=hib_dq --print-limit 5 \
      python3 $D/hier_dq_small_s17a17.py > "$OUT/log_racecheck.txt" 2>&1 &
  wait
  for f in log_t16 log_tref; do echo "-- $f: $(tail -1 $OUT/$f.txt | cut -c1-150)"; grep -E "^FAILED|^E  " $OUT/$f.txt | head -6 | cut -c1-200; done
  for f in log_warm log_warm2 log_warm3 log_warm32 log_warm33 log_warm_pub; do echo "-- $f: $(tail -1 $OUT/$f.txt | cut -c1-150)"; done
  for f in log_memcheck log_racecheck; do echo "-- $f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/$f.txt | tail -1)";
    grep -vE "^=========( |$)|^$" $OUT/$f.txt | tail -8 | cut -c1-160; done
else
  echo "=== times $(date -u +%T)"
  timeout 20 python3 $D/hier_dq_s17a17.py kab bf16 16384 $VB 4 > "$OUT/log_kab.txt" 2>&1; echo "rc=$?"
  grep -E "^T=|Error" "$OUT/log_kab.txt" | cut -c1-240
  timeout 10 python3 $D/hier_dq_s17a17.py kab f32 8192 main,C,new 4 > "$OUT/log_kab32.txt" 2>&1; echo "rc=$?"
  grep -E "^T=|Error" "$OUT/log_kab32.txt" | cut -c1-240
  timeout 9 python3 $D/hier_dq_s17a17.py pub 16384 4 > "$OUT/log_pub.txt" 2>&1; echo "rc=$?"
  grep -E "^T=|Error" "$OUT/log_pub.txt" | cut -c1-200
fi
echo "=== done $(date -u +%T)"
