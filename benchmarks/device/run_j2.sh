#!/usr/bin/env bash
# Session 9, after run j: the two grouped-heads memory failures again (fix: _nonfinite._clean reads
# broadcast / non-contiguous torch tensors without a copy), the one-read flag tests, the 8K overhead.
#   OUT=... bash benchmarks/device/run_j2.sh      (results and logs: $OUT/j2.tgz)
set -u
NAME=j2; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 200 $PT tests/test_cupy_backend.py -k "grouped_heads" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 200 $PT tests/test_nonfinite.py -k "one_read or zero_weight" > "$OUT/log_tests_b.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -1 "$f"; done
echo "=== public-call overhead at 8K $(date -u +%T)"
timeout 40 python3 benchmarks/device/prologue_s9c17.py 8192 ops=exp_kernel,hierarchical > "$OUT/log_prologue.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/log_prologue.txt" | cut -c1-150
echo "=== done $(date -u +%T)"
