#!/usr/bin/env bash
# Session 11, branch s11c17 (issue 17: loglinear_log_attention forward kernels), one H200, <= 180 s.
# Tests: the hierarchical GPU tests (float32 / float16 now on tensor cores as 3xTF32, at the float32 bound), the
# gradient tests, memcheck + racecheck of hier_small.py. TIMINGS: per-kernel forward at 8K / 16K / 32K, chunk 64,
# float32 (3xTF32), float32-ffma (session 10's float32 kernels) and bfloat16, and main's bf16 kernels (4c495c3 = session
# 10's changes 4-6, never timed; benchmarks/device/s11c17_base.patch reversed on a copy);
# the public forward at 8K / 16K / 32K against SDPA; ncu on hi_intra / hi_read at 16K (bf16, fp32).
#   OUT=... bash benchmarks/device/run_s11c17.sh      (results and logs: $OUT/s11c17.tgz)
set -u
NAME=s11c17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests, sanitizers $(date -u +%T)"
timeout 82 $PT tests/test_cupy_hierarchical.py > "$OUT/t_hier.txt" 2>&1 &
timeout 82 $PT tests/test_cupy_hierarchical_grad.py > "$OUT/t_grad.txt" 2>&1 &
( timeout 50 compute-sanitizer --tool memcheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/s_mem.txt" 2>&1
  timeout 38 compute-sanitizer --tool racecheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/s_race.txt" 2>&1 ) &
wait
for f in t_hier t_grad; do echo "-- $f: $(tail -1 "$OUT/$f.txt")"; grep -E "^FAILED|^ERROR|^E  " "$OUT/$f.txt" | head -8; done
for f in s_mem s_race; do echo "-- $f: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok" "$OUT/$f.txt" | tr '\n' ' ')"; done
# TIMINGS
echo "=== kernels $(date -u +%T)"
timeout 35 python3 benchmarks/bench_gpu_hierarchical.py kernels --T 8192,16384,32768 --dtypes bfloat16,float32,float32-ffma \
    --chunks 64 > "$OUT/kernels.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/kernels.txt"
echo "=== kernels of main (4c495c3: s11c17_base.patch reversed), bf16 $(date -u +%T)"
B=/tmp/s11c17_base; rm -rf $B; mkdir -p $B && cp -r lsattn benchmarks $B/ && patch -s -R -p1 -d $B < benchmarks/device/s11c17_base.patch \
  && PYTHONPATH=/tmp/site:$B timeout 15 python3 $B/benchmarks/bench_gpu_hierarchical.py kernels --T 8192,16384 --dtypes bfloat16 \
     --chunks 64 > "$OUT/kernels_base.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/kernels_base.txt"
echo "=== variant: bf16 hi_read at 3 blocks per SM (__launch_bounds__(NT, 3): 80 registers, 28 bytes of spills) $(date -u +%T)"
V=/tmp/s11c17_v3; rm -rf $V; mkdir -p $V && cp -r lsattn benchmarks $V/ \
  && sed -i 's/__launch_bounds__(NT, 2) hi_read(/__launch_bounds__(NT, 3) hi_read(/' $V/lsattn/backends/cupy/hierarchical.cu \
  && PYTHONPATH=/tmp/site:$V timeout 12 python3 $V/benchmarks/bench_gpu_hierarchical.py kernels --T 16384 --dtypes bfloat16 \
     --chunks 64 > "$OUT/kernels_v3.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/kernels_v3.txt"
echo "=== public forward $(date -u +%T)"
timeout 25 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192,16384,32768 --api-max 8192 > "$OUT/hier.txt" 2>&1
echo "rc=$?"; grep -E "^\|" "$OUT/hier.txt" | cut -c1-200
echo "=== ncu 16K $(date -u +%T)"
if command -v ncu > /dev/null; then
  timeout 22 ncu --kernel-name regex:"hi_read|hi_intra" --launch-count 4 --section SpeedOfLight --section WarpStateStats \
      --section SchedulerStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis \
      --section InstructionStats python3 benchmarks/device/ncu_hier_s11c17.py 16384 > "$OUT/ncu.txt" 2>&1
  echo "rc=$?"; grep -E "hi_read|hi_intra|Duration|Registers Per|Achieved Occupancy|Warp Cycles Per Issued|Executed Ipc A|Executed Instructions|Block Limit|Stall" "$OUT/ncu.txt" | head -60
else
  echo "no ncu"
fi
echo "=== done $(date -u +%T)"
