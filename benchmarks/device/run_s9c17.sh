#!/usr/bin/env bash
# issue 17, branch s9c17, one H200, <= 240 s: the non-finite rule without host reads on CUDA arrays
# (_nonfinite: masks on the device). GPU tests of the non-finite rule, hierarchical, dispatch, packed
# segments and training (4 pytest processes), then where each operator's public call spends its time
# beyond its kernels (prologue_s9c17.py: latency, pipelined, host, kernels, syncs; this branch's device
# masks against the session-8 host reads), hierarchical bf16 / fp32 at 32K, and a cProfile.
set -u
NAME=s9c17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 115 $PT tests/test_nonfinite.py > "$OUT/log_tests_nonfinite.txt" 2>&1 &
timeout 115 $PT tests/test_cupy_hierarchical.py tests/test_cupy_hierarchical_grad.py > "$OUT/log_tests_hier.txt" 2>&1 &
timeout 115 $PT tests/test_gpu_dispatch.py tests/test_varlen.py > "$OUT/log_tests_dispatch.txt" 2>&1 &
timeout 115 $PT tests/test_training.py tests/test_cupy_backend.py > "$OUT/log_tests_train.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -1 "$f"; done
echo "=== prologue 8192, 128 $(date -u +%T)"
timeout 95 python3 benchmarks/device/prologue_s9c17.py 8192 128 > "$OUT/log_prologue.txt" 2>&1; echo "rc=$?"
grep -E "^T=|syncs:" "$OUT/log_prologue.txt"
echo "=== hierarchical 32K $(date -u +%T)"
timeout 25 python3 benchmarks/device/prologue_s9c17.py 32768 ops=hierarchical > "$OUT/log_prologue_32k.txt" 2>&1; echo "rc=$?"
grep -E "^T=|top device" "$OUT/log_prologue_32k.txt"
echo "=== done $(date -u +%T)"
