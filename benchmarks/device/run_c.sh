#!/usr/bin/env bash
# session 4, call C (1 x H200): exp-kernel backward after __expf, log-linear backward from fp32 copies again
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/res; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/res.tgz" -C /tmp res' EXIT
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
export PYTHONPATH=/tmp/site:$PWD
echo "=== tests $(date -u +%T)"
timeout 110 python3 -m pytest -q -p no:cacheprovider -m gpu -x tests/test_training.py -k "exp_kernel or grads_against" > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "passed|failed|Error|error " "$OUT/log_tests.txt" | tail -8
echo "=== memcheck $(date -u +%T)"
timeout 60 compute-sanitizer --tool memcheck --leak-check no --print-limit 10 python3 benchmarks/device/ek_bwd_small.py > "$OUT/log_sanitize.txt" 2>&1
echo "rc=$?"; tail -3 "$OUT/log_sanitize.txt"
echo "=== profile $(date -u +%T)"
timeout 40 python3 benchmarks/device/profile_ek_bwd.py 8192 > "$OUT/log_profile.txt" 2>&1; cat "$OUT/log_profile.txt" | tail -9
echo "=== train bench $(date -u +%T)"
timeout 100 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T 2048,8192,32768 > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; tail -6 "$OUT/log_train.txt"
echo "=== done $(date -u +%T)"
