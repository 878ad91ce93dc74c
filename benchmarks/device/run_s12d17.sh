#!/usr/bin/env bash
# Session 12, branch s12d17 (issue 17: hierarchical bf16 past SDPA at 16K, forward and training), request 1, one H200.
# Tests: the 16-bit training forward (the 16-bit tensor-core forward writing log y in float32: new hypothesis
# test), 16-bit / gradcheck / float32 property tests of the backward (its slots now on 3xTF32), the forward's
# GPU property test; memcheck and racecheck of hier_bwd_small.py and hier_small.py; beside them the kernels compiled for the timings
# and ncu of hi_intra / hi_read bf16 at 16K (warp states, stall samples by source line).
# TIMINGS: issue 17's cells at 16K / 32K (hier bf16 fwd, fwd+bwd, SDPA bf16, hier fp32 fwd), the backward's
# split A/B (tree / hib_blocks -DHIB_BL1=1 / hib_blocks at 4 blocks per SM / slots on FFMA / backward chunk 16), the forward's kernels A/B
# (hi_read's first loads batched / -DHI_RPRO=0), torch.profiler of one bf16 forward and fwd+bwd at 16K.
#   OUT=... bash benchmarks/device/run_s12d17.sh      (results and logs: $OUT/s12d17.tgz)
set -u
NAME=s12d17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 105 $PT tests/test_cupy_hierarchical_grad.py -k "16bit or gradcheck" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 105 $PT tests/test_cupy_hierarchical_grad.py -k "backward_matches_reference" > "$OUT/log_tests_b.txt" 2>&1 &
timeout 105 $PT tests/test_cupy_hierarchical.py -k "gpu_matches_reference or 16bit_in_16bit_out or tensor_core_read" > "$OUT/log_tests_c.txt" 2>&1 &
timeout 105 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 105 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py race > "$OUT/log_racecheck.txt" 2>&1 &
( timeout 60 compute-sanitizer --tool memcheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/log_fwd_memcheck.txt" 2>&1
  timeout 40 compute-sanitizer --tool racecheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/log_fwd_racecheck.txt" 2>&1 ) &
timeout 105 python3 benchmarks/device/hier_train_s12d17.py warm 256 > "$OUT/log_warm.txt" 2>&1 &
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then  # stall samples of hi_read bf16 16K (proportions only: other processes share the GPU)
  timeout 100 "$NCU" --kernel-name regex:"hi_read|hi_intra" --launch-count 2 --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats --section SourceCounters --print-details all \
      python3 benchmarks/device/hier_train_s12d17.py ncu 16384 "$OUT/hi_src.cu" > "$OUT/log_ncu.txt" 2>&1 &
fi
wait
tail -2 "$OUT/log_warm.txt"
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -1 "$f"; done
echo "-- ncu"; grep -E "hi_read|hi_intra|Duration|Registers Per|Achieved Occupancy|Warp Cycles Per Issued|Stall|stall" "$OUT/log_ncu.txt" | head -40 | cut -c1-200
for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt" "$OUT/log_fwd_memcheck.txt" "$OUT/log_fwd_racecheck.txt"; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|^float|^bfloat|Error" "$f" | tail -8; done
# TIMINGS (alone on the GPU)
echo "=== TIMINGS: public calls $(date -u +%T)"
timeout 18 python3 benchmarks/device/hier_train_s12d17.py public 16384,32768 > "$OUT/log_public.txt" 2>&1
echo "rc=$?"; grep -E "ms|hier / SDPA" "$OUT/log_public.txt" | cut -c1-200
echo "=== backward split A/B $(date -u +%T)"
timeout 16 python3 benchmarks/device/hier_train_s12d17.py ab 16384 new:tc,fp32 bl1:tc,fp32 m4:tc,fp32 ffma:tc c16:tc,fp32 > "$OUT/log_ab.txt" 2>&1
echo "rc=$?"; cut -c1-260 "$OUT/log_ab.txt" | grep "^T="
echo "=== forward kernels A/B (hi_read's first loads batched / one at a time) $(date -u +%T)"
timeout 12 python3 benchmarks/device/hier_train_s12d17.py kab 16384 new rpro0 > "$OUT/log_kab.txt" 2>&1
echo "rc=$?"; grep -E "^new|^rpro0|^T=" "$OUT/log_kab.txt" | cut -c1-220
echo "=== profile bf16 fwd+bwd 16K $(date -u +%T)"
timeout 12 python3 benchmarks/device/hier_train_s12d17.py profile 16384 > "$OUT/log_profile.txt" 2>&1
echo "rc=$?"; grep -vE "^-+$" "$OUT/log_profile.txt" | head -60 | cut -c1-200
echo "=== done $(date -u +%T)"
