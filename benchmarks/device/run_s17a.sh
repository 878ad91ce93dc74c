#!/usr/bin/env bash
# Session 17, the lead's share of batch 1 (main at c78a78e+): the GPU test groups session 16 could not run (the GD
# gradient file, the cupy backend file, Dask, log_attention's backward half) and the non-finite file (c78a78e's
# _stream_key change is GPU-only), beside the helpers' tests. `times`: nothing.
#   OUT=... bash benchmarks/device/run_s17a.sh tests|times [LIM]     results and logs: $OUT/s17a_<mode>.tgz
set -u
LIM=${2:-105}  # $3: gd (default, batch 4), dask (batch 2: the Dask file alone with tracebacks of a hang) or all (batch 1)
NAME=s17a_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short --durations=10"
[ "$1" = tests ] || { echo "no times"; exit 0; }
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
if [ "${3:-gd}" = gd ]; then  # batch 4: merged main (s17d16's gd_forms / OUT16): the GD jobs s17d16's requests never finished, Dask
  timeout $LIM $PT tests/test_cupy_gated_delta.py -k "gpu_torch_direct_path or gpu_matches_reference" > "$OUT/log_t_gd1.txt" 2>&1 &
  timeout $LIM $PT tests/test_cupy_gated_delta.py -k "gpu_many_levels or gpu_bfloat16_in" > "$OUT/log_t_gd2.txt" 2>&1 &
  timeout $LIM $PT -o faulthandler_timeout=60 tests/test_dask_gpu.py > "$OUT/log_t_dask.txt" 2>&1 &
elif [ "${3:-}" = dask ]; then  # batch 2: Dask alone (stalled in its first loglinear case three times): tracebacks if a test hangs
  timeout $LIM $PT -o faulthandler_timeout=45 tests/test_dask_gpu.py > "$OUT/log_t_dask.txt" 2>&1 &
  timeout $LIM $PT tests/test_cupy_gated_delta_grad.py -k "not gradcheck" > "$OUT/log_t_gdgrad.txt" 2>&1 &
else
timeout $LIM $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_gdgrad.txt" 2>&1 &
timeout $LIM $PT tests/test_cupy_backend.py > "$OUT/log_t_backend.txt" 2>&1 &
timeout $LIM $PT tests/test_dask_gpu.py > "$OUT/log_t_dask.txt" 2>&1 &
timeout $LIM $PT tests/test_cupy_log_attention.py -k "backward or spikes or grad" > "$OUT/log_t_labwd.txt" 2>&1 &
timeout $LIM $PT tests/test_nonfinite.py > "$OUT/log_t_nonfinite.txt" 2>&1 &
fi
wait
for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed, $(grep -c ' SKIPPED' $f) skipped | $(tail -1 $f | cut -c1-120)"
  grep -E "^FAILED|^ERROR" "$f" | head -6 | cut -c1-200; done
grep -hE "^[0-9.]+s (call|setup)" "$OUT"/log_t_dask.txt | head -4; grep -A12 -m2 "Timeout (0" "$OUT"/log_t_dask.txt | cut -c1-160 | head -40
echo "=== done $(date -u +%T)"
