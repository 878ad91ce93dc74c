#!/usr/bin/env bash
# issue 16, session 12, second run (one H200): bfloat16 inputs' gd_scan in 1xTF32 (GD_X1), beside the first
# run's one-slot walk; builds: pipe (a one-slot walk copies the next chunk's Qe / Ek during (b)).
# Tests (<= 120 s, the first ~60 s CUDA compilation): the forward's GPU tests, dispatch -k gated (bf16 at 8K),
# the backward's float32 GPU tests (-k), beside compute-sanitizer memcheck and racecheck of gd_small.py, and
# racecheck of the pipe builds against the production kernel (gd_pipe_small.py).
# # TIMINGS (quiet GPU, <= 60 s): the forward at 8K with fla bf16 first (fla autotunes; <= 40 s), then gd_scan
# alone at 8K / 32K (ab_gd_scan.py, <= 20 s: main, x1 = the bf16 path's scan, pipe, x1pipe, x1g3).
#   OUT=... bash benchmarks/device/run_s12a16b.sh       (logs under $OUT/s12a16b.tgz; summary on stdout)
set -u
NAME=s12a16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers $(date -u +%T)"
timeout 115 $PT tests/test_cupy_gated_delta.py tests/test_gpu_dispatch.py -k gated > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 115 $PT tests/test_cupy_gated_delta_grad.py -k "(grads_against_reference and float32) or return_state_under_grad" > "$OUT/log_tests_grad.txt" 2>&1 &
( timeout 58 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1
  timeout 55 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_scan python3 benchmarks/device/gd_small.py \
      > "$OUT/log_racecheck.txt" 2>&1 ) &
timeout 100 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_scan python3 benchmarks/device/gd_pipe_small.py \
    > "$OUT/log_racecheck_pipe.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
grep -E "pipe|x1pipe" "$OUT/log_racecheck_pipe.txt" | head -8
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt "$OUT"/log_racecheck_pipe.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Error|sanitize ok" "$f" | tail -3; done
# TIMINGS
echo "=== forward table $(date -u +%T)"
timeout 40 python3 benchmarks/bench_gpu_gated_delta.py --T ${BENCH_T:-8192} --api-max-T 0 --fla-dtypes bf16 --out "$OUT" \
    > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_bench.txt"
echo "=== gd_scan alone $(date -u +%T)"
timeout 20 python3 benchmarks/device/ab_gd_scan.py ${AB_T:-8192,32768} ${AB_BUILDS:-main,x1,pipe,x1pipe,x1g3} > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; tail -3 "$OUT/log_ab.txt"
echo "=== done $(date -u +%T)"
