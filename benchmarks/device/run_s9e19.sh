#!/usr/bin/env bash
# Session 9, helper s9e19 (issue 19): Gated DeltaNet's packed streams (state= / return_state=True with
# cu_seqlens) in one call (lsattn._ll_packed._transfers), and cupy now listing loglinear_gated_delta in
# VARLEN_OPS (the rewrite's ordinary call on its kernels). The varlen GPU tests, then the one-call vs
# per-segment vs one-ordinary-call timings of every log-linear operator on CuPy float32.
#   OUT=... bash benchmarks/device/run_s9e19.sh      (results and logs: $OUT/s9e19.tgz)
set -u
NAME=s9e19; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short tests/test_varlen.py > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "^FAILED|^ERROR" "$OUT/log_tests.txt" | head -8; tail -3 "$OUT/log_tests.txt"
echo "=== streams $(date -u +%T)"
( cd benchmarks/device && timeout 75 python3 streams_s9e19.py loglinear_gated_delta loglinear_attention ) > "$OUT/log_streams.txt" 2>&1
echo "rc=$?"; cat "$OUT/log_streams.txt"
echo "=== done $(date -u +%T)"
