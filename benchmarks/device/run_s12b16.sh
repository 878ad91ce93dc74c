#!/usr/bin/env bash
# issue 16, session 12 (branch s12b16): the Gated DeltaNet forward's host path before gd_forms (CUDA torch tensors
# without state launched on raw pointers from a cached plan). Tests (the GD ones this change touches) and memcheck above
# the TIMINGS marker (<= 120 s); then the A/B of the host path, gd_forms' variants (16-bit B operands unsplit) and the
# forward table at 8K (<= 60 s; the timeline script is left for request 2).
#   OUT=... bash benchmarks/device/run_s12b16.sh       (logs in $OUT/s12b16.tgz; summary on stdout)
set -u
NAME=s12b16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + memcheck $(date -u +%T)"
timeout 110 $PT tests/test_cupy_gated_delta.py -k "torch_direct or torch_no_grad or bfloat16_in or half_inputs or stream_moves" \
    > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 110 $PT tests/test_nonfinite.py -k "gated and torch_cuda" > "$OUT/log_tests_nonfinite.txt" 2>&1 &
timeout 110 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then  # gd_forms' stall reasons (per issued instruction): barrier vs shared memory vs latency
  M=smsp__average_warps_issue_stalled
  MET=$(for r in barrier long_scoreboard short_scoreboard mio_throttle math_pipe_throttle wait not_selected lg_throttle \
        no_instruction dispatch_stall branch_resolving membar drain imc_miss tex_throttle selected sleeping misc; do
        printf "%s_%s_per_issue_active.ratio," $M $r; done)
  ( timeout 60 "$NCU" --kernel-name gd_forms --launch-skip 1 --launch-count 1 --section SpeedOfLight --section WarpStateStats \
      --metrics "${MET%,},smsp__inst_executed.sum,smsp__cycles_active.avg,sm__warps_active.avg.pct_of_peak_sustained_active" \
      python3 benchmarks/device/gd_one_call.py > "$OUT/log_ncu.txt" 2>&1
    if grep -q "==ERROR==" "$OUT/log_ncu.txt"; then  # a metric name unknown to this ncu: the section's own details
      timeout 45 "$NCU" --kernel-name gd_forms --launch-skip 1 --launch-count 1 --section WarpStateStats --print-details all \
          python3 benchmarks/device/gd_one_call.py > "$OUT/log_ncu2.txt" 2>&1; fi ) &
fi
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
echo "-- memcheck"; grep -E "ERROR SUMMARY|sanitize ok|direct|Error" "$OUT/log_memcheck.txt" | tail -6
echo "-- ncu"; grep -iE "stall|inst_executed|cycles_active|warps_active|Duration|Warp Cycles Per Issued|==ERROR" "$OUT"/log_ncu*.txt | head -30
# TIMINGS
echo "=== host path A/B 8192 $(date -u +%T)"
timeout 15 python3 benchmarks/device/gd_host_s12b16.py 8192 > "$OUT/log_host.txt" 2>&1; echo "rc=$?"; cat "$OUT/log_host.txt" | grep -E "^T="
echo "=== gd_forms variants 8192 $(date -u +%T)"
timeout 25 python3 benchmarks/device/gd_forms_variants.py 8192 bf16in_chk_lamw,bf16in_chk_lamw_split,bf16in,bf16in_split \
    > "$OUT/log_variants.txt" 2>&1; echo "rc=$?"; grep -E "^T=" "$OUT/log_variants.txt"
echo "=== forward table 8192 $(date -u +%T)"
timeout 20 python3 benchmarks/bench_gpu_gated_delta.py --out "$OUT" --T 8192 --api-max-T 8192 --fla-dtypes bf16 > "$OUT/log_table.txt" 2>&1
echo "rc=$?"; grep -E "^\| |ours|fla" "$OUT/log_table.txt" | tail -8
echo "=== done $(date -u +%T)"
