#!/usr/bin/env bash
# issue 16, session 9, first run (one H200, <= 240 s): where the public forward's time goes before any
# change: the per-kernel profile of the bf16 and fp32 forward at T = 2K / 8K / 32K (profile_gd.py),
# gd_forms' forward-substitution variants (8 partial sums, as committed, against 1 = session 8's
# measured kernel, 4, 16; gd_forms_variants.py), gd_scan alone (ab_gd_scan.py), and the forward table
# with fla's plain chunk_gated_delta_rule in the same run.
#   OUT=... bash benchmarks/device/run_s9a16.sh       (logs under $OUT; summary on stdout)
set -u
NAME=s9a16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== profile $(date -u +%T)"
timeout 75 python3 benchmarks/device/profile_gd.py 2048,8192,32768 > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -E "====|gd_forms|gd_scan|Self CPU time total|Self CUDA time total" "$OUT/log_profile.txt" | head -40
echo "=== gd_forms variants $(date -u +%T)"
timeout 40 python3 benchmarks/device/gd_forms_variants.py > "$OUT/log_variants.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_variants.txt"
echo "=== gd_scan alone $(date -u +%T)"
timeout 25 python3 benchmarks/device/ab_gd_scan.py > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; tail -4 "$OUT/log_ab.txt"
echo "=== forward table with fla $(date -u +%T)"
timeout 80 python3 benchmarks/bench_gpu_gated_delta.py --T 2048,8192,32768 --api-max-T 0 --out "$OUT" > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -10 "$OUT/log_bench.txt"
echo "=== done $(date -u +%T)"
