#!/usr/bin/env bash
# Session 16, branch s16d17 (issue 17: hierarchical bf16 training at 16K outside the backward's kernels), request 1:
# the prologue's checks made after the call's launches (loglinear_log_attention only: _nonfinite.Deferred), the 16-bit
# training forward's output stored by hi_read (no torch cast), the backward without the decay's sums / casts nobody
# wants; hib_dkdv's dk, dlv over the right blocks in registers (HIB_DKR); where one step goes (torch.profiler) at bf16
# 16K and fp32 8K; ncu of hib_dkdv at 16K bf16.
#   OUT=... bash benchmarks/device/run_s16d.sh tests   (<= 100 s, beside the other helpers' tests): the GPU tests this
#       touches (16-bit backward and training forward, gradcheck, the checks' side stream and deferral, special values
#       and zero-weight rows of loglinear_log_attention on the GPU), memcheck of hier_bwd_small.py (the hierarchical
#       kernels instrumented: kns=hi), racecheck of hib_dkdv, the builds the timings need (hier_step, hier_dkdv
#       variants), and ncu of hib_dkdv at 16K bf16 (its -lineinfo build first; beside the tests: counters, not times)
#   OUT=... bash benchmarks/device/run_s16d.sh times   (<= 40 s, alone): hier_step_s16d17.py times bf16:16384 fp32:8192
#       (interleaved ours deferred / eager / SDPA, the fp32 array-API ratio, the profiles, the host spans), then
#       hier_dkdv_s16d17.py kab 16384 new,dkr0 (hib_dkdv with dk, dlv in registers against main's form, bit-equality)
# Results and logs: $OUT/s16d_<mode>.tgz
set -u
NAME=s16d_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
D=benchmarks/device; SRC=/tmp/s16d17_hib_src.cu
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  ( timeout 88 python3 $D/hier_step_s16d17.py warm > "$OUT/log_warm1.txt" 2>&1 ) &
  ( timeout 88 python3 $D/hier_dkdv_s16d17.py warm new,dkr0 > "$OUT/log_warm2.txt" 2>&1 ) &
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
  ( timeout 50 python3 $D/hier_bwd_s15e17.py warm lineinfo $SRC > "$OUT/log_warm3.txt" 2>&1
    [ -n "$NCU" ] && timeout 30 "$NCU" --section SpeedOfLight --section Occupancy --section LaunchStats \
        --section WarpStateStats --section MemoryWorkloadAnalysis_Tables --section SourceCounters \
        --kernel-name regex:"hib_dkdv" --launch-skip 1 --launch-count 1 -o "$OUT/ncu" \
        python3 $D/hier_bwd_s15e17.py ncu 16384 $SRC > "$OUT/log_ncu.txt" 2>&1
    cp $SRC "$OUT/" 2>/dev/null ) &
  G=tests/test_cupy_hierarchical_grad.py
  timeout 88 $PT $G -k "gpu_backward_16bit or gradcheck or 16bit_training_forward" > "$OUT/log_tests_a.txt" 2>&1 &
  timeout 88 $PT tests/test_nonfinite.py -k "side_stream or (loglinear_log_attention and (special_value or zero_weight or empty_calls))" > "$OUT/log_tests_b.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 88 compute-sanitizer --tool memcheck --print-limit 5 --kernel-name kns=hi python3 $D/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 88 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=hib_dkdv python3 $D/hier_bwd_small.py race > "$OUT/log_racecheck.txt" 2>&1 &
  wait
  echo "warm: $(cat "$OUT"/log_warm*.txt | grep -c '^warm') (of 4 lines)"; grep -h -E "Error|error" "$OUT"/log_warm*.txt | head -3 | cut -c1-200
  if [ -e "$OUT/ncu.ncu-rep" ]; then
    timeout 3 "$NCU" -i "$OUT/ncu.ncu-rep" --page raw --csv > "$OUT/ncu_raw.csv" 2>&1
    python3 $D/ncu_sum_s15e17.py "$OUT/ncu_raw.csv" | cut -c1-400
    timeout 3 "$NCU" -i "$OUT/ncu.ncu-rep" --page details > "$OUT/ncu_details.txt" 2>&1
    timeout 3 "$NCU" -i "$OUT/ncu.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu_src_sass.csv" 2>&1
  else echo "no ncu report: $(tail -n 2 "$OUT/log_ncu.txt" 2>/dev/null | tr '\n' ' ' | cut -c1-200)"; fi
  for f in "$OUT"/log_tests_*.txt; do echo "-- $(basename $f): $(tail -n 1 "$f" | cut -c1-120)"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -6 | cut -c1-200; done
  for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do
    echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok' "$f" | tr '\n' ' ')"
    grep -E "^float|^bfloat|Error|error" "$f" | tail -n 6 | cut -c1-160; done
elif [ "$1" = times ]; then
  echo "=== step $(date -u +%T)"
  OUT=$OUT timeout 22 python3 $D/hier_step_s16d17.py times bf16:16384 fp32:8192 --budget 2.0 > "$OUT/log_step.txt" 2>&1
  echo "rc=$?"
  grep -E "interleaved|ours / SDPA|array-API|clocks|: span|done at" "$OUT/log_step.txt" | cut -c1-260
  grep -E "^    " "$OUT/log_step.txt" | head -40 | cut -c1-90
  grep -E "host ms from" "$OUT/log_step.txt" | cut -c1-400
  echo "=== hib_dkdv A/B $(date -u +%T)"
  timeout 11 python3 $D/hier_dkdv_s16d17.py kab 16384 new,dkr0 > "$OUT/log_kab.txt" 2>&1; echo "rc=$?"
  grep -E "^T=|Error" "$OUT/log_kab.txt" | cut -c1-200
fi
echo "=== done $(date -u +%T)"
