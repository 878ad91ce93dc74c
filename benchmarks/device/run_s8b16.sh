#!/usr/bin/env bash
# issue 16, gd_forms on tensor cores for bfloat16 inputs (gated_delta_forms.cu: mma.sync bf16 with
# split operands) and the fwd+bwd table's peers, one H200, ~140 s: the GPU tests of
# loglinear_gated_delta's cupy forward (the tensor-core forms' float32 bound included), the
# per-kernel profile (gd_forms bf16 = tensor cores vs fp32 = FFMA in one run), the fwd+bwd benchmark
# at T = 8K, 16K (ours bf16 / fp32, fla plain GDN, fla chunk_log_linear_attn, SDPA; peak memory),
# then the backward's GPU tests (the training path now runs gd_forms and forms_backward).
#   OUT=... bash benchmarks/device/run_s8b16.sh       (results and logs: $OUT/s8b16.tgz; summary on stdout)
set -u
NAME=s8b16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; python3 -m lsattn info; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 30 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_cupy_gated_delta.py > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "Error|assert|passed|failed" "$OUT/log_tests.txt" | tail -15
echo "=== profile $(date -u +%T)"
timeout 15 python3 benchmarks/device/profile_gd.py > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -E "====|cupy arrays|gd_forms|gd_scan|Self CUDA time total" "$OUT/log_profile.txt" | head -24
echo "=== bench fwd+bwd $(date -u +%T)"
timeout 50 python3 benchmarks/bench_gpu_gated_delta.py --train --out "$OUT" --T 8192,16384 --api-max-T 0 > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; grep -E "fwd\+bwd|T = " "$OUT/log_bench.txt" | tail -16
echo "=== backward tests $(date -u +%T)"
timeout 35 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_cupy_gated_delta_grad.py > "$OUT/log_tests_grad.txt" 2>&1
echo "rc=$?"; grep -E "Error|assert|passed|failed" "$OUT/log_tests_grad.txt" | tail -15
echo "=== done $(date -u +%T)"
