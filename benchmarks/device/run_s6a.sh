#!/usr/bin/env bash
# issue 16 (log-linear Gated DeltaNet on the cupy scan kernel), one H200, < 4 minutes: the GPU tests
# of this issue, compute-sanitizer memcheck + racecheck over small calls, then the forward benchmark
# against fla's chunk_gated_delta_rule and the array-API path.
#   OUT=... bash benchmarks/device/run_s6a.sh       (results and logs: $OUT/s6a.tgz)
set -u
NAME=s6a; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; python3 -m lsattn info; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 100 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cupy_gated_delta.py tests/test_gpu_dispatch.py -k "gated_delta or probe" > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; tail -15 "$OUT/log_tests.txt"
echo "=== sanitize $(date -u +%T)"
if command -v compute-sanitizer > /dev/null; then
    timeout 25 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1
    echo "rc=$?"; grep -E "ERROR SUMMARY|sanitize ok" "$OUT/log_memcheck.txt" | tail -3
    timeout 25 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_racecheck.txt" 2>&1
    echo "rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok" "$OUT/log_racecheck.txt" | tail -3
fi
echo "=== bench $(date -u +%T)"
timeout 100 python3 benchmarks/bench_gpu_gated_delta.py --out "$OUT" > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -25 "$OUT/log_bench.txt"
echo "=== done $(date -u +%T)"
