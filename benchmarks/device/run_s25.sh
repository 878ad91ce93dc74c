#!/usr/bin/env bash
# Session 25, the lead's final call on main:
#   OUT=... bash benchmarks/device/run_s25.sh final   the merged main: the gated delta GPU tests (forward, gradients with
#                                                     the two-tier scan backward K1-K4 (TIER_BWD) and its kernels against
#                                                     the twin, nonfinite, dispatch, hierarchical raw launches) in six
#                                                     processes; memcheck / racecheck / initcheck of small scan and
#                                                     training calls (the two-tier backward from 3 chunks included); then
#                                                     the Gated DeltaNet tables alone (fwd, fwd+bwd with fla's GDN
#                                                     fwd+bwd timed with its Hopper guard lifted); the two-tier
#                                                     backward's kernels alone; EXTRA=<command>: one more step
set -u
if [ "$1" = final ]; then
  ( NAME=s25_final; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
    . benchmarks/device/gd_gpu_tests.sh
    echo "=== final tests $(date -u +%T)"
    gd_gpu_tests
    for tool in memcheck racecheck initcheck; do
      ( for s in gd_tier_small "gd_small bf16" gd_bwd16_small_s19g16 gd_train16_small_s24a; do set -- $s
          PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/$1.py ${2:-} > "$OUT/log_${tool}_$1${2:+_$2}.txt" 2>&1
        done ) &
    done
    wait
    gd_gpu_summary
    for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt "$OUT"/log_initcheck_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) $(grep -c 'sanitize ok' $f) ok"; done
    echo "=== two-tier backward kernels $(date -u +%T)"
    timeout 60 python3 benchmarks/device/gd_tier_bwd_kernels.py > "$OUT/log_tier_bwd_kernels.txt" 2>&1; echo "rc=$?"
    grep -E "^\||H200|H100" "$OUT/log_tier_bwd_kernels.txt" | cut -c1-200
    gd_tables
    [ -n "${EXTRA:-}" ] && { echo "=== extra: $EXTRA $(date -u +%T)"; timeout 130 bash -c "$EXTRA" > "$OUT/log_extra.txt" 2>&1; echo "rc=$?"; tail -n 30 "$OUT/log_extra.txt" | cut -c1-220; } )
fi
echo "=== done $(date -u +%T)"
