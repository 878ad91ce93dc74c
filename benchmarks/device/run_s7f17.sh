#!/usr/bin/env bash
# issue 17, branch s7f17 (bf16 log_attention on the tensor-core kernels), one H200, < 150 s: the GPU
# tests of the new path and of the exact-row fallback both output kernels now share, then
# log_attention vs exp_kernel_attention timings. Everything goes to stdout.
set -u
NAME=s7f17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci
echo "=== tests $(date -u +%T)"
timeout 85 python3 -m pytest -q -p no:cacheprovider -m gpu -rs --tb=short tests/test_cupy_log_attention.py \
    tests/test_cupy_backend.py -k "bf16 or half_precision or late_spikes or bfloat16_exp_kernel_spike or bfloat16_public" \
    > /tmp/s7f17_tests.txt 2>&1
echo "rc=$?"; tail -60 /tmp/s7f17_tests.txt
echo "=== bench $(date -u +%T)"
timeout 50 python3 benchmarks/bench_gpu.py logattn --out /tmp --T 8192,32768 2>&1 | tail -25
echo "=== done $(date -u +%T)"
