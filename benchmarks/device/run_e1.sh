#!/usr/bin/env bash
# session 5, call E1 (one H200): MQAR small sweep in the background; beside it the GPU test suite
# (Dask's CuPy-block tests on one GPU included). Tests do not time anything; MQAR's tokens/s are
# measured while they run (stated in the results).
set -u
FINAL=${OUT:-/tmp/out}; OUT=/tmp/res1; mkdir -p "$OUT" "$FINAL"
trap 'tar czf "$FINAL/res1.tgz" -C /tmp res1' EXIT
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/log_pip.txt" 2>&1
export PYTHONPATH=/tmp/site:$PWD
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== mqar (background) $(date -u +%T)"
timeout ${MQAR_T:-560} python3 -m examples.mqar --small --budget-seconds ${MQAR_S:-530} --out "$OUT/mqar" > "$OUT/log_mqar.txt" 2>&1 &
MQ=$!
echo "=== gpu tests $(date -u +%T)"
timeout ${TT:-300} python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "passed|failed|Error |FAILED" "$OUT/log_tests.txt" | tail -12
echo "=== wait mqar $(date -u +%T)"
wait $MQ; echo "mqar rc=$?"; tail -25 "$OUT/log_mqar.txt"
echo "=== done $(date -u +%T)"
