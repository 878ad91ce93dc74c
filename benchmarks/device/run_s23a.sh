#!/usr/bin/env bash
# Session 23, s23a (issue 16): the host's time before gd_forms' launch in a public Gated DeltaNet forward on CUDA torch
# tensors (host code only: the prologue's plan key, the direct path's order, the 16-bit output allocated after gd_forms'
# launch, _rawlaunch through CuPy's driver.launchKernel). No kernel changed.
#   OUT=... bash benchmarks/device/run_s23a.sh tests   (<= 150 s, beside other helpers: the GPU tests of the gated delta
#                                                       forward, dispatch, its non-finite checks, and the hierarchical
#                                                       paths that launch through _rawlaunch)
#   OUT=... bash benchmarks/device/run_s23a.sh times   (<= 120 s, alone: host stamps and latency of main's host code
#                                                       (benchmarks/device/s23a_base: main's three changed files over a
#                                                       copy of this tree) and of this branch's, alternated in separate
#                                                       processes, then the forward table's ours_bf16 rows)
set -u
NAME=s23a_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
echo "=== $1 $(date -u +%T)"
if [ "$1" = tests ]; then
  K="s16_bound or two_tier or tier3 or fork or direct_output"
  timeout 140 $PT tests/test_cupy_gated_delta.py -k "$K" > "$OUT/log_gd1.txt" 2>&1 &
  timeout 140 $PT tests/test_cupy_gated_delta.py -k "not ($K)" > "$OUT/log_gd2.txt" 2>&1 &
  timeout 140 $PT tests/test_gpu_dispatch.py > "$OUT/log_dispatch.txt" 2>&1 &
  timeout 140 $PT tests/test_nonfinite.py -k "gated or side_stream" > "$OUT/log_nonfinite.txt" 2>&1 &
  timeout 140 $PT tests/test_cupy_hierarchical.py tests/test_cupy_hierarchical_grad.py \
      -k "16bit_in_16bit_out or bf16_intra or 16bit_training_forward" > "$OUT/log_hier.txt" 2>&1 &
  wait
  for f in gd1 gd2 dispatch nonfinite hier; do
    echo "-- $f: $(tail -1 $OUT/log_$f.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_$f.txt | head -8 | cut -c1-220
  done
else
  B=/tmp/s23a_base; rm -rf $B; mkdir -p $B
  cp -r lsattn benchmarks $B/
  cp $D/s23a_base/_prologue.py $B/lsattn/; cp $D/s23a_base/gated_delta.py $D/s23a_base/_rawlaunch.py $B/lsattn/backends/cupy/
  t=35  # (the first process loads the kernels: compiled by the tests' run, else here)
  for r in 1 2; do
    for which in main s23a; do
      dir=$PWD; [ $which = main ] && dir=$B
      ( cd $dir && timeout $t python3 $D/gd_host_s16a16.py 8192,32768 bf16 20 ) > "$OUT/log_host_${which}_$r.txt" 2>&1
      echo "-- $which round $r rc=$?"; t=18; grep -E "tiny|latency|to gd_forms|host stamps" "$OUT/log_host_${which}_$r.txt" | cut -c1-230
    done
  done
  mkdir -p "$OUT/gd"
  timeout 28 python3 benchmarks/bench_gpu_gated_delta.py --T 8192,32768 --rows ours_bf16 --out "$OUT/gd" > "$OUT/log_gd.txt" 2>&1
  echo "-- table rc=$?"; grep -E "^\|" "$OUT/log_gd.txt" | cut -c1-200
fi
echo "=== done $(date -u +%T)"
