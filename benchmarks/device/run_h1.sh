#!/usr/bin/env bash
# Session 7, first H200 run (< 4 minutes): the zero-size-batch GPU test that session 6 could not run,
# then compute-sanitizer racecheck of the gated-delta backward scan alone (--kernel-name filter:
# only kernels named gd_scan* (gd_scan, gd_scan_bwd) are instrumented, which the unfiltered run of session 6 could not finish).
#   OUT=... bash benchmarks/device/run_h1.sh      (results and logs: $OUT/h1.tgz)
set -u
NAME=h1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; python3 -m lsattn info; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 100 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_gpu_dispatch.py -k "zero_size" > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_tests.txt"
echo "=== racecheck $(date -u +%T)"
timeout 200 compute-sanitizer --tool racecheck --kernel-name kns=gd_scan --print-limit 5 python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_racecheck.txt" 2>&1
echo "rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard|sanitize ok" "$OUT/log_racecheck.txt" | tail -4
echo "=== done $(date -u +%T)"
