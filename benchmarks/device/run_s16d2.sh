#!/usr/bin/env bash
# Session 16, branch s16d17 (issue 17), request 2: hib_dkdv's dk, dlv in registers from the chunk's pair products on
# (HIB_DKR, extended from request 1's right blocks only) and its E^T formed by columns (HIB_ETM), both bit-equal by
# construction; the deferred checks made right after hi_intra's launch (_nonfinite.launch_pending: their host work
# beside hi_intra, the answer ready by the call's end); the final tree's training step against SDPA and the checks'
# other orders (late: request 1's, at the prologue's access; eager: main's, before the kernels).
#   OUT=... bash benchmarks/device/run_s16d2.sh tests   (<= 100 s, beside the other helpers' tests): the hierarchical GPU
#       tests (16-bit backward and training forward, the float32 / float64 backward property test, the forward's
#       reference / stream / 16-bit tests with the deferred checks, the automatic dispatch), memcheck and racecheck of
#       hib_dkdv (hier_bwd_small.py), the builds the timings need
#   OUT=... bash benchmarks/device/run_s16d2.sh times   (<= 40 s, alone): hier_dkdv_s16d17.py kab 16384 main,etm0,new
#       (bit-equality against main's hib_dkdv), then hier_step_s16d17.py times bf16:16384 bf16:32768 fp32:8192 --no-prof
#       (interleaved ours new / late / eager / SDPA, the fp32 array-API ratio), then the 16K bf16 profile
# Results and logs: $OUT/s16d2_<mode>.tgz. Ran at 6afa239 (batch 2); HIB_ETM was removed after it (no gain), so its
# etm0 variant is gone from hier_dkdv_s16d17.py (run kab 16384 main,new).
set -u
NAME=s16d2_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
D=benchmarks/device
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  ( timeout 88 python3 $D/hier_step_s16d17.py warm > "$OUT/log_warm1.txt" 2>&1 ) &
  ( timeout 88 python3 $D/hier_dkdv_s16d17.py warm main > "$OUT/log_warm2.txt" 2>&1 ) &
  ( timeout 88 python3 $D/hier_dkdv_s16d17.py warm etm0 > "$OUT/log_warm3.txt" 2>&1 ) &
  G=tests/test_cupy_hierarchical_grad.py
  timeout 88 $PT $G -k "gpu_backward_16bit or 16bit_training_forward" > "$OUT/log_tests_a.txt" 2>&1 &
  timeout 88 $PT $G -k "gpu_backward_matches_reference" > "$OUT/log_tests_b.txt" 2>&1 &
  timeout 88 $PT tests/test_cupy_hierarchical.py tests/test_gpu_dispatch.py -k "matches_reference or stream_moves or 16bit_in_16bit or (dispatch and loglinear_log)" > "$OUT/log_tests_c.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 88 compute-sanitizer --tool memcheck --print-limit 5 --kernel-name kns=hib_dkdv python3 $D/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 88 compute-sanitizer --tool racecheck --print-limit 5 --kernel-name kns=hib_dkdv python3 $D/hier_bwd_small.py race > "$OUT/log_racecheck.txt" 2>&1 &
  wait
  echo "warm: $(cat "$OUT"/log_warm*.txt | grep -c '^warm') (of 4 lines)"; grep -h -E "Error|error" "$OUT"/log_warm*.txt | head -3 | cut -c1-200
  for f in "$OUT"/log_tests_*.txt; do echo "-- $(basename $f): $(tail -n 1 "$f" | cut -c1-120)"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -6 | cut -c1-200; done
  for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do
    echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok' "$f" | tr '\n' ' ')"
    grep -E "^float|^bfloat|Error|error" "$f" | tail -n 6 | cut -c1-160; done
elif [ "$1" = times ]; then
  echo "=== hib_dkdv A/B $(date -u +%T)"
  timeout 10 python3 $D/hier_dkdv_s16d17.py kab 16384 main,etm0,new > "$OUT/log_kab.txt" 2>&1; echo "rc=$?"
  grep -E "^T=|Error" "$OUT/log_kab.txt" | cut -c1-200
  echo "=== step $(date -u +%T)"
  OUT=$OUT timeout 16 python3 $D/hier_step_s16d17.py times bf16:16384 bf16:32768 fp32:8192 --budget 1.5 --no-prof --no-spans > "$OUT/log_step.txt" 2>&1
  echo "rc=$?"
  grep -E "interleaved|ours / SDPA|array-API|failed|done at" "$OUT/log_step.txt" | cut -c1-260
  echo "=== profile 16K $(date -u +%T)"
  OUT=$OUT timeout 11 python3 $D/hier_prof_s14g17.py profile bf16:16384 --trace "$OUT" > "$OUT/log_prof.txt" 2>&1; echo "rc=$?"
  grep -E "clocks|: span" "$OUT/log_prof.txt" | cut -c1-260
  grep -E "^    " "$OUT/log_prof.txt" | head -24 | cut -c1-90
fi
echo "=== done $(date -u +%T)"
