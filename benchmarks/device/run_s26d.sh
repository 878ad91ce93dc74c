#!/usr/bin/env bash
# Session 26, s26d (issue 16): the public bf16 forward at 16K / 32K, request 2 (written before request 1's results came):
# main's path, the branch's defaults (PIPE_PARTS 2) and the switches' builds (GD_T1B16_SET, GF_STG 3 + GF_FEX, all with 2
# parts) in one process (request 1's script, with the ablations: git show af928dd:benchmarks/device/run_s26d.sh).
#   OUT=... bash benchmarks/device/run_s26d.sh tests   (<= 150 s, beside other helpers: test_cupy_gated_delta.py -m gpu
#          (the parts' and direct-path tests first); memcheck / racecheck / initcheck of gd_pipe_small_s26d.py and
#          gd_small.py bf16, memcheck of gd_tier_small.py; warm-ups of times' modules)
#   OUT=... bash benchmarks/device/run_s26d.sh times   (<= 120 s, alone: ab_s26d.py, the public bf16 forward main / the
#          branch's defaults / the switches rotated call by call at 8K / 16K / 32K with 16K timelines; gd_forms alone,
#          GF_STG / GF_FEX builds; ncu of gd_forms at 16K)
set -u
NAME=s26d_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
CS="compute-sanitizer --print-limit 5"
V1=base,-DGF_STG=3,-DGF_FEX=1,-DGF_FEX=1+-DGF_STG=3
M=off,main,new,p4,b16,sf,all
echo "=== $1 $(date -u +%T) $(git rev-parse --short HEAD 2>/dev/null)"
if [ "$1" = tests ]; then
  timeout 135 $PT tests/test_cupy_gated_delta.py -k "pipe_parts or torch_direct or direct_output or fork or s16" > "$OUT/log_pytest_a.txt" 2>&1 &
  timeout 135 $PT tests/test_cupy_gated_delta.py -k "not (pipe_parts or torch_direct or direct_output or fork or s16)" > "$OUT/log_pytest_b.txt" 2>&1 &
  for tool in memcheck racecheck initcheck; do
    PYTORCH_CUDA_ALLOC_CONF= timeout 125 $CS --tool $tool python3 $D/gd_pipe_small_s26d.py > "$OUT/log_${tool}_pipe.txt" 2>&1 &
    PYTORCH_CUDA_ALLOC_CONF= timeout 125 $CS --tool $tool python3 $D/gd_small.py bf16 > "$OUT/log_${tool}_small.txt" 2>&1 &
  done
  PYTORCH_CUDA_ALLOC_CONF= timeout 125 $CS --tool memcheck python3 $D/gd_tier_small.py > "$OUT/log_memcheck_tier.txt" 2>&1 &
  timeout 130 python3 $D/ab_s26d.py 8192 0 $M > "$OUT/log_warm_ab.txt" 2>&1 &  # (times' modules compiled)
  timeout 130 python3 $D/gd_forms_s26d.py compile $V1 > "$OUT/log_compile.txt" 2>&1 &
  wait
  echo "-- ab modules: $(grep -c 'vs off' $OUT/log_warm_ab.txt) of 7 modes"; grep -E "vs off|Error" $OUT/log_warm_ab.txt | cut -c1-150
  echo "-- builds: $(grep -c ^built $OUT/log_compile.txt) of 4"; grep -E "^built|fails|Error" $OUT/log_compile.txt | cut -c1-120
  for f in a b; do
    echo "-- pytest $f: $(tail -1 $OUT/log_pytest_$f.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_pytest_$f.txt | head -8 | cut -c1-220
  done
  for f in "$OUT"/log_*check_*.txt; do
    echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) | $(grep -c 'equal to 1: True\|tier-vs-main\|^ok\|sanitize ok' $f) ok lines, $(grep -c 'equal to 1: False' $f) unequal"
    grep -E "^=========  (Invalid|Race|Uninit|Error)|Traceback|Error:" $f | head -4 | cut -c1-160
  done
else
  timeout 55 python3 $D/ab_s26d.py 8192,16384,32768 9 $M 16384 > "$OUT/log_ab.txt" 2>&1; echo "ab rc=$?"
  grep -E "parts|vs off" "$OUT/log_ab.txt" | cut -c1-160
  sed -n '/--- timeline/,$p' "$OUT/log_ab.txt" | grep -vE "^\|" | cut -c1-120
  grep -E "^\|" "$OUT/log_ab.txt"
  timeout 20 python3 $D/gd_forms_s26d.py 16384,32768 $V1 7 > "$OUT/log_forms.txt" 2>&1; echo "forms rc=$?"
  grep -E "^T=|fails|Error" "$OUT/log_forms.txt" | cut -c1-200
  [ $SECONDS -lt 90 ] && timeout $((115 - SECONDS)) ncu --set full -k regex:gd_forms --launch-skip 2 -c 1 python3 $D/gd_one_bf16_s23.py 16384 > "$OUT/log_ncu.txt" 2>&1; echo "ncu rc=$? at ${SECONDS} s"
  grep -E "Duration|Registers Per|Achieved Occupancy|Theoretical Occupancy|Issue Slots Busy|No Eligible|Eligible Warps|Warp Cycles Per Issued|Executed Instructions  |Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|L1/TEX Hit|Block Limit|Stall" "$OUT/log_ncu.txt" | head -30 | cut -c1-150
fi
echo "=== done $(date -u +%T)"
