#!/usr/bin/env bash
# Session 10, helper s10g19 (issue 19): packed calls' host cost. Index uploads through pinned memory
# (lsattn._upload: no queue drain per index); the kept / folded old slots by masks; packed
# loglinear_log_attention on the cupy kernels. The varlen GPU tests, then # TIMINGS: the issue's
# benchmark for every operator (16 long-tailed documents, 64K tokens, bf16, H = 16, d = 64; fla with
# the same cu_seqlens, the per-document loop, the unpacked call), the packed streams with states
# (host / device time split, uploads per call) and a kernel profile of GD's packed streams.
#   OUT=... bash benchmarks/device/run_s10g19.sh      (results and logs: $OUT/s10g19.tgz)
set -u
NAME=s10g19; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 90 python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short tests/test_varlen.py > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; grep -E "^FAILED|^ERROR" "$OUT/log_tests.txt" | head -8; tail -3 "$OUT/log_tests.txt"
# TIMINGS (quiet GPU)
echo "=== issue benchmark $(date -u +%T)"
timeout 35 python3 benchmarks/bench_varlen_gpu.py --out "$OUT" --no-memory --ops loglinear_attention loglinear_gated_delta loglinear_log_attention exp_kernel_attention log_attention > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; grep -E "^\||^\{|fla " "$OUT/log_bench.txt" | cut -c1-400 | head -24
echo "=== streams $(date -u +%T)"
( cd benchmarks/device && timeout 25 python3 streams_s10g19.py loglinear_gated_delta:16,1023,1 \
    loglinear_gated_delta:64,4096,1 loglinear_gated_delta:16,2000,1024 loglinear_attention:16,1023,1 \
    loglinear_attention:64,4096,1 loglinear_log_attention:16,1023,1 ) > "$OUT/log_streams.txt" 2>&1
echo "rc=$?"; cat "$OUT/log_streams.txt"
echo "=== profile $(date -u +%T)"
( cd benchmarks/device && timeout 15 python3 profile_streams_s10g19.py 16,1023,1 64,4096,1 ) > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; cat "$OUT/log_profile.txt"
echo "=== done $(date -u +%T)"
