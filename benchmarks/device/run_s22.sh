#!/usr/bin/env bash
# Session 22, the lead's calls on main:
#   OUT=... bash benchmarks/device/run_s22.sh first   test_gpu_s16_bound (fixed in 39b048d, never GPU-run), then where
#                                                     the 8K / 32K bf16 public forward spends its time: the timeline
#                                                     (every GPU op, the idle gaps) and the host stamps
#   OUT=... bash benchmarks/device/run_s22.sh final   the merged main: the gated delta GPU test files (forward, gradients,
#                                                     nonfinite) beside memcheck / racecheck / initcheck of gd_tier_small
#                                                     and gd_small bf16, then the Gated DeltaNet tables alone (fwd, fwd+bwd)
set -u
if [ "$1" = first ]; then
  ( NAME=s22_first; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    echo "=== s16 test $(date -u +%T)"
    timeout 150 python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short tests/test_cupy_gated_delta.py -k s16_bound > "$OUT/log_t_s16.txt" 2>&1
    echo "rc=$? $(grep -c ' PASSED' $OUT/log_t_s16.txt) passed, $(grep -c ' FAILED' $OUT/log_t_s16.txt) failed"; tail -n 3 "$OUT/log_t_s16.txt" | cut -c1-200
    echo "=== timeline $(date -u +%T)"
    timeout 90 python3 benchmarks/device/gd_timeline.py 8192,32768 bf16 nochecks > "$OUT/log_timeline.txt" 2>&1; echo "rc=$?"
    grep -v "^ *$" "$OUT/log_timeline.txt" | tail -n 60 | cut -c1-160
    echo "=== host $(date -u +%T)"
    timeout 60 python3 benchmarks/device/gd_host_s16a16.py 8192 bf16 20 > "$OUT/log_host.txt" 2>&1; echo "rc=$?"
    tail -n 25 "$OUT/log_host.txt" | cut -c1-160 )
fi
if [ "$1" = final ]; then
  ( NAME=s22_final; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== final tests $(date -u +%T)"
    K="s16_bound or two_tier or tier3 or fork"
    timeout 190 $PT tests/test_cupy_gated_delta.py -k "$K" > "$OUT/log_t_gd1.txt" 2>&1 &
    timeout 190 $PT tests/test_cupy_gated_delta.py -k "not ($K)" > "$OUT/log_t_gd2.txt" 2>&1 &
    timeout 190 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_gdgrad.txt" 2>&1 &
    timeout 190 $PT tests/test_nonfinite.py -k gated > "$OUT/log_t_nonfinite.txt" 2>&1 &
    for tool in memcheck racecheck initcheck; do
      ( for s in gd_tier_small "gd_small bf16"; do set -- $s
          PYTORCH_CUDA_ALLOC_CONF= timeout 85 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/$1.py ${2:-} > "$OUT/log_${tool}_$1${2:+_$2}.txt" 2>&1
        done ) &
    done
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED" $f | head -5 | cut -c1-200; tail -n 1 $f | cut -c1-160; done
    for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt "$OUT"/log_initcheck_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1)"; done
    mkdir -p "$OUT/gd" "$OUT/gd_train"
    echo "=== gated delta fwd $(date -u +%T)"
    timeout 90 python3 benchmarks/bench_gpu_gated_delta.py --T 2048,8192,16384,32768 --api-max-T 8192 --fla-dtypes bf16 --out "$OUT/gd" > "$OUT/log_gd.txt" 2>&1; echo "rc=$?"
    grep -E "^\|" "$OUT/log_gd.txt" | cut -c1-200
    echo "=== gated delta fwd+bwd $(date -u +%T)"
    timeout 75 python3 benchmarks/bench_gpu_gated_delta.py --train --T 8192,32768 --rows ours_bf16,ours_fp32,fla_ll,sdpa --out "$OUT/gd_train" > "$OUT/log_gd_train.txt" 2>&1; echo "rc=$?"
    grep -E "^\|" "$OUT/log_gd_train.txt" | cut -c1-200 )
fi
echo "=== done $(date -u +%T)"
