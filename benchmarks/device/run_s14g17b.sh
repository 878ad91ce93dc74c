#!/usr/bin/env bash
# Session 14, branch s14g17 (issue 17: the hierarchical training forward), request 2 (the final code), one H200.
# Tests (<= 100 s, concurrent): the forward's GPU tests (float32 / float64 property and streams; 16-bit, tensor-core reads),
# the 16-bit training forward (chunk 32, slots kept), memcheck and racecheck of hier_small.py, memcheck of
# hier_bwd_small.py (the training forward's kept slots read by the backward); beside them the timings' kernels compiled.
# TIMINGS (<= 40 s, alone): the training forward's kernels, the final defaults against the old ones (kab final old);
# the forward call's host spans without the profiler; the fwd+bwd clocks and profile (fp32 8K, bf16 16K); issue 17's
# table's hier cells at 8K with the array-API column.
#   OUT=... bash benchmarks/device/run_s14g17b.sh      (results and logs: $OUT/s14g17b.tgz)
set -u
NAME=s14g17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 95 python3 benchmarks/device/hier_prof_s14g17.py warm > "$OUT/log_warm.txt" 2>&1 &
timeout 95 python3 benchmarks/device/hier_prof_s14g17.py kab warm final,old > "$OUT/log_warm_kab.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_hierarchical.py -k "matches_reference or stream" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_hierarchical.py -k "16bit or tensor_core" > "$OUT/log_tests_b.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_hierarchical_grad.py -k "16bit_training_forward" > "$OUT/log_tests_c.txt" 2>&1 &
timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 95 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_racecheck.txt" 2>&1 &
timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck_bwd.txt" 2>&1 &
wait
tail -n 2 "$OUT/log_warm.txt" "$OUT/log_warm_kab.txt"
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -1 "$f"; done
for f in "$OUT"/log_memcheck*.txt "$OUT/log_racecheck.txt"; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Error" "$f" | tail -6; done
# TIMINGS (alone on the GPU)
echo "=== TIMINGS: training forward's kernels, chunk 32, final defaults / old $(date -u +%T)"
timeout 9 python3 benchmarks/device/hier_prof_s14g17.py kab fp32:8192 bf16:16384 final old > "$OUT/log_kab.txt" 2>&1
echo "rc=$?"; grep -E "^T=|Error" "$OUT/log_kab.txt" | cut -c1-220
echo "=== host spans of the forward call (no profiler) $(date -u +%T)"
timeout 7 python3 benchmarks/device/hier_prof_s14g17.py hostspans fp32:8192 bf16:16384 > "$OUT/log_hostspans.txt" 2>&1
echo "rc=$?"; grep -E "^T=|Error" "$OUT/log_hostspans.txt" | cut -c1-400
echo "=== profile fp32 8K, bf16 16K $(date -u +%T)"
timeout 11 python3 benchmarks/device/hier_prof_s14g17.py profile fp32:8192 bf16:16384 --trace "$OUT" > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -vE "^\s+0\.0[0-4]|^  tl|^  sync|timeline" "$OUT/log_profile.txt" | grep -E "^T=|^ " | cut -c1-200 | head -40
echo "=== table, hier at 8K $(date -u +%T)"
timeout 12 python3 benchmarks/bench_gpu_hierarchical.py table --T 8192 --ops hier --small-reps 20 --out "$OUT/table" > "$OUT/log_table.txt" 2>&1
echo "rc=$?"; grep -E "ms|x \(target|Error" "$OUT/log_table.txt" | cut -c1-200 | head -12
gzip -q "$OUT"/trace_*.json 2>/dev/null
echo "=== done $(date -u +%T)"
