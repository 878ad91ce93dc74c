#!/usr/bin/env bash
# issue 16, session 14 (one H200), request 2: the final gd_scan_bwd (tensor cores; 1xTF32 operands rounded once in
# shared memory, two sets of slot buffers, one set of chunk tiles). Request 1's test steps were all cut at 98 s (fresh
# machine, 6 other helpers): smaller selections here.
# Tests (<= 100 s, the first ~60 s CUDA compilation): tests/test_cupy_gated_delta_grad.py -m gpu (4 of the reference
# comparisons: float32 and bf16, strong decays and resets; 2 gradchecks), compute-sanitizer memcheck of gd_bwd_small.py's
# float32 and bf16 cases, racecheck of gd_scan_bwd on the float32 case, the A/B builds compiled (NVRTC only, two
# processes), ncu on the second 8K bf16 step's gd_scan_bwd_x1 (gd_bwd_one.py).
# # TIMINGS (quiet GPU, <= 40 s): the scan's backward alone at 8K and 32K (ab_gd_forms_bwd.py: sffma = main's FFMA,
# stc 3xTF32, sx1 1xTF32 (the bf16 training path), sx1r / sx1s1 / sx1db: sx1 without the rounding in shared memory /
# with one set of slot buffers / with two sets of chunk tiles), one profiled fwd+bwd step at 8K bf16 (profile_gd.py train).
#   OUT=... bash benchmarks/device/run_s14c16b.sh      (logs under $OUT/s14c16b.tgz; summary on stdout)
set -u
NAME=s14c16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
CS="compute-sanitizer --print-limit 5"
AB=benchmarks/device/ab_gd_forms_bwd.py
T=tests/test_cupy_gated_delta_grad.py
echo "=== tests + sanitizers $(date -u +%T)"
timeout 98 $PT $T -k "against_reference and (1000-strong or 777-moderate)" > "$OUT/log_tests_grad_ref.txt" 2>&1 &
timeout 98 $PT $T -k "gradcheck and (70-64-64 or 37-16-0)" > "$OUT/log_tests_grad_check.txt" 2>&1 &
timeout 98 $CS --tool memcheck python3 benchmarks/device/gd_bwd_small.py 0,3 > "$OUT/log_memcheck.txt" 2>&1 &
timeout 98 $CS --tool racecheck --kernel-name kns=gd_scan_bwd python3 benchmarks/device/gd_bwd_small.py 0 > "$OUT/log_racecheck.txt" 2>&1 &
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then  # the second step's gd_scan_bwd_x1 (8K bf16)
  timeout 98 "$NCU" --kernel-name regex:gd_scan_bwd --launch-skip 1 --launch-count 1 --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats --section SchedulerStats --section InstructionStats \
      --section MemoryWorkloadAnalysis python3 benchmarks/device/gd_bwd_one.py > "$OUT/log_ncu.txt" 2>&1 &
fi
timeout 98 python3 $AB compile sffma,stc,sx1 > "$OUT/log_ab_compile1.txt" 2>&1 &
timeout 98 python3 $AB compile sx1r,sx1s1,sx1db > "$OUT/log_ab_compile2.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error|hazard" "$f" | tail -4; done
echo "-- ab compile"; tail -q -n 3 "$OUT"/log_ab_compile*.txt
echo "-- ncu"; grep -E "^  gd_|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Executed Ipc|Executed Instructions  |Bank Conflicts|ERROR" "$OUT/log_ncu.txt" | head -30
# TIMINGS
echo "=== the scan's backward alone, 8K and 32K $(date -u +%T)"
timeout 24 python3 $AB 8192,32768 3 sffma,stc,sx1,sx1r,sx1s1,sx1db > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
tail -16 "$OUT/log_ab.txt"
echo "=== one fwd+bwd step 8K bf16, per kernel $(date -u +%T)"
timeout 14 python3 benchmarks/device/profile_gd.py train > "$OUT/log_profile_train.txt" 2>&1; echo "rc=$?"
grep -E "train T=|^ *gd_|Self CUDA time total" "$OUT/log_profile_train.txt" | cut -c1-64,150-200
echo "=== done $(date -u +%T)"
