#!/usr/bin/env bash
# session 5, call E2 (one H200, warm): training benchmark and packed-sequence benchmark
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/res2; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/res2.tgz" -C /tmp res2' EXIT
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
export PYTHONPATH=/tmp/site:$PWD
echo "=== train $(date -u +%T)"
timeout ${TRT:-200} python3 benchmarks/bench_gpu_train.py --out "$OUT" --T ${TRAIN_T:-2048,8192,16384,32768,65536} > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; tail -12 "$OUT/log_train.txt"
echo "=== varlen $(date -u +%T)"
timeout 90 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" > "$OUT/log_varlen.txt" 2>&1
echo "rc=$?"; tail -14 "$OUT/log_varlen.txt"
echo "=== done $(date -u +%T)"
