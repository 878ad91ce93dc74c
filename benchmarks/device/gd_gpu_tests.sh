# Sourced by the lead's device scripts (run_s25.sh, run_s27.sh) after setup.sh: the Gated DeltaNet GPU tests in six
# pytest processes beside one another (gd_gpu_tests: launched in the background, `wait` for them) and their summary
# lines (gd_gpu_summary: passed / failed counts, the failures, pytest's last line), logs $OUT/log_t_*.txt; the tables (gd_tables).
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

# The Gated DeltaNet tables (public calls beside the peers in one process): fwd+bwd at 8K-32K (ours bf16, fla's GDN
# with its Hopper guard lifted, fla's log-linear Mamba-2, SDPA) into $OUT/gd_train, the forward at 2K-32K into $OUT/gd.
gd_tables() {
  mkdir -p "$OUT/gd" "$OUT/gd_train"
  echo "=== gated delta fwd+bwd $(date -u +%T)"
  timeout 230 python3 benchmarks/bench_gpu_gated_delta.py --train --T 8192,16384,32768 \
      --rows ours_bf16,fla_lifted,fla_ll,sdpa --out "$OUT/gd_train" > "$OUT/log_gd_train.txt" 2>&1; echo "rc=$?"
  grep -E "^\||fails" "$OUT/log_gd_train.txt" | cut -c1-220
  echo "=== gated delta fwd $(date -u +%T)"
  timeout 120 python3 benchmarks/bench_gpu_gated_delta.py --T 2048,8192,16384,32768 --api-max-T 32768 --fla-dtypes bf16 \
      --out "$OUT/gd" > "$OUT/log_gd.txt" 2>&1; echo "rc=$?"
  grep -E "^\|" "$OUT/log_gd.txt" | cut -c1-220
}
