#!/usr/bin/env bash
# Session 17, s17c17 (issue 17). Request 1 (717c7ae): hierarchical.slots' split (hi_isum, the merges and hi_snap on a
# side stream beside hi_ipair) against the serial order: slower, removed. Request 2: hi_merge with its held slots staged
# in shared memory (HI_MSTAGE 1, the tree) against main's (session 14's loads into registers), alone and in the calls.
#   OUT=... bash benchmarks/device/run_s17c.sh tests   (<= 100 s, beside other helpers: GPU tests, sanitizers, warm-up)
#   OUT=... bash benchmarks/device/run_s17c.sh times   (<= 40 s, alone: hi_merge alone, public calls, profile)
set -u; NAME=s17c_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
H=tests/test_cupy_hierarchical.py
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  ( timeout 70 python3 $D/hier_merge_s17c17.py warm > "$OUT/log_warm.txt" 2>&1
    timeout 25 python3 $D/hier_merge_s17c17.py equal 16384 > "$OUT/log_equal.txt" 2>&1 ) &
  timeout 95 $PT $H -k "merge_deep_tree or float32_tensor_cores_every_chunk or bf16_intra_exact_rows" \
      > "$OUT/log_tfwd.txt" 2>&1 &
  timeout 95 $PT $H -k "gpu_matches_reference or gpu_stream_moves" > "$OUT/log_tref.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_hierarchical_grad.py -k "gpu_16bit_training_forward or gpu_backward_16bit" \
      > "$OUT/log_ttrain.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --print-limit 5 \
      python3 $D/hier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool initcheck --print-limit 5 \
      python3 $D/hier_small.py > "$OUT/log_initcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=hi_merge --print-limit 5 \
      python3 $D/hier_small.py > "$OUT/log_racecheck.txt" 2>&1 &
  wait
  for f in log_tfwd log_tref log_ttrain; do echo "-- $f: $(tail -1 $OUT/$f.txt | cut -c1-150)"
    grep -E "^FAILED|^E  " $OUT/$f.txt | head -6 | cut -c1-200; done
  echo "-- warm: $(tail -2 $OUT/log_warm.txt | tr '\n' ' ' | cut -c1-150)"
  grep -E "equal|bit-equal|DIFFERENT|failed|Error" "$OUT/log_equal.txt" | head -8 | cut -c1-200
  for f in log_memcheck log_initcheck log_racecheck; do
    echo "-- $f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/$f.txt | tail -1) | $(grep -cE '^(bfloat16|float|sanitize)' $OUT/$f.txt) progress lines, last: $(grep -E '^(bfloat16|float|sanitize)' $OUT/$f.txt | tail -1 | cut -c1-60)"
    grep -vE "Host Frame|^=========( |$)" $OUT/$f.txt | grep -E "^=========" | sort | uniq -c | head -6 | cut -c1-200
  done
else
  echo "=== times $(date -u +%T)"
  timeout 38 python3 $D/hier_merge_s17c17.py merge,pub,prof bf16:16384 fp32:8192 16384 15 --budget 3 \
      > "$OUT/log_times.txt" 2>&1; echo "rc=$?"
  grep -vE "^ *$" "$OUT/log_times.txt" | grep -vE "^  tl .*(aten|elementwise|reduce|Memcpy|memset)|UserWarning|_warn_once" \
      | head -90 | cut -c1-200
fi
echo "=== done $(date -u +%T)"
