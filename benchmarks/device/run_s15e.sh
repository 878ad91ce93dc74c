#!/usr/bin/env bash
# Session 15, branch s15e17 (issue 17: the hierarchical backward's kernels), request 1: hib_blocks' output masks where
# the values are used (not inside its loads), q loaded without a fill, a piece's leading decay from chunk totals loaded
# NT at a time; ncu of hib_dq and hib_blocks at 16K bf16.
#   OUT=... bash benchmarks/device/run_s15e.sh tests   (<= 150 s, beside the other helpers' tests): the hierarchical
#       gradient tests this touches (16-bit, gradcheck, the float32 / float64 property test with -inf / masked rows),
#       memcheck and racecheck of hier_bwd_small.py; beside them every build the timings need compiled (A/B variants,
#       the -lineinfo build for ncu)
#   OUT=... bash benchmarks/device/run_s15e.sh times   (<= 50 s, alone): ncu of hib_dq and hib_blocks (one bf16 backward
#       at 16K; summary by ncu_sum_s15e17.py, the report's pages and source counters to the logs), then
#       hier_bwd_s15e17.py kab 16384 (main's kernels against the tree's on the same recorded arguments: bf16, float32
#       inputs, masked outputs; bit-equality; hib_dq without its held slots' phases: their costs)
# After request 1 (its kab was cut at the batch's 28 s): times runs kab with main, new and float32 inputs only; NCU_TOO=1
# adds the -lineinfo build (tests) and ncu (times) as request 1 ran them.
# Results and logs: $OUT/s15e_<mode>.tgz
set -u
NAME=s15e_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
D=benchmarks/device; SRC=/tmp/s15e17_hib_src.cu
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  G=tests/test_cupy_hierarchical_grad.py
  timeout 140 $PT $G -k "gpu_backward_16bit or gradcheck" > "$OUT/log_tests_a.txt" 2>&1 &
  timeout 140 $PT $G -k "gpu_backward_matches_reference" > "$OUT/log_tests_b.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 140 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 140 compute-sanitizer --tool racecheck --print-limit 5 python3 $D/hier_bwd_small.py race > "$OUT/log_racecheck.txt" 2>&1 &
  i=0
  for w in bf16:main,new f32in:main,new ${NCU_TOO:+"lineinfo $SRC"}; do
    i=$((i + 1)); timeout 140 python3 $D/hier_bwd_s15e17.py warm $w > "$OUT/log_warm$i.txt" 2>&1 &
  done
  wait
  echo "warm: $(cat "$OUT"/log_warm*.txt | grep -c '^warm') of $i processes"; grep -h -E "Error|error" "$OUT"/log_warm*.txt | head -3
  for f in "$OUT"/log_tests_*.txt; do echo "-- $(basename $f): $(tail -n 1 "$f" | cut -c1-120)"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -4 | cut -c1-200; done
  for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok' "$f" | tr '\n' ' ')"
    grep -E "^float|^bfloat|Error|error" "$f" | tail -n 6 | cut -c1-160; done
elif [ "$1" = times ]; then
  echo "=== ncu $(date -u +%T)"
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
  if [ -n "$NCU" ] && [ -n "${NCU_TOO:-}" ]; then
    timeout 25 "$NCU" --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
        --section SchedulerStats --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
        --section SourceCounters --kernel-name regex:"hib_dq|hib_blocks" --launch-skip 2 --launch-count 2 \
        -o "$OUT/ncu" python3 $D/hier_bwd_s15e17.py ncu 16384 $SRC > "$OUT/log_ncu.txt" 2>&1; echo "rc=$?"
    cp $SRC "$OUT/" 2>/dev/null
    "$NCU" -i "$OUT/ncu.ncu-rep" --page raw --csv > "$OUT/ncu_raw.csv" 2>&1
    python3 $D/ncu_sum_s15e17.py "$OUT/ncu_raw.csv" | cut -c1-300
    (  # the report's pages for the logs (CPU only, beside the timings)
      "$NCU" -i "$OUT/ncu.ncu-rep" --page details > "$OUT/ncu_details.txt" 2>&1 &
      "$NCU" -i "$OUT/ncu.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu_src_sass.csv" 2>&1 &
      "$NCU" -i "$OUT/ncu.ncu-rep" --page source --csv --print-source cuda > "$OUT/ncu_src_cuda.csv" 2>&1 &
      wait ) &
  else
    echo "no ncu (NCU_TOO=1 for it)"
  fi
  echo "=== kab 16K $(date -u +%T)"
  timeout 25 python3 $D/hier_bwd_s15e17.py kab 16384 main,new,f32in > "$OUT/log_kab.txt" 2>&1
  echo "rc=$?"; grep -E "^T=.*(ms|differ)|Error" "$OUT/log_kab.txt" | cut -c1-200
  grep -E "^T=.*(bit-equal)" "$OUT/log_kab.txt" | cut -c1-90 | tr '\n' ';' | cut -c1-400; echo
  wait
  ls -la "$OUT" | grep ncu | awk '{print $5, $9}' | tr '\n' ' '; echo
fi
echo "=== done $(date -u +%T)"
