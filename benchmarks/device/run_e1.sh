#!/usr/bin/env bash
# session 5, call E1 (2 x H200): MQAR small sweep on GPU 1 in the background; on GPU 0 the GPU test
# suite (Dask's excepted: call E2), the training benchmark and the packed-sequence benchmark.
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/res1; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/res1.tgz" -C /tmp res1' EXIT
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
export PYTHONPATH=/tmp/site:$PWD
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== mqar (GPU 1, background) $(date -u +%T)"
CUDA_VISIBLE_DEVICES=1 timeout 450 python3 -m examples.mqar --small --budget-seconds ${MQAR_S:-420} --out "$OUT/mqar" > "$OUT/log_mqar.txt" 2>&1 &
MQ=$!
export CUDA_VISIBLE_DEVICES=0
echo "=== gpu tests $(date -u +%T)"
timeout ${TT:-220} python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests --ignore=tests/test_dask_gpu.py -x > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "passed|failed|Error |FAILED" "$OUT/log_tests.txt" | tail -8
echo "=== train $(date -u +%T)"
timeout 120 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T ${TRAIN_T:-8192,16384,32768} > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_train.txt"
echo "=== varlen $(date -u +%T)"
timeout 60 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" > "$OUT/log_varlen.txt" 2>&1
echo "rc=$?"; tail -14 "$OUT/log_varlen.txt"
echo "=== wait mqar $(date -u +%T)"
wait $MQ; echo "mqar rc=$?"; tail -25 "$OUT/log_mqar.txt"
echo "=== done $(date -u +%T)"
