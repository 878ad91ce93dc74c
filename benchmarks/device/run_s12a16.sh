#!/usr/bin/env bash
# issue 16, session 12 (one H200): gd_scan's one-slot walk (the top levels alone: the critical path) as its
# own instantiation with W in its own region (no barrier between (a)'s products and W's stores); builds:
# the L2 prefetch of the next chunk (H in group walks in production; pf0: none, pf2: + the tiles in one-slot walks), the one-slot W over Qe / Ek (wown0), 1xTF32 (x1).
# Tests (<= 120 s, the first ~60 s CUDA compilation): the forward's GPU tests, dispatch -k gated, the
# backward's GPU tests that run the forward's gd_scan (-k), beside compute-sanitizer memcheck and
# racecheck of gd_small.py.
# # TIMINGS (quiet GPU, <= 60 s): gd_scan alone, main's scan (gd_scan_main.cu) beside this branch's and its
# builds (ab_gd_scan.py, <= 33 s), then the forward at 8K with fla bf16 (<= 27 s).
#   OUT=... bash benchmarks/device/run_s12a16.sh       (logs under $OUT/s12a16.tgz; summary on stdout)
set -u
NAME=s12a16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers $(date -u +%T)"
timeout 115 $PT tests/test_cupy_gated_delta.py tests/test_gpu_dispatch.py -k gated > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 115 $PT tests/test_cupy_gated_delta_grad.py -k "(grads_against_reference and float32) or return_state_under_grad" > "$OUT/log_tests_grad.txt" 2>&1 &
( timeout 50 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1
  timeout 60 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_scan python3 benchmarks/device/gd_small.py \
      > "$OUT/log_racecheck.txt" 2>&1 ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Error" "$f" | tail -3; done
# TIMINGS
echo "=== gd_scan alone $(date -u +%T)"
timeout 33 python3 benchmarks/device/ab_gd_scan.py ${AB_T:-8192,2048,32768} ${AB_BUILDS:-main,pf0,pf2,wown0,x1} > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; tail -4 "$OUT/log_ab.txt"
echo "=== forward table $(date -u +%T)"
timeout 27 python3 benchmarks/bench_gpu_gated_delta.py --T ${BENCH_T:-8192} --api-max-T 0 --fla-dtypes bf16 --out "$OUT" \
    > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_bench.txt"
echo "=== done $(date -u +%T)"
