#!/usr/bin/env bash
# Session 19, s19e17 (issue 17 hygiene): initcheck's uninitialized reads in the hierarchical kernels; the switches
# HI_GCHW (hierarchical_intra.cu) and HIB_IRD (hierarchical_bwd.cu), A/B by hier_ird_s19e17.py (its docstring).
#   OUT=... bash benchmarks/device/run_s19e.sh tests   (<= 100 s, beside other helpers: initcheck of hier_bwd_small.py and
#                                                       hier_small.py (no kernel filter), memcheck, racecheck, the
#                                                       hierarchical GPU tests, warm-up compiles of the A/B's builds)
#   OUT=... bash benchmarks/device/run_s19e.sh times   (<= 40 s, alone: hi_intra / hib_dq / hib_dkdv alone on / off at
#                                                       16K bf16, the public bf16 fwd+bwd on / off)
set -u
NAME=s19e_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
SAN="env PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --print-limit 200"
echo "=== $1 $(date -u +%T) $(git log -1 --format=%h 2>/dev/null)"
if [ "$1" = tests ]; then
  $SAN --tool initcheck python3 $D/hier_bwd_small.py > "$OUT/log_ic_bwd.txt" 2>&1 &
  $SAN --tool initcheck python3 $D/hier_small.py > "$OUT/log_ic_fwd.txt" 2>&1 &
  ( timeout 90 python3 $D/hier_ird_s19e17.py warm > "$OUT/log_warm.txt" 2>&1 ) &
  timeout 95 $PT tests/test_cupy_hierarchical_grad.py > "$OUT/log_t_hgrad.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_hierarchical.py > "$OUT/log_t_hier.txt" 2>&1 &
  $SAN --tool memcheck python3 $D/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  $SAN --tool racecheck --kernel-name kns=hi python3 $D/hier_bwd_small.py race > "$OUT/log_racecheck.txt" 2>&1 &
  wait
  for f in ic_bwd ic_fwd memcheck racecheck; do
    L=$OUT/log_$f.txt
    echo "-- $f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L | tail -1) cases $(grep -cE '^(float|bfloat)' $L), $(grep -c 'sanitize ok' $L) ok"
    grep -oE "at [A-Za-z_0-9]+\+0x[0-9a-f]+" $L | sort | uniq -c | sort -rn | head -6
    grep -E "^(float|bfloat)|Error|Assert" $L | grep -v "ERROR SUMMARY" | head -7 | cut -c1-160
  done
  for f in hgrad hier; do
    echo "-- pytest $f: $(tail -1 $OUT/log_t_$f.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_t_$f.txt | head -5 | cut -c1-220
  done
  echo "-- warm: $(grep -c '^warm' $OUT/log_warm.txt) of 1"; grep -E "Error|error" $OUT/log_warm.txt | head -3 | cut -c1-200
else
  timeout 36 python3 $D/hier_ird_s19e17.py ab 16384 12 20 > "$OUT/log_ab.txt" 2>&1; echo "ab rc=$?"
  grep -E "^T=|Error" "$OUT/log_ab.txt" | cut -c1-220
fi
echo "=== done $(date -u +%T)"
