#!/usr/bin/env bash
# Session 17, s17d16 (issue 16: the Gated DeltaNet forward at 32K). Request 1: gd_forms' products in 1xTF32 for bfloat16
# inputs (GF_X1, on), GF_ASPLIT / GF_OSPLIT timed on main's 3xTF32 kernel (_x3_*) and on the new one; gd_tier3 writing
# the 16-bit output itself (OUT16, on).
#   tests: the GPU tests of the bf16 / f16 paths, memcheck / initcheck / racecheck of gd_out16_small_s17d16.py (OUT16,
#          GF_X1) and memcheck of gd_small.py bf16, the variants' builds (CuPy's disk cache for times)
#   times: gd_forms alone at 8K (interleaved, medians), the public bf16 forward with / without OUT16, its per-kernel
#          timeline at 8K / 32K
#   OUT=... bash benchmarks/device/run_s17d.sh tests|times      results and logs: $OUT/s17d_<mode>.tgz
set -u
NAME=s17d_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
VA=bf16in_chk_lamw,bf16in_chk_lamw_x3,bf16in_chk_lamw_x3_as1_os1,fp32_chk
VC=bf16in_chk_lamw_x3_as1,bf16in_chk_lamw_x3_os1,bf16in_chk_lamw_as1_os1,fp32_chk_os1
VD=bf16in_chk_lamw_u2,bf16in_chk_lamw_nosolve  # (on the 1xTF32 kernel: the k-loop unrolled by 2; the solve's share)
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_bfloat16_in or gpu_half_inputs or direct_output_rounded" > "$OUT/log_pt_16.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_torch_direct_path" > "$OUT/log_pt_direct.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/gd_out16_small_s17d16.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool initcheck --print-limit 5 python3 $D/gd_out16_small_s17d16.py > "$OUT/log_initcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool racecheck --kernel-name kns=gd_ --print-limit 5 python3 $D/gd_out16_small_s17d16.py > "$OUT/log_racecheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/gd_small.py bf16 > "$OUT/log_memcheck_bf16.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile fp64,$VA > "$OUT/log_build.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile $VC > "$OUT/log_build2.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile $VD > "$OUT/log_build3.txt" 2>&1 &
  timeout 95 python3 $D/gd_pub_s17d16.py 2048 1 > "$OUT/log_warm.txt" 2>&1 &
  wait
  for f in "$OUT"/log_pt_*.txt; do echo "-- $(basename $f): $(tail -1 $f | cut -c1-120)"; grep -E "^FAILED|^E  " "$f" | head -6 | cut -c1-200; done
  for f in "$OUT"/log_memcheck.txt "$OUT"/log_initcheck.txt "$OUT"/log_racecheck.txt "$OUT"/log_memcheck_bf16.txt; do
    echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize' $f | tr '\n' ' ')"; grep -E "Invalid|Race|hazard|Uninit|DIFFERENT" $f | head -3 | cut -c1-160; done
  grep -hE "equal|DIFFERENT" "$OUT/log_memcheck.txt" | head -6
  echo "-- builds: $(cat $OUT/log_build*.txt | grep -c '^built') of 11"; cat "$OUT"/log_build*.txt | grep -E "^built" | cut -c1-110
  cat "$OUT"/log_build*.txt | grep -iE "error|fails" | head -3 | cut -c1-200
  echo "-- warm: $(tail -1 $OUT/log_warm.txt | cut -c1-160)"
else
  echo "=== times $(date -u +%T)"
  ROUNDS=9 timeout 14 python3 $D/gd_forms_variants.py 8192 $VA,$VC,$VD > "$OUT/log_forms.txt" 2>&1; echo "forms rc=$?"
  grep -E "^T=" "$OUT/log_forms.txt" | sed -E 's/   regs.*//' | cut -c1-230
  grep -E "^T=.*regs" "$OUT/log_forms.txt" | sed -E 's/^(T=[0-9]+ +[a-z0-9_]+).*(regs.*)$/\1 \2/' | head -14
  timeout 12 python3 $D/gd_pub_s17d16.py 8192,32768 5 > "$OUT/log_pub.txt" 2>&1; echo "pub rc=$?"
  grep -E "^T=|Error" "$OUT/log_pub.txt" | cut -c1-200
  timeout 12 python3 $D/gd_timeline.py 32768 bf16 nochecks > "$OUT/log_timeline.txt" 2>&1; echo "timeline rc=$?"
  grep -vE "^ *$" "$OUT/log_timeline.txt" | grep -vE "^ +[0-9]+ +[0-9]+ " | head -40 | cut -c1-160
fi
echo "=== done $(date -u +%T)"
