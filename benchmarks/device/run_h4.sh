#!/usr/bin/env bash
# Session 7, the last H200 run (merged main): the GPU tests of everything merged this session in four
# concurrent pytest processes beside compute-sanitizer, then the benchmarks one after another (alone on
# the GPU): log-linear Gated DeltaNet forward T = 2K..32K against fla, the packed batch, hierarchical.
#   OUT=... bash benchmarks/device/run_h4.sh      (results and logs: $OUT/h4.tgz)
set -u
NAME=h4; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log -1 --format=%H 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 230 $PT tests/test_cupy_gated_delta.py tests/test_cupy_hierarchical.py tests/test_gpu_dispatch.py > "$OUT/log_tests_a.txt" 2>&1 &
timeout 230 $PT tests/test_cupy_log_attention.py tests/test_training.py > "$OUT/log_tests_b.txt" 2>&1 &
timeout 230 $PT tests/test_cupy_backend.py tests/test_nonfinite.py tests/test_varlen.py > "$OUT/log_tests_c.txt" 2>&1 &
timeout 230 $PT tests/test_gpu_stepper.py tests/test_cupy_step.py tests/test_cupy_gated_delta_grad.py > "$OUT/log_tests_d.txt" 2>&1 &
( for s in gd_small hier_small step_small; do
    [ -f benchmarks/device/$s.py ] && timeout 60 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/$s.py > "$OUT/log_memcheck_$s.txt" 2>&1
  done
  for s in gd_small step_small; do
    timeout 60 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/$s.py > "$OUT/log_racecheck_$s.txt" 2>&1
  done ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR" "$f" | head -8; tail -1 "$f"; done
for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok" "$f" | tail -2; done
echo "=== bench $(date -u +%T)"
timeout 110 python3 benchmarks/bench_gpu_gated_delta.py --T 2048,8192,16384,32768 --api-max-T 8192 --out "$OUT" > "$OUT/log_bench_gd.txt" 2>&1
echo "rc=$?"; tail -14 "$OUT/log_bench_gd.txt"
timeout 45 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" > "$OUT/log_varlen.txt" 2>&1
echo "rc=$?"; grep -A3 "^| ours" "$OUT"/varlen_gpu*.md
[ -f benchmarks/bench_gpu_hierarchical.py ] && { timeout 40 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192,32768 > "$OUT/log_hier.txt" 2>&1; echo "rc=$?"; tail -6 "$OUT/log_hier.txt"; }
echo "=== done $(date -u +%T)"
