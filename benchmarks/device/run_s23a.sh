#!/usr/bin/env bash
# Session 23, s23a (issue 16): the host's time before gd_forms' launch in a public Gated DeltaNet forward on CUDA torch
# tensors (host code only: the prologue's plan key, the direct path's order, the 16-bit output allocated after gd_forms'
# launch, _rawlaunch through CuPy's driver.launchKernel). No kernel changed.
#   OUT=... bash benchmarks/device/run_s23a.sh tests   (<= 150 s, beside other helpers: batch 1 (7e1bcc6) ran the GPU
#                                                       tests of the gated delta forward, dispatch, its non-finite checks
#                                                       and the hierarchical paths that launch through _rawlaunch; request
#                                                       2 the two of those jobs that batch 1 cut)
#   OUT=... bash benchmarks/device/run_s23a.sh times   (<= 100 s, alone: main's host code (benchmarks/device/s23a_base:
#                                                       main's three changed files, loaded beside this tree's; removed
#                                                       after the run: gd_host_ab_s23a.py says how to restore it) against this
#                                                       branch's, alternated call by call in one process
#                                                       (gd_host_ab_s23a.py; batch 1 alternated processes: the host's
#                                                       speed moved ~2x between them), then the forward table's ours rows)
set -u
NAME=s23a_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
echo "=== $1 $(date -u +%T)"
if [ "$1" = tests ]; then
  # request 2: the two jobs that batch 1's 140 s cut without a summary (no failure in their output; lsattn unchanged
  # since), now with the time to themselves
  K="s16_bound or two_tier or tier3 or fork or direct_output"
  timeout 140 $PT tests/test_cupy_gated_delta.py -k "not ($K)" > "$OUT/log_gd2.txt" 2>&1 &
  timeout 140 $PT tests/test_gpu_dispatch.py > "$OUT/log_dispatch.txt" 2>&1 &
  wait
  for f in gd2 dispatch; do
    echo "-- $f: $(tail -1 $OUT/log_$f.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_$f.txt | head -8 | cut -c1-220
  done
else
  timeout 50 python3 $D/gd_host_ab_s23a.py 8192,32768 40 > "$OUT/log_ab.txt" 2>&1
  echo "-- ab rc=$?"; grep -v -i warn "$OUT/log_ab.txt" | cut -c1-260
  mkdir -p "$OUT/gd"
  timeout 45 python3 benchmarks/bench_gpu_gated_delta.py --T 8192,32768 --api-max-T 0 --fla-dtypes none --out "$OUT/gd" \
      > "$OUT/log_gd.txt" 2>&1
  echo "-- table rc=$?"; grep -E "ours|^T =" "$OUT/log_gd.txt" | cut -c1-200
fi
echo "=== done $(date -u +%T)"
