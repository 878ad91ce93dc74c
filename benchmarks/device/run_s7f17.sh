#!/usr/bin/env bash
# issue 17, branch s7f17 (bf16 log_attention on the tensor-core kernels; 16-bit training forward in
# float32 once; the LOGV scan's column factors prefetched with S), one H200, ~100 s: the GPU tests of
# the LOGV paths (bf16 tensor cores, the exact rows of both output kernels, bf16 gradients), then
# log_attention vs exp_kernel_attention (forward), log_attention vs SDPA (fwd+bwd) and the profile of
# the bf16 training step. Everything goes to stdout.
set -u
NAME=s7f17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci
echo "=== tests $(date -u +%T)"
timeout 45 python3 -m pytest -q -p no:cacheprovider -m gpu -rs --tb=short tests/test_cupy_log_attention.py \
    -k "bf16_spikes or (half_precision and bfloat16) or (late_spikes and float32) or (grads_against_reference and bfloat16 and 777)" \
    > /tmp/s7f17_tests.txt 2>&1
echo "rc=$?"; tail -40 /tmp/s7f17_tests.txt
echo "=== bench forward $(date -u +%T)"
timeout 12 python3 benchmarks/bench_gpu.py logattn --out /tmp --T 8192,32768 2>&1 | tail -16
echo "=== bench fwd+bwd $(date -u +%T)"
timeout 20 python3 benchmarks/bench_gpu_train.py --out /tmp --T 16384,32768 --ops la,sdpa 2>&1 | grep -v "^|---" | tail -12
echo "=== profile $(date -u +%T)"
timeout 15 python3 benchmarks/device/profile_log_train.py 16384 2>&1 | tail -30
echo "=== done $(date -u +%T)"
