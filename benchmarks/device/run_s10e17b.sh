#!/usr/bin/env bash
# Session 10, branch s10e17 (issue 17), second run: the chunks' pairs as products in hib_dq / hib_dkdv
# (hib_fpairs, exact rows per pair) beside run 1's split blocks and shared pairs. Tests (the hierarchical
# gradient file's GPU tests, the dispatch grad test) beside memcheck (all small cases, a key spike for exact
# rows) and racecheck (its short list); then # TIMINGS alone: fwd+bwd 8K..32K and the split per backward chunk.
#   OUT=... bash benchmarks/device/run_s10e17b.sh      (results and logs: $OUT/s10e17b.tgz)
set -u
NAME=s10e17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
( timeout 110 $PT tests/test_cupy_hierarchical_grad.py tests/test_gpu_dispatch.py -k "grad or backward or gradcheck or state" ) > "$OUT/log_tests.txt" 2>&1 &
timeout 100 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 100 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py race > "$OUT/log_racecheck.txt" 2>&1 &
wait
echo "-- tests"; grep -E "^FAILED|^ERROR|^E  " "$OUT/log_tests.txt" | head -8; tail -1 "$OUT/log_tests.txt"
for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|^float|^bfloat|Error" "$f" | tail -8; done
# TIMINGS (alone on the GPU)
echo "=== train $(date -u +%T)"
timeout 60 python3 benchmarks/bench_gpu_hierarchical.py train --out "$OUT" --T 8192,16384,32768 --api-max 0 > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; grep -E "split|^\| " "$OUT/log_train.txt" | cut -c1-230
echo "=== backward chunks $(date -u +%T)"
timeout 40 python3 benchmarks/device/hier_bwd_chunks.py 8192,32768 > "$OUT/log_chunks.txt" 2>&1
echo "rc=$?"; cut -c1-230 "$OUT/log_chunks.txt" | tail -8
echo "=== done $(date -u +%T)"
