#!/usr/bin/env bash
# issue 16, session 13 (one H200), request 2: the final gd_forms_bwd / gd_scan_bwd defaults (chosen from request 1).
# Tests (<= 100 s, the first ~60 s CUDA compilation): tests/test_cupy_gated_delta_grad.py -m gpu in two concurrent
# selections, compute-sanitizer memcheck and racecheck (both backward kernels) of gd_bwd_small.py, the A/B builds
# compiled (NVRTC only), ncu on the second 8K bf16 step's gd_scan_bwd and gd_forms_bwd_x1 (gd_bwd_one.py).
# # TIMINGS (quiet GPU, <= 40 s): the kernels alone at 8K and 32K (ab_gd_forms_bwd.py: gd_forms_bwd s12 / cb / nost /
# new / x1, gd_scan_bwd without / with the prefetch, 512 threads a block), one profiled fwd+bwd step at 8K bf16 (profile_gd.py train).
#   OUT=... bash benchmarks/device/run_s13c16b.sh       (logs under $OUT/s13c16b.tgz; summary on stdout)
set -u
NAME=s13c16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
CS="compute-sanitizer --print-limit 5"
AB=benchmarks/device/ab_gd_forms_bwd.py
echo "=== tests + sanitizers $(date -u +%T)"
timeout 98 $PT tests/test_cupy_gated_delta_grad.py -k "against_reference" > "$OUT/log_tests_grad_ref.txt" 2>&1 &
# (request 1: the 9 others in one process were cut at 98 s after 6 passed) the gradchecks in three processes
timeout 98 $PT tests/test_cupy_gated_delta_grad.py -k "gradcheck and (1-16-0 or 37-16-0 or 70-32-0)" > "$OUT/log_tests_grad_check1.txt" 2>&1 &
timeout 98 $PT tests/test_cupy_gated_delta_grad.py -k "gradcheck and (130-16-0 or 1-16-5 or 40-16-77)" > "$OUT/log_tests_grad_check2.txt" 2>&1 &
timeout 98 $PT tests/test_cupy_gated_delta_grad.py -k "(gradcheck and (70-64-64 or 33-16-31)) or return_state" > "$OUT/log_tests_grad_check3.txt" 2>&1 &
timeout 98 $CS --tool memcheck python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 98 $CS --tool racecheck --kernel-name kns=_bwd python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_racecheck.txt" 2>&1 &
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then  # the second step's gd_scan_bwd and gd_forms_bwd_x1 (8K bf16)
  timeout 98 "$NCU" --kernel-name regex:gd_.*_bwd --launch-skip 2 --launch-count 2 --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats --section SchedulerStats --section InstructionStats \
      python3 benchmarks/device/gd_bwd_one.py > "$OUT/log_ncu.txt" 2>&1 &
fi
for b in s12 cb nost new bv16 bv16pf nt512; do
  timeout 98 python3 $AB compile $b > "$OUT/log_ab_compile_$b.txt" 2>&1 &
done
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error|hazard" "$f" | tail -4; done
echo "-- ab compile"; tail -q -n 1 "$OUT"/log_ab_compile_*.txt
echo "-- ncu"; grep -E "^  gd_|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Executed Ipc|Executed Instructions  " "$OUT/log_ncu.txt" | head -30
# TIMINGS
echo "=== the backward kernels alone, 8K and 32K $(date -u +%T)"
timeout 24 python3 $AB 8192,32768 5 s12,cb,nost,new,x1,bv16,bv16pf,nt512 > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
tail -24 "$OUT/log_ab.txt"
echo "=== one fwd+bwd step 8K bf16, per kernel $(date -u +%T)"
timeout 15 python3 benchmarks/device/profile_gd.py train > "$OUT/log_profile_train.txt" 2>&1; echo "rc=$?"
tail -22 "$OUT/log_profile_train.txt"
echo "=== done $(date -u +%T)"
