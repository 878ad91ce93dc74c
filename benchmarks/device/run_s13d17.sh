#!/usr/bin/env bash
# Session 13, branch s13d17 (issue 17: hierarchical bf16 training past SDPA at 16K), request 1: the backward's
# elementwise prologue folded into its kernels (16-bit inputs read as they are, masks / delta / decay row sums in
# the kernels). Tests: the 16-bit and gradcheck backward tests, the 16-bit training forward's hypothesis test, the
# float32 / float64 backward property test; memcheck and racecheck of hier_bwd_small.py; beside them the kernels
# compiled for the timings.
# TIMINGS: bf16 fwd+bwd at 16K / 32K, the training chunk 32 (default) and 64, hib_blocks without its prefetch
# (-DHIB_PF=0), SDPA, interleaved; torch.profiler of one
# bf16 fwd+bwd at 16K (CUDA time per kernel).
#   OUT=... bash benchmarks/device/run_s13d17.sh      (results and logs: $OUT/s13d17.tgz)
set -u
NAME=${NAME:-s13d17}; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 100 $PT tests/test_cupy_hierarchical_grad.py -k "gpu_backward_16bit or gradcheck" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 100 $PT tests/test_cupy_hierarchical_grad.py -k "16bit_training_forward" > "$OUT/log_tests_b.txt" 2>&1 &
timeout 100 $PT tests/test_cupy_hierarchical_grad.py -k "gpu_backward_matches_reference" > "$OUT/log_tests_c.txt" 2>&1 &
timeout 100 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 100 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py race > "$OUT/log_racecheck.txt" 2>&1 &
timeout 100 python3 benchmarks/device/hier_bwd_s13d17.py warm 256 32:new,64:new,32:pf0 > "$OUT/log_warm.txt" 2>&1 &
wait
tail -2 "$OUT/log_warm.txt"
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -1 "$f"; done
for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|^float|^bfloat|Error" "$f" | tail -8; done
# TIMINGS (alone on the GPU)
echo "=== TIMINGS: bf16 fwd+bwd, training chunk 32 / 64, SDPA (interleaved) $(date -u +%T)"
timeout 24 python3 benchmarks/device/hier_bwd_s13d17.py train 16384,32768 32:new,64:new,32:pf0 > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; grep -E "^T=|Error" "$OUT/log_train.txt" | cut -c1-220
echo "=== profile bf16 fwd+bwd 16K $(date -u +%T)"
timeout 13 python3 benchmarks/device/hier_train_s12d17.py profile 16384 > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -vE "^-+$" "$OUT/log_profile.txt" | grep -A24 "=== fwd+bwd" | cut -c1-200
echo "=== done $(date -u +%T)"
