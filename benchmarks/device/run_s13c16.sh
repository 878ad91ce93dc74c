#!/usr/bin/env bash
# issue 16, session 13 (one H200), request 1: gd_forms_bwd on tensor cores (3xTF32), gd_scan_bwd with 8-column blocks.
# Tests (<= 100 s, the first ~60 s CUDA compilation): tests/test_cupy_gated_delta_grad.py -m gpu (gradcheck, float32 /
# bf16 gradients against the float64 reference) beside compute-sanitizer memcheck of gd_bwd_small.py, racecheck of
# both backward kernels on it, and the A/B builds compiled (ab_gd_forms_bwd.py compile: NVRTC only, no timing).
# # TIMINGS (quiet GPU, <= 40 s): gd_forms_bwd s12 / ffma / nocb / new / x1 and gd_scan_bwd bv16 / bv8 / bv4 (each with and
# without the next slot's prefetch, *pf) alone at 8K (B H = 32,
# d = 64, float32 compute); one profiled fwd+bwd step at 8K bf16 (profile_gd.py train: the per-kernel split).
#   OUT=... bash benchmarks/device/run_s13c16.sh       (logs under $OUT/s13c16.tgz; summary on stdout)
set -u
NAME=s13c16; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
CS="compute-sanitizer --print-limit 5"
echo "=== tests + sanitizers $(date -u +%T)"
timeout 98 $PT tests/test_cupy_gated_delta_grad.py -k "against_reference" > "$OUT/log_tests_grad_ref.txt" 2>&1 &
timeout 98 $PT tests/test_cupy_gated_delta_grad.py -k "not against_reference" > "$OUT/log_tests_grad_check.txt" 2>&1 &
timeout 98 $CS --tool memcheck python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 98 $CS --tool racecheck --kernel-name kns=_bwd python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_racecheck.txt" 2>&1 &
for b in s12 ffma nocb new bv16 bv16pf bv8 bv8pf bv4 bv4pf; do  # the A/B builds into CuPy's cache, one process each
  timeout 98 python3 benchmarks/device/ab_gd_forms_bwd.py compile $b > "$OUT/log_ab_compile_$b.txt" 2>&1 &
done
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error|hazard" "$f" | tail -4; done
echo "-- ab compile"; tail -q -n 1 "$OUT"/log_ab_compile_*.txt
# TIMINGS
echo "=== gd_forms_bwd / gd_scan_bwd alone, 8K $(date -u +%T)"
timeout 22 python3 benchmarks/device/ab_gd_forms_bwd.py 8192 10 > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
tail -24 "$OUT/log_ab.txt"
echo "=== one fwd+bwd step 8K bf16, per kernel $(date -u +%T)"
timeout 16 python3 benchmarks/device/profile_gd.py train > "$OUT/log_profile_train.txt" 2>&1; echo "rc=$?"
tail -22 "$OUT/log_profile_train.txt"
echo "=== done $(date -u +%T)"
