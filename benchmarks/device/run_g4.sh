#!/usr/bin/env bash
# session 6, call G4 (one H200): the GPU tests of this session's merges in three concurrent pytest
# processes (log-linear Gated DeltaNet forward + backward; log_attention / exp-kernel backward and
# training; packed segments, grouped heads, dispatch, non-finite inputs) beside compute-sanitizer,
# then the benchmarks one after another (timings alone on the GPU).
set -u
NAME=g4; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu"
echo "=== tests $(date -u +%T)"
timeout 230 $PT tests/test_cupy_gated_delta.py tests/test_cupy_gated_delta_grad.py > "$OUT/log_tests_gd.txt" 2>&1 &
timeout 230 $PT tests/test_cupy_log_attention.py tests/test_training.py > "$OUT/log_tests_train.txt" 2>&1 &
timeout 230 $PT tests/test_cupy_backend.py tests/test_gpu_dispatch.py tests/test_nonfinite.py tests/test_varlen.py \
    tests/test_gpu_stepper.py tests/test_cupy_step.py > "$OUT/log_tests_rest.txt" 2>&1 &
( for s in gd_bwd_small ek_bwd_small; do
    timeout 70 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/$s.py > "$OUT/log_memcheck_$s.txt" 2>&1
  done
  timeout 60 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_racecheck_gd.txt" 2>&1 ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; tail -3 "$f"; done
for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|^ok" "$f" | tail -2; done
echo "=== bench $(date -u +%T)"
timeout 60 python3 benchmarks/device/profile_gd.py > "$OUT/log_profile_gd.txt" 2>&1; grep -E "^====|cupy arrays" "$OUT/log_profile_gd.txt"
timeout 100 python3 benchmarks/bench_gpu_gated_delta.py --train --T 2048,8192,16384 --api-max-T 8192 --out "$OUT" > "$OUT/log_bench_gd.txt" 2>&1
echo "rc=$?"; tail -22 "$OUT/log_bench_gd.txt"
timeout 50 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" > "$OUT/log_varlen.txt" 2>&1
echo "rc=$?"; tail -6 "$OUT/log_varlen.txt"
timeout 60 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T 8192,16384,32768 --ops ek,la,sdpa > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; tail -12 "$OUT/log_train.txt"
echo "=== done $(date -u +%T)"
