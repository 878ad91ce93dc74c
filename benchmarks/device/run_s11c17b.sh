#!/usr/bin/env bash
# Session 11, branch s11c17 (issue 17), second request, one H200: the final forward kernels.
# Tests: the hierarchical GPU tests and gradient tests, memcheck + racecheck of hier_small.py. TIMINGS: per-kernel
# forward at 8K / 16K / 32K (bf16, float32), the public forward at 8K / 16K / 32K against SDPA and the array-API path,
# and one variant on a copy: float32's hi_read on 3xTF32 tensor cores (the bf16 kernel's warp-local form; shipped:
# FFMA). Tests <= 150 s (concurrent with other helpers'), TIMINGS <= 65 s.
#   OUT=... bash benchmarks/device/run_s11c17b.sh      (results and logs: $OUT/s11c17b.tgz)
set -u
NAME=s11c17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests, sanitizers $(date -u +%T)"
timeout 150 $PT tests/test_cupy_hierarchical.py > "$OUT/t_hier.txt" 2>&1 &
timeout 150 $PT tests/test_cupy_hierarchical_grad.py > "$OUT/t_grad.txt" 2>&1 &
( timeout 80 compute-sanitizer --tool memcheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/s_mem.txt" 2>&1
  timeout 60 compute-sanitizer --tool racecheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/s_race.txt" 2>&1 ) &
wait
for f in t_hier t_grad; do echo "-- $f: $(tail -1 "$OUT/$f.txt")"; grep -E "^FAILED|^ERROR|^E  " "$OUT/$f.txt" | head -8; done
for f in s_mem s_race; do echo "-- $f: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok" "$OUT/$f.txt" | tr '\n' ' ')"; done
# TIMINGS
echo "=== kernels $(date -u +%T)"
timeout 20 python3 benchmarks/bench_gpu_hierarchical.py kernels --T 8192,16384,32768 --dtypes bfloat16,float32 --chunks 64 \
    > "$OUT/kernels.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/kernels.txt"
echo "=== variant: float32 hi_read on 3xTF32 tensor cores (warp-local, as bf16's) $(date -u +%T)"
V=/tmp/s11c17_rtc; rm -rf $V; mkdir -p $V && cp -r lsattn benchmarks $V/ \
  && sed -i 's/^#define HI_RTC (HI_TC \&\& !HI_TF32)/#define HI_RTC HI_TC/' $V/lsattn/backends/cupy/hierarchical.cu \
  && sed -i 's/            if self.bf16:  # HI_RTC/            if self.hi_tc:  # HI_RTC/' $V/lsattn/backends/cupy/_compile.py \
  && PYTHONPATH=/tmp/site:$V timeout 12 python3 $V/benchmarks/bench_gpu_hierarchical.py kernels --T 8192,16384 --dtypes float32 \
     --chunks 64 > "$OUT/kernels_rtc.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/kernels_rtc.txt"
echo "=== public forward $(date -u +%T)"
timeout 32 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 8192,16384,32768 --api-max 8192 > "$OUT/hier.txt" 2>&1
echo "rc=$?"; grep -E "^\|" "$OUT/hier.txt" | cut -c1-200
echo "=== done $(date -u +%T)"
