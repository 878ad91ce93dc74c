#!/usr/bin/env bash
# Session 30, the lead's calls:
#   OUT=... bash benchmarks/device/run_s30.sh hier [OLD]   the hierarchical backward's float32 range fix (hib_blocks' joint
#       shifts, hib_dq's held-slot row shifts): its GPU tests (test_cupy_hierarchical{,_grad}.py -m gpu), memcheck /
#       initcheck / racecheck of hier_bwd_small.py, then bench_gpu_hierarchical.py train at 8K / 32K on this tree and on
#       OLD (a tree of the commit before, unpacked beside it: the A/B of the kernels' time)
#   OUT=... bash benchmarks/device/run_s30.sh b [OLD]   the hierarchical GPU tests again (hib_blocks' second form, hib_dq's
#       shifts without a per-slot reduction) beside the Gated DeltaNet training tests (TRAIN_DIRECT on by default; its
#       on / off test), sanitizers (hier_bwd_small.py; gd_train16_small_s29b.py's memcheck / initcheck), the hierarchical
#       A/B against OLD, ab_s30.py public (TRAIN_DIRECT off / on) and host_train_s29.py
#   OUT=... bash benchmarks/device/run_s30.sh c [OLD]   hib_dq's n from the slot's buffer: the hierarchical grad GPU tests,
#       memcheck, the mended forms_x_saved test and train_direct's, the hierarchical A/B against OLD
#   OUT=... bash benchmarks/device/run_s30.sh d [OLD]   c without the Gated DeltaNet tests, with racecheck (hib_blocks' third form)
set -u
( NAME=s30_$1; . benchmarks/device/setup.sh
  export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
  PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
  sanitize() {  # sanitize TOOL SCRIPT [ARG]: compute-sanitizer in the background, log $OUT/log_TOOL_<script>.txt
    local log="$OUT/log_${1}_$(basename $2 .py).txt"
    ( PYTORCH_CUDA_ALLOC_CONF= timeout 280 compute-sanitizer --tool $1 --print-limit 10 python3 $2 ${3:-} > "$log" 2>&1; echo "rc=$?" >> "$log" ) &
  }
  summary() {  # the tests' passed / failed counts and the sanitizers' summaries
    for f in "$OUT"/log_t_*.txt; do
      echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"
      grep -E "^FAILED" $f | head -5 | cut -c1-200; tail -n 1 $f | cut -c1-160
    done
    for f in "$OUT"/log_*check_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1), $(grep -c 'sanitize ok' $f) ok, $(tail -n 1 $f)"; grep -iE "error|hazard|uninit" $f | grep -vE "ERROR SUMMARY|RACECHECK SUMMARY" | head -3 | cut -c1-160; done
  }
  hier_ab() {  # hier_ab [OLD]: bench_gpu_hierarchical.py train at 8K / 32K on this tree, then on OLD
    for tree in new old; do
      D=$PWD; [ $tree = old ] && D=${1:-}
      [ -n "$D" ] || continue
      echo "=== hier train $tree $(date -u +%T)"
      ( cd "$D" && PYTHONPATH=/tmp/site:$D timeout 150 python3 benchmarks/bench_gpu_hierarchical.py train --T 8192,32768 --api-max 0 --out "$OUT/train_$tree" ) > "$OUT/log_train_$tree.txt" 2>&1; echo "rc=$?"
      grep -E "^T=|ours|hib_|slots" "$OUT/log_train_$tree.txt" | cut -c1-200 | head -40
    done
  }
  H=benchmarks/device/hier_bwd_small.py
  if [ "$1" = hier ]; then
    echo "=== tests $(date -u +%T)"
    timeout 280 $PT tests/test_cupy_hierarchical_grad.py > "$OUT/log_t_hier_grad.txt" 2>&1 &
    timeout 280 $PT tests/test_cupy_hierarchical.py > "$OUT/log_t_hier.txt" 2>&1 &
    sanitize memcheck $H; sanitize initcheck $H; sanitize racecheck $H race
    wait
    summary
    hier_ab "${2:-}"
  elif [ "$1" = b ]; then  # the GPU tests of both changes beside each other, sanitizers, then the A/Bs and host spans
    echo "=== tests $(date -u +%T)"
    timeout 280 $PT tests/test_cupy_hierarchical_grad.py tests/test_cupy_hierarchical.py > "$OUT/log_t_hier.txt" 2>&1 &
    timeout 280 $PT -s tests/test_cupy_gated_delta_tier_grad.py > "$OUT/log_t_tiergrad.txt" 2>&1 &
    timeout 280 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_gdgrad.txt" 2>&1 &
    timeout 280 $PT tests/test_nonfinite.py tests/test_gpu_dispatch.py -k "gated or side_stream or dispatch" \
        > "$OUT/log_t_nonfinite_dispatch.txt" 2>&1 &
    sanitize memcheck $H; sanitize initcheck $H; sanitize racecheck $H race
    sanitize memcheck benchmarks/device/gd_train16_small_s29b.py; sanitize initcheck benchmarks/device/gd_train16_small_s29b.py
    wait
    summary
    grep -hE "TRAIN_DIRECT" "$OUT"/log_t_tiergrad.txt | cut -c1-200 | head -12
    hier_ab "${2:-}"
    echo "=== ab_s30 public $(date -u +%T)"
    timeout 200 python3 benchmarks/device/ab_s30.py public 8192,16384,32768 5 > "$OUT/log_ab_s30.txt" 2>&1; echo "rc=$?"
    grep -E "^T=.*median|^\|" "$OUT/log_ab_s30.txt" | cut -c1-260
    echo "=== host $(date -u +%T)"
    timeout 60 python3 benchmarks/device/host_train_s29.py 32768,16384,8192 > "$OUT/log_host_train.txt" 2>&1; echo "rc=$?"
    grep -E "^====|returned" "$OUT/log_host_train.txt" | cut -c1-200
  elif [ "$1" = c ] || [ "$1" = d ]; then  # hib_dq's n from the slot's buffer (d: hib_blocks' third form, racecheck too)
    echo "=== tests $(date -u +%T)"
    timeout 280 $PT tests/test_cupy_hierarchical_grad.py > "$OUT/log_t_hier.txt" 2>&1 &
    [ "$1" = c ] && timeout 280 $PT -s tests/test_cupy_gated_delta_tier_grad.py -k "forms_x_saved or train_direct" > "$OUT/log_t_tiergrad.txt" 2>&1 &
    sanitize memcheck $H
    [ "$1" = d ] && sanitize racecheck $H race
    wait
    summary
    hier_ab "${2:-}"
  elif [ "$1" = tables ]; then
    . benchmarks/device/gd_gpu_tests.sh
    gd_tables
  fi )
echo "=== done $(date -u +%T)"
