#!/usr/bin/env bash
# Session 19, s19f16 (issue 16): gd_scan_bwd's switches GDB_G (two slots of a chunk a pass, 1xTF32), GDB_GF (the
# same in 3xTF32, off), GDB_MG (the merges' loads before their stores), GDB_CB (a chunk's boundary), GDB_LA (lambda a
# pass ahead); ab_s19f16.py's docstring names the builds.
#   OUT=... bash benchmarks/device/run_s19f.sh tests   (<= 100 s, beside other helpers: GPU tests of the GD backward,
#                                                       sanitizers of small training calls, warm-up compiles)
#   OUT=... bash benchmarks/device/run_s19f.sh times   (<= 40 s, alone: kernel-alone A/B, the public training step)
set -u
NAME=s19f_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
echo "=== $1 $(date -u +%T)"
if [ "$1" = tests ]; then
  for b in off new cb0 la0 ds2 g1 mg0 pr0 gf2 db noat nop1; do
    ( timeout 80 python3 $D/ab_s19f16.py warm $b > "$OUT/log_warm_$b.txt" 2>&1 ) &
  done
  ( timeout 90 python3 $D/ab_s19f16.py small > "$OUT/log_small.txt" 2>&1; \
    timeout 40 python3 $D/ab_s19f16.py public 8192 1 > "$OUT/log_public_warm.txt" 2>&1 ) &
  timeout 95 $PT tests/test_cupy_gated_delta_grad.py -k "gradcheck" > "$OUT/log_gradcheck.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta_grad.py -k "against_reference or return_state" > "$OUT/log_grad.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/ab_s19f16.py small > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=gd_scan_bwd --print-limit 5 python3 $D/ab_s19f16.py small 0 > "$OUT/log_racecheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool initcheck --kernel-name kns=gd_scan_bwd --print-limit 5 python3 $D/ab_s19f16.py small 1,2 > "$OUT/log_initcheck.txt" 2>&1 &
  wait
  echo "-- gradcheck: $(tail -1 $OUT/log_gradcheck.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_gradcheck.txt | head -5 | cut -c1-220
  echo "-- grads vs reference: $(tail -1 $OUT/log_grad.txt | cut -c1-160)"; grep -E "^FAILED|^E  " $OUT/log_grad.txt | head -5 | cut -c1-220
  echo "-- small: $(grep -c '^small ' $OUT/log_small.txt) lines"; grep -E "^small|Error" $OUT/log_small.txt | head -5 | cut -c1-200
  for f in memcheck racecheck initcheck; do
    echo "-- $f: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/log_$f.txt | tail -1) calls $(grep -c '^small ' $OUT/log_$f.txt)"
    grep -E "Error|error|Uninit|Hazard" $OUT/log_$f.txt | head -6 | cut -c1-160
  done
  echo "-- warm:"; grep -h -E "^compiled|Error|error" $OUT/log_warm_*.txt | head -12 | cut -c1-200
  echo "-- public (warm-up, 1 round): $(grep -E '^public|Error' $OUT/log_public_warm.txt | tr '\n' ' ' | cut -c1-300)"
else
  timeout 13 python3 $D/ab_s19f16.py ab 8192,32768 5 off new cb0 la0 ds2 > "$OUT/log_ab.txt" 2>&1; echo "ab rc=$?"
  grep -E "^T=|Error" "$OUT/log_ab.txt" | cut -c1-200
  timeout 12 python3 $D/ab_s19f16.py ab 8192,32768 5 g1 mg0 pr0 gf2 db noat nop1 > "$OUT/log_ab2.txt" 2>&1; echo "ab2 rc=$?"
  grep -E "^T=|Error" "$OUT/log_ab2.txt" | grep -v " off " | cut -c1-200
  timeout 12 python3 $D/ab_s19f16.py public 8192,32768 3 > "$OUT/log_public.txt" 2>&1; echo "public rc=$?"
  grep -E "^public|Error" "$OUT/log_public.txt" | cut -c1-200
fi
echo "=== done $(date -u +%T)"
