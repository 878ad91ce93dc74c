#!/usr/bin/env bash
# Session 11, the last H200 runs (merged main), on one warm machine:
#   OUT=... bash benchmarks/device/run_l.sh tests   every GPU-marked test file in eight concurrent pytest processes
#                                                   (verbose: a cut process still reports each finished test) beside
#                                                   compute-sanitizer memcheck / racecheck of the small scripts
#   OUT=... bash benchmarks/device/run_l.sh bench   the benchmarks alone on the GPU (peers in the same run)
#   OUT=... bash benchmarks/device/run_l.sh all [LIM] the tests (LIM s), then issue 17's table and the Gated DeltaNet table
# Results and logs: $OUT/l_<mode>.tgz.
set -u
MODE=${1:-tests}; LIM=${2:-300}
NAME=l_$MODE; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
if [ "$MODE" = tests ] || [ "$MODE" = all ]; then
  echo "=== tests $(date -u +%T)"
  i=0
  for grp in "tests/test_cupy_gated_delta.py tests/test_cupy_gated_delta_grad.py" \
             "tests/test_gpu_dispatch.py tests/test_cupy_backend.py" \
             "tests/test_cupy_hierarchical.py tests/test_cupy_hierarchical_grad.py" \
             "tests/test_cupy_log_attention.py tests/test_cupy_packed_ek.py" "tests/test_nonfinite.py" \
             "tests/test_varlen.py tests/test_training.py" "tests/test_gpu_stepper.py" "tests/test_dask_gpu.py"; do
    i=$((i + 1)); timeout "$LIM" $PT $grp > "$OUT/log_t$i.txt" 2>&1 &
  done
  ( for s in gd_small gd_bwd_small hier_small hier_bwd_small ek_packed_small; do
      timeout 70 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/$s.py > "$OUT/log_memcheck_$s.txt" 2>&1
    done ) &
  ( for s in gd_small hier_small "hier_bwd_small race"; do
      set -- $s; timeout 90 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/$1.py ${2:-} > "$OUT/log_racecheck_$1.txt" 2>&1
    done ) &
  wait
  for f in "$OUT"/log_t*.txt; do echo "-- $(basename $f) [$(grep -m1 -o 'tests/[a-z_]*\.py' $f)]: $(grep -c ' PASSED' "$f") passed, $(grep -c ' SKIPPED' "$f") skipped, $(grep -c ' FAILED' "$f") failed"
    grep -E "^FAILED|^ERROR" "$f" | head -6 | cut -c1-220; tail -1 "$f" | cut -c1-160; done
  for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$f" | tail -1)"; done
fi
if [ "$MODE" = all ]; then
  echo "=== issue 17 table $(date -u +%T)"
  timeout 125 python3 benchmarks/bench_gpu_hierarchical.py table --reps 5 --out "$OUT/table" > "$OUT/log_table.txt" 2>&1; echo "rc=$?"
  grep -E "^## Targets" -A9 "$OUT/log_table.txt" | cut -c1-230; grep -E "x \(target|fails" "$OUT/log_table.txt" | cut -c1-230
  echo "=== gated delta fwd $(date -u +%T)"
  timeout 60 python3 benchmarks/bench_gpu_gated_delta.py --T 8192 --api-max-T 8192 --fla-dtypes bf16 --out "$OUT" > "$OUT/log_gd.txt" 2>&1; echo "rc=$?"
  grep -E "^\|" "$OUT/log_gd.txt" | cut -c1-200
elif [ "$MODE" = bench ]; then
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
  timeout 60 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" --no-memory > "$OUT/log_varlen.txt" 2>&1; echo "rc=$?"
  grep -E "^\|" "$OUT/log_varlen.txt" | cut -c1-200
fi
echo "=== done $(date -u +%T)"
