#!/usr/bin/env bash
# Session 29, the lead's calls on the merged branch (main + s29a TIER_BWD_STORES + s29b TRAIN_OUT16 + the host's
# _torch_view / reshape), issue 16:
#   OUT=... bash benchmarks/device/run_s29m.sh tests    the Gated DeltaNet GPU tests in seven processes (the tier files
#                                                      apart: both helpers added to them), each process's GPU memory
#                                                      sampled; beside them memcheck / initcheck of
#                                                      gd_train16_small_s29a.py and memcheck / initcheck / racecheck (K1,
#                                                      K4) of gd_train16_small_s29b.py; then ab_s29a.py public and
#                                                      ab_s29b.py public (each switch off / on with the other on, 8K-32K,
#                                                      5 rounds) and host_train_s29.py (latency / pipelined / host)
#   OUT=... bash benchmarks/device/run_s29m.sh tables   the tables (gd_tables), then host_train_s29.py
set -u
( NAME=s29m_$1; . benchmarks/device/setup.sh
  export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
  . benchmarks/device/gd_gpu_tests.sh
  if [ "$1" = tests ]; then
    ( while sleep 3; do pgrep -f pytest > /dev/null || break; echo "t=$SECONDS"; nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader; done ) > "$OUT/log_gpu_mem.txt" 2>&1 &
    echo "=== tests $(date -u +%T)"
    timeout 230 $GD_PT tests/test_cupy_gated_delta.py -k "$GD_K" > "$OUT/log_t_gd1.txt" 2>&1 &
    timeout 230 $GD_PT tests/test_cupy_gated_delta.py -k "not ($GD_K)" > "$OUT/log_t_gd2.txt" 2>&1 &
    timeout 230 $GD_PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_gdgrad.txt" 2>&1 &
    timeout 230 $GD_PT -s tests/test_cupy_gated_delta_tier_bwd.py > "$OUT/log_t_tierbwd.txt" 2>&1 &
    timeout 230 $GD_PT -s tests/test_cupy_gated_delta_tier_grad.py > "$OUT/log_t_tiergrad.txt" 2>&1 &
    timeout 230 $GD_PT tests/test_nonfinite.py tests/test_gpu_dispatch.py -k "gated or side_stream or dispatch" \
        > "$OUT/log_t_nonfinite_dispatch.txt" 2>&1 &
    timeout 230 $GD_PT tests/test_cupy_hierarchical.py tests/test_cupy_hierarchical_grad.py \
        -k "16bit_in_16bit_out or bf16_intra or 16bit_training_forward" > "$OUT/log_t_hier.txt" 2>&1 &
    for tool in memcheck initcheck; do
      ( PYTORCH_CUDA_ALLOC_CONF= timeout 220 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/gd_train16_small_s29a.py > "$OUT/log_${tool}_s29a.txt" 2>&1; echo "rc=$?" >> "$OUT/log_${tool}_s29a.txt" ) &
    done
    for tool in memcheck initcheck racecheck; do
      F=; [ $tool = racecheck ] && F="--kernel-name kns=gd_tier"
      ( PYTORCH_CUDA_ALLOC_CONF= timeout 220 compute-sanitizer --tool $tool $F --print-limit 10 python3 benchmarks/device/gd_train16_small_s29b.py > "$OUT/log_${tool}_s29b.txt" 2>&1; echo "rc=$?" >> "$OUT/log_${tool}_s29b.txt" ) &
    done
    wait
    echo "-- peak GPU MiB per pid:"; awk -F', ' '/MiB/ {m=$2+0; if (m > p[$1]) p[$1] = m} END {for (k in p) print k, p[k]}' "$OUT/log_gpu_mem.txt" | sort -k2 -n | tail -3
    gd_gpu_summary
    grep -hE "TIER_BWD_STORES=|TRAIN_OUT16=|on against off" "$OUT"/log_t_tier*.txt | cut -c1-200 | head -12
    for f in "$OUT"/log_*check_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1), $(grep -c 'sanitize ok' $f) ok, $(tail -n 1 $f)"; grep -iE "error|hazard|uninit" $f | grep -vE "ERROR SUMMARY|RACECHECK SUMMARY" | head -3 | cut -c1-160; done
    echo "=== ab_s29a public $(date -u +%T)"
    timeout 150 python3 benchmarks/device/ab_s29a.py public 8192,16384,32768 5 > "$OUT/log_ab_s29a.txt" 2>&1; echo "rc=$?"
    grep -E "^T=|^\|" "$OUT/log_ab_s29a.txt" | cut -c1-260
    echo "=== ab_s29b public $(date -u +%T)"
    timeout 120 python3 benchmarks/device/ab_s29b.py public 8192,16384,32768 5 bf16 > "$OUT/log_ab_s29b.txt" 2>&1; echo "rc=$?"
    grep -E "^T=|^\|" "$OUT/log_ab_s29b.txt" | cut -c1-260
    echo "=== host $(date -u +%T)"
    timeout 60 python3 benchmarks/device/host_train_s29.py 32768,16384,8192 > "$OUT/log_host_train.txt" 2>&1; echo "rc=$?"
    grep -E "^====|returned" "$OUT/log_host_train.txt" | cut -c1-200
  elif [ "$1" = tables ]; then
    gd_tables
    timeout 60 python3 benchmarks/device/host_train_s29.py 32768,16384,8192 > "$OUT/log_host_train.txt" 2>&1; echo "rc=$?"
    grep -E "^====|returned" "$OUT/log_host_train.txt" | cut -c1-200
  fi )
echo "=== done $(date -u +%T)"
