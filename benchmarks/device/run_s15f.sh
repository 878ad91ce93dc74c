#!/usr/bin/env bash
# Session 15, branch s15f17 (issue 17): the host time of a hierarchical training step (the finiteness checks on a side
# stream with prebuilt launches, cached variants), main's host path against the branch's in one process.
#   OUT=... bash benchmarks/device/run_s15f.sh tests   GPU tests of the change (checks, hierarchical training, dispatch),
#                                                      memcheck of hier_small.py, and the timings' compiles (150 s cap)
#   OUT=... bash benchmarks/device/run_s15f.sh times   timings alone on the GPU (50 s cap): timeline, profile, api, sdpa
set -u
NAME=s15f_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
H=benchmarks/device/hier_host_s15f17.py
summary() {
  for f in "$@"; do echo "-- $(basename $f): $(grep -c ' PASSED' "$f") passed, $(grep -c ' SKIPPED' "$f") skipped, $(grep -c ' FAILED' "$f") failed"
    grep -E "^FAILED|^ERROR" "$f" | head -4 | cut -c1-200; tail -1 "$f" | cut -c1-120; done
}
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  timeout 140 python3 $H warm > "$OUT/log_warm.txt" 2>&1 &
  timeout 140 $PT tests/test_nonfinite.py -k "kernel or side_stream" > "$OUT/log_t1.txt" 2>&1 &
  timeout 140 $PT tests/test_cupy_hierarchical_grad.py -k "gpu_backward_16bit or gradcheck or training_forward or state_gradients" > "$OUT/log_t2.txt" 2>&1 &
  timeout 140 $PT tests/test_gpu_dispatch.py -k "require_grad or bfloat16 or automatic" > "$OUT/log_t3.txt" 2>&1 &
  timeout 140 $PT tests/test_cupy_hierarchical.py -k "matches_reference or stream" > "$OUT/log_t4.txt" 2>&1 &
  timeout 110 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  wait
  summary "$OUT"/log_t*.txt
  echo "-- memcheck: $(grep -E 'ERROR SUMMARY' "$OUT/log_memcheck.txt" | tail -1)"
  tail -2 "$OUT/log_warm.txt" | cut -c1-150
elif [ "$1" = times ]; then
  echo "=== times $(date -u +%T)"
  timeout 14 python3 $H timeline fp32:8192 bf16:16384 fp32:16384 bf16:8192 > "$OUT/log_timeline.txt" 2>&1; echo "rc=$?"
  grep -E "^T=" "$OUT/log_timeline.txt" | cut -c1-330
  timeout 8 python3 $H spans fp32:8192 bf16:16384 > "$OUT/log_spans.txt" 2>&1; echo "rc=$?"
  grep -E "^==|^T=" "$OUT/log_spans.txt" | cut -c1-420
  timeout 10 python3 $H profile fp32:8192 bf16:16384 > "$OUT/log_profile.txt" 2>&1; echo "rc=$?"
  grep -E "^T=" "$OUT/log_profile.txt" | cut -c1-260
  timeout 8 python3 $H api 8192 > "$OUT/log_api.txt" 2>&1; echo "rc=$?"
  grep -E "^T=" "$OUT/log_api.txt" | cut -c1-260
  timeout 8 python3 $H sdpa bf16:16384 > "$OUT/log_sdpa.txt" 2>&1; echo "rc=$?"
  grep -E "^T=" "$OUT/log_sdpa.txt" | cut -c1-200
fi
echo "=== done $(date -u +%T)"
