#!/usr/bin/env bash
# Session 26, s26a (issue 16): gd_forms_bwd_x1's product engine (FB_LDM: tile operands by ldmatrix, products sharing B
# in one k-loop) and dlam's level sums by quads of lanes (FB_DLQ) against session 24's kernel (both 0).
#   OUT=... bash benchmarks/device/run_s26a.sh tests   tests/test_cupy_gated_delta_grad.py -m gpu; memcheck / racecheck (of
#                                                      gd_forms_bwd_x1) / initcheck of gd_train16_small_s24a.py; ab_s26a.py
#                                                      warm (the A/B builds) and public at 4K (the step's kernels compiled)
#   OUT=... bash benchmarks/device/run_s26a.sh times   ab_s26a.py kernel (gd_forms_bwd_x1 alone: b0 = FB_LDM 0 FB_DLQ 0, b1 =
#                                                      the default, d0, u2, f0 / f1, ns / nm at 8K / 16K / 32K), ncu of one b0 and
#                                                      one b1 launch at 8K, the public bf16 step (b0 / b1) at 16K / 32K
set -u
if [ "$1" = tests ]; then
  ( NAME=s26a_tests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
    echo "=== tests $(date -u +%T)"
    timeout 140 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_t_grad.txt" 2>&1 &
    for w in b0,b1,d0,u2 f0,f1,ns,nm; do  # (two compiling processes)
      timeout 140 python3 benchmarks/device/ab_s26a.py warm 0 0 $w > "$OUT/log_warm_${w%%,*}.txt" 2>&1 &
    done
    timeout 140 python3 benchmarks/device/ab_s26a.py public 4096 1 b1 > "$OUT/log_warm_public.txt" 2>&1 &  # (the step's kernels compiled)
    for tool in memcheck racecheck initcheck; do  # (racecheck: gd_forms_bwd_x1's launches; initcheck unfiltered: every write tracked)
      F=; [ $tool = racecheck ] && F="--kernel-name kns=gd_forms_bwd_x1"
      ( PYTORCH_CUDA_ALLOC_CONF= timeout 140 compute-sanitizer --tool $tool $F --print-limit 10 python3 benchmarks/device/gd_train16_small_s24a.py > "$OUT/log_$tool.txt" 2>&1
        echo "rc=$?" >> "$OUT/log_$tool.txt" ) &
    done
    wait
    f="$OUT/log_t_grad.txt"; echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"; grep -E "^FAILED|^E  " $f | head -8 | cut -c1-200; tail -n 1 $f | cut -c1-160
    for f in "$OUT"/log_warm_*.txt; do echo "-- $(basename $f): $(tail -n 5 $f | tr '\n' ' ' | cut -c1-300)"; done
    for f in "$OUT"/log_memcheck.txt "$OUT"/log_racecheck.txt "$OUT"/log_initcheck.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1), $(tail -n 1 $f)"; grep -iE "error|hazard" $f | grep -vE "ERROR SUMMARY|RACECHECK SUMMARY" | head -3 | cut -c1-160; done )
fi
if [ "$1" = times ]; then
  ( NAME=s26a_times; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    echo "=== kernel $(date -u +%T)"
    timeout 45 python3 benchmarks/device/ab_s26a.py kernel 8192,16384,32768 5 b1,d0,u2,f0,f1,ns,nm > "$OUT/log_kernel.txt" 2>&1; echo "rc=$?"
    grep -E "registers|T=" "$OUT/log_kernel.txt" | cut -c1-700
    echo "=== ncu $(date -u +%T)"
    timeout 30 ncu --set full -k regex:gd_forms_bwd_x1 -c 2 -o "$OUT/ncu_8k" python3 benchmarks/device/ab_s26a.py kernel 8192 1 b1 > "$OUT/log_ncu_run.txt" 2>&1; echo "rc=$?"
    ncu -i "$OUT/ncu_8k.ncu-rep" --page details > "$OUT/log_ncu.txt" 2>&1
    ncu -i "$OUT/ncu_8k.ncu-rep" --page source --csv --print-source sass > "$OUT/log_ncu_sass.csv" 2>&1
    grep -E "^  [a-z_0-9]+|Duration|Registers Per|Achieved Occupancy|Issue Slots Busy|Executed Ipc A|Issued Warp|No Eligible|Tensor|Warp Cycles Per Issued|Executed Instructions  " "$OUT/log_ncu.txt" | grep -v "^  ---" | cut -c1-120 | head -40
    grep -iE "stall|One or More" "$OUT/log_ncu.txt" | cut -c1-220 | head -12
    echo "=== public $(date -u +%T)"
    timeout 35 python3 benchmarks/device/ab_s26a.py public 16384,32768 5 b1 > "$OUT/log_public.txt" 2>&1; echo "rc=$?"
    grep -E "T=" "$OUT/log_public.txt" | cut -c1-700 )
fi
echo "=== done $(date -u +%T)"
