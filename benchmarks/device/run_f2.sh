#!/usr/bin/env bash
# session 5, call F2 (same H200, warm): GPU stepper benchmark (cupy fused step) and log_attention vs exp_kernel_attention
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/resf2; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/resf2.tgz" -C /tmp resf2' EXIT
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false CUDA_VISIBLE_DEVICES=0
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
export PYTHONPATH=/tmp/site:$PWD
echo "=== stepper bench $(date -u +%T)"
timeout ${ST:-160} python3 benchmarks/bench_stepper_gpu.py --out "$OUT" > "$OUT/log_stepper.txt" 2>&1
echo "rc=$?"; tail -40 "$OUT/log_stepper.txt"
echo "=== logattn bench $(date -u +%T)"
timeout 70 python3 benchmarks/bench_gpu.py logattn --out "$OUT" --T 2048,8192,32768 > "$OUT/log_logattn.txt" 2>&1
echo "rc=$?"; tail -20 "$OUT/log_logattn.txt"
echo "=== done $(date -u +%T)"
