#!/usr/bin/env bash
# issue 16, session 11 (branch s11b16), second run (one H200, <= 180 s): the finiteness flag in pinned host memory
# (no memset, no copy), gd_forms on tensor cores as in the first run. Tests, sanitizers and one Nsight Compute
# profile of gd_forms at 8K above # TIMINGS; then the forward table at 8K (ours bf16 / fp32 against fla's plain
# chunk_gated_delta_rule bf16) and the public forward's timeline (A/B against the prologue's checks).
#   OUT=... bash benchmarks/device/run_s11b16b.sh       (logs in $OUT/s11b16b.tgz; summary on stdout)
set -u
NAME=s11b16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers + ncu $(date -u +%T)"
timeout 90 $PT tests/test_cupy_gated_delta.py tests/test_gpu_dispatch.py -k gated > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 90 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_tests_grad.txt" 2>&1 &
timeout 90 $PT tests/test_nonfinite.py -k "gated" > "$OUT/log_tests_nonfinite.txt" 2>&1 &
( timeout 45 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1
  timeout 45 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_forms python3 benchmarks/device/gd_small.py \
      > "$OUT/log_racecheck.txt" 2>&1 ) &
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then
  timeout 80 "$NCU" --kernel-name gd_forms --launch-skip 1 --launch-count 1 --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
      python3 benchmarks/device/gd_one_call.py > "$OUT/log_ncu.txt" 2>&1 &
fi
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$f" | tail -3; done
echo "-- ncu"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|L1/TEX Hit|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Stall|Block Limit Shared" "$OUT/log_ncu.txt" | head -24
# TIMINGS
echo "=== forward table 8192 $(date -u +%T)"
timeout 70 python3 benchmarks/bench_gpu_gated_delta.py --out "$OUT" --T 8192 --api-max-T 0 --fla-dtypes bf16 > "$OUT/log_table.txt" 2>&1
echo "rc=$?"; grep -E "^\| |ours|fla" "$OUT/log_table.txt" | tail -8
echo "=== public forward timeline 8192 $(date -u +%T)"
OUT=$OUT timeout 45 python3 benchmarks/device/gd_timeline.py 8192 > "$OUT/log_timeline.txt" 2>&1
echo "rc=$?"; grep -E "^====|host phases \(us|GPU:" "$OUT/log_timeline.txt" | cut -c1-400
grep -E "^    gpu" "$OUT/log_timeline.txt" | head -20
echo "=== done $(date -u +%T)"
