#!/usr/bin/env bash
# issue 16, the fused per-chunk WY kernel gd_forms (gated_delta_forms.cu) and gd_scan's batched loads,
# one H200, ~120 s: the GPU tests of loglinear_gated_delta's cupy forward, the per-kernel profile,
# the forward benchmark at T = 8K against fla (its first call compiles Triton kernels), then the
# backward's GPU tests as far as their timeout goes (gd_scan_bwd shares gd_tiles).
#   OUT=... bash benchmarks/device/run_s7a16.sh       (results and logs: $OUT/s7a16.tgz; summary on stdout)
set -u
NAME=s7a16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; python3 -m lsattn info; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 30 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_cupy_gated_delta.py > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "Error|assert|passed|failed" "$OUT/log_tests.txt" | tail -15
echo "=== profile $(date -u +%T)"
timeout 12 python3 benchmarks/device/profile_gd.py > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -E "====|cupy arrays|gd_forms|gd_scan|Self CUDA time total" "$OUT/log_profile.txt" | head -24
echo "=== bench $(date -u +%T)"
timeout 60 python3 benchmarks/bench_gpu_gated_delta.py --out "$OUT" --T 8192 --api-max-T 0 > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_bench.txt"
echo "=== backward tests $(date -u +%T)"
timeout 15 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_cupy_gated_delta_grad.py > "$OUT/log_tests_grad.txt" 2>&1
echo "rc=$?"; grep -E "Error|assert|passed|failed" "$OUT/log_tests_grad.txt" | tail -15
echo "=== done $(date -u +%T)"
