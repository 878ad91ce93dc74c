#!/usr/bin/env bash
# Session 12, helper s12f19 (issue 19): bf16 packed exp-kernel calls with states back on the
# tensor-core kernels (session 11's failure was the test's reading of a float32 torch state), lazy
# Streams tables; tests above # TIMINGS (concurrent with other helpers'): the packed exp-kernel GPU
# tests, the varlen GPU tests, memcheck of a small packed forward + backward; then the profile of a
# packed vs an unpacked call (forward, training step) and the benchmark for both operators.
#   OUT=... bash benchmarks/device/run_s12f19.sh      (results and logs: $OUT/s12f19.tgz)
set -u
NAME=s12f19; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 115 $PT tests/test_cupy_packed_ek.py > "$OUT/log_tests_packed.txt" 2>&1 &
timeout 115 $PT tests/test_varlen.py > "$OUT/log_tests_varlen.txt" 2>&1 &
timeout 115 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/ek_packed_small.py > "$OUT/log_memcheck.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -10 | cut -c1-220; tail -1 "$f"; done
echo "-- memcheck"; grep -E "ERROR SUMMARY|max \||Error|error" "$OUT/log_memcheck.txt" | head -12
# TIMINGS (quiet GPU)
echo "=== profile $(date -u +%T)"
OUT=$OUT timeout 30 python3 benchmarks/device/profile_ek_packed_s12f19.py --cprofile > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -E "^\{" "$OUT/log_profile.txt" | cut -c1-400
echo "=== issue benchmark $(date -u +%T)"
timeout 28 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" --no-memory --ops exp_kernel_attention log_attention > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; grep -E "^\|" "$OUT/log_bench.txt" | cut -c1-300 | head -12
echo "=== done $(date -u +%T)"
