#!/usr/bin/env bash
# session 6, call G3 (one H200): loglinear_gated_delta on cupy after the merges: where the time goes
# (profile_gd.py), the GPU tests of the forward and the backward, compute-sanitizer over small
# forward + backward calls
set -u
NAME=g3; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
echo "=== profile $(date -u +%T)"
timeout 90 python3 benchmarks/device/profile_gd.py > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -E "^====" "$OUT/log_profile.txt"
echo "=== tests $(date -u +%T)"
timeout 240 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_cupy_gated_delta.py tests/test_cupy_gated_delta_grad.py \
    tests/test_gpu_dispatch.py -k "gated_delta or probe" > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; tail -8 "$OUT/log_tests.txt"
echo "=== sanitize $(date -u +%T)"
for tool in memcheck racecheck; do
    timeout 45 compute-sanitizer --tool $tool --print-limit 5 python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_$tool.txt" 2>&1
    echo "$tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok" "$OUT/log_$tool.txt" | tail -2
done
echo "=== done $(date -u +%T)"
