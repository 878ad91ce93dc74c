#!/usr/bin/env bash
# Session 24, the lead's calls on main:
#   OUT=... bash benchmarks/device/run_s24.sh first   session 23's fixed hierarchical 16-bit training test; the Gated
#                                                     DeltaNet fwd+bwd table with fla's plain GDN fwd+bwd timed with its
#                                                     Hopper guard lifted; where our fwd+bwd step's time goes (8K bf16);
#                                                     host stamps and the forward table with the array-API column
#   OUT=... bash benchmarks/device/run_s24.sh final   the merged main: the gated delta GPU tests (forward, gradients,
#                                                     nonfinite, dispatch, hierarchical raw launches) in six processes,
#                                                     memcheck / racecheck / initcheck of small scan and training
#                                                     calls; then the Gated DeltaNet tables alone (fwd, fwd+bwd with fla's
#                                                     GDN fwd+bwd timed with its guard lifted)
set -u
if [ "$1" = first ]; then
  ( NAME=s24_first; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
    echo "=== s23e test $(date -u +%T)"
    timeout 120 python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short tests/test_cupy_hierarchical_grad.py \
        -k 16bit_training_forward > "$OUT/log_t_hier16.txt" 2>&1 &
    echo "=== host $(date -u +%T)"
    timeout 60 python3 benchmarks/device/gd_host_s16a16.py 8192 bf16 20 > "$OUT/log_host.txt" 2>&1; echo "rc=$?"
    tail -n 12 "$OUT/log_host.txt" | cut -c1-160
    wait
    f="$OUT/log_t_hier16.txt"; echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"
    grep -E "^FAILED" $f | head -5 | cut -c1-200; tail -n 1 $f | cut -c1-160
    mkdir -p "$OUT/gd" "$OUT/gd_train"
    echo "=== gated delta fwd+bwd $(date -u +%T)"
    timeout 200 python3 benchmarks/bench_gpu_gated_delta.py --train --T 8192,16384,32768 \
        --rows ours_bf16,fla_lifted,fla_ll,sdpa --out "$OUT/gd_train" > "$OUT/log_gd_train.txt" 2>&1; echo "rc=$?"
    grep -E "^\||fails" "$OUT/log_gd_train.txt" | cut -c1-220
    echo "=== profile train 8K $(date -u +%T)"
    timeout 60 python3 benchmarks/device/profile_gd.py train 8192 > "$OUT/log_prof_train.txt" 2>&1; echo "rc=$?"
    grep -E "====|gd_|Self CUDA time total|Self CPU time total" "$OUT/log_prof_train.txt" | cut -c1-200 | head -40
    echo "=== gated delta fwd $(date -u +%T)"
    timeout 100 python3 benchmarks/bench_gpu_gated_delta.py --T 2048,8192,32768 --api-max-T 32768 --fla-dtypes bf16 \
        --out "$OUT/gd" > "$OUT/log_gd.txt" 2>&1; echo "rc=$?"
    grep -E "^\|" "$OUT/log_gd.txt" | cut -c1-200 )
fi
if [ "$1" = final ]; then
  ( NAME=s24_final; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== final tests $(date -u +%T)"
    K="s16_bound or two_tier or tier3 or fork or direct_output"
    timeout 200 $PT tests/test_cupy_gated_delta.py -k "$K" > "$OUT/log_t_gd1.txt" 2>&1 &
    timeout 200 $PT tests/test_cupy_gated_delta.py -k "not ($K)" > "$OUT/log_t_gd2.txt" 2>&1 &
    timeout 200 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_gdgrad.txt" 2>&1 &
    timeout 200 $PT tests/test_nonfinite.py -k "gated or side_stream" > "$OUT/log_t_nonfinite.txt" 2>&1 &
    timeout 200 $PT tests/test_gpu_dispatch.py > "$OUT/log_t_dispatch.txt" 2>&1 &
    timeout 200 $PT tests/test_cupy_hierarchical.py tests/test_cupy_hierarchical_grad.py \
        -k "16bit_in_16bit_out or bf16_intra or 16bit_training_forward" > "$OUT/log_t_hier.txt" 2>&1 &
    for tool in memcheck racecheck initcheck; do
      ( for s in gd_tier_small "gd_small bf16" gd_bwd16_small_s19g16; do set -- $s
          PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/$1.py ${2:-} > "$OUT/log_${tool}_$1${2:+_$2}.txt" 2>&1
        done ) &
    done
    wait
    for f in "$OUT"/log_t_*.txt; do echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED" $f | head -5 | cut -c1-200; tail -n 1 $f | cut -c1-160; done
    for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt "$OUT"/log_initcheck_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1)"; done
    mkdir -p "$OUT/gd" "$OUT/gd_train"
    echo "=== gated delta fwd $(date -u +%T)"
    timeout 100 python3 benchmarks/bench_gpu_gated_delta.py --T 2048,8192,16384,32768 --api-max-T 32768 --fla-dtypes bf16 \
        --out "$OUT/gd" > "$OUT/log_gd.txt" 2>&1; echo "rc=$?"
    grep -E "^\|" "$OUT/log_gd.txt" | cut -c1-220
    echo "=== gated delta fwd+bwd $(date -u +%T)"
    timeout 150 python3 benchmarks/bench_gpu_gated_delta.py --train --T 8192,16384,32768 \
        --rows ours_bf16,fla_lifted,fla_ll,sdpa --out "$OUT/gd_train" > "$OUT/log_gd_train.txt" 2>&1; echo "rc=$?"
    grep -E "^\||fails" "$OUT/log_gd_train.txt" | cut -c1-220 )
fi
echo "=== done $(date -u +%T)"
