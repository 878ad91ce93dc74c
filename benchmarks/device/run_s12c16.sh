#!/usr/bin/env bash
# issue 16, session 12 (one H200), request 1: gd_forms_bwd (the WY forms' backward as one kernel per
# (chunk, sequence), replacing forms_backward's torch operations) and gd_scan_bwd's column-block
# reductions by atomicAdd (no cupy sum).
# Tests (<= 120 s, the first ~60 s CUDA compilation): the GPU tests of the training path
# (tests/test_cupy_gated_delta_grad.py -m gpu: float64 gradcheck, float32 / bf16 against float64
# autograd of the reference up to T = 1024) beside compute-sanitizer memcheck and racecheck
# (gd_forms_bwd only) of gd_bwd_small.py.
# # TIMINGS (quiet GPU, <= 60 s): one fwd+bwd step at 8K bf16 with the top kernels (profile_gd.py
# train), then the --train table at 8K (ours bf16 / fp32, fla chunk_log_linear_attn, SDPA; peak memory).
#   OUT=... bash benchmarks/device/run_s12c16.sh       (logs under $OUT/s12c16.tgz; summary on stdout)
set -u
NAME=s12c16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers $(date -u +%T)"
timeout 115 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_tests_grad.txt" 2>&1 &
timeout 115 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 115 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_forms_bwd python3 benchmarks/device/gd_bwd_small.py \
    > "$OUT/log_racecheck.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$f" | tail -3; done
# TIMINGS
echo "=== fwd+bwd 8K bf16, top kernels $(date -u +%T)"
timeout 25 python3 benchmarks/device/profile_gd.py train > "$OUT/log_profile_train.txt" 2>&1
echo "rc=$?"; grep -E "====|gd_|Self CUDA time total|cupy_|Memcpy|Memset" "$OUT/log_profile_train.txt" | cut -c1-150 | head -24
echo "=== --train table 8K $(date -u +%T)"
timeout 35 python3 benchmarks/bench_gpu_gated_delta.py --train --T 8192 --rows ours_bf16,ours_fp32,fla_ll,sdpa --out "$OUT" \
    > "$OUT/log_bench_train.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_bench_train.txt"
echo "=== done $(date -u +%T)"
