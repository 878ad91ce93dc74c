#!/usr/bin/env bash
# Session 14, branch s14g17 (issue 17: the hierarchical training forward and the fp32 path), request 1, one H200.
# Tests (<= 100 s, concurrent): the forward's GPU tests (float32 / float64 property and streams; 16-bit, tensor-core reads
# at every chunk), memcheck and racecheck of hier_small.py, ncu of the training forward's kernels (fp32 8K); beside them the
# timings' kernels compiled (hier_prof_s14g17.py warm, kab warm).
# TIMINGS (<= 40 s, alone): where one fwd+bwd goes (fp32 8K, bf16 16K: GPU / host clocks per phase, per-kernel CUDA time,
# the GPU's idle time); the training forward's kernels per timing build (hier_prof_s14g17.py kab); issue 17's table's
# hier cells at 8K with the array-API column.
#   OUT=... bash benchmarks/device/run_s14g17.sh      (results and logs: $OUT/s14g17.tgz)
set -u
NAME=s14g17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log -1 --format=%H; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 95 python3 benchmarks/device/hier_prof_s14g17.py warm > "$OUT/log_warm.txt" 2>&1 &
timeout 95 python3 benchmarks/device/hier_prof_s14g17.py kab warm > "$OUT/log_warm_kab.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_hierarchical.py -k "matches_reference or stream" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_hierarchical.py -k "16bit or tensor_core" > "$OUT/log_tests_b.txt" 2>&1 &
timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 95 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_racecheck.txt" 2>&1 &
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then  # the training forward's kernels fp32 8K chunk 32 (the second call's: warp states, occupancy)
  timeout 95 "$NCU" --kernel-name regex:"hi_(intra|merge|read)" --launch-skip 9 --launch-count 9 --section SpeedOfLight \
      --section WarpStateStats --section Occupancy --section LaunchStats \
      python3 benchmarks/device/hier_prof_s14g17.py one fp32:8192 > "$OUT/log_ncu.txt" 2>&1 &
fi
wait
tail -2 "$OUT/log_warm.txt" "$OUT/log_warm_kab.txt"
echo "-- ncu"; grep -E "^  hi_|Duration|Registers Per|Achieved Occupancy|Warp Cycles Per Issued|Block Limit|Memory Throughput|Compute \(SM\)" "$OUT/log_ncu.txt" 2>/dev/null | head -40 | cut -c1-160
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -1 "$f"; done
for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Error" "$f" | tail -6; done
# TIMINGS (alone on the GPU)
echo "=== TIMINGS: profile fp32 8K, bf16 16K $(date -u +%T)"
timeout 14 python3 benchmarks/device/hier_prof_s14g17.py profile fp32:8192 bf16:16384 --trace "$OUT" > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -vE "^\s+0\.0[0-4]|^  tl|^  sync|timeline" "$OUT/log_profile.txt" | grep -E "^T=|^ " | cut -c1-200 | head -60
echo "=== training forward's kernels, chunk 32, timing builds (hi_merge HI_MG 1 at 4 blocks / SM; hi_read at 3; hi_intra at 4, 5) $(date -u +%T)"
timeout 10 python3 benchmarks/device/hier_prof_s14g17.py kab fp32:8192 bf16:16384 > "$OUT/log_kab.txt" 2>&1
echo "rc=$?"; grep -E "^T=|Error" "$OUT/log_kab.txt" | cut -c1-220
echo "=== table, hier at 8K $(date -u +%T)"
timeout 12 python3 benchmarks/bench_gpu_hierarchical.py table --T 8192 --ops hier --small-reps 20 --out "$OUT/table" > "$OUT/log_table.txt" 2>&1
echo "rc=$?"; grep -E "ms|x \(target|Error" "$OUT/log_table.txt" | cut -c1-200 | head -12
gzip -q "$OUT"/trace_*.json 2>/dev/null
echo "=== done $(date -u +%T)"
