#!/usr/bin/env bash
# session 6, issue 17 (log_attention backward on the cupy kernels: exp_kernel_bwd.cu in LOGV mode), one H200, < 4 minutes:
# the GPU tests of log_attention (forward and backward) and of the exp-kernel backward that shares its
# kernels, compute-sanitizer over a small forward + backward, then the training benchmark's row of
# log_attention beside exp_kernel_attention and torch SDPA (fwd+bwd).
set -u
NAME=s6b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
echo "=== tests $(date -u +%T)"
timeout 130 python3 -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_cupy_log_attention.py tests/test_training.py tests/test_gpu_dispatch.py \
    -k "log_attention or exp_kernel" > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; tail -15 "$OUT/log_tests.txt"
echo "=== sanitize $(date -u +%T)"
if command -v compute-sanitizer > /dev/null; then
    timeout 35 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/ek_bwd_small.py > "$OUT/log_sanitize.txt" 2>&1
    echo "rc=$?"; grep -E "ERROR SUMMARY|^ok" "$OUT/log_sanitize.txt" | tail -4
fi
echo "=== train bench $(date -u +%T)"
timeout 55 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T 8192,16384,32768 --ops ek,la,sdpa > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; tail -12 "$OUT/log_train.txt"
echo "=== done $(date -u +%T)"
