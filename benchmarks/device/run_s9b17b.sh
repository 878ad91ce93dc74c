#!/usr/bin/env bash
# Session 9, branch s9b17, second run: the tensor-core backward after its first run (staged state loads,
# fewer serial loops) and the bf16 log_attention training forward on tensor cores with a float32 log
# output (ek_output_tc5f). GPU tests of the backward (log_attention file, exp-kernel training grads)
# beside memcheck of one small case; then alone: the step's profile at 16K and the fwd+bwd table
# 2K..64K for exp_kernel_attention / log_attention against SDPA. Few log files (the lead's unpacking).
#   OUT=... bash benchmarks/device/run_s9b17b.sh      (results and logs: $OUT/s9b17b.tgz)
set -u
NAME=s9b17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log -1 --format=%H; } > "$OUT/log_tests.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 100 $PT tests/test_cupy_log_attention.py -k "grad or backward or half_precision or bf16_spikes" > "$OUT/log_tests_a.txt" 2>&1 &
( timeout 100 $PT tests/test_training.py tests/test_cupy_backend.py -k "exp_kernel and (grad or bf16)" ) > "$OUT/log_tests_b.txt" 2>&1 &
timeout 100 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/ek_bwd_tc_check.py --tiny > "$OUT/log_memcheck.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_a.txt "$OUT"/log_tests_b.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error:" "$f" | head -6; tail -1 "$f"; done
echo "-- memcheck"; grep -E "ERROR SUMMARY|^ok" "$OUT/log_memcheck.txt" | tail -2
cat "$OUT"/log_tests_a.txt "$OUT"/log_tests_b.txt "$OUT/log_memcheck.txt" >> "$OUT/log_tests.txt"; rm -f "$OUT"/log_tests_a.txt "$OUT"/log_tests_b.txt "$OUT/log_memcheck.txt"
echo "=== profile $(date -u +%T)"
timeout 25 python3 benchmarks/device/profile_log_train.py 16384 > "$OUT/log_profile.txt" 2>&1; echo "rc=$?"; head -6 "$OUT/log_profile.txt"; grep -E "ekb_|ek_|elementwise|Memcpy|reduce" "$OUT/log_profile.txt" | cut -c1-50,100-190 | head -14
echo "=== fwd+bwd $(date -u +%T)"
timeout 70 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T 2048,8192,16384,32768,65536 --ops ek,la,sdpa > "$OUT/log_train.txt" 2>&1; echo "rc=$?"; grep -v "^|---" "$OUT/log_train.txt" | tail -8
echo "=== done $(date -u +%T)"
