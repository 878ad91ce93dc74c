#!/usr/bin/env bash
# Session 11, helper s11f19 (issue 19): packed exp_kernel_attention / log_attention on the cupy
# kernels (segment masks, scan resets, states per segment; the backward on a chunk-aligned layout,
# ekb_rscan cut at segment ends). Tests above # TIMINGS (concurrent with other helpers'): the packed
# tests, the exp-kernel / log_attention GPU tests (the backward's ekb_rscan changed: its gradient
# tests too), the varlen GPU tests, memcheck of a small packed forward + backward; then the issue's
# benchmark for both operators (packed with CUDA / list offsets vs loop vs unpacked, peak memory, a
# training step).
#   OUT=... bash benchmarks/device/run_s11f19.sh      (results and logs: $OUT/s11f19.tgz)
set -u
NAME=s11f19; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 120 $PT tests/test_cupy_packed_ek.py > "$OUT/log_tests_packed.txt" 2>&1 &
timeout 120 $PT tests/test_cupy_backend.py -k "exp or log" > "$OUT/log_tests_backend.txt" 2>&1 &
timeout 120 $PT tests/test_cupy_log_attention.py tests/test_training.py -k "grad or backward" > "$OUT/log_tests_grads.txt" 2>&1 &
timeout 120 $PT tests/test_varlen.py > "$OUT/log_tests_varlen.txt" 2>&1 &
timeout 120 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/ek_packed_small.py > "$OUT/log_memcheck.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -10 | cut -c1-220; tail -1 "$f"; done
echo "-- memcheck"; grep -E "ERROR SUMMARY|max \||Error|error" "$OUT/log_memcheck.txt" | head -12
# TIMINGS (quiet GPU)
echo "=== issue benchmark $(date -u +%T)"
timeout 55 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" --no-memory --ops exp_kernel_attention log_attention > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; grep -E "^\||^\{" "$OUT/log_bench.txt" | cut -c1-700 | head -24
echo "=== done $(date -u +%T)"
