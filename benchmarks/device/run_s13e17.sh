#!/usr/bin/env bash
# Session 13, branch s13e17 (issue 17: the hierarchical bf16 forward at 64K within 2x of loglinear_attention; hi_read /
# hi_merge cheaper at chunk 32), request 1, one H200. Tests (<= 100 s, concurrent): the forward's GPU tests (16-bit /
# tensor-core reads; float32 / float64 property and streams), the 16-bit training forward (chunk 32, kept slots), memcheck
# and racecheck of hier_small.py; beside them the kernels the timings use compiled (the tree's and main's).
# TIMINGS (<= 40 s, alone): the forward's kernels at 64K / 16K bf16, chunks 64 and 32, this branch against main's
# (benchmarks/device/s13e17_base.patch reversed on a copy); the public bf16
# forward against loglinear_attention at 16K / 64K.
#   OUT=... bash benchmarks/device/run_s13e17.sh      (results and logs: $OUT/s13e17.tgz)
set -u
NAME=s13e17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
B=/tmp/s13e17_base; rm -rf $B; mkdir -p $B && cp -r lsattn $B/ && patch -s -R -p1 -d $B < benchmarks/device/s13e17_base.patch
BASE=$B/lsattn/backends/cupy; grep -c "hi_read(" $BASE/hierarchical.cu > "$OUT/log_base.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 95 $PT tests/test_cupy_hierarchical.py -k "16bit or tensor_core" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_hierarchical.py -k "matches_reference or stream" > "$OUT/log_tests_b.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_hierarchical_grad.py -k "16bit_training_forward" > "$OUT/log_tests_c.txt" 2>&1 &
timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 95 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_racecheck.txt" 2>&1 &
timeout 95 python3 benchmarks/device/hier_fwd_s13e17.py warm tree,$BASE > "$OUT/log_warm.txt" 2>&1 &
wait
echo "base hi_read definitions: $(cat "$OUT/log_base.txt")"; tail -2 "$OUT/log_warm.txt"
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -1 "$f"; done
for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$f" | tail -6; done
# TIMINGS (alone on the GPU)
echo "=== TIMINGS: forward kernels, tree then main's $(date -u +%T)"
timeout 26 python3 benchmarks/device/hier_fwd_s13e17.py kernels 65536,16384 tree,$BASE > "$OUT/log_kernels.txt" 2>&1
echo "rc=$?"; grep -E "^tree|^base|^T=" "$OUT/log_kernels.txt" | cut -c1-220
echo "=== public bf16 forward $(date -u +%T)"
timeout 13 python3 benchmarks/device/hier_fwd_s13e17.py public 16384,65536 > "$OUT/log_public.txt" 2>&1
echo "rc=$?"; grep -E "^T=" "$OUT/log_public.txt" | cut -c1-220
echo "=== done $(date -u +%T)"
