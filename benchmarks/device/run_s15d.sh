#!/usr/bin/env bash
# Session 15, s15d17 (issue 17): the bf16 log_attention backward's tensor-core kernels (exp_kernel_bwd_tc.cu, LOGV).
#   OUT=... bash benchmarks/device/run_s15d.sh tests   GPU tests of the bf16 backward (both modes) and of training;
#                                                     main's / this branch's kernels bitwise (ek_ab_s15d17.py equal),
#                                                     which compiles both builds the timings use
#   OUT=... bash benchmarks/device/run_s15d.sh times   alone on the GPU: the A/B at 32K and 64K bf16 (interleaved; per
#                                                     kernel), then issue 17's ek / la pair at 16K-64K
# Results and logs: $OUT/s15d_<mode>.tgz.
set -u
MODE=${1:-tests}
NAME=s15d_$MODE; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
BASE=benchmarks/device/s15d17_base
if [ "$MODE" = tests ]; then
  echo "=== tests $(date -u +%T)"
  timeout 145 python3 benchmarks/device/ek_ab_s15d17.py equal $BASE > "$OUT/log_equal.txt" 2>&1 &
  timeout 145 $PT tests/test_cupy_log_attention.py -k "gpu_bf16_backward_tensor_cores" > "$OUT/log_t1.txt" 2>&1 &
  timeout 145 $PT tests/test_cupy_log_attention.py -k "gpu_log_attention_backward_spikes or bf16_spikes_and_streams or grads_against_reference" > "$OUT/log_t2.txt" 2>&1 &
  timeout 145 $PT tests/test_training.py -k "log_attention or exp_kernel" > "$OUT/log_t3.txt" 2>&1 &
  wait
  for f in "$OUT"/log_t*.txt; do echo "-- $(basename $f): $(tail -1 $f | cut -c1-140)"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -4 | cut -c1-200; done
  echo "-- equal:"; grep -E "DIFFER|NONFINITE|^equal:|Error" "$OUT/log_equal.txt" | head -6 | cut -c1-200; tail -1 "$OUT/log_equal.txt" | cut -c1-150
  # the A/B's builds at a small T (warm for times: both variants' kernels in CuPy's cache)
  timeout 40 python3 benchmarks/device/ek_ab_s15d17.py ab $BASE 2048 bf16 1 > "$OUT/log_warm.txt" 2>&1; echo "-- warm rc=$?"
  PYTORCH_CUDA_ALLOC_CONF= timeout 60 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/ek_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1
  echo "-- memcheck: $(grep -E 'ERROR SUMMARY' "$OUT/log_memcheck.txt" | tail -1) $(grep -c '^ok' "$OUT/log_memcheck.txt") ok"
elif [ "$MODE" = times ]; then
  echo "=== A/B $(date -u +%T)"
  timeout 30 python3 benchmarks/device/ek_ab_s15d17.py ab $BASE 32768,65536 bf16 3 > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
  grep -E "fwd\+bwd|ekb_|total" "$OUT/log_ab.txt" | cut -c1-120
  echo "=== issue 17 pair $(date -u +%T)"
  mkdir -p "$OUT/table"
  timeout 19 python3 benchmarks/bench_gpu_hierarchical.py table --ops ek,la --T 32768,65536 --reps 3 --out "$OUT/table" > "$OUT/log_table.txt" 2>&1; echo "rc=$?"
  grep -E "^T = | ms " "$OUT/log_table.txt" | head -18 | cut -c1-90
fi
echo "=== done $(date -u +%T)"
