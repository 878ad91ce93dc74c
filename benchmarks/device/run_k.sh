#!/usr/bin/env bash
# Session 10, the last H200 run (merged main), in two calls on one warm machine:
#   OUT=... bash benchmarks/device/run_k.sh tests   every GPU test file in four concurrent pytest processes beside
#                                                   compute-sanitizer (memcheck of every kernel family's small script,
#                                                   racecheck of the kernels changed this session)
#   OUT=... bash benchmarks/device/run_k.sh bench   the benchmarks alone on the GPU (peers in the same run)
# Results and logs: $OUT/k_<mode>.tgz.
set -u
MODE=${1:-tests}
NAME=k_$MODE; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
if [ "$MODE" = tests ]; then
  echo "=== tests $(date -u +%T)"
  timeout 280 $PT tests/test_cupy_gated_delta.py tests/test_cupy_gated_delta_grad.py tests/test_gpu_dispatch.py > "$OUT/log_tests_a.txt" 2>&1 &
  timeout 280 $PT tests/test_cupy_hierarchical.py tests/test_cupy_hierarchical_grad.py tests/test_cupy_log_attention.py > "$OUT/log_tests_b.txt" 2>&1 &
  timeout 280 $PT tests/test_cupy_backend.py tests/test_nonfinite.py tests/test_varlen.py tests/test_training.py > "$OUT/log_tests_c.txt" 2>&1 &
  timeout 280 $PT tests/test_gpu_stepper.py tests/test_cupy_step.py tests/test_dask_gpu.py tests/test_dask.py tests/test_numba_cuda.py > "$OUT/log_tests_d.txt" 2>&1 &
  ( for s in gd_small gd_bwd_small hier_small hier_bwd_small; do
      timeout 60 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/$s.py > "$OUT/log_memcheck_$s.txt" 2>&1
    done ) &
  ( for s in gd_small hier_small hier_bwd_small; do
      timeout 80 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/$s.py > "$OUT/log_racecheck_$s.txt" 2>&1
    done ) &
  wait
  for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR" "$f" | head -8 | cut -c1-200; tail -1 "$f"; done
  for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$f" | tail -1; done
else
  echo "=== hierarchical fwd $(date -u +%T)"
  timeout 45 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192,16384,32768 > "$OUT/log_hier.txt" 2>&1; echo "rc=$?"
  grep -E "^\|" "$OUT/log_hier.txt" | cut -c1-200
  echo "=== hierarchical fwd+bwd $(date -u +%T)"
  timeout 60 python3 benchmarks/bench_gpu_hierarchical.py train --out "$OUT" --T 8192,16384,32768 --api-max 0 > "$OUT/log_hier_train.txt" 2>&1; echo "rc=$?"
  grep -E "^\|" "$OUT/log_hier_train.txt" | cut -c1-200
  echo "=== gated delta fwd $(date -u +%T)"
  timeout 90 python3 benchmarks/bench_gpu_gated_delta.py --T 8192,32768 --api-max-T 8192 --fla-dtypes bf16 --out "$OUT" > "$OUT/log_gd.txt" 2>&1; echo "rc=$?"
  grep -E "^\|" "$OUT/log_gd.txt" | cut -c1-200
  echo "=== varlen $(date -u +%T)"
  timeout 50 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" --no-memory > "$OUT/log_varlen.txt" 2>&1; echo "rc=$?"
  grep -E "^\|" "$OUT/log_varlen.txt" | cut -c1-200
fi
echo "=== done $(date -u +%T)"
