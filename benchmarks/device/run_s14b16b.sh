#!/usr/bin/env bash
# issue 16, session 14 (one H200), request 2: gd_forms_bwd's final defaults (split by truncation, 16-byte copies,
# blocked solve, dlam by warps). Tests first (request 1's were cut by their timeouts behind 11 NVRTC compiles and ncu):
# tests/test_cupy_gated_delta_grad.py -m gpu (against_reference in two halves; two float64 gradchecks with offsets),
# compute-sanitizer memcheck and racecheck (gd_forms_bwd only) of gd_bwd_small.py; then the A/B builds compiled.
# # TIMINGS (quiet GPU, <= 40 s): the kernel alone at 8K and 32K (ab_gd_forms_bwd.py: main's gd_forms_bwd / _x1 against
# this branch's and its timing builds dlw0, subst, bs2 / x1bs2), one profiled fwd+bwd step at 8K bf16 (profile_gd.py train).
#   OUT=... bash benchmarks/device/run_s14b16b.sh       (logs under $OUT/s14b16b.tgz; summary on stdout)
set -u
NAME=s14b16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
CS="compute-sanitizer --print-limit 5"
AB=benchmarks/device/ab_gd_forms_bwd.py
BUILDS=main,x1main,new,x1,dlw0,subst,bs2,x1bs2
echo "=== tests + sanitizers $(date -u +%T)"
timeout 98 $PT tests/test_cupy_gated_delta_grad.py -k "against_reference and float32" > "$OUT/log_tests_grad_ref32.txt" 2>&1 &
timeout 98 $PT tests/test_cupy_gated_delta_grad.py -k "against_reference and bfloat16" > "$OUT/log_tests_grad_refbf.txt" 2>&1 &
timeout 98 $PT tests/test_cupy_gated_delta_grad.py -k "gradcheck and (70-64-64 or 33-16-31)" > "$OUT/log_tests_grad_check.txt" 2>&1 &
timeout 98 $CS --tool memcheck python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 98 $CS --tool racecheck --kernel-name kns=gd_forms_bwd python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_racecheck.txt" 2>&1 &
sleep 30  # the NVRTC compiles of the A/B builds after the tests' own
for b in ${BUILDS//,/ }; do
  timeout 68 python3 $AB compile $b > "$OUT/log_ab_compile_$b.txt" 2>&1 &
done
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error|hazard" "$f" | tail -4; done
echo "-- ab compile"; tail -q -n 1 "$OUT"/log_ab_compile_*.txt
# TIMINGS
echo "=== the kernel alone, 8K and 32K $(date -u +%T)"
timeout 22 python3 $AB 8192,32768 10 $BUILDS > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
grep -E "^T=[0-9]+ (ms|x1|main|dlw0|subst|x1main|bs2|x1bs2)" "$OUT/log_ab.txt" | grep -v scan
echo "=== one fwd+bwd step 8K bf16, per kernel $(date -u +%T)"
timeout 15 python3 benchmarks/device/profile_gd.py train > "$OUT/log_profile_train.txt" 2>&1; echo "rc=$?"
grep -E "train T=|gd_forms_bwd|gd_scan_bwd  |GatedDelta" "$OUT/log_profile_train.txt" | cut -c1-60,150-190
echo "=== done $(date -u +%T)"
