#!/usr/bin/env bash
# Session 9, branch s9b17 (issue 17): the bf16 exp-kernel / log_attention backward on tensor cores
# (exp_kernel_bwd_tc.cu). GPU tests of the exp-kernel / log_attention files beside compute-sanitizer
# (memcheck of ek_bwd_small.py and the new kernels' small cases, racecheck of those), the errors of
# the new kernels per case, then alone on the GPU: profile_log_train.py at 16K and the fwd+bwd table.
#   OUT=... bash benchmarks/device/run_s9b17.sh      (results and logs: $OUT/s9b17.tgz)
set -u
NAME=s9b17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log -1 --format=%H; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 150 $PT tests/test_cupy_log_attention.py > "$OUT/log_tests_a.txt" 2>&1 &
timeout 150 $PT tests/test_training.py -k exp_kernel > "$OUT/log_tests_b.txt" 2>&1 &
timeout 150 $PT tests/test_cupy_backend.py -k "exp_kernel or bf16" > "$OUT/log_tests_c.txt" 2>&1 &
timeout 100 python3 benchmarks/device/ek_bwd_tc_check.py > "$OUT/log_check.txt" 2>&1 &
( timeout 70 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/ek_bwd_tc_check.py --small > "$OUT/log_memcheck_tc.txt" 2>&1
  timeout 70 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/ek_bwd_tc_check.py --small > "$OUT/log_racecheck_tc.txt" 2>&1 ) &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error|assert" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^ok" "$f" | tail -2; done
echo "-- check"; cat "$OUT/log_check.txt" | tail -22
echo "=== profile $(date -u +%T)"
timeout 45 python3 benchmarks/device/profile_log_train.py 16384 > "$OUT/log_profile.txt" 2>&1; echo "rc=$?"; head -6 "$OUT/log_profile.txt"; grep -E "ekb_|ek_|elementwise|Self CUDA time total" "$OUT/log_profile.txt" | cut -c1-60,100-180 | head -14
echo "=== fwd+bwd $(date -u +%T)"
timeout 45 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T 16384,32768 --ops la,ek,sdpa > "$OUT/log_train.txt" 2>&1; echo "rc=$?"; grep -v "^|---" "$OUT/log_train.txt" | tail -5
echo "=== done $(date -u +%T)"
