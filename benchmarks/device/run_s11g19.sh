#!/usr/bin/env bash
# Session 11, helper s11g19 (issue 19): packed streams with states in two fused kernels
# (loglinear_streams.cu: ll_pk_read, ll_pk_state; hi_pk_read, hi_pk_state) for loglinear_attention,
# loglinear_gated_delta and loglinear_log_attention.
# The GPU tests of tests/test_varlen.py (the fused kernels against the reference and the array-API
# formulation), then # TIMINGS: the packed streams with states (host / device time against one call
# with one stream's state), kernel profiles (launches per call) and the host cost of the issue's
# packed loglinear_attention call (cProfile).
#   OUT=... bash benchmarks/device/run_s11g19.sh      (results and logs: $OUT/s11g19.tgz)
set -u
NAME=s11g19; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short tests/test_varlen.py"
timeout 100 $PT -k "fused" > "$OUT/log_tests_fused.txt" 2>&1 &
timeout 100 $PT -k "not fused" > "$OUT/log_tests_other.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -10; tail -2 "$f"; done
# TIMINGS (quiet GPU)
echo "=== streams $(date -u +%T)"
( cd benchmarks/device && timeout 35 python3 streams_s10g19.py loglinear_attention:16,1023,1 loglinear_attention:64,4096,1 \
    loglinear_attention:16,2000,1024 loglinear_gated_delta:16,1023,1 loglinear_gated_delta:64,4096,1 \
    loglinear_gated_delta:16,2000,1024 loglinear_log_attention:16,1023,1 loglinear_log_attention:64,4096,1 ) > "$OUT/log_streams.txt" 2>&1
echo "rc=$?"; cat "$OUT/log_streams.txt"
echo "=== profile $(date -u +%T)"
( cd benchmarks/device && timeout 20 python3 -c "
from profile_streams_s10g19 import profile
profile(16, 1023, 1, op='loglinear_attention'); profile(64, 4096, 1, op='loglinear_attention')
profile(16, 1023, 1); profile(16, 2000, 1024)" ) > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; cat "$OUT/log_profile.txt"
echo "=== issue call host cost $(date -u +%T)"
timeout 25 python3 benchmarks/device/profile_varlen.py --cprofile > "$OUT/log_host_varlen.txt" 2>&1
echo "rc=$?"; head -1 "$OUT/log_host_varlen.txt" | cut -c1-600
echo "=== done $(date -u +%T)"
