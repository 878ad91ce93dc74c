#!/usr/bin/env bash
# Session 12, helper s12f19 (issue 19), request 2: the final code's packed exp-kernel GPU tests, the
# varlen GPU tests (which also compile the five operators' packed kernels for the table) and memcheck
# of a small packed forward + backward; then issue 19's committed table: bench_varlen_gpu.py for all
# five operators (packed, loop over documents, unpacked; fla beside loglinear_attention) in one run,
# and the packed exp / log profile (the scans' resets).
#   OUT=... bash benchmarks/device/run_s12f19b.sh      (results and logs: $OUT/s12f19b.tgz)
set -u
NAME=s12f19b; . benchmarks/device/setup.sh
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
echo "=== issue 19's table $(date -u +%T)"
timeout 44 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" --no-memory > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; grep -E "^\|" "$OUT/log_bench.txt" | cut -c1-300 | head -16
echo "=== profile $(date -u +%T)"  # the scans' resets: packed device busy time against unpacked
OUT=$OUT timeout 13 python3 benchmarks/device/profile_ek_packed_s12f19.py > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -E "^\{" "$OUT/log_profile.txt" | cut -c1-330
echo "=== done $(date -u +%T)"
