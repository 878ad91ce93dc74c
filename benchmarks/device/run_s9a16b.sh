#!/usr/bin/env bash
# issue 16, session 9, second run (one H200, ~240 s): gd_scan's float32 passes on tensor cores (3xTF32)
# and gd_forms without its tensor-core variant. The GPU tests of loglinear_gated_delta (forward, backward,
# dispatch) in two pytest processes beside compute-sanitizer memcheck and racecheck (gd_scan, gd_forms)
# of gd_small.py and one Nsight Compute profile of gd_forms / gd_scan at 8K (if ncu is installed);
# gd_scan alone in four builds (ab_gd_scan.py: tensor cores, slots in global memory, FFMA, no
# products); the forward table with fla (bf16 only: its fp32 row compiles / autotunes Triton per T) and
# the array-API path at T = 8K, 16K, 32K (T = 2K: first run).
#   OUT=... bash benchmarks/device/run_s9a16b.sh       (logs under $OUT; summary on stdout)
set -u
NAME=s9a16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + sanitizers + ncu $(date -u +%T)"
timeout 110 $PT tests/test_cupy_gated_delta.py > "$OUT/log_tests_fwd.txt" 2>&1 &
timeout 110 $PT tests/test_cupy_gated_delta_grad.py tests/test_gpu_dispatch.py > "$OUT/log_tests_grad.txt" 2>&1 &
( timeout 45 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_small.py > "$OUT/log_memcheck.txt" 2>&1
  timeout 60 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=gd_ python3 benchmarks/device/gd_small.py \
      > "$OUT/log_racecheck.txt" 2>&1 ) &
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then
  timeout 100 "$NCU" --kernel-name regex:gd_ --launch-skip 2 --launch-count 2 --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats --section SchedulerStats python3 benchmarks/device/gd_one_call.py \
      > "$OUT/log_ncu.txt" 2>&1 &
else
  echo "no ncu on this machine" > "$OUT/log_ncu.txt"
fi
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error" "$f" | tail -3; done
echo "-- ncu"; grep -E "gd_forms|gd_scan|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|No Eligible|no ncu" "$OUT/log_ncu.txt" | head -24
echo "=== gd_scan alone $(date -u +%T)"
timeout 22 python3 benchmarks/device/ab_gd_scan.py > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; tail -4 "$OUT/log_ab.txt"
echo "=== forward table $(date -u +%T)"
timeout 95 python3 benchmarks/bench_gpu_gated_delta.py --T 8192,32768,16384 --api-max-T 8192 --fla-dtypes bf16 --out "$OUT" \
    > "$OUT/log_bench.txt" 2>&1
echo "rc=$?"; tail -14 "$OUT/log_bench.txt"
echo "=== done $(date -u +%T)"
