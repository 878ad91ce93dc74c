#!/usr/bin/env bash
# Session 24, s24b (issue 16): gd_forms_bwd_x1's 1xTF32 operands that are a tf32 already, passed to the mma as they are
# (FB_XR), W's and phi's X from a whole tile (FB_XF), dV's operand
# without branches (FB_BFREE), the epilogues' global accesses by pairs (FB_P2).
#   OUT=... bash benchmarks/device/run_s24b.sh tests   the gradient GPU tests (float32 / bf16 against the float64 reference,
#                                                      the training check), memcheck of gd_bwd16_small_s19g16.py, racecheck of
#                                                      its gd_forms_bwd_x1 launches; ab_s24b.py warm (compiles the A/B builds)
#   OUT=... bash benchmarks/device/run_s24b.sh times   ab_s24b.py kernel (gd_forms_bwd_x1 alone, builds b0 = main / b1 = the
#                                                      default / x0 / p0 (one switch off) / f0 / f1 (float32) / ns / nm
#                                                      (ablations) interleaved, 8K and 32K) and public (the bf16 fwd+bwd step
#                                                      with b0 / b1, 8K and 32K)
set -u
if [ "$1" = tests ]; then
  ( NAME=s24b_tests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== tests $(date -u +%T)"
    timeout 140 $PT tests/test_cupy_gated_delta_grad.py -k "grads_against_reference or training_check" > "$OUT/log_t_grad.txt" 2>&1 &
    for w in b0,b1,x0,p0 f0,f1,ns,nm; do  # (request 2's builds, two compiling processes)
      timeout 140 python3 benchmarks/device/ab_s24b.py warm 0 0 $w > "$OUT/log_warm_${w%%,*}.txt" 2>&1 &
    done
    ( PYTORCH_CUDA_ALLOC_CONF= timeout 140 compute-sanitizer --tool memcheck --print-limit 10 python3 benchmarks/device/gd_bwd16_small_s19g16.py > "$OUT/log_memcheck.txt" 2>&1
      echo "rc=$?" >> "$OUT/log_memcheck.txt" ) &
    ( PYTORCH_CUDA_ALLOC_CONF= timeout 140 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms_bwd_x1 --print-limit 10 python3 benchmarks/device/gd_bwd16_small_s19g16.py > "$OUT/log_racecheck.txt" 2>&1
      echo "rc=$?" >> "$OUT/log_racecheck.txt" ) &
    wait
    f="$OUT/log_t_grad.txt"; echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED|^E  " $f | head -8 | cut -c1-200; tail -n 1 $f | cut -c1-160
    for f in "$OUT"/log_warm_*.txt; do echo "-- $(basename $f): $(tail -n 5 $f | tr '\n' ' ' | cut -c1-300)"; done
    for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) $(grep -c 'sanitize ok' $f) ok, $(tail -n 1 $f)"; grep -iE "error|hazard" $f | grep -vE "ERROR SUMMARY|RACECHECK SUMMARY" | head -3 | cut -c1-160; done )
fi
if [ "$1" = times ]; then
  ( NAME=s24b_times; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    echo "=== kernel $(date -u +%T)"
    timeout 70 python3 benchmarks/device/ab_s24b.py kernel 8192,32768 9 b1,x0,p0,f0,f1,ns,nm > "$OUT/log_kernel.txt" 2>&1; echo "rc=$?"
    grep -E "registers|T=" "$OUT/log_kernel.txt" | cut -c1-700
    echo "=== public $(date -u +%T)"
    timeout 45 python3 benchmarks/device/ab_s24b.py public 8192,32768 9 b1 > "$OUT/log_public.txt" 2>&1; echo "rc=$?"
    grep -E "T=" "$OUT/log_public.txt" | cut -c1-700 )
fi
echo "=== done $(date -u +%T)"
