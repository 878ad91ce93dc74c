#!/usr/bin/env bash
# session 6, call G1 (one H200): grouped-query heads on the cupy log-linear kernels (tests +
# the packed / shared-heads benchmark)
set -u
NAME=g1; . benchmarks/device/setup.sh
echo "=== tests $(date -u +%T)"
timeout 300 python3 -m pytest -q -m gpu -x tests/test_cupy_backend.py -k "loglinear" -p no:cacheprovider \
    > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; tail -5 "$OUT/log_tests.txt"
echo "=== varlen $(date -u +%T)"
timeout 120 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" > "$OUT/log_varlen.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_varlen.txt"
echo "=== done $(date -u +%T)"
