#!/usr/bin/env bash
# issue 17 (log_attention on the cupy kernels, LOGV mode), one H200, < 3 minutes:
# the GPU tests of log_attention and the exp-kernel ones that share its kernels, the dispatch tests,
# compute-sanitizer over the kernel paths, then log_attention vs exp_kernel_attention timings.
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/res17; mkdir -p "$OUT" "$FINAL"
trap 'cp -r "$OUT"/. "$FINAL"/' EXIT
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
echo "=== tests $(date -u +%T)"
timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_cupy_log_attention.py tests/test_cupy_backend.py \
    tests/test_gpu_dispatch.py -k "log_attention or exp_kernel" > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; tail -15 "$OUT/log_tests.txt"
echo "=== sanitize $(date -u +%T)"
if command -v compute-sanitizer > /dev/null; then
    timeout 60 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/bench_gpu.py sanitize > "$OUT/log_sanitize.txt" 2>&1
    echo "rc=$?"; grep -E "ERROR SUMMARY|sanitize ok" "$OUT/log_sanitize.txt" | tail -8
fi
echo "=== bench $(date -u +%T)"
timeout 60 python3 benchmarks/bench_gpu.py logattn --out "$OUT" --T 2048,8192,32768 > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -20 "$OUT/log_bench.txt"
echo "=== done $(date -u +%T)"
