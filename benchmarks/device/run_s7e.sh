#!/usr/bin/env bash
# session 7, helper s7e (issues 16 / 17, 1 x H200, < 150 s): the fused cupy decoding steps of
# loglinear_gated_delta (gd_step) and loglinear_log_attention (hier_step): the GPU stepper tests of
# every fused step (equality with the array-API step, plain calls and the reference; CUDA-graph
# capture and replay; 16-bit inputs; 4096 rows) and the CPU twin tests (the CPU emulation of the
# kernels, g++, is left to CI), compute-sanitizer memcheck + racecheck on a few
# steps, then the stepper benchmark of the two operators (eager, graph replay, 4096 sequences; the
# array-API step beside). Everything to stdout; logs and results in $OUT/s7e.tgz.
#   OUT=... bash benchmarks/device/run_s7e.sh
set -u
NAME=s7e; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; python3 -m lsattn info; } > "$OUT/log_env.txt" 2>&1
head -3 "$OUT/log_env.txt"
echo "=== tests $(date -u +%T)"
timeout 90 python3 -m pytest -q -p no:cacheprovider -rs tests/test_gpu_stepper.py tests/test_cupy_step.py -k "not emulated" \
    > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -vE "^SKIPPED|^$" "$OUT/log_tests.txt" | tail -30
echo "=== bench $(date -u +%T)"
timeout 25 python3 benchmarks/bench_stepper_gpu.py --out "$OUT" --ops loglinear_gated_delta,loglinear_log_attention \
    --steps 50 > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -12 "$OUT/log_bench.txt"; cat "$OUT"/stepper_gpu_*.md 2>/dev/null
echo "=== sanitize $(date -u +%T)"
timeout 15 compute-sanitizer --tool memcheck --leak-check no --print-limit 5 python3 benchmarks/device/step_small.py > "$OUT/log_memcheck.txt" 2>&1
echo "rc=$?"; grep -E "ERROR SUMMARY|sanitize ok|Error" "$OUT/log_memcheck.txt" | tail -4
timeout 15 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/step_small.py > "$OUT/log_racecheck.txt" 2>&1
echo "rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$OUT/log_racecheck.txt" | tail -4
echo "=== done $(date -u +%T)"
