#!/usr/bin/env bash
# issue 16, session 15 (branch s15c16): gd_forms' k-steps with fewer instructions (the tf32 splits by integer
# operations, GF_ISPLIT; the A / ldmatrix addresses fixed before the k loop) against session 14's kernel
# (gd_forms_s14.cu) in one process, GF_PAIR timed; the public forward's per-kernel timeline at 8K / 32K. As request 1
# ran it at aaae27d (the only batch; the timing builds its VAR names, _st1 _cvt _pair _trid _lda, were removed after:
# benchmarks/NOTES.md "Session 15 — s15c16").
#   OUT=... bash benchmarks/device/run_s15c.sh tests|times      (logs in $OUT/s15c_<mode>.tgz; summary on stdout)
set -u
NAME=s15c_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs --tb=short -m gpu"
VAR=s14_bf16in_chk_lamw,bf16in_chk_lamw,bf16in_chk_lamw_st1,bf16in_chk_lamw_cvt,bf16in_chk_lamw_pair,bf16in_chk_lamw_trid,bf16in_chk_lamw_lda,bf16in_chk_lamw_trid_lda,s14_fp32_chk,fp32_chk,fp32_chk_pair,fp32_chk_trid
if [ "$1" = tests ]; then
  { nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
  echo "=== tests $(date -u +%T)"
  timeout 140 $PT tests/test_cupy_gated_delta.py -k "gpu_bfloat16_in or gpu_half_inputs or gpu_matches_reference" \
      > "$OUT/log_tests_forms.txt" 2>&1 &
  timeout 140 $PT tests/test_cupy_gated_delta.py -k "gpu_torch_direct_path or gpu_two_tier" > "$OUT/log_tests_direct.txt" 2>&1 &
  timeout 140 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5 python3 benchmarks/device/gd_small.py bf16 \
      > "$OUT/log_racecheck.txt" 2>&1 &
  timeout 140 compute-sanitizer --tool memcheck --kernel-name kns=gd_forms --print-limit 5 python3 benchmarks/device/gd_small.py bf16 \
      > "$OUT/log_memcheck.txt" 2>&1 &
  # every variant built by its own process (CuPy's kernel cache on disk: the timed run loads them), then the
  # public forward's kernels warmed (gd_timeline at 2K: the same kernels as 8K / 32K)
  for v in fp64 ${VAR//,/ }; do
    timeout 120 python3 benchmarks/device/gd_forms_variants.py compile $v > "$OUT/log_build_$v.txt" 2>&1 &
  done
  timeout 120 python3 benchmarks/device/gd_timeline.py 2048 bf16,fp32 nochecks > "$OUT/log_warm.txt" 2>&1 &
  # where gd_forms' instructions go: executed instructions and stall samples per SASS line of the bf16 build (one launch
  # after fp64's 21)
  timeout 140 ncu --kernel-name gd_forms --launch-skip 21 --launch-count 1 --section SourceCounters --section WarpStateStats \
      --section SchedulerStats --section Occupancy --section LaunchStats -o "$OUT/ncu_forms" -f \
      python3 benchmarks/device/gd_forms_variants.py 8192 bf16in_chk_lamw > "$OUT/log_ncu.txt" 2>&1 &
  wait
  if [ -e "$OUT/ncu_forms.ncu-rep" ]; then
    ncu -i "$OUT/ncu_forms.ncu-rep" --page details > "$OUT/ncu_details.txt" 2>&1
    ncu -i "$OUT/ncu_forms.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu_sass.csv" 2>&1
  fi
  for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -4; tail -n 1 "$f"; done
  echo "-- racecheck: $(grep -E 'RACECHECK SUMMARY|hazard' "$OUT/log_racecheck.txt" | tail -n 1)"
  echo "-- memcheck: $(grep -E 'ERROR SUMMARY' "$OUT/log_memcheck.txt" | tail -n 1)"
  echo "-- built: $(cat "$OUT"/log_build_*.txt | grep -cE '^built') of $(echo fp64,$VAR | tr ',' '\n' | wc -l);" \
       "$(cat "$OUT"/log_build_*.txt | grep -E '^built' | sed 's/  */ /g' | cut -c7-60 | tr '\n' ';')"
  echo "-- warm: $(grep -c '^====' "$OUT/log_warm.txt") timelines; ncu: $(grep -E 'Executed Ipc A|Issue Slots Busy|No Eligible' "$OUT/ncu_details.txt" 2>/dev/null | sed 's/  */ /g' | tr '\n' ';')"
else
  echo "=== gd_forms 8K $(date -u +%T)"
  timeout 15 python3 benchmarks/device/gd_forms_variants.py 8192 $VAR > "$OUT/log_variants.txt" 2>&1; echo "rc=$?"
  grep -E "^T=" "$OUT/log_variants.txt" | sed -E 's/ +vs fp64 \(qeff eGK phi H g intra\):( [^ ]+){6}//; s/_chk//; s/_lamw//; s/ +/ /g; s/blocks.SM/b/' | cut -c1-100
  echo "=== public forward timeline 8K, 32K $(date -u +%T)"
  OUT="$OUT" timeout 33 python3 benchmarks/device/gd_timeline.py 8192,32768 bf16,fp32 nochecks > "$OUT/log_timeline.txt" 2>&1
  echo "rc=$?"; grep -E "^====|per kernel|GPU:" "$OUT/log_timeline.txt" | cut -c1-330
fi
echo "=== done $(date -u +%T)"
