# Sourced by the lead's device scripts (run_s25.sh, run_s27.sh) after setup.sh: the Gated DeltaNet GPU tests in six
# pytest processes beside one another (gd_gpu_tests: launched in the background, `wait` for them) and their summary
# lines (gd_gpu_summary: passed / failed counts, the failures, pytest's last line), logs $OUT/log_t_*.txt.
GD_PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
GD_K="s16_bound or two_tier or tier3 or fork or direct_output"

gd_gpu_tests() {
  timeout 200 $GD_PT tests/test_cupy_gated_delta.py -k "$GD_K" > "$OUT/log_t_gd1.txt" 2>&1 &
  timeout 200 $GD_PT tests/test_cupy_gated_delta.py -k "not ($GD_K)" > "$OUT/log_t_gd2.txt" 2>&1 &
  timeout 200 $GD_PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_gdgrad.txt" 2>&1 &
  timeout 200 $GD_PT tests/test_cupy_gated_delta_tier_bwd.py tests/test_cupy_gated_delta_tier_grad.py > "$OUT/log_t_tierbwd.txt" 2>&1 &
  timeout 200 $GD_PT tests/test_nonfinite.py tests/test_gpu_dispatch.py -k "gated or side_stream or dispatch" \
      > "$OUT/log_t_nonfinite_dispatch.txt" 2>&1 &
  timeout 200 $GD_PT tests/test_cupy_hierarchical.py tests/test_cupy_hierarchical_grad.py \
      -k "16bit_in_16bit_out or bf16_intra or 16bit_training_forward" > "$OUT/log_t_hier.txt" 2>&1 &
}

gd_gpu_summary() {
  for f in "$OUT"/log_t_*.txt; do
    echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"
    grep -E "^FAILED" $f | head -5 | cut -c1-200; tail -n 1 $f | cut -c1-160
  done
}
