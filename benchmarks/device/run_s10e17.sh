#!/usr/bin/env bash
# Session 10, branch s10e17 (issue 17), first run: loglinear_log_attention's backward with hib_blocks'
# right blocks split into parallel pieces (hib_bmerge), the chunks' pairs as products in hib_dq / hib_dkdv
# (hib_fpairs; exact rows per pair) and hib_dkdv reading hib_dq's pair terms.
# Tests (the hierarchical gradient file's GPU tests) beside memcheck and racecheck of the small cases
# (split blocks and empty pieces included); then # TIMINGS alone: fwd+bwd 8K..32K with the backward split.
#   OUT=... bash benchmarks/device/run_s10e17.sh      (results and logs: $OUT/s10e17.tgz)
set -u
NAME=s10e17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log -1 --format=%H; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 110 $PT tests/test_cupy_hierarchical_grad.py > "$OUT/log_tests.txt" 2>&1 &
( timeout 50 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1
  timeout 55 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_racecheck.txt" 2>&1 ) &
wait
echo "-- tests"; grep -E "^FAILED|^ERROR" "$OUT/log_tests.txt" | head -8; tail -1 "$OUT/log_tests.txt"
for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|^float|^bfloat" "$f" | tail -7; done
# TIMINGS (alone on the GPU)
echo "=== train $(date -u +%T)"
timeout 60 python3 benchmarks/bench_gpu_hierarchical.py train --out "$OUT" --T 8192,16384,32768 --api-max 0 > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; grep -E "split|^\| " "$OUT/log_train.txt" | cut -c1-220
echo "=== done $(date -u +%T)"
