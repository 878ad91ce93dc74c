#!/usr/bin/env bash
# Session 10, the last H200 call (merged main): run_k.sh's test files that its 280 s limit cut, verbose (each
# test's name and outcome as it runs), then the hierarchical and Gated DeltaNet forward tables.
#   OUT=... bash benchmarks/device/run_k2.sh      (results and logs: $OUT/k2.tgz)
set -u
NAME=k2; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 190 $PT tests/test_cupy_backend.py > "$OUT/log_t1.txt" 2>&1 &
timeout 190 $PT tests/test_nonfinite.py tests/test_varlen.py tests/test_training.py > "$OUT/log_t2.txt" 2>&1 &
timeout 190 $PT tests/test_cupy_log_attention.py tests/test_cupy_hierarchical_grad.py > "$OUT/log_t3.txt" 2>&1 &
wait
for f in "$OUT"/log_t*.txt; do echo "-- $f: $(grep -c PASSED "$f") passed, $(grep -c SKIPPED "$f") skipped"; grep -E "FAILED|ERROR" "$f" | head -6 | cut -c1-220; tail -1 "$f" | cut -c1-200; done
echo "=== hierarchical fwd $(date -u +%T)"
timeout 45 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192,16384,32768 > "$OUT/log_hier.txt" 2>&1; echo "rc=$?"
grep -E "^\|" "$OUT/log_hier.txt" | cut -c1-200
echo "=== gated delta fwd $(date -u +%T)"
timeout 60 python3 benchmarks/bench_gpu_gated_delta.py --T 8192 --api-max-T 8192 --fla-dtypes bf16 --out "$OUT" > "$OUT/log_gd.txt" 2>&1; echo "rc=$?"
grep -E "^\|" "$OUT/log_gd.txt" | cut -c1-200
echo "=== done $(date -u +%T)"
