#!/usr/bin/env bash
# Session 26, s26d (issue 16): the public bf16 forward at 16K / 32K; gated_delta.PIPE_PARTS (the direct path's sequences
# in parts, each part's scan beside the next part's gd_forms on a high-priority stream).
#   OUT=... bash benchmarks/device/run_s26d.sh tests   (<= 150 s, beside other helpers: test_cupy_gated_delta.py -m gpu
#          (the parts' test first), memcheck / racecheck / initcheck of gd_pipe_small_s26d.py, gd_small.py bf16 and
#          gd_tier_small.py)
#   OUT=... bash benchmarks/device/run_s26d.sh times   (<= 120 s, alone: ab_s26d.py, the public bf16 forward off / parts
#          alternated at 8K / 16K / 32K with a 16K timeline per mode, then off / GD_T1B16_SET / GF_STG 3 + GF_FEX / all
#          three with 2 parts at 16K / 32K; gd_forms alone (gd_forms_s26d.py): GF_STG's and GF_FEX's builds at 16K / 32K,
#          the phase ablations at 16K) (ncu of gd_forms: request 2)
set -u
NAME=s26d_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
CS="compute-sanitizer --print-limit 5"
# gd_forms' builds (gd_forms_s26d.py): the default, GF_STG, each phase ablated
V1=base,-DGF_STG=1,-DGF_STG=2,-DGF_STG=3,-DGF_FEX=1,-DGF_FEX=1+-DGF_STG=3
V2=base,nosolve,nokq,nodec,noattn,noqp,nohout,noscan,nophst,nolamw,noqst
V=$V1,${V2#base,}
echo "=== $1 $(date -u +%T) $(git rev-parse --short HEAD 2>/dev/null)"
if [ "$1" = tests ]; then
  timeout 135 $PT tests/test_cupy_gated_delta.py -k "pipe_parts or torch_direct or direct_output or fork" > "$OUT/log_pytest_a.txt" 2>&1 &
  timeout 135 $PT tests/test_cupy_gated_delta.py -k "not (pipe_parts or torch_direct or direct_output or fork)" > "$OUT/log_pytest_b.txt" 2>&1 &
  for tool in memcheck racecheck initcheck; do
    PYTORCH_CUDA_ALLOC_CONF= timeout 125 $CS --tool $tool python3 $D/gd_pipe_small_s26d.py > "$OUT/log_${tool}_pipe.txt" 2>&1 &
    PYTORCH_CUDA_ALLOC_CONF= timeout 125 $CS --tool $tool python3 $D/gd_small.py bf16 > "$OUT/log_${tool}_small.txt" 2>&1 &
  done
  PYTORCH_CUDA_ALLOC_CONF= timeout 125 $CS --tool memcheck python3 $D/gd_tier_small.py > "$OUT/log_memcheck_tier.txt" 2>&1 &
  timeout 130 python3 $D/ab_s26d.py 8192 0 off,b16,sf,all > "$OUT/log_warm_ab.txt" 2>&1 &  # (times' modules compiled)
  for v in ${V//,/ }; do  # (times' builds into CuPy's kernel cache, a few at a time beside the rest)
    [ $SECONDS -lt 110 ] && timeout $((135 - SECONDS)) python3 $D/gd_forms_s26d.py compile $v >> "$OUT/log_compile.txt" 2>&1 &
    [ $(jobs -r | wc -l) -ge 13 ] && wait -n
  done
  wait
  echo "-- ab modules: $(grep -c 'vs off' $OUT/log_warm_ab.txt) of 4 modes"; grep -E "vs off|Error" $OUT/log_warm_ab.txt | cut -c1-150
  echo "-- builds: $(grep -c ^built $OUT/log_compile.txt) of $(echo $V | tr , '\n' | wc -l)"; grep -E "^built|Error" $OUT/log_compile.txt | cut -c1-120
  for f in a b; do
    echo "-- pytest $f: $(tail -1 $OUT/log_pytest_$f.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_pytest_$f.txt | head -8 | cut -c1-220
  done
  for f in "$OUT"/log_*check_*.txt; do
    echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) | $(grep -c 'equal to 1: True\|tier-vs-main\|^ok\|sanitize ok' $f) ok lines, $(grep -c 'equal to 1: False' $f) unequal"
    grep -E "^=========  (Invalid|Race|Uninit|Error)|Traceback|Error:" $f | head -4 | cut -c1-160
  done
else
  timeout 38 python3 $D/ab_s26d.py 8192,16384,32768 7 off,p2,p4,p2n 16384 > "$OUT/log_ab.txt" 2>&1; echo "ab rc=$?"
  grep -E "parts|vs off" "$OUT/log_ab.txt" | cut -c1-160
  sed -n '/--- timeline/,$p' "$OUT/log_ab.txt" | grep -vE "^\|" | cut -c1-120
  grep -E "^\|" "$OUT/log_ab.txt"
  timeout 33 python3 $D/ab_s26d.py 16384,32768 7 off,b16,sf,all 0 > "$OUT/log_ab2.txt" 2>&1; echo "ab2 rc=$?"
  grep -E "vs off" "$OUT/log_ab2.txt" | cut -c1-160; grep -E "^\|" "$OUT/log_ab2.txt"
  timeout 20 python3 $D/gd_forms_s26d.py 16384,32768 $V1 7 > "$OUT/log_forms.txt" 2>&1; echo "forms rc=$?"
  grep -E "^T=|Error" "$OUT/log_forms.txt" | cut -c1-200
  [ $SECONDS -lt 110 ] && timeout $((118 - SECONDS)) python3 $D/gd_forms_s26d.py 16384 $V2 5 > "$OUT/log_forms_abl.txt" 2>&1; echo "ablations rc=$? at ${SECONDS} s"
  grep -E "^T=|Error" "$OUT/log_forms_abl.txt" | cut -c1-110
fi
echo "=== done $(date -u +%T)"
