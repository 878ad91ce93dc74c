#!/usr/bin/env bash
# issue 16, session 11 (one H200): gd_scan with GD_G = 2 levels (or incoming slots) per block walking
# their chunks once (tiles copied once per group); W as tf32 pairs.
# Tests: the GPU tests of loglinear_gated_delta (forward, backward, dispatch -k gated) in two pytest
# processes beside compute-sanitizer memcheck and racecheck of gd_small.py (both group sizes) (<= 135 s,
# the first ~60 s CUDA compilation).
# # TIMINGS (quiet GPU): gd_scan alone beside session 10's scan, launched with 1 and 2 slots per block,
# and the builds of W unsplit, S in registers, 3 slots (ab_gd_scan.py, <= 55 s: 6 builds compiled
# first), then the forward at 8K with fla bf16 (fla autotunes: <= 60 s).
#   OUT=... bash benchmarks/device/run_s11a16.sh       (logs under $OUT/s11a16.tgz; summary on stdout)
set -u
NAME=s11a16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers $(date -u +%T)"
timeout 135 $PT tests/test_cupy_gated_delta.py > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 135 $PT tests/test_cupy_gated_delta_grad.py tests/test_gpu_dispatch.py -k "gated" > "$OUT/log_tests_grad.txt" 2>&1 &
( timeout 60 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1
  timeout 75 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_scan python3 benchmarks/device/gd_small.py \
      > "$OUT/log_racecheck.txt" 2>&1 ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$f" | tail -3; done
# TIMINGS
echo "=== gd_scan alone $(date -u +%T)"
timeout 55 python3 benchmarks/device/ab_gd_scan.py ${AB_T:-8192,32768,2048} ${AB_BUILDS:-s10,g2_ws0,g2_sr,g3,nomm} > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; tail -4 "$OUT/log_ab.txt"
echo "=== forward table $(date -u +%T)"
timeout 60 python3 benchmarks/bench_gpu_gated_delta.py --T ${BENCH_T:-8192} --api-max-T 0 --fla-dtypes bf16 --out "$OUT" \
    > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_bench.txt"
echo "=== done $(date -u +%T)"
