#!/usr/bin/env bash
# issue 16 / 19, session 14 (branch s14d16), request 2: request 1 measured gd_forms bf16 with the 16-bit tiles (GF_H, 4
# blocks per SM) + ldmatrix at 0.463 ms against main's float32 tiles 0.461, without ldmatrix 0.485; the balanced
# triangular products (GF_BAL) and 3 blocks per SM were cut. Tests of the bf16 path on the default kernel (GF_H +
# GF_LDM + GF_BAL) and with GF_BAL 0 that finish this time (bf16 / f16 only), the direct-path property test (every
# dtype), memcheck with its summary, every variant compiled above the TIMINGS marker
# (<= 100 s); then every variant at 8K with its registers / spills / blocks per SM, the packed GD call's kernels against
# the unpacked call's (where its 1.3x goes: the kept index did not change it), our bf16 forward at 8K (<= 40 s).
#   OUT=... bash benchmarks/device/run_s14d16b.sh       (logs in $OUT/s14d16b.tgz; summary on stdout)
set -u
NAME=s14d16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs --tb=short"
VAR=bf16in_chk_lamw,bf16in_chk_lamw_f32t,bf16in_chk_lamw_nobal,bf16in_chk_lamw_noldm,bf16in_chk_lamw_lb3,bf16in_chk_lamw_f32t_bal,fp32_chk,fp32_chk_bal
echo "=== tests + sanitizers $(date -u +%T)"
timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_bfloat16_in or gpu_half_inputs" > "$OUT/log_tests_half.txt" 2>&1 &
# the same bf16 tests on the 16-bit tiles without the balanced products (GF_BAL 0: the default if request 2 times it faster)
timeout 95 python3 benchmarks/device/pytest_define_s14d16.py GF_BAL=0 -- -q -p no:cacheprovider -rs --tb=short \
    tests/test_cupy_gated_delta.py -k "gpu_bfloat16_in or gpu_half_inputs" > "$OUT/log_tests_half_nobal.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_torch_direct_path" > "$OUT/log_tests_direct.txt" 2>&1 &
timeout 90 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py bf16 > "$OUT/log_memcheck.txt" 2>&1 &
# the variants built by one process each (CuPy's kernel cache on disk: the timed run below loads them)
for v in fp64 ${VAR//,/ }; do
  timeout 95 python3 benchmarks/device/gd_forms_variants.py compile $v > "$OUT/log_build_$v.txt" 2>&1 &
done
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -n 1 "$f"; done
echo "-- memcheck"; grep -E "ERROR SUMMARY|sanitize ok|^bfloat16|Error" "$OUT/log_memcheck.txt" | tail -n 6
echo "-- variants built"; cat "$OUT"/log_build_*.txt | grep -E "^built|rror" | cut -c1-200
# TIMINGS
echo "=== gd_forms variants 8192 $(date -u +%T)"
timeout 12 python3 benchmarks/device/gd_forms_variants.py 8192 $VAR > "$OUT/log_variants.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/log_variants.txt"
echo "=== packed GD vs unpacked, kernels $(date -u +%T)"
OUT="$OUT" timeout 14 python3 benchmarks/device/profile_ek_packed_s12f19.py loglinear_gated_delta --forms=packed_cuda,unpacked \
    --kernels > "$OUT/log_profile_gd.txt" 2>&1; echo "rc=$?"
grep -E "'form'" "$OUT/log_profile_gd.txt" | cut -c1-400
echo "=== forward 8K bf16 $(date -u +%T)"
timeout 12 python3 benchmarks/bench_gpu_gated_delta.py --out "$OUT" --T 8192 --api-max-T 0 --rows ours_bf16 \
    > "$OUT/log_table.txt" 2>&1; echo "rc=$?"; grep -E "^\| |ours" "$OUT/log_table.txt" | tail -n 4
echo "=== done $(date -u +%T)"
