#!/usr/bin/env bash
# issue 16, session 14 (one H200), request 1: gd_forms_bwd's cheaper 3xTF32 split, 16-byte tile copies, the pipelined k-loop.
# Tests (<= 100 s, the first ~60 s CUDA compilation): tests/test_cupy_gated_delta_grad.py -m gpu (against_reference: the
# float32 / bf16 gradients through gd_forms_bwd / gd_forms_bwd_x1; two float64 gradchecks with offsets), compute-sanitizer
# memcheck and racecheck (gd_forms_bwd only) of gd_bwd_small.py, the A/B builds compiled (NVRTC only), ncu on the second
# 8K bf16 step's gd_forms_bwd_x1 (gd_bwd_one.py).
# # TIMINGS (quiet GPU, <= 40 s): the kernel alone at 8K and 32K (ab_gd_forms_bwd.py: main's gd_forms_bwd / _x1 against
# this branch's and its timing builds), one profiled fwd+bwd step at 8K bf16 (profile_gd.py train).
#   OUT=... bash benchmarks/device/run_s14b16.sh       (logs under $OUT/s14b16.tgz; summary on stdout)
set -u
NAME=s14b16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
CS="compute-sanitizer --print-limit 5"
AB=benchmarks/device/ab_gd_forms_bwd.py
BUILDS=main,x1main,new,x1,pf,x1pf,nosplit,nov4,subst,nosolve,nomm
echo "=== tests + sanitizers $(date -u +%T)"
timeout 95 $PT tests/test_cupy_gated_delta_grad.py -k "against_reference" > "$OUT/log_tests_grad_ref.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_gated_delta_grad.py -k "gradcheck and (70-64-64 or 33-16-31)" > "$OUT/log_tests_grad_check.txt" 2>&1 &
timeout 95 $CS --tool memcheck python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 95 $CS --tool racecheck --kernel-name kns=gd_forms_bwd python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_racecheck.txt" 2>&1 &
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then  # the second step's gd_forms_bwd_x1 (8K bf16)
  timeout 95 "$NCU" --kernel-name regex:gd_forms_bwd --launch-skip 1 --launch-count 1 --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats --section SchedulerStats --section InstructionStats \
      python3 benchmarks/device/gd_bwd_one.py > "$OUT/log_ncu.txt" 2>&1 &
fi
for b in ${BUILDS//,/ }; do
  timeout 95 python3 $AB compile $b > "$OUT/log_ab_compile_$b.txt" 2>&1 &
done
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error|hazard" "$f" | tail -4; done
echo "-- ab compile"; tail -q -n 1 "$OUT"/log_ab_compile_*.txt
echo "-- ncu"; grep -E "^  gd_|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Executed Ipc|Executed Instructions  |Stall" "$OUT/log_ncu.txt" | head -30
# TIMINGS
echo "=== the kernel alone, 8K and 32K $(date -u +%T)"
timeout 22 python3 $AB 8192,32768 8 $BUILDS > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
grep -vE "^T=[0-9]+ scan" "$OUT/log_ab.txt" | tail -26
echo "=== one fwd+bwd step 8K bf16, per kernel $(date -u +%T)"
timeout 15 python3 benchmarks/device/profile_gd.py train > "$OUT/log_profile_train.txt" 2>&1; echo "rc=$?"
tail -22 "$OUT/log_profile_train.txt"
echo "=== done $(date -u +%T)"
