#!/usr/bin/env bash
# issue 17, branch s12e17 (one H200). Tests first (concurrent with other helpers'; the float64 quadratic references
# only at the selected cases: log_attention, the exp-kernel forward, packed streams, training, the checks), with a
# warm-up compiling every kernel the timings use; then TIMINGS, alone on the GPU:
#   request 1 (no argument): where bf16 log_attention's time goes against exp_kernel_attention (torch.profiler per
#     kernel, fwd and fwd+bwd, 8K / 16K / 32K) and the prologue's checks, FOREACH against KERNEL (latency,
#     pipelined, host, the checks' device time; T = 128 and 8K, all five operators);
#   request 2 (`final`): issue 17's 1.2x pair (bench_gpu_hierarchical.py table --ops ek,la: exp_kernel_attention and
#     log_attention interleaved, bf16 and fp32, fwd and fwd+bwd, 2K-64K), then the checks' default against the
#     per-array reductions.
#   OUT=... bash benchmarks/device/run_s12e17.sh [final]     (results and logs: $OUT/s12e17[final].tgz)
set -u
MODE=${1:-}
NAME=s12e17$MODE; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 110 $PT tests/test_cupy_log_attention.py -k "bf16 or late_spikes or half_precision or noncausal or stream_decode" > "$OUT/t_log.txt" 2>&1 &
timeout 110 $PT tests/test_nonfinite.py -k "kernel or one_read or checks_waited or empty_calls or zero_weight_rows_gpu" > "$OUT/t_nonfinite.txt" 2>&1 &
timeout 110 $PT tests/test_cupy_backend.py -k "exp and (bfloat16 or grouped or stream or extreme)" > "$OUT/t_cupy.txt" 2>&1 &
timeout 110 $PT tests/test_training.py -k "log_attention or exp_kernel" > "$OUT/t_training.txt" 2>&1 &
timeout 110 $PT tests/test_cupy_packed_ek.py -k "gpu_packed_segments or bfloat16_tensor_cores or gradients_equal" > "$OUT/t_packed.txt" 2>&1 &
timeout 110 python3 benchmarks/device/ek_log_s12e17.py warm > "$OUT/warm.txt" 2>&1 &
wait
for f in t_log t_nonfinite t_cupy t_training t_packed warm; do echo "-- $f: $(tail -1 "$OUT/$f.txt" | cut -c1-200)"; grep -E "^FAILED|^ERROR|^E  |fails" "$OUT/$f.txt" | head -8 | cut -c1-240; done
# TIMINGS (alone on the GPU, <= 60 s)
if [ "$MODE" = final ]; then
  echo "=== issue 17's 1.2x pair, interleaved $(date -u +%T)"
  timeout 36 python3 benchmarks/bench_gpu_hierarchical.py table --ops ek,la --out "$OUT/table" > "$OUT/table.txt" 2>&1; echo "rc=$?"
  grep -E "fails|^\|" "$OUT/table.txt" | cut -c1-160 | head -40
  CT=22
else
  echo "=== profile: exp vs log bf16, fwd and fwd+bwd, per kernel $(date -u +%T)"
  timeout 28 python3 benchmarks/device/ek_log_s12e17.py profile 8192 16384 32768 > "$OUT/profile.txt" 2>&1; echo "rc=$?"
  cut -c1-150 "$OUT/profile.txt" | head -130
  CT=30
fi
echo "=== checks by mode, T = 128 and 8K, five operators $(date -u +%T)"
timeout $CT python3 benchmarks/device/ek_log_s12e17.py checks 128 8192 > "$OUT/checks.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/checks.txt" | cut -c1-160
echo "=== done $(date -u +%T)"
