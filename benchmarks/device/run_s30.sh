#!/usr/bin/env bash
# Session 30, the lead's calls:
#   OUT=... bash benchmarks/device/run_s30.sh hier [OLD]   the hierarchical backward's float32 range fix (hib_blocks' joint
#       shifts, hib_dq's held-slot row shifts): its GPU tests (test_cupy_hierarchical{,_grad}.py -m gpu), memcheck /
#       initcheck / racecheck of hier_bwd_small.py, then bench_gpu_hierarchical.py train at 8K / 32K on this tree and on
#       OLD (a tree of the commit before, unpacked beside it: the A/B of the kernels' time)
set -u
( NAME=s30_$1; . benchmarks/device/setup.sh
  export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
  PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
  if [ "$1" = hier ]; then
    echo "=== tests $(date -u +%T)"
    timeout 280 $PT tests/test_cupy_hierarchical_grad.py > "$OUT/log_t_hier_grad.txt" 2>&1 &
    timeout 280 $PT tests/test_cupy_hierarchical.py > "$OUT/log_t_hier.txt" 2>&1 &
    for tool in memcheck initcheck racecheck; do
      A=; [ $tool = racecheck ] && A=race
      ( PYTORCH_CUDA_ALLOC_CONF= timeout 280 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/hier_bwd_small.py $A > "$OUT/log_${tool}.txt" 2>&1; echo "rc=$?" >> "$OUT/log_${tool}.txt" ) &
    done
    wait
    for f in "$OUT"/log_t_*.txt; do
      echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"
      grep -E "^FAILED" $f | head -5 | cut -c1-200; tail -n 1 $f | cut -c1-160
    done
    for f in "$OUT"/log_*check.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1), $(grep -c 'sanitize ok' $f) ok, $(tail -n 1 $f)"; grep -iE "error|hazard|uninit" $f | grep -vE "ERROR SUMMARY|RACECHECK SUMMARY" | head -3 | cut -c1-160; done
    for tree in new old; do
      D=$PWD; [ $tree = old ] && D=${2:-}
      [ -n "$D" ] || continue
      echo "=== train $tree $(date -u +%T)"
      ( cd "$D" && PYTHONPATH=/tmp/site:$D timeout 150 python3 benchmarks/bench_gpu_hierarchical.py train --T 8192,32768 --api-max 0 --out "$OUT/train_$tree" ) > "$OUT/log_train_$tree.txt" 2>&1; echo "rc=$?"
      grep -E "^T=|ours|hib_|slots" "$OUT/log_train_$tree.txt" | cut -c1-200 | head -40
    done
  fi )
echo "=== done $(date -u +%T)"
