#!/usr/bin/env bash
# issue 16, session 13, first run (one H200): gd_scan's two-tier form (gd_tier1, gd_coarse, gd_tier3) for calls from
# chunk 0 without state. Tests (<= 100 s, the first ~60 s CUDA compilation, the timing builds compiled beside them):
# the forward's GPU tests, the backward's float32 subset (its forward scan runs the two-tier form), memcheck of
# gd_small.py and gd_tier_small.py, racecheck of gd_tier_small.py (every gd_ kernel).
# # TIMINGS (quiet GPU, <= 40 s): ab_tier_s13b16.py: main's gd_scan vs the two-tier form (f32 / bf16 builds), each
# tier kernel alone, the public bf16 forward with the two-tier form on and off.
#   OUT=... bash benchmarks/device/run_s13b16.sh       (logs under $OUT/s13b16.tgz; summary on stdout)
set -u
NAME=s13b16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers $(date -u +%T)"
timeout 95 $PT tests/test_cupy_gated_delta.py > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_gated_delta_grad.py -k "(grads_against_reference and float32) or return_state_under_grad" > "$OUT/log_tests_grad.txt" 2>&1 &
timeout 95 python3 benchmarks/device/ab_tier_s13b16.py --compile-only > "$OUT/log_compile.txt" 2>&1 &
( timeout 45 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_tier_small.py > "$OUT/log_memcheck_tier.txt" 2>&1
  timeout 50 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_ python3 benchmarks/device/gd_tier_small.py \
      > "$OUT/log_racecheck_tier.txt" 2>&1 ) &
timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
grep -E "tier-vs-main" "$OUT/log_memcheck_tier.txt" | head -8
for f in "$OUT"/log_memcheck.txt "$OUT"/log_memcheck_tier.txt "$OUT"/log_racecheck_tier.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Error|sanitize ok" "$f" | tail -3; done
tail -1 "$OUT/log_compile.txt"
# TIMINGS
echo "=== gd_scan vs two-tier $(date -u +%T)"
timeout 38 python3 benchmarks/device/ab_tier_s13b16.py ${AB_T:-2048,8192,32768} > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; cat "$OUT/log_ab.txt" | cut -c1-600
echo "=== done $(date -u +%T)"
