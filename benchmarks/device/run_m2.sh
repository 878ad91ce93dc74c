#!/usr/bin/env bash
# Session 12, last call on merged main (after s12i17's bf16 tensor-core backward fix): the GPU files the
# final run's 130 s cap left out (hierarchical gradients, cupy backend, Dask GPU), the log_attention
# backward tests of the fix, and memcheck of the exp-kernel / log_attention backward. OUT=... bash run_m2.sh [LIM]
set -u
LIM=${1:-140}
NAME=m2; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
timeout "$LIM" $PT tests/test_cupy_log_attention.py -k "bf16_backward or backward_spikes or grads_against or gradcheck or noncausal_backward" > "$OUT/log_a.txt" 2>&1 &
timeout "$LIM" $PT tests/test_cupy_hierarchical_grad.py > "$OUT/log_b.txt" 2>&1 &
timeout "$LIM" $PT tests/test_cupy_backend.py > "$OUT/log_c.txt" 2>&1 &
timeout "$LIM" $PT tests/test_dask_gpu.py > "$OUT/log_d.txt" 2>&1 &
timeout "$LIM" compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/ek_bwd_small.py > "$OUT/log_memcheck_ek_bwd_small.txt" 2>&1 &
wait
for f in "$OUT"/log_[a-d].txt; do echo "-- $(basename $f) [$(grep -m1 -o 'tests/[a-z_]*\.py' $f)]: $(grep -c ' PASSED' "$f") passed, $(grep -c ' SKIPPED' "$f") skipped, $(grep -c ' FAILED' "$f") failed"
  grep -E "^FAILED|^ERROR" "$f" | head -6 | cut -c1-220; tail -1 "$f" | cut -c1-160; done
echo "-- memcheck ek_bwd_small: $(grep -E 'ERROR SUMMARY' "$OUT/log_memcheck_ek_bwd_small.txt")"
echo "=== done $(date -u +%T)"
