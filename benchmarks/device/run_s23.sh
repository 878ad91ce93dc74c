#!/usr/bin/env bash
# Session 23, the lead's calls on main:
#   OUT=... bash benchmarks/device/run_s23.sh first   the 8K / 32K bf16 public forward: timeline (every GPU op), host
#                                                     stamps, and Nsight Compute's view of the five kernels at 8K
#   OUT=... bash benchmarks/device/run_s23.sh final   the merged main (s23a host path, s23d scan kernels): the gated delta
#                                                     GPU tests (three processes), gradients, nonfinite, dispatch, the
#                                                     hierarchical raw-launch paths, memcheck / racecheck / initcheck of
#                                                     gd_tier_small and gd_small bf16; then the Gated DeltaNet tables alone
set -u
if [ "$1" = first ]; then
  ( NAME=s23_first; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
    echo "=== timeline $(date -u +%T)"
    timeout 90 python3 benchmarks/device/gd_timeline.py 8192,32768 bf16 nochecks > "$OUT/log_timeline.txt" 2>&1; echo "rc=$?"
    grep -v "^ *$" "$OUT/log_timeline.txt" | tail -n 60 | cut -c1-160
    echo "=== host $(date -u +%T)"
    timeout 60 python3 benchmarks/device/gd_host_s16a16.py 8192 bf16 20 > "$OUT/log_host.txt" 2>&1; echo "rc=$?"
    tail -n 25 "$OUT/log_host.txt" | cut -c1-160
    echo "=== ncu $(date -u +%T)"
    timeout 150 ncu --kernel-name regex:gd_ --launch-skip 10 --launch-count 6 --set full -o "$OUT/gd8k" \
        python3 benchmarks/device/gd_one_bf16_s23.py 8192 > "$OUT/log_ncu.txt" 2>&1; echo "rc=$?"
    tail -n 5 "$OUT/log_ncu.txt" | cut -c1-200
    timeout 60 ncu --import "$OUT/gd8k.ncu-rep" --page details --print-units base > "$OUT/ncu_details.txt" 2>&1
    grep -E "^  gd_|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Theoretical Occ|Block Size|Grid Size|Dynamic Shared|Waves Per SM|DRAM Throughput|L1/TEX Hit|L2 Hit|Issue Slots Busy|No Eligible|Active Warps Per|Eligible Warps" "$OUT/ncu_details.txt" | cut -c1-120 )
fi
if [ "$1" = final ]; then
  ( NAME=s23_final; . benchmarks/device/setup.sh
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
      ( for s in gd_tier_small "gd_small bf16"; do set -- $s
          PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/$1.py ${2:-} > "$OUT/log_${tool}_$1${2:+_$2}.txt" 2>&1
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
