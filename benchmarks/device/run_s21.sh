#!/usr/bin/env bash
# Session 21, the lead's first call on main (the split tree of s20k, never GPU-run):
#   OUT=... bash benchmarks/device/run_s21.sh first   every GPU test and the sanitizers (run_m.sh tests 110), then where
#                                                     the Gated DeltaNet forward spends its time at 8K / 32K, bf16 and
#                                                     fp32 (profile_gd.py: the per-kernel split)
set -u
if [ "$1" = first ]; then
  bash benchmarks/device/run_m.sh tests 110
  ( NAME=s21_prof; . benchmarks/device/setup.sh; export CUDA_VISIBLE_DEVICES=0
    echo "=== profile $(date -u +%T)"
    timeout 90 python3 benchmarks/device/profile_gd.py 8192,32768 > "$OUT/log_prof.txt" 2>&1; echo "rc=$?"
    grep -E "^====|gd_|Self CUDA time total" "$OUT/log_prof.txt" | cut -c1-60,100-200 )
fi
echo "=== done $(date -u +%T)"
