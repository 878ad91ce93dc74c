#!/usr/bin/env bash
# Needs main's backward beside it, regenerated before sending (a copy is not kept in the tree):
#   git show 4c495c3:lsattn/backends/cupy/hierarchical_bwd.cu > benchmarks/device/s11d17_base_bwd.cu.txt
# Session 11, branch s11d17 (issue 17: the hierarchical backward toward SDPA fwd+bwd), second request, one H200.
# Tests: the hierarchical gradient file's GPU tests (bf16 / f16, gradcheck, property test) beside memcheck and
# racecheck of hier_bwd_small.py (changes 1-4: rows over lanes with shuffles, two barriers per slot / right block,
# L2 prefetch, hib_blocks' one load phase per chunk pass, every batch of loads in flight together: hib_ld).
# TIMINGS: the backward's split before / after (hib_ab_s11d17.py: main's hierarchical_bwd.cu, the tree's, the tree's
# with hib_blocks unbounded (two blocks per SM)), FFMA and tensor cores; the public fwd+bwd 8K..32K against SDPA;
# ncu (speed of light, occupancy, warp states) of the three big kernels at 16K (tensor-core variant).
#   OUT=... bash benchmarks/device/run_s11d17b.sh      (results and logs: $OUT/s11d17b.tgz)
set -u
NAME=s11d17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 150 $PT tests/test_cupy_hierarchical_grad.py -k "16bit or gradcheck or matches" > "$OUT/log_tests.txt" 2>&1 &
timeout 100 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 100 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py race > "$OUT/log_racecheck.txt" 2>&1 &
wait
echo "-- tests"; grep -E "^FAILED|^ERROR|^E  " "$OUT/log_tests.txt" | head -8; tail -1 "$OUT/log_tests.txt"
for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|^float|^bfloat|Error" "$f" | tail -8; done
# TIMINGS (alone on the GPU)
echo "=== TIMINGS: backward split before / after $(date -u +%T)"
timeout 70 python3 benchmarks/device/hib_ab_s11d17.py ab 8192,16384 benchmarks/device/s11d17_base_bwd.cu.txt \
    base:fp32,tc new:fp32,tc blocks2:fp32,tc > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; cut -c1-260 "$OUT/log_ab.txt" | grep "^T="
echo "=== train $(date -u +%T)"
timeout 50 python3 benchmarks/bench_gpu_hierarchical.py train --out "$OUT" --T 8192,16384,32768 --api-max 0 > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; grep -E "split|^\| " "$OUT/log_train.txt" | cut -c1-260
echo "=== ncu 16K tc $(date -u +%T)"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then
  timeout 45 "$NCU" --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --kernel-name regex:"hib_dq|hib_blocks|hib_dkdv" --launch-count 3 \
      python3 benchmarks/device/hib_ab_s11d17.py one 16384 1 "$OUT/hib_src.cu" > "$OUT/log_ncu.txt" 2>&1; echo "rc=$?"
  grep -E "hib_dq|hib_blocks|hib_dkdv|Duration|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Block Limit (Sh|Reg)|Stall" "$OUT/log_ncu.txt" | head -40
else
  echo "no ncu"
fi
echo "=== done $(date -u +%T)"
