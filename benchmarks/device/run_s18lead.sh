#!/usr/bin/env bash
# Session 18, the lead's first call on main 781bd30+: what session 17 left unverified on the GPU (the hib_dkdv
# initcheck report after the reverts, cached_plan's two callers, log_attention's backward half), then the Gated
# DeltaNet training step's kernels at 8K / 32K for the helpers.   OUT=... bash benchmarks/device/run_s18lead.sh [LIM]
set -u; LIM=${1:-170}; NAME=s18lead; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
date -u; nvidia-smi --query-gpu=name --format=csv,noheader
( PYTORCH_CUDA_ALLOC_CONF= timeout $LIM compute-sanitizer --tool initcheck --print-limit 10 python3 benchmarks/device/hier_bwd_small.py > $OUT/log_ic_hier_bwd.txt 2>&1 ) &
timeout $LIM $PT tests/test_cupy_log_attention.py -k 'backward or spikes or grad' > $OUT/log_t_la_bwd.txt 2>&1 &
timeout $LIM $PT tests/test_cupy_hierarchical_grad.py > $OUT/log_t_hgrad.txt 2>&1 &
timeout $LIM $PT tests/test_cupy_hierarchical.py > $OUT/log_t_hier.txt 2>&1 &
timeout $LIM $PT tests/test_cupy_gated_delta.py -k 'torch or direct or two_tier' > $OUT/log_t_gd.txt 2>&1 &
wait
for f in $OUT/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E '^FAILED|^ERROR' $f | head -5 | cut -c1-200; tail -1 $f | cut -c1-160; done
echo "-- initcheck: $(grep -E 'ERROR SUMMARY' $OUT/log_ic_hier_bwd.txt | tail -1)"; grep -m3 -A4 'Uninitialized' $OUT/log_ic_hier_bwd.txt | cut -c1-160
grep -E 'err|max' $OUT/log_ic_hier_bwd.txt | tail -8 | cut -c1-200
date -u
timeout 45 python3 benchmarks/device/profile_gd.py train 8192 > $OUT/log_prof8.txt 2>&1
timeout 60 python3 benchmarks/device/profile_gd.py train 32768 > $OUT/log_prof32.txt 2>&1
for f in $OUT/log_prof8.txt $OUT/log_prof32.txt; do grep '====' $f; grep -E '^ +[a-z_]|Self CUDA time total' $f | head -24 | cut -c1-60,100-200; done
date -u
