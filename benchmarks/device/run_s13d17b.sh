#!/usr/bin/env bash
# Session 13, branch s13d17 (issue 17), request 2 (the final code): hib_blocks masks g by its own -o tile (one load
# of o per element instead of two), the backward's kernels on bf16 inputs against the same kernels on float32 copies.
# Tests: the 16-bit backward and gradcheck tests, the 16-bit training forward's hypothesis test, memcheck of
# hier_bwd_small.py (bf16 training case included); beside them the kernels compiled for the timings.
# TIMINGS: the backward's kernels at 16K on bf16 inputs / float32 copies, with and without hib_blocks' prefetch
# (-DHIB_PF=0); bf16 fwd+bwd at 16K / 32K against SDPA, interleaved; torch.profiler of one bf16 fwd+bwd at 16K.
#   OUT=... bash benchmarks/device/run_s13d17b.sh      (results and logs: $OUT/s13d17b.tgz)
set -u
NAME=s13d17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 100 $PT tests/test_cupy_hierarchical_grad.py -k "gpu_backward_16bit or gradcheck" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 100 $PT tests/test_cupy_hierarchical_grad.py -k "16bit_training_forward" > "$OUT/log_tests_b.txt" 2>&1 &
timeout 100 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 100 python3 benchmarks/device/hier_bwd_s13d17.py kab 512 new,pf0 > "$OUT/log_warm.txt" 2>&1 &
wait
tail -4 "$OUT/log_warm.txt"
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -1 "$f"; done
echo "-- memcheck"; grep -E "ERROR SUMMARY|sanitize ok|^float|^bfloat|Error" "$OUT/log_memcheck.txt" | tail -8
# TIMINGS (alone on the GPU)
echo "=== TIMINGS: backward kernels 16K, bf16 / float32 copies, prefetch / none $(date -u +%T)"
timeout 12 python3 benchmarks/device/hier_bwd_s13d17.py kab 16384 new,pf0 > "$OUT/log_kab.txt" 2>&1
echo "rc=$?"; grep -E "^T=|Error" "$OUT/log_kab.txt" | cut -c1-220
echo "=== bf16 fwd+bwd against SDPA (interleaved) $(date -u +%T)"
timeout 13 python3 benchmarks/device/hier_bwd_s13d17.py train 16384,32768 32:new > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; grep -E "^T=|Error" "$OUT/log_train.txt" | cut -c1-220
echo "=== profile bf16 fwd+bwd 16K $(date -u +%T)"
timeout 13 python3 benchmarks/device/hier_train_s12d17.py profile 16384 > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -vE "^-+$" "$OUT/log_profile.txt" | grep -A16 "=== fwd+bwd" | cut -c1-40,100-200
echo "=== done $(date -u +%T)"
