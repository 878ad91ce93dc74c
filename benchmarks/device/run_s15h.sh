#!/usr/bin/env bash
# Session 15, s15h (CI time and module sizes): the split modules on the device. hierarchical.cu's hi_intra now in
# hierarchical_intra.cu, _compile.py's Config / make_config in _config.py (every launched kernel's PTX identical, NOTES).
#   OUT=... bash benchmarks/device/run_s15h.sh tests   the hierarchical GPU tests (forward whole; gradients as far as the cap
#                                                       lets them), hier_small under memcheck, every family's public call
#                                                       (families_s15h.py), the marked half-inputs test, NVRTC time of the
#                                                       backward's module with / without hi_intra; warms the timing's kernels
#   OUT=... bash benchmarks/device/run_s15h.sh times   loglinear_log_attention public calls (hier_split_s15h.py time)
# Results and logs: $OUT/s15h_<mode>.tgz.
set -u
NAME=s15h_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
sum() { for f in "$@"; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' SKIPPED' $f) skipped, $(grep -c ' FAILED' $f) failed; $(tail -1 $f | cut -c1-100)"
        grep -E "^FAILED|^ERROR" $f | head -4 | cut -c1-200; done; }
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  timeout 140 $PT tests/test_cupy_hierarchical.py > "$OUT/log_t_hier.txt" 2>&1 &
  timeout 140 $PT tests/test_cupy_hierarchical_grad.py > "$OUT/log_t_hgrad.txt" 2>&1 &
  timeout 60 $PT tests/test_cupy_gated_delta.py -k half_inputs_read_as_they_are > "$OUT/log_t_half.txt" 2>&1 &
  ( timeout 75 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_memcheck_hier_small.txt" 2>&1
    timeout 60 python3 benchmarks/device/hier_split_s15h.py warm > "$OUT/log_warm.txt" 2>&1; echo "warm rc=$?" >> "$OUT/log_warm.txt" ) &
  ( timeout 100 python3 benchmarks/device/families_s15h.py > "$OUT/log_families.txt" 2>&1; echo "rc=$?" >> "$OUT/log_families.txt"
    timeout 40 python3 benchmarks/device/hier_split_s15h.py compile > "$OUT/log_compile.txt" 2>&1; echo "rc=$?" >> "$OUT/log_compile.txt" ) &
  wait
  sum "$OUT"/log_t_*.txt
  echo "-- memcheck hier_small: $(grep -E 'ERROR SUMMARY' $OUT/log_memcheck_hier_small.txt | tail -1)"
  echo "-- families: $(grep -E '^FAIL|families ok|^rc' $OUT/log_families.txt | tr '\n' ' ' | cut -c1-200)"
  echo "-- warm: $(tail -1 $OUT/log_warm.txt)"; grep -E "module|rc=" "$OUT/log_compile.txt" | cut -c1-100
elif [ "$1" = times ]; then
  echo "=== times $(date -u +%T)"
  timeout 45 python3 benchmarks/device/hier_split_s15h.py time > "$OUT/log_times.txt" 2>&1; echo "rc=$?"
  grep -E "^T=" "$OUT/log_times.txt"
fi
echo "=== done $(date -u +%T)"
