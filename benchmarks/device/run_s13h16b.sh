#!/usr/bin/env bash
# issue 16, session 13 (branch s13h16), request 2: the final code (gd_forms with GF_PREV 1: the chunk's V / lam rows
# prefetched to L2). Tests (the direct-path property test alone first: request 1 cut it; then the kernels' property
# test), memcheck and racecheck (gd_forms) of gd_small.py, the variants' compilation (T = 256) above the TIMINGS marker
# (<= 100 s); then the host A/B (fp32 first this time, step costs for both dtypes), gd_forms production vs no prefetch
# / solve unrolled, and our forward table at 8K without fla (<= 40 s).
#   OUT=... bash benchmarks/device/run_s13h16b.sh       (logs in $OUT/s13h16b.tgz; summary on stdout)
set -u
NAME=s13h16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs --tb=short"
VAR=fp32_chk,bf16in_chk_lamw,fp32_chk_noprev,bf16in_chk_lamw_noprev,fp32_chk_su,bf16in_chk_lamw_su
echo "=== tests + sanitizers $(date -u +%T)"
( timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_torch_direct" > "$OUT/log_tests_direct.txt" 2>&1
  timeout 30 $PT tests/test_cupy_gated_delta.py -k "gpu_bfloat16_in or half_inputs" > "$OUT/log_tests_half.txt" 2>&1 ) &
timeout 95 $PT -m gpu tests/test_cupy_gated_delta.py -k "gpu_matches_reference" > "$OUT/log_tests_ref.txt" 2>&1 &
( timeout 55 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1
  timeout 40 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_forms python3 benchmarks/device/gd_small.py \
      > "$OUT/log_racecheck.txt" 2>&1 ) &
timeout 95 python3 benchmarks/device/gd_forms_variants.py 256 $VAR > "$OUT/log_variants_256.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$f" | tail -3; done
echo "-- variants 256"; grep -E "^T=" "$OUT/log_variants_256.txt"
# TIMINGS
echo "=== host A/B 8192 $(date -u +%T)"
timeout 18 python3 benchmarks/device/gd_host_s13h16.py 8192 fp32first > "$OUT/log_host.txt" 2>&1; echo "rc=$?"
grep -E "^T=|^step" "$OUT/log_host.txt"
echo "=== gd_forms variants 8192 $(date -u +%T)"
timeout 10 python3 benchmarks/device/gd_forms_variants.py 8192 $VAR > "$OUT/log_variants.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/log_variants.txt"
echo "=== forward table 8192 (ours only) $(date -u +%T)"
timeout 12 python3 benchmarks/bench_gpu_gated_delta.py --out "$OUT" --T 8192 --api-max-T 0 --rows ours_bf16,ours_fp32 \
    > "$OUT/log_table.txt" 2>&1; echo "rc=$?"; grep -E "^\| |ours" "$OUT/log_table.txt" | tail -6
echo "=== done $(date -u +%T)"
