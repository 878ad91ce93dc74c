#!/usr/bin/env bash
# Session 13, helper s13f19 (issue 19), request 1: packed log-linear calls within 1.2x of one unpacked
# call. Tests above # TIMINGS (concurrent with other helpers'): the varlen GPU tests (the CUDA offsets'
# plan keyed by their values, the one-read check of packed calls), memcheck of small packed log-linear
# calls, and (noisy, for its structure only) the kernels of one packed vs one unpacked hierarchical /
# Gated DeltaNet call. Timings: the packed loglinear_attention profile (this branch and its s12
# behaviour in-process), then issue 19's benchmark for loglinear_attention (fla beside it).
#   OUT=... bash benchmarks/device/run_s13f19.sh      (results and logs: $OUT/s13f19.tgz)
set -u
NAME=s13f19; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
P="python3 benchmarks/device/profile_ek_packed_s12f19.py"
echo "=== tests $(date -u +%T)"
timeout 100 $PT tests/test_varlen.py > "$OUT/log_tests_varlen.txt" 2>&1 &
timeout 100 $PT tests/test_cupy_backend.py -k "gpu_token_map or gpu_loglinear_packed" > "$OUT/log_tests_cupy.txt" 2>&1 &
timeout 100 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/ll_packed_small.py > "$OUT/log_memcheck.txt" 2>&1 &
(OUT=$OUT timeout 95 $P loglinear_log_attention loglinear_gated_delta --forms=packed_list,unpacked --kernels \
    > "$OUT/log_structure.txt" 2>&1) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -10 | cut -c1-220; tail -1 "$f"; done
echo "-- memcheck"; grep -E "ERROR SUMMARY|max \||Error|error|: list" "$OUT/log_memcheck.txt" | head -16 | cut -c1-220
echo "-- structure (noisy)"; grep -E "^\{" "$OUT/log_structure.txt" | cut -c1-400
# TIMINGS (quiet GPU)
echo "=== profile $(date -u +%T)"
OUT=$OUT timeout 18 $P loglinear_attention --forms=packed_list,packed_cuda,unpacked,packed_list_s12,packed_cuda_s12 --cprofile --top=14 \
    > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -E "^\{" "$OUT/log_profile.txt" | cut -c1-400
echo "=== issue benchmark $(date -u +%T)"
timeout 22 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" --no-memory --ops loglinear_attention > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; grep -E "^\|" "$OUT/log_bench.txt" | cut -c1-300 | head -8
echo "=== done $(date -u +%T)"
