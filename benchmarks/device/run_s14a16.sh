#!/usr/bin/env bash
# issue 16, session 14, first run (one H200): gd_scan's two-tier form at 64 columns a block (float32 compute), gd_tier3
# as one product per (chunk, slot) from the queries carried to the period start (Qp, stored by gd_tier1's transfers),
# gd_coarse's Tot off its chain. Tests (<= 100 s, the first ~60 s CUDA compilation, the timing builds compiled beside
# them): the forward's GPU tests of the two-tier form (new), the direct torch path and bf16 in / out; memcheck and
# racecheck of gd_tier_small.py (every gd_ kernel of the two-tier form, d_k up to 128).
# # TIMINGS (quiet GPU, <= 40 s): ab_tier_s14a16.py: session 13's two-tier kernels against this branch's (f32 / x1
# builds: session 13 / 64 columns with its gd_tier3 walks / production (Qp) / Qp at 32 columns), each kernel alone,
# gd_scan; the public bf16 / fp32 forward.
#   OUT=... bash benchmarks/device/run_s14a16.sh       (logs under $OUT/s14a16.tgz; summary on stdout)
set -u
NAME=s14a16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers $(date -u +%T)"
timeout 95 $PT tests/test_cupy_gated_delta.py -k "two_tier or torch_direct_path or bfloat16_in" > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 95 python3 benchmarks/device/ab_tier_s14a16.py --compile-only > "$OUT/log_compile.txt" 2>&1 &
( timeout 45 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_tier_small.py > "$OUT/log_memcheck_tier.txt" 2>&1
  timeout 50 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_ python3 benchmarks/device/gd_tier_small.py \
      > "$OUT/log_racecheck_tier.txt" 2>&1 ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
grep -E "tier-vs-main" "$OUT/log_memcheck_tier.txt" | head -8
for f in "$OUT"/log_memcheck_tier.txt "$OUT"/log_racecheck_tier.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Error|sanitize ok" "$f" | tail -3; done
tail -1 "$OUT/log_compile.txt"
# TIMINGS
echo "=== two-tier: session 13 vs s14a16 $(date -u +%T)"
timeout 38 python3 benchmarks/device/ab_tier_s14a16.py ${AB_T:-2048,8192,32768} > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; cat "$OUT/log_ab.txt" | cut -c1-700
echo "=== done $(date -u +%T)"
