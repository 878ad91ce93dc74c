#!/usr/bin/env bash
# Session 16, s16g (issue 16): is s16b16's initcheck report on gd_tier1 ("Uninitialized __global__ memory read of size
# 16 bytes", gd_tier_small.py's first call) an artefact of its kernel filter? With --kernel-name kns=gd_tier only the
# gd_tier kernels are instrumented, so gd_forms' stores of qe / ek / phi / H (and torch's of the inputs) are never seen
# as writes. Prediction: unfiltered, 0 errors (the CPU emulation: no kernel reads a scratch word no kernel wrote;
# benchmarks/NOTES.md "Session 16 — s16g"); filtered (the control), the same report as s16b16's.
#   bash benchmarks/device/run_s16g.sh tests     (<= 100 s; 'times': nothing to time)
set -u
NAME=s16g_$1; . benchmarks/device/setup.sh
D=benchmarks/device
if [ "$1" = tests ]; then
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool initcheck --print-limit 5 python3 $D/gd_tier_small.py > "$OUT/log_initcheck_all.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 60 compute-sanitizer --tool initcheck --kernel-name kns=gd_tier --print-limit 5 python3 $D/gd_tier_small.py > "$OUT/log_initcheck_tier.txt" 2>&1 &
  wait
  for f in all tier; do
    L=$OUT/log_initcheck_$f.txt
    echo "-- initcheck ($f): $(grep -E 'ERROR SUMMARY' $L | tail -1) calls $(grep -c tier-vs-main $L) uninit $(grep -c Uninit $L)"
    grep -E "tier-vs-main|Uninit|   at |by thread" $L | head -6 | cut -c1-160
  done
fi
echo "=== done $(date -u +%T)"
