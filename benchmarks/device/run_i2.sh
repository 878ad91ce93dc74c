#!/usr/bin/env bash
# Session 8, the last H200 run (merged main): every GPU test in four concurrent pytest processes beside
# compute-sanitizer (memcheck of the small gated-delta / hierarchical / backward / step scripts,
# racecheck of gd_scan's slot groups and the hierarchical kernels), then the benchmarks alone on the GPU:
# gated delta fwd (2K..32K) and fwd+bwd (8K), hierarchical fwd per kernel + table + fwd+bwd,
# log_attention fwd+bwd against SDPA.
#   OUT=... bash benchmarks/device/run_i2.sh      (results and logs: $OUT/i2.tgz)
set -u
NAME=i2; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 200 $PT tests/test_cupy_gated_delta.py tests/test_cupy_gated_delta_grad.py tests/test_gpu_dispatch.py > "$OUT/log_tests_a.txt" 2>&1 &
timeout 200 $PT tests/test_cupy_hierarchical.py tests/test_cupy_hierarchical_grad.py tests/test_cupy_log_attention.py > "$OUT/log_tests_b.txt" 2>&1 &
timeout 200 $PT tests/test_cupy_backend.py tests/test_nonfinite.py tests/test_varlen.py tests/test_training.py > "$OUT/log_tests_c.txt" 2>&1 &
timeout 200 $PT tests/test_gpu_stepper.py tests/test_cupy_step.py > "$OUT/log_tests_d.txt" 2>&1 &
( for s in gd_small hier_small hier_bwd_small gd_bwd_small; do
    timeout 45 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/$s.py > "$OUT/log_memcheck_$s.txt" 2>&1
  done
  for s in gd_small hier_small; do
    timeout 60 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/$s.py > "$OUT/log_racecheck_$s.txt" 2>&1
  done ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR" "$f" | head -8; tail -1 "$f"; done
for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok" "$f" | tail -2; done
echo "=== bench gd $(date -u +%T)"
timeout 90 python3 benchmarks/bench_gpu_gated_delta.py --T 2048,8192,16384,32768 --api-max-T 8192 --out "$OUT" > "$OUT/log_bench_gd.txt" 2>&1
echo "rc=$?"; tail -12 "$OUT/log_bench_gd.txt"
mkdir -p "$OUT/train"; timeout 60 python3 benchmarks/bench_gpu_gated_delta.py --train --T 8192 --api-max-T 0 --out "$OUT/train" > "$OUT/log_bench_gd_train.txt" 2>&1
echo "rc=$?"; tail -10 "$OUT/log_bench_gd_train.txt"
echo "=== hierarchical $(date -u +%T)"
timeout 25 python3 benchmarks/bench_gpu_hierarchical.py kernels --T 8192,32768 > "$OUT/log_hier_kernels.txt" 2>&1; echo "rc=$?"; tail -4 "$OUT/log_hier_kernels.txt"
timeout 40 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192,32768 > "$OUT/log_hier.txt" 2>&1; echo "rc=$?"; tail -5 "$OUT/log_hier.txt"
timeout 40 python3 benchmarks/bench_gpu_hierarchical.py train --T 8192 > "$OUT/log_hier_train.txt" 2>&1; echo "rc=$?"; tail -8 "$OUT/log_hier_train.txt"
echo "=== log_attention fwd+bwd $(date -u +%T)"
timeout 60 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T 16384,32768 --ops la,ek,sdpa > "$OUT/log_train.txt" 2>&1; echo "rc=$?"; grep -v "^|---" "$OUT/log_train.txt" | tail -6
echo "=== done $(date -u +%T)"
