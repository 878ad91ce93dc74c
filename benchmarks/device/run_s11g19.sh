#!/usr/bin/env bash
# Session 11, helper s11g19 (issue 19): packed streams with states in two fused kernels
# (loglinear_streams.cu: ll_pk_read, ll_pk_state; hi_pk_read, hi_pk_state) for loglinear_attention,
# loglinear_gated_delta and loglinear_log_attention; hi_read's rows' log den for the hierarchical partial.
# The GPU tests of tests/test_varlen.py (the fused kernels against the reference and the array-API
# formulation) in two processes, then the timings: the packed streams with states (host / device time
# against one call with one stream's state).
#   OUT=... bash benchmarks/device/run_s11g19.sh      (results and logs: $OUT/s11g19.tgz)
set -u
NAME=s11g19; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short tests/test_varlen.py"
timeout 150 $PT -k "fused" > "$OUT/log_tests_fused.txt" 2>&1 &
timeout 150 $PT -k "not fused" > "$OUT/log_tests_other.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -10; tail -2 "$f"; done
# TIMINGS (quiet GPU; cap 50 s)
echo "=== streams $(date -u +%T)"
( cd benchmarks/device && timeout 45 python3 streams_s10g19.py loglinear_attention:16,1023,1 loglinear_gated_delta:16,1023,1 \
    loglinear_log_attention:16,1023,1 loglinear_attention:64,4096,1 loglinear_gated_delta:64,4096,1 \
    loglinear_gated_delta:16,2000,1024 loglinear_log_attention:64,4096,1 ) > "$OUT/log_streams.txt" 2>&1
echo "rc=$?"; cat "$OUT/log_streams.txt"
echo "=== done $(date -u +%T)"
