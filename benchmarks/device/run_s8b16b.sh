#!/usr/bin/env bash
# issue 16, second run (one H200, ~105 s): gd_forms variants timed apart at T = 8K (fp32 FFMA, bf16
# tensor cores with fragments loaded before the mma passes, without the split, without the mma,
# bf16 with FFMA products; each bf16 variant's outputs against the fp32 kernel's), one bf16 fwd+bwd
# step profiled per kernel, and the fwd+bwd peers at T = 8K (fla chunk_log_linear_attn, SDPA, ours fp32).
#   OUT=... bash benchmarks/device/run_s8b16b.sh       (results and logs: $OUT/s8b16b.tgz; summary on stdout)
set -u
NAME=s8b16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
echo "=== gd_forms variants $(date -u +%T)"
timeout 35 python3 benchmarks/device/gd_forms_variants.py > "$OUT/log_variants.txt" 2>&1
echo "rc=$?"; cat "$OUT/log_variants.txt" | tail -8
echo "=== profile fwd+bwd $(date -u +%T)"
timeout 15 python3 benchmarks/device/profile_gd.py train > "$OUT/log_profile_train.txt" 2>&1
echo "rc=$?"; head -30 "$OUT/log_profile_train.txt"; grep "Self CUDA time total" "$OUT/log_profile_train.txt"
echo "=== bench fwd+bwd peers $(date -u +%T)"
timeout 50 python3 benchmarks/bench_gpu_gated_delta.py --train --out "$OUT" --T 8192 --api-max-T 0 --rows fla_ll,sdpa,ours_fp32 > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; grep -E "fwd\+bwd|T = " "$OUT/log_bench.txt" | tail -8
echo "=== done $(date -u +%T)"
