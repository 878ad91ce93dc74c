#!/usr/bin/env bash
# Session 12, branch s12d17 (issue 17: hierarchical bf16 past SDPA at 16K, forward and training), request 2 (the final
# code: the autograd forward at the backward's chunk keeping its slots), one H200. Tests: the 16-bit training
# forward's hypothesis test alone (request 1 cut it), the 16-bit and gradcheck backward tests, the float32 / float64
# backward property test, the forward's 16-bit / tensor-core read tests; memcheck and racecheck of hier_bwd_small.py
# (bf16 training forward included); beside them the kernels compiled for the timings.
# TIMINGS: issue 17's cells at 16K / 32K (hier bf16 fwd, fwd+bwd, SDPA bf16, hier fp32 fwd, the checks from one
# kernel), the forward's kernels (hi_read's first loads batched / -DHI_RPRO=0), torch.profiler of one bf16 fwd+bwd.
#   OUT=... bash benchmarks/device/run_s12d17b.sh      (results and logs: $OUT/s12d17b.tgz)
set -u
NAME=s12d17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 110 $PT tests/test_cupy_hierarchical_grad.py -k "16bit_training_forward" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 110 $PT tests/test_cupy_hierarchical_grad.py -k "gpu_backward_16bit or gradcheck" > "$OUT/log_tests_b.txt" 2>&1 &
timeout 110 $PT tests/test_cupy_hierarchical.py -k "16bit_in_16bit_out or tensor_core_read" > "$OUT/log_tests_c.txt" 2>&1 &
timeout 110 $PT tests/test_cupy_hierarchical_grad.py -k "gpu_backward_matches_reference" > "$OUT/log_tests_d.txt" 2>&1 &
timeout 110 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 110 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py race > "$OUT/log_racecheck.txt" 2>&1 &
timeout 110 python3 benchmarks/device/hier_train_s12d17.py warm 256 "" new,rpro0 > "$OUT/log_warm.txt" 2>&1 &
wait
tail -2 "$OUT/log_warm.txt"
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -1 "$f"; done
for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|^float|^bfloat|Error" "$f" | tail -8; done
# TIMINGS (alone on the GPU)
echo "=== TIMINGS: public calls $(date -u +%T)"
timeout 18 python3 benchmarks/device/hier_train_s12d17.py public 16384,32768 > "$OUT/log_public.txt" 2>&1
echo "rc=$?"; grep -E "ms|hier / SDPA" "$OUT/log_public.txt" | cut -c1-200
echo "=== forward kernels A/B (hi_read's first loads batched / one at a time) $(date -u +%T)"
timeout 20 python3 benchmarks/device/hier_train_s12d17.py kab 16384 new rpro0 > "$OUT/log_kab.txt" 2>&1
echo "rc=$?"; grep -E "^new|^rpro0|^T=" "$OUT/log_kab.txt" | cut -c1-220
echo "=== profile bf16 fwd, fwd+bwd 16K $(date -u +%T)"
timeout 12 python3 benchmarks/device/hier_train_s12d17.py profile 16384 > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -vE "^-+$" "$OUT/log_profile.txt" | grep -A22 "=== fwd+bwd" | cut -c1-200
echo "=== done $(date -u +%T)"
