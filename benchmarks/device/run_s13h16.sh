#!/usr/bin/env bash
# issue 16, session 13 (branch s13h16), request 1: the host path before gd_forms (the prologue's cached backend
# choice, the driver launches with prebuilt argument blocks) and two gd_forms timing variants (V / lam rows
# prefetched to L2, the tensor-core k-loop unrolled by 2). Tests, memcheck and the variants' compilation (T = 256,
# which fills CuPy's cache) above the TIMINGS marker (<= 100 s); then the host A/B with step costs and a cProfile,
# and gd_forms' variants at 8K (<= 40 s).
#   OUT=... bash benchmarks/device/run_s13h16.sh       (logs in $OUT/s13h16.tgz; summary on stdout)
set -u
NAME=s13h16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs --tb=short"
VAR=fp32_chk,bf16in_chk_lamw,fp32_chk_prev,bf16in_chk_lamw_prev,fp32_chk_u2,bf16in_chk_lamw_u2,bf16in_chk_lamw_prev_u2,bf16in_chk_lamw_nosolve,bf16in_chk_lamw_noscan
echo "=== tests + memcheck $(date -u +%T)"
timeout 95 $PT tests/test_cupy_gated_delta.py -k "(gpu_torch_direct or bfloat16_in or half_inputs) and not emulated" \
    > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 95 $PT -m gpu tests/test_nonfinite.py -k "gated and torch_cuda" > "$OUT/log_tests_nonfinite.txt" 2>&1 &
timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 95 python3 benchmarks/device/gd_forms_variants.py 256 $VAR > "$OUT/log_variants_256.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
echo "-- memcheck"; grep -E "ERROR SUMMARY|sanitize ok|Error" "$OUT/log_memcheck.txt" | tail -3
echo "-- variants 256"; grep -E "^T=" "$OUT/log_variants_256.txt"
# TIMINGS
echo "=== host A/B 8192 $(date -u +%T)"
timeout 20 python3 benchmarks/device/gd_host_s13h16.py 8192 > "$OUT/log_host.txt" 2>&1; echo "rc=$?"
grep -E "^T=|^step" "$OUT/log_host.txt"; grep -A30 "Ordered by" "$OUT/log_host.txt" | head -32
echo "=== gd_forms variants 8192 $(date -u +%T)"
timeout 18 python3 benchmarks/device/gd_forms_variants.py 8192 $VAR > "$OUT/log_variants.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/log_variants.txt"
echo "=== done $(date -u +%T)"
