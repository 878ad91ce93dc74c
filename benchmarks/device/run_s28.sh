#!/usr/bin/env bash
# Session 28, the lead's calls (issue 16):
#   OUT=... bash benchmarks/device/run_s28.sh tests    FORMS_X_SAVED on (R1): the Gated DeltaNet GPU tests in six processes
#                                                      (gd_gpu_tests; test_gpu_training_forms_x_saved among them), each
#                                                      process's GPU memory sampled every 3 s; beside them memcheck /
#                                                      racecheck (gd_forms kernels) / initcheck of gd_train16_small_s28r.py
#                                                      and memcheck of gd_small bf16; then the float32 callers' public step
#                                                      off / on (ab_s28r.py public32 8K / 16K)
#   OUT=... bash benchmarks/device/run_s28.sh tables   test_gpu_training_forms_x_saved alone (its 8292 case without the
#                                                      reference since the first call's OOM), then the tables (gd_tables)
set -u
( NAME=s28_$1; . benchmarks/device/setup.sh
  export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
  . benchmarks/device/gd_gpu_tests.sh
  if [ "$1" = tests ]; then
    ( while sleep 3; do pgrep -f pytest > /dev/null || break; echo "t=$SECONDS"; nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader
        ps -eo pid,args | grep -E "pytest|sanitizer" | grep -v grep | cut -c1-160; done ) > "$OUT/log_gpu_mem.txt" 2>&1 &
    echo "=== tests $(date -u +%T)"
    gd_gpu_tests
    for tool in memcheck racecheck initcheck; do
      F=; [ $tool = racecheck ] && F="--kernel-name kns=gd_forms"
      PYTORCH_CUDA_ALLOC_CONF= timeout 190 compute-sanitizer --tool $tool $F --print-limit 10 python3 benchmarks/device/gd_train16_small_s28r.py > "$OUT/log_${tool}_train16_s28r.txt" 2>&1 &
    done
    PYTORCH_CUDA_ALLOC_CONF= timeout 190 compute-sanitizer --tool memcheck --print-limit 10 python3 benchmarks/device/gd_small.py bf16 > "$OUT/log_memcheck_gd_small.txt" 2>&1 &
    wait
    echo "-- peak GPU MiB per pid:"; awk -F', ' '/MiB/ {m=$2+0; if (m > p[$1]) p[$1] = m} END {for (k in p) print k, p[k]}' "$OUT/log_gpu_mem.txt" | sort -k2 -n | tail -4
    gd_gpu_summary
    for f in "$OUT"/log_*check_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) $(grep -c 'sanitize ok' $f) ok"; grep -iE "hazard|invalid|uninit" $f | head -3 | cut -c1-160; done
    echo "=== float32 step off / on $(date -u +%T)"
    timeout 75 python3 benchmarks/device/ab_s28r.py public32 8192,16384 5 > "$OUT/log_public32.txt" 2>&1; echo "rc=$?"
    grep -E "^T=|^\|" "$OUT/log_public32.txt" | cut -c1-220
  elif [ "$1" = tables ]; then
    timeout 100 $GD_PT tests/test_cupy_gated_delta_tier_grad.py -s -k forms_x_saved > "$OUT/log_t_xsaved.txt" 2>&1; echo "rc=$?"
    grep -E "PASSED|FAILED|^E |on against off:|passed|failed" "$OUT/log_t_xsaved.txt" | cut -c1-220
    gd_tables
  fi )
echo "=== done $(date -u +%T)"
