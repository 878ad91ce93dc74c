#!/usr/bin/env bash
# issue 17, branch s7f17 (bf16 log_attention on the tensor-core kernels; 16-bit training forward in
# float32 once), one H200, < 150 s: the GPU tests of the new path, of the exact-row fallback both output
# kernels now share and of the bf16 gradients, then log_attention vs exp_kernel_attention (forward)
# and log_attention vs SDPA (fwd+bwd) timings. Everything goes to stdout.
set -u
NAME=s7f17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci
echo "=== tests $(date -u +%T)"
timeout 70 python3 -m pytest -q -p no:cacheprovider -m gpu -rs --tb=short tests/test_cupy_log_attention.py \
    tests/test_cupy_backend.py -k "bf16 or half_precision or late_spikes or bfloat16_exp_kernel_spike or bfloat16_public \
    or (grads_against_reference and bfloat16)" > /tmp/s7f17_tests.txt 2>&1
echo "rc=$?"; tail -60 /tmp/s7f17_tests.txt
echo "=== bench forward $(date -u +%T)"
timeout 30 python3 benchmarks/bench_gpu.py logattn --out /tmp --T 8192,32768 2>&1 | tail -16
echo "=== bench fwd+bwd $(date -u +%T)"
timeout 30 python3 benchmarks/bench_gpu_train.py --out /tmp --T 16384,32768 --ops la,sdpa 2>&1 | grep -v "^|---" | tail -12
echo "=== done $(date -u +%T)"
