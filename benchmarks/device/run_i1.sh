#!/usr/bin/env bash
# Session 8, first H200 run (main at the session start): the steppers' CUDA-graph capture tests (the
# array-API hierarchical step's NaN rows, fixed in 5b8a61d, untested on a GPU), hierarchical racecheck,
# then the measurements session 7 left out: log_attention bf16 forward/fwd+bwd after the scan prefetch,
# the bf16 training profile, the reworked hierarchical step, and the gated-delta per-kernel times.
#   OUT=... bash benchmarks/device/run_i1.sh      (everything to stdout; logs in $OUT/i1.tgz)
set -u
NAME=i1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
cat "$OUT/log_env.txt"
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 150 $PT tests/test_gpu_stepper.py tests/test_cupy_step.py > "$OUT/log_tests_step.txt" 2>&1 &
( timeout 120 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_racecheck_hier.txt" 2>&1 ) &
wait
grep -E "^FAILED|^ERROR" "$OUT/log_tests_step.txt" | head; tail -1 "$OUT/log_tests_step.txt"
grep -E "RACECHECK SUMMARY|sanitize ok|rror" "$OUT/log_racecheck_hier.txt" | tail -3
echo "=== bench log fwd $(date -u +%T)"
timeout 40 python3 benchmarks/bench_gpu.py logattn --out "$OUT" --T 8192,16384,32768 > "$OUT/log_logattn.txt" 2>&1; echo "rc=$?"; tail -16 "$OUT/log_logattn.txt"
echo "=== bench fwd+bwd $(date -u +%T)"
timeout 60 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T 16384,32768 --ops la,ek,sdpa > "$OUT/log_train.txt" 2>&1; echo "rc=$?"; grep -v "^|---" "$OUT/log_train.txt" | tail -14
echo "=== profile log train $(date -u +%T)"
timeout 60 python3 benchmarks/device/profile_log_train.py 16384 > "$OUT/log_profile_log.txt" 2>&1; echo "rc=$?"; tail -40 "$OUT/log_profile_log.txt"
echo "=== stepper $(date -u +%T)"
timeout 60 python3 benchmarks/bench_stepper_gpu.py --out "$OUT" --ops loglinear_log_attention,loglinear_gated_delta > "$OUT/log_stepper.txt" 2>&1; echo "rc=$?"; tail -14 "$OUT/log_stepper.txt"
echo "=== profile gd $(date -u +%T)"
timeout 40 python3 benchmarks/device/profile_gd.py > "$OUT/log_profile_gd.txt" 2>&1; echo "rc=$?"; tail -30 "$OUT/log_profile_gd.txt"
echo "=== done $(date -u +%T)"
