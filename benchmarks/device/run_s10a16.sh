#!/usr/bin/env bash
# issue 16, session 10 (one H200): the level-parallel gd_scan (independent chains per Fenwick level and
# period; second run: 32 columns per block, 3 blocks per SM, pipelined tile copies, since removed: no gain). Tests: the GPU tests of loglinear_gated_delta (forward, backward, dispatch -k gated) in two
# pytest processes beside compute-sanitizer memcheck and racecheck of gd_small.py (~120 s, the first
# ~60 s CUDA compilation). # TIMINGS (quiet GPU): gd_scan alone and its timing builds (at 458e248 beside session 9's scan) in
# one process (ab_gd_scan.py, ~50 s: widths 32 / 16 / 64, no products, critical path), then the forward table with fla (bf16; fla autotunes: ~150 s).
#   OUT=... bash benchmarks/device/run_s10a16.sh       (logs under $OUT/s10a16.tgz; summary on stdout)
set -u
NAME=s10a16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers $(date -u +%T)"
timeout 120 $PT tests/test_cupy_gated_delta.py > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 120 $PT tests/test_cupy_gated_delta_grad.py tests/test_gpu_dispatch.py -k "gated" > "$OUT/log_tests_grad.txt" 2>&1 &
( timeout 50 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1
  timeout 65 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_scan python3 benchmarks/device/gd_small.py \
      > "$OUT/log_racecheck.txt" 2>&1 ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$f" | tail -3; done
# TIMINGS
echo "=== gd_scan alone $(date -u +%T)"
timeout 65 python3 benchmarks/device/ab_gd_scan.py > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; tail -4 "$OUT/log_ab.txt"
echo "=== forward table $(date -u +%T)"
timeout 200 python3 benchmarks/bench_gpu_gated_delta.py --T 2048,8192,32768 --api-max-T 0 --fla-dtypes bf16 --out "$OUT" \
    > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -12 "$OUT/log_bench.txt"
echo "=== done $(date -u +%T)"
