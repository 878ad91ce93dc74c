#!/usr/bin/env bash
# issue 16, session 15 (one H200), s15a16: gd_tier1 (the two-tier scan's low walks and transfers).
#   tests (<= 150 s beside the other helpers): tests/test_cupy_gated_delta.py -m gpu -k "two_tier or bfloat16_in",
#     compute-sanitizer memcheck and racecheck of gd_tier_small.py, the A/B builds compiled (NVRTC, 8 processes), then
#     ncu --set full of gd_tier1 (main's, one kernel) and of this branch's gd_tier1 + gd_tier1x at 8K x1.
#   times (<= 50 s, alone): ab_tier1_s15a16.py at 8K / 32K / 2K, x1 and f32, every build (compiled by tests).
#   OUT=... bash benchmarks/device/run_s15a.sh tests|times      (logs under $OUT/s15a_<mode>.tgz; summary on stdout)
set -u
NAME=s15a_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
AB=benchmarks/device/ab_tier1_s15a16.py
MODE=$1
if [ "$MODE" = tests ]; then
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
  PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
  CS="compute-sanitizer --print-limit 5"
  echo "=== tests + sanitizers + compiles $(date -u +%T)"
  timeout 140 $PT tests/test_cupy_gated_delta.py -k "two_tier or bfloat16_in" > "$OUT/log_tests.txt" 2>&1 &
  timeout 140 $CS --tool memcheck python3 benchmarks/device/gd_tier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  timeout 140 $CS --tool racecheck --kernel-name kns=gd_tier1 python3 benchmarks/device/gd_tier_small.py > "$OUT/log_racecheck.txt" 2>&1 &
  PIDS=""
  for x in "x1 main,x0 a" "x1 hp,split b" "x1 nomw,nov2 c" "x1 new d" "f32 main,x0 e" "f32 hp,split f" "f32 nomw,nov2 g" \
           "f32 new h"; do
    set -- $x; timeout 100 python3 $AB --compile-only $1 $2 > "$OUT/log_compile_$3.txt" 2>&1 & PIDS="$PIDS $!"
  done
  wait $PIDS  # the compiles (the ncu run below then compiles nothing)
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
  if [ -n "$NCU" ]; then  # main's gd_tier1, then new's gd_tier1 and gd_tier1x (8K x1)
    timeout 38 "$NCU" --set full -k regex:gd_tier1 -c 3 -o "$OUT/t1" python3 $AB --ncu main,new > "$OUT/log_ncu_run.txt" 2>&1
    "$NCU" -i "$OUT/t1.ncu-rep" --page details > "$OUT/log_ncu.txt" 2>&1
    "$NCU" -i "$OUT/t1.ncu-rep" --page raw --csv --metrics "regex:smsp__average_warps?_.*issue_stalled_.*" > "$OUT/log_ncu_stalls.csv" 2>&1
  fi
  wait
  echo "-- tests"; grep -E "^FAILED|^ERROR|Error" "$OUT/log_tests.txt" | head -6; tail -1 "$OUT/log_tests.txt"
  for f in memcheck racecheck; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|Error|hazard" "$OUT/log_$f.txt" | tail -3; done
  echo "-- compiles"; tail -qn 1 "$OUT"/log_compile_*.txt
  echo "-- ncu"; grep -E "^  gd_|Duration|Registers Per|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued|No Eligible" "$OUT/log_ncu.txt" | cut -c1-100 | head -24
fi
if [ "$MODE" = times ]; then
  echo "=== ab_tier1 $(date -u +%T)"
  timeout 45 python3 $AB 8192,32768,2048 > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
  grep -E " x1 " "$OUT/log_ab.txt" | cut -c1-100 | head -24
fi
echo "=== done $(date -u +%T)"
