#!/usr/bin/env bash
# issue 16 / 19, session 14 (branch s14d16), request 1. gd_forms with Q, K, V as 16-bit tiles for bf16 inputs (GF_H:
# 55 KB, 4 blocks per SM; B operands of K / V by ldmatrix, GF_LDM; triangular products balanced over the warps, GF_BAL);
# the packed rewrite's device index kept per layout
# (GD, hierarchical).
# Tests (<= 100 s): the GD bf16 / half / reference / direct-path GPU tests, the packed rewrite tests, memcheck and
# racecheck (gd_forms) of the bf16 calls of gd_small.py, the variants' and the varlen bench's compilation (small sizes).
# TIMINGS (<= 40 s): gd_forms at 8K, 16-bit tiles vs main's float32 tiles (GF_H16 0) vs single B loads (GF_LDM 0) vs
# unbalanced triangular products (GF_BAL 0) vs 3 blocks per SM; bench_varlen_gpu
# for GD and hierarchical with the index uploaded per call (as main) and kept (this branch).
#   OUT=... bash benchmarks/device/run_s14d16.sh       (logs in $OUT/s14d16.tgz; summary on stdout)
set -u
NAME=s14d16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs --tb=short -m gpu"
VAR=bf16in_chk_lamw,bf16in_chk_lamw_f32t,bf16in_chk_lamw_noldm,bf16in_chk_lamw_nobal,bf16in_chk_lamw_lb3
OPS="--ops loglinear_gated_delta loglinear_log_attention --no-memory"
echo "=== tests + sanitizers $(date -u +%T)"
# (test_gpu_half_inputs_read_as_they_are has no gpu mark: selected by name, without -m gpu)
timeout 95 ${PT% -m gpu} tests/test_cupy_gated_delta.py -k "gpu_bfloat16 or gpu_half_inputs or gpu_matches_reference" \
    > "$OUT/log_tests_gd.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_gated_delta.py -k "torch_direct_path" > "$OUT/log_tests_direct.txt" 2>&1 &
timeout 95 $PT tests/test_varlen.py -k "rewrite_on_the_cupy or device_offsets" > "$OUT/log_tests_varlen.txt" 2>&1 &
( timeout 50 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py bf16 > "$OUT/log_memcheck.txt" 2>&1
  timeout 40 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_forms python3 benchmarks/device/gd_small.py bf16 \
      > "$OUT/log_racecheck.txt" 2>&1 ) &
( timeout 60 python3 benchmarks/device/gd_forms_variants.py 256 $VAR > "$OUT/log_variants_256.txt" 2>&1
  timeout 30 python3 benchmarks/device/varlen_ab_s14d16.py new $OPS --total 4096 --out "$OUT/warm" > "$OUT/log_varlen_warm.txt" 2>&1 ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|^bfloat16|Error" "$f" | tail -6; done
echo "-- variants 256"; grep -E "^T=" "$OUT/log_variants_256.txt"
echo "-- varlen warm"; tail -3 "$OUT/log_varlen_warm.txt"
# TIMINGS
echo "=== gd_forms variants 8192 $(date -u +%T)"
timeout 12 python3 benchmarks/device/gd_forms_variants.py 8192 $VAR > "$OUT/log_variants.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/log_variants.txt"
for m in old new; do
  echo "=== varlen $m $(date -u +%T)"
  timeout 14 python3 benchmarks/device/varlen_ab_s14d16.py $m $OPS --out "$OUT/varlen_$m" > "$OUT/log_varlen_$m.txt" 2>&1; echo "rc=$?"
  grep -E "^\| loglinear|'op'" "$OUT/log_varlen_$m.txt" | cut -c1-400
done
echo "=== done $(date -u +%T)"
