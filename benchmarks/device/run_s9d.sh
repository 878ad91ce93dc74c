#!/usr/bin/env bash
# Session 9, branch s9d: exp-kernel rows without weight (0/0) are NaN on the GPU paths. GPU tests in
# three concurrent pytest processes (test_nonfinite's zero-weight / special-value / zero-key cases on
# cupy + CUDA torch incl. half precision and the fused cupy step; the cupy step and stepper files;
# the cupy exp-kernel and packed files) beside compute-sanitizer memcheck + racecheck of the fused
# steps (step_small.py: ek_step's new block-wide "some feature live" reduction).
#   OUT=... bash benchmarks/device/run_s9d.sh      (results and logs: $OUT/s9d.tgz)
set -u
NAME=s9d; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 200 $PT tests/test_nonfinite.py -k "zero_weight or special_value or zero_key" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 200 $PT tests/test_cupy_step.py tests/test_gpu_stepper.py > "$OUT/log_tests_b.txt" 2>&1 &
timeout 200 $PT tests/test_cupy_backend.py tests/test_varlen.py -k "exp or log_attention or packed" > "$OUT/log_tests_c.txt" 2>&1 &
( timeout 60 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/step_small.py > "$OUT/log_memcheck_step.txt" 2>&1
  timeout 70 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/step_small.py > "$OUT/log_racecheck_step.txt" 2>&1 ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR" "$f" | head -8; tail -1 "$f"; done
for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok" "$f" | tail -2; done
echo "=== done $(date -u +%T)"
