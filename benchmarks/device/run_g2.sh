#!/usr/bin/env bash
# session 6, call G2 (one H200): token-mapped packed segments and grouped heads on the cupy
# log-linear kernels (tests, packed benchmark, where-the-time-goes profile), then run_s6a.sh
# (loglinear_gated_delta on the cupy scan kernel: tests, sanitizer, forward benchmark)
set -u
NAME=g2; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci
echo "=== tests $(date -u +%T)"
timeout 200 python3 -m pytest -q -m gpu -x -p no:cacheprovider tests/test_cupy_backend.py -k "loglinear" \
    > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; tail -5 "$OUT/log_tests.txt"
echo "=== varlen $(date -u +%T)"
timeout 100 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" > "$OUT/log_varlen.txt" 2>&1
echo "rc=$?"; tail -6 "$OUT/log_varlen.txt"
timeout 60 python3 benchmarks/device/profile_varlen.py > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; head -c 600 "$OUT/log_profile.txt"
echo "=== s6a $(date -u +%T)"
OUT=$OUT/s6a bash benchmarks/device/run_s6a.sh
echo "=== done $(date -u +%T)"
