#!/usr/bin/env bash
# issue 16, session 14 (one H200), request 1: gd_scan_bwd on tensor cores (3xTF32 float32, 1xTF32 bf16 callers).
# Tests (<= 100 s, the first ~60 s CUDA compilation): tests/test_cupy_gated_delta_grad.py -m gpu in four concurrent
# selections, compute-sanitizer memcheck (both backward kernels) and racecheck (gd_scan_bwd) of gd_bwd_small.py, the A/B
# builds compiled (NVRTC only), ncu on the second 8K bf16 step's gd_scan_bwd_x1 (gd_bwd_one.py).
# # TIMINGS (quiet GPU, <= 40 s): the scan's backward alone at 8K and 32K (ab_gd_forms_bwd.py: sffma = main's FFMA,
# stc 3xTF32, sx1 1xTF32, stc1 one tile set), one profiled fwd+bwd step at 8K bf16 (profile_gd.py train).
#   OUT=... bash benchmarks/device/run_s14c16.sh       (logs under $OUT/s14c16.tgz; summary on stdout)
set -u
NAME=s14c16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
CS="compute-sanitizer --print-limit 5"
AB=benchmarks/device/ab_gd_forms_bwd.py
T=tests/test_cupy_gated_delta_grad.py
echo "=== tests + sanitizers $(date -u +%T)"
timeout 98 $PT $T -k "against_reference" > "$OUT/log_tests_grad_ref.txt" 2>&1 &
timeout 98 $PT $T -k "gradcheck and (1-16-0 or 37-16-0 or 70-32-0)" > "$OUT/log_tests_grad_check1.txt" 2>&1 &
timeout 98 $PT $T -k "gradcheck and (130-16-0 or 1-16-5 or 40-16-77)" > "$OUT/log_tests_grad_check2.txt" 2>&1 &
timeout 98 $PT $T -k "(gradcheck and (70-64-64 or 33-16-31)) or return_state" > "$OUT/log_tests_grad_check3.txt" 2>&1 &
timeout 98 $CS --tool memcheck python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 98 $CS --tool racecheck --kernel-name kns=gd_scan_bwd python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_racecheck.txt" 2>&1 &
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then  # the second step's gd_scan_bwd_x1 (8K bf16)
  timeout 98 "$NCU" --kernel-name regex:gd_scan_bwd --launch-skip 1 --launch-count 1 --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats --section SchedulerStats --section InstructionStats \
      --section MemoryWorkloadAnalysis python3 benchmarks/device/gd_bwd_one.py > "$OUT/log_ncu.txt" 2>&1 &
fi
timeout 98 python3 $AB compile sffma,stc,sx1,stc1 > "$OUT/log_ab_compile.txt" 2>&1 &
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error|hazard" "$f" | tail -4; done
echo "-- ab compile"; tail -n 5 "$OUT"/log_ab_compile.txt
echo "-- ncu"; grep -E "^  gd_|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Executed Ipc|Executed Instructions  |Shared Memory Configuration Size|Bank Conflicts" "$OUT/log_ncu.txt" | head -30
# TIMINGS
echo "=== the scan's backward alone, 8K and 32K $(date -u +%T)"
timeout 22 python3 $AB 8192,32768 5 sffma,stc,sx1,stc1 > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
tail -12 "$OUT/log_ab.txt"
echo "=== one fwd+bwd step 8K bf16, per kernel $(date -u +%T)"
timeout 15 python3 benchmarks/device/profile_gd.py train > "$OUT/log_profile_train.txt" 2>&1; echo "rc=$?"
tail -22 "$OUT/log_profile_train.txt"
echo "=== done $(date -u +%T)"
