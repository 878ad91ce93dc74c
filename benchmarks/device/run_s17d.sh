#!/usr/bin/env bash
# Session 17, s17d16 (issue 16: the Gated DeltaNet forward at 32K).
# Request 1 (1445adc): gd_forms' products in 1xTF32 for bfloat16 inputs (GF_X1), GF_ASPLIT / GF_OSPLIT timed (slower:
# removed since), gd_tier3 writing the 16-bit output itself (OUT16). Request 2 (this version): GF_LAM1 (lam's staging and
# checked copy in the load phase) against the kernel before (_lam0), the solve's parts as ablations, the public forward.
#   tests: the GPU tests of the bf16 / f16 paths and of float32 / float64 (gd_forms' reordered lam reads), memcheck /
#          racecheck of gd_small.py bf16 and f32 (gd_forms), the variants' builds (CuPy's disk cache for times)
#   times: gd_forms alone at 8K (interleaved, medians), the public bf16 forward with / without OUT16, its per-kernel
#          timeline at 32K
#   OUT=... bash benchmarks/device/run_s17d.sh tests|times      results and logs: $OUT/s17d_<mode>.tgz
set -u
NAME=s17d_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
VA=bf16in_chk_lamw,bf16in_chk_lamw_lam0,bf16in_chk_lamw_x3,fp32_chk
VC=fp32_chk_lam0,bf16in_chk_lamw_nodiag,bf16in_chk_lamw_no32
VD=bf16in_chk_lamw_no64,bf16in_chk_lamw_nosolve
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_bfloat16_in or gpu_half_inputs or direct_output_rounded" > "$OUT/log_pt_16.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_matches_reference or gpu_many_levels" > "$OUT/log_pt_ref.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/gd_small.py bf16 > "$OUT/log_memcheck_bf16.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py f32 > "$OUT/log_memcheck_f32.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py bf16 > "$OUT/log_racecheck_bf16.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py f32 > "$OUT/log_racecheck_f32.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile fp64,$VA > "$OUT/log_build.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile $VC > "$OUT/log_build2.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile $VD > "$OUT/log_build3.txt" 2>&1 &
  timeout 95 python3 $D/gd_pub_s17d16.py 2048 1 > "$OUT/log_warm.txt" 2>&1 &
  wait
  for f in "$OUT"/log_pt_*.txt; do echo "-- $(basename $f): $(tail -1 $f | cut -c1-120)"; grep -E "^FAILED|^E  " "$f" | head -6 | cut -c1-200; done
  for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt; do
    echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize' $f | tr '\n' ' ')"; grep -E "Invalid|Race|hazard|Uninit" $f | head -3 | cut -c1-160; done
  echo "-- builds: $(cat $OUT/log_build*.txt | grep -c '^built') of 10"; cat "$OUT"/log_build*.txt | grep -E "^built" | cut -c1-110
  cat "$OUT"/log_build*.txt | grep -iE "error|fails" | head -3 | cut -c1-200
  echo "-- warm: $(tail -1 $OUT/log_warm.txt | cut -c1-160)"
else
  echo "=== times $(date -u +%T)"
  ROUNDS=9 timeout 14 python3 $D/gd_forms_variants.py 8192 $VA,$VC,$VD > "$OUT/log_forms.txt" 2>&1; echo "forms rc=$?"
  grep -E "^T=" "$OUT/log_forms.txt" | sed -E 's/   regs.*//' | cut -c1-230
  grep -E "^T=.*regs" "$OUT/log_forms.txt" | sed -E 's/^(T=[0-9]+ +[a-z0-9_]+).*(regs.*)$/\1 \2/' | head -14
  timeout 14 python3 $D/gd_pub_s17d16.py 8192,16384,32768 5 > "$OUT/log_pub.txt" 2>&1; echo "pub rc=$?"
  grep -E "^T=|Error" "$OUT/log_pub.txt" | cut -c1-200
  timeout 12 python3 $D/gd_timeline.py 32768 bf16 nochecks > "$OUT/log_timeline.txt" 2>&1; echo "timeline rc=$?"
  grep -vE "^ *$" "$OUT/log_timeline.txt" | grep -vE "^ +[0-9]+ +[0-9]+ |UserWarning|_warn_once" | head -40 | cut -c1-160
fi
echo "=== done $(date -u +%T)"
