#!/usr/bin/env bash
# session 4, call D2 (same machine, warm): training bench, packed-sequence bench, MQAR small sweep on a budget
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/res2; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/res2.tgz" -C /tmp res2' EXIT
export PYTHONUNBUFFERED=1 CUDA_VISIBLE_DEVICES=0
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
export PYTHONPATH=/tmp/site:$PWD
echo "=== train $(date -u +%T)"
timeout 70 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T 8192,32768 > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; tail -5 "$OUT/log_train.txt"
echo "=== varlen $(date -u +%T)"
timeout 40 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" > "$OUT/log_varlen.txt" 2>&1
echo "rc=$?"; tail -12 "$OUT/log_varlen.txt"
echo "=== mqar $(date -u +%T)"
timeout 215 python3 -m examples.mqar --small --budget-seconds 200 --out "$OUT/mqar" > "$OUT/log_mqar.txt" 2>&1
echo "rc=$?"; tail -25 "$OUT/log_mqar.txt"
echo "=== done $(date -u +%T)"
