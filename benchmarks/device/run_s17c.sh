#!/usr/bin/env bash
# Session 17, s17c17 (issue 17): hierarchical.slots' split: the chunks' summaries (hi_isum), hi_merge and hi_snap on a
# side stream beside the pairs (hi_ipair), against the serial order (hierarchical.SPLIT False) in one process.
#   OUT=... bash benchmarks/device/run_s17c.sh tests   (<= 100 s, beside other helpers: GPU tests, sanitizers, warm-up)
#   OUT=... bash benchmarks/device/run_s17c.sh times   (<= 40 s, alone: kernels alone, public calls, profile)
set -u; NAME=s17c_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  ( timeout 70 python3 $D/hier_split_s17c17.py warm > "$OUT/log_warm.txt" 2>&1
    timeout 25 python3 $D/hier_split_s17c17.py equal 16384 > "$OUT/log_equal.txt" 2>&1 ) &
  timeout 95 $PT tests/test_cupy_hierarchical_grad.py -k "split_slots" > "$OUT/log_tsplit.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_hierarchical.py -k "float32_tensor_cores_every_chunk or bf16_intra_exact_rows" \
      > "$OUT/log_tfwd.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_hierarchical_grad.py -k "gpu_16bit_training_forward" > "$OUT/log_ttrain.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --print-limit 5 \
      python3 $D/hier_split_small_s17c17.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool initcheck --print-limit 5 \
      python3 $D/hier_split_small_s17c17.py > "$OUT/log_initcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=hi_i --print-limit 5 \
      python3 $D/hier_split_small_s17c17.py > "$OUT/log_racecheck.txt" 2>&1 &
  wait
  for f in log_tsplit log_tfwd log_ttrain; do echo "-- $f: $(tail -1 $OUT/$f.txt | cut -c1-150)"
    grep -E "^FAILED|^E  " $OUT/$f.txt | head -6 | cut -c1-200; done
  echo "-- warm: $(tail -2 $OUT/log_warm.txt | tr '\n' ' ' | cut -c1-150)"
  grep -E "equal|failed|Error" "$OUT/log_equal.txt" | head -8 | cut -c1-200
  for f in log_memcheck log_initcheck log_racecheck; do
    echo "-- $f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/$f.txt | tail -1) | $(grep -cE '^(bfloat16|float|train|sanitize|split)' $OUT/$f.txt) progress lines, last: $(grep -E '^(bfloat16|float|train|sanitize|split)' $OUT/$f.txt | tail -1 | cut -c1-60)"
    grep -E "^========= (Invalid|Uninitialized|Error|Race|Program hit|.*at .*hi_)" $OUT/$f.txt | sort | uniq -c | head -6 | cut -c1-200
  done
else
  echo "=== times $(date -u +%T)"
  timeout 38 python3 $D/hier_split_s17c17.py kab,pub,prof bf16:16384 fp32:8192 16384 15 --budget 3 \
      > "$OUT/log_times.txt" 2>&1; echo "rc=$?"
  grep -vE "^ *$" "$OUT/log_times.txt" | grep -vE "^  tl .*(aten|elementwise|reduce|Memcpy|memset)" | head -110 | cut -c1-200
fi
echo "=== done $(date -u +%T)"
