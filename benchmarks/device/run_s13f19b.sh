#!/usr/bin/env bash
# Session 13, helper s13f19 (issue 19), request 2: the final code's varlen GPU tests and memcheck of small
# packed log-linear calls, a noisy trace of packed vs unpacked hierarchical / GD calls (host gaps), a warm-up of the table's bf16 kernels (16K tokens: the chunk sizes of 64K, every operator),
# then issue 19's table on the quiet GPU: bench_varlen_gpu.py, all five operators (packed with CUDA / list
# offsets, the loop over documents, unpacked; fla beside loglinear_attention; training steps of exp / log).
#   OUT=... bash benchmarks/device/run_s13f19b.sh      (results and logs: $OUT/s13f19b.tgz;
#   the table: $OUT/s13f19b/varlen_gpu.{json,md} -> benchmarks/results/varlen_gpu_2026-12-03.*)
set -u
NAME=s13f19b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 100 $PT tests/test_varlen.py > "$OUT/log_tests_varlen.txt" 2>&1 &
timeout 100 $PT tests/test_cupy_backend.py -k "gpu_token_map or gpu_loglinear_packed" > "$OUT/log_tests_cupy.txt" 2>&1 &
timeout 100 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/ll_packed_small.py > "$OUT/log_memcheck.txt" 2>&1 &
mkdir -p "$OUT/warm"
timeout 100 python3 benchmarks/bench_varlen_gpu.py --out "$OUT/warm" --no-memory --total 16384 > "$OUT/log_warm.txt" 2>&1 &
(sleep 45; OUT=$OUT timeout 50 python3 benchmarks/device/profile_ek_packed_s12f19.py loglinear_log_attention loglinear_gated_delta \
    --forms=packed_list,unpacked --kernels > "$OUT/log_structure.txt" 2>&1) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -10 | cut -c1-220; tail -1 "$f"; done
echo "-- memcheck"; grep -E "ERROR SUMMARY|max \||Error|error|: list" "$OUT/log_memcheck.txt" | head -16 | cut -c1-220
echo "-- warm-up rc"; tail -2 "$OUT/log_warm.txt" | cut -c1-200
echo "-- structure (noisy: beside the tests)"; grep -E "^\{" "$OUT/log_structure.txt" | cut -c1-400
# TIMINGS (quiet GPU)
echo "=== issue 19's table $(date -u +%T)"
timeout 40 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" --no-memory > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; grep -E "^\|" "$OUT/log_bench.txt" | cut -c1-300 | head -16
echo "=== done $(date -u +%T)"
