#!/usr/bin/env bash
# issue 16, session 14, second run (one H200): run 1's code (the two-tier scan at 64 columns a block in float32,
# gd_tier3 reading Qp with no walk, gd_coarse's Tot off its chain) whose timings failed (the A/B's kernel lookup
# lacked _p), and a gd_coarse timing build. Tests (<= 100 s, the first ~60 s CUDA compilation; the A/B's builds
# compiled beside them in four processes): the forward's GPU tests of the two-tier form and bf16 in / out; memcheck and racecheck of
# gd_tier_small.py side by side.
# # TIMINGS (quiet GPU, <= 40 s): ab_tier_s14a16.py: the public bf16 / fp32 forward at 8K, then per T (8K, 32K, 2K)
# gd_scan, the production two-tier form, session 13's kernels (main), Qp at 32 columns (qp32), L2 prefetch (tpf),
# gd_coarse's Z two steps ahead (cring), each with t1 / coarse / t3 alone.
#   OUT=... bash benchmarks/device/run_s14a16b.sh       (logs under $OUT/s14a16b.tgz; summary on stdout)
set -u
NAME=s14a16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers $(date -u +%T)"
timeout 95 $PT tests/test_cupy_gated_delta.py -k "two_tier or bfloat16_in" > "$OUT/log_tests_fwd.txt" 2>&1 &
for c in x1 f32; do
  timeout 95 python3 benchmarks/device/ab_tier_s14a16.py --compile-only $c new,main > "$OUT/log_compile_${c}_a.txt" 2>&1 &
  timeout 95 python3 benchmarks/device/ab_tier_s14a16.py --compile-only $c qp32,tpf,cring > "$OUT/log_compile_${c}_b.txt" 2>&1 &
done
timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_tier_small.py > "$OUT/log_memcheck_tier.txt" 2>&1 &
timeout 95 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_ python3 benchmarks/device/gd_tier_small.py \
    > "$OUT/log_racecheck_tier.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck_tier.txt "$OUT"/log_racecheck_tier.txt; do echo "-- $f"; grep -E "tier-vs-main|ERROR SUMMARY|RACECHECK SUMMARY|Error|sanitize ok" "$f" | tail -8; done
tail -qn1 "$OUT"/log_compile_*.txt
# TIMINGS
echo "=== two-tier: session 13 vs s14a16 $(date -u +%T)"
timeout 38 python3 benchmarks/device/ab_tier_s14a16.py ${AB_T:-8192,32768,2048} > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; cut -c1-300 "$OUT/log_ab.txt"
echo "=== done $(date -u +%T)"
