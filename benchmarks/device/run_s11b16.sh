#!/usr/bin/env bash
# issue 16, session 11 (branch s11b16), one H200, <= 180 s: gd_forms checks the inputs it reads (the prologue's
# finiteness pass dropped for loglinear_gated_delta) and writes gd_scan's float32 level weights (bf16: no widening
# kernels). Tests above # TIMINGS (concurrent with other helpers'); then gd_forms alone in its variants and the
# public forward's timeline (latency, pipelined, host phases, every GPU op), both dtypes, A/B against the
# prologue's checks in the same run.
#   OUT=... bash benchmarks/device/run_s11b16.sh       (logs in $OUT/s11b16.tgz; summary on stdout)
set -u
NAME=s11b16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers $(date -u +%T)"
timeout 90 $PT tests/test_cupy_gated_delta.py > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 90 $PT tests/test_cupy_gated_delta_grad.py tests/test_gpu_dispatch.py -k gated > "$OUT/log_tests_grad.txt" 2>&1 &
timeout 90 $PT tests/test_nonfinite.py -k "gated" > "$OUT/log_tests_nonfinite.txt" 2>&1 &
( timeout 45 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1
  timeout 50 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_forms python3 benchmarks/device/gd_small.py \
      > "$OUT/log_racecheck.txt" 2>&1 ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$f" | tail -3; done
# TIMINGS
echo "=== gd_forms alone $(date -u +%T)"
timeout 60 python3 benchmarks/device/gd_forms_variants.py 8192 > "$OUT/log_variants.txt" 2>&1
echo "rc=$?"; tail -12 "$OUT/log_variants.txt"
echo "=== public forward timeline 8192 $(date -u +%T)"
OUT=$OUT timeout 50 python3 benchmarks/device/gd_timeline.py 8192 > "$OUT/log_timeline.txt" 2>&1
echo "rc=$?"; grep -E "^====|host phases \(us|GPU:|call \(host" "$OUT/log_timeline.txt" | cut -c1-400
grep -E "^    gpu" "$OUT/log_timeline.txt" | head -40
echo "=== done $(date -u +%T)"
