#!/usr/bin/env bash
# Session 9, the last H200 run (merged main): every GPU test file in four concurrent pytest processes beside
# compute-sanitizer (memcheck of the small scripts of every kernel family, racecheck of the changed kernels), then
# the benchmarks alone on the GPU.
#   OUT=... bash benchmarks/device/run_j.sh      (results and logs: $OUT/j.tgz)
set -u
NAME=j; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log -1 --format=%H 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 290 $PT tests/test_cupy_gated_delta.py tests/test_cupy_gated_delta_grad.py tests/test_gpu_dispatch.py > "$OUT/log_tests_a.txt" 2>&1 &
timeout 290 $PT tests/test_cupy_hierarchical.py tests/test_cupy_hierarchical_grad.py tests/test_cupy_log_attention.py > "$OUT/log_tests_b.txt" 2>&1 &
timeout 290 $PT tests/test_cupy_backend.py tests/test_nonfinite.py tests/test_varlen.py tests/test_training.py > "$OUT/log_tests_c.txt" 2>&1 &
timeout 290 $PT tests/test_gpu_stepper.py tests/test_cupy_step.py tests/test_dask_gpu.py tests/test_dask.py > "$OUT/log_tests_d.txt" 2>&1 &
( for s in gd_small hier_small hier_bwd_small gd_bwd_small step_small; do
    timeout 50 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/$s.py > "$OUT/log_memcheck_$s.txt" 2>&1
  done
  timeout 60 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/ek_bwd_tc_check.py --tiny > "$OUT/log_memcheck_ek_bwd_tc.txt" 2>&1
  for s in gd_small hier_small; do
    timeout 70 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/$s.py > "$OUT/log_racecheck_$s.txt" 2>&1
  done ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR" "$f" | head -8; tail -1 "$f"; done
for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$f" | tail -1; done
echo "=== done tests $(date -u +%T)"
echo "=== hierarchical fwd $(date -u +%T)"
timeout 45 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192,16384,32768 > "$OUT/log_hier.txt" 2>&1; echo "rc=$?"
grep -E "^\|" "$OUT/log_hier.txt" | cut -c1-200
echo "=== log_attention / exp-kernel fwd+bwd $(date -u +%T)"
timeout 60 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T 8192,16384,32768 --ops la,ek,sdpa > "$OUT/log_train.txt" 2>&1; echo "rc=$?"
grep -E "^\|" "$OUT/log_train.txt" | grep -v "^|---" | cut -c1-220
echo "=== public-call overhead at 8K $(date -u +%T)"
timeout 40 python3 benchmarks/device/prologue_s9c17.py 8192 ops=exp_kernel,log_attention,loglinear,gated_delta,hierarchical > "$OUT/log_prologue.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/log_prologue.txt" | cut -c1-150
echo "=== done $(date -u +%T)"
