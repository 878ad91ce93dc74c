#!/usr/bin/env bash
# Session 17, the lead's first call on main (c78a78e+): the GPU test groups session 16 could not run (the GD gradient
# file, the cupy backend file, Dask, log_attention's backward half), the non-finite file (c78a78e's _stream_key change
# is GPU-only), then alone: GF_ASPLIT / GF_OSPLIT timed (s16a16's timing builds), the GD forward per kernel at 8K / 32K,
# the hierarchical training step per kernel (bf16 16K, fp32 8K).
#   OUT=... bash benchmarks/device/run_s17a.sh [LIM]     results and logs: $OUT/s17a.tgz
set -u
LIM=${1:-150}
NAME=s17a; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short --durations=15"
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout $LIM $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_gdgrad.txt" 2>&1 &
timeout $LIM $PT tests/test_cupy_backend.py > "$OUT/log_t_backend.txt" 2>&1 &
timeout $LIM $PT tests/test_dask_gpu.py > "$OUT/log_t_dask.txt" 2>&1 &
timeout $LIM $PT tests/test_cupy_log_attention.py -k "backward or spikes or grad" > "$OUT/log_t_labwd.txt" 2>&1 &
timeout $LIM $PT tests/test_nonfinite.py > "$OUT/log_t_nonfinite.txt" 2>&1 &
( timeout $LIM python3 $D/gd_forms_variants.py compile bf16in_chk_lamw,bf16in_chk_lamw_as1_os1,fp32_chk > "$OUT/log_build.txt" 2>&1
  timeout 60 python3 $D/gd_forms_variants.py compile fp32_chk_os1,bf16in_chk_lamw_as1,bf16in_chk_lamw_os1 > "$OUT/log_build2.txt" 2>&1 ) &
timeout $LIM python3 $D/hier_step_s16d17.py warm > "$OUT/log_warm_hier.txt" 2>&1 &
timeout $LIM python3 $D/gd_timeline.py 2048 bf16,fp32 nochecks > "$OUT/log_warm_gd.txt" 2>&1 &
wait
for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed, $(grep -c ' SKIPPED' $f) skipped | $(tail -1 $f | cut -c1-120)"
  grep -E "^FAILED|^ERROR" "$f" | head -6 | cut -c1-200; done
grep -hE "^[0-9.]+s call" "$OUT"/log_t_dask.txt | head -5
echo "=== times $(date -u +%T)"
ROUNDS=9 timeout 40 python3 $D/gd_forms_variants.py 8192 bf16in_chk_lamw,bf16in_chk_lamw_as1_os1,fp32_chk,fp32_chk_os1,bf16in_chk_lamw_as1,bf16in_chk_lamw_os1 > "$OUT/log_forms.txt" 2>&1; echo "forms rc=$?"
grep -E "^T=" "$OUT/log_forms.txt" | sed -E 's/   regs.*//' | cut -c1-230
timeout 60 python3 $D/gd_timeline.py 8192,32768 bf16,fp32 nochecks > "$OUT/log_gd_timeline.txt" 2>&1; echo "gd timeline rc=$?"
grep -vE "^ *$" "$OUT/log_gd_timeline.txt" | grep -vE "^ +[0-9]+ +[0-9]+ " | head -90 | cut -c1-160
timeout 120 python3 $D/hier_step_s16d17.py times bf16:16384 fp32:8192 --no-spans > "$OUT/log_hier_step.txt" 2>&1; echo "hier step rc=$?"
grep -vE "^ *$" "$OUT/log_hier_step.txt" | head -120 | cut -c1-180
echo "=== done $(date -u +%T)"
