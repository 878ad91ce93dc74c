#!/usr/bin/env bash
# issue 16, session 12 (branch s12b16), second run: the final code (the direct torch path, gd_forms' unsplit 16-bit
# operands; the run also timed an interleaved mma order, reverted after it: its variants are gone). Tests, memcheck and racecheck (gd_forms) above the TIMINGS marker (<= 120 s);
# then the host A/B (with the time to the backend's entry), gd_forms' interleaved mma against the old order, and the
# forward table at 8K (<= 60 s).
#   OUT=... bash benchmarks/device/run_s12b16b.sh       (logs in $OUT/s12b16b.tgz; summary on stdout)
set -u
NAME=s12b16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers $(date -u +%T)"
timeout 110 $PT tests/test_cupy_gated_delta.py -k "torch_direct or torch_no_grad or bfloat16_in or half_inputs or stream_moves" \
    > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 110 $PT tests/test_nonfinite.py -k "gated and torch_cuda" > "$OUT/log_tests_nonfinite.txt" 2>&1 &
timeout 110 python3 -m pytest -q -p no:cacheprovider -rs --tb=short tests/test_cupy_gated_delta.py \
    -k "half_inputs_read_as_they_are or gpu_many_levels" > "$OUT/log_tests_half.txt" 2>&1 &  # (half: not marked gpu)
( timeout 55 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1
  timeout 55 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_forms python3 benchmarks/device/gd_small.py \
      > "$OUT/log_racecheck.txt" 2>&1 ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$f" | tail -3; done
# TIMINGS
echo "=== host path A/B 8192 $(date -u +%T)"
timeout 12 python3 benchmarks/device/gd_host_s12b16.py 8192 > "$OUT/log_host.txt" 2>&1; echo "rc=$?"; grep -E "^T=" "$OUT/log_host.txt"
echo "=== gd_forms variants 8192 $(date -u +%T)"
timeout 18 python3 benchmarks/device/gd_forms_variants.py 8192 bf16in_chk_lamw,bf16in_chk_lamw_split,fp32_chk \
    > "$OUT/log_variants.txt" 2>&1; echo "rc=$?"; grep -E "^T=" "$OUT/log_variants.txt"
echo "=== forward table 8192 $(date -u +%T)"
timeout 35 python3 benchmarks/bench_gpu_gated_delta.py --out "$OUT" --T 8192 --api-max-T 0 --fla-dtypes bf16 > "$OUT/log_table.txt" 2>&1
echo "rc=$?"; grep -E "^\| |ours|fla" "$OUT/log_table.txt" | tail -8
echo "=== done $(date -u +%T)"
