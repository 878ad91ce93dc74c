#!/usr/bin/env bash
# Session 13, branch s13e17 (issue 17), request 2 (the final code), one H200. Tests (<= 100 s, concurrent): the 16-bit and
# gradcheck backward tests (the training forward at chunk 32: hi_read at 128 threads, the new hi_merge's kept slots), the
# forward's float32 / float64 property test and the state / stream tests, memcheck + racecheck of hier_bwd_small.py
# (bf16 training forward); beside them the public calls compiled.
# TIMINGS (<= 40 s, alone): the public bf16 forward against loglinear_attention at 32K / 64K (issue 17's table calls,
# interleaved); bf16 fwd and fwd+bwd against torch SDPA at 16K (hier_train_s12d17.py public).
#   OUT=... bash benchmarks/device/run_s13e17b.sh      (results and logs: $OUT/s13e17b.tgz)
set -u
NAME=s13e17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 95 $PT tests/test_cupy_hierarchical_grad.py -k "gpu_backward_16bit or gradcheck or 16bit_training_forward" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_hierarchical.py -k "matches_reference or state or 16bit" > "$OUT/log_tests_b.txt" 2>&1 &
timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 95 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py race > "$OUT/log_racecheck.txt" 2>&1 &
timeout 95 python3 benchmarks/device/hier_train_s12d17.py warm 256 "" new > "$OUT/log_warm.txt" 2>&1 &
wait
tail -2 "$OUT/log_warm.txt"
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -1 "$f"; done
for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|^float|^bfloat|Error" "$f" | tail -8; done
# TIMINGS (alone on the GPU)
echo "=== TIMINGS: public bf16 forward against loglinear_attention $(date -u +%T)"
timeout 16 python3 benchmarks/device/hier_fwd_s13e17.py public 32768,65536 > "$OUT/log_public.txt" 2>&1
echo "rc=$?"; grep -E "^T=" "$OUT/log_public.txt" | cut -c1-220
echo "=== bf16 fwd, fwd+bwd against SDPA at 16K $(date -u +%T)"
timeout 22 python3 benchmarks/device/hier_train_s12d17.py public 16384 > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; grep -E "ms|hier / SDPA" "$OUT/log_train.txt" | cut -c1-200
echo "=== done $(date -u +%T)"
