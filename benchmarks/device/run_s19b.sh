#!/usr/bin/env bash
# Session 19, s19b16 (issue 16): gd_forms' switches, each keeping the outputs bit for bit: GF_S64 (the solve's 64 x 64 stage
# over its nonzero terms), GF_OD4 (the warp stage's 32 x 32 blocks alike), GF_QSH (the solve's scratch in X's unread block,
# Q's 16-bit tile kept for qeff), GF_VEA (the first value block by cp.async before Lambda's pass), GF_LAM4 (a level per 4
# tokens in Lambda's pass), GF_GZB (G and the suffix sums on warps 1 and 5), GF_DROW (the 16 x 16 substitutions by rows).
#   tests: the GPU tests of gd_forms' bf16 / f16 / float32 paths, memcheck / racecheck / initcheck of gd_small.py bf16 and
#          f32 (gd_forms), the variants' builds and the public A/B's (CuPy's kernel cache for times)
#   times: gd_forms alone at 8K (interleaved, medians: each switch off, all off = main's kernel; ablations of the 64 x 64
#          stage and of each phase: gd_forms_variants.py's docstring), the public bf16 forward with the switches on / off
#          (gd_pub_s19b16.py)
#   OUT=... bash benchmarks/device/run_s19b.sh tests|times      results and logs: $OUT/s19b_<mode>.tgz
set -u
NAME=s19b_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
B=bf16in_chk_lamw
VA=$B,${B}_off,${B}_s0,${B}_od0,${B}_qs0,${B}_ve0,${B}_l40,${B}_gz0,${B}_dr0,fp32_chk,fp32_chk_off
VX=${B}_no64,${B}_nokq,${B}_nodec,${B}_noattn,${B}_noqp,${B}_nolam,${B}_nohout
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; date -u; git log -1 --format=%H; } > "$OUT/log_env.txt" 2>&1
echo "=== $1 $(date -u +%T) $(git log -1 --format=%h 2>/dev/null)"
if [ "$1" = tests ]; then
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_bfloat16_in or gpu_half_inputs or direct_output_rounded" > "$OUT/log_pt_16.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_matches_reference or gpu_many_levels" > "$OUT/log_pt_ref.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py bf16 > "$OUT/log_memcheck_bf16.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py f32 > "$OUT/log_memcheck_f32.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py bf16 > "$OUT/log_racecheck_bf16.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py f32 > "$OUT/log_racecheck_f32.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool initcheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py bf16 > "$OUT/log_initcheck_bf16.txt" 2>&1 &
  for vs in fp64,$B,${B}_off ${B}_s0,${B}_od0,${B}_qs0 ${B}_ve0,${B}_l40,${B}_gz0,${B}_dr0 fp32_chk,fp32_chk_off,${B}_no64 \
            ${B}_nokq,${B}_nodec,${B}_noattn ${B}_noqp,${B}_nolam,${B}_nohout; do
    timeout 95 python3 $D/gd_forms_variants.py compile $vs > "$OUT/log_build_${vs%%,*}.txt" 2>&1 &
  done
  timeout 95 python3 $D/gd_pub_s19b16.py 2048 1 GF_S64,GF_OD4,GF_QSH,GF_VEA,GF_LAM4,GF_GZB,GF_DROW > "$OUT/log_warm.txt" 2>&1 &
  wait
  for f in "$OUT"/log_pt_*.txt; do echo "-- $(basename $f): $(tail -1 $f | cut -c1-120)"; grep -E "^FAILED|^E  " "$f" | head -6 | cut -c1-200; done
  for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt "$OUT"/log_initcheck_*.txt; do
    echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize' $f | tr '\n' ' ')"; grep -E "Invalid|Race|hazard|Uninit|Error:" $f | head -3 | cut -c1-160; done
  echo "-- builds: $(cat $OUT/log_build*.txt | grep -c '^built') of 19"; cat "$OUT"/log_build*.txt | grep -E "^built" | cut -c1-110
  cat "$OUT"/log_build*.txt | grep -iE "error|fails" | head -3 | cut -c1-200
  echo "-- warm: $(tail -1 $OUT/log_warm.txt | cut -c1-200)"
else
  ROUNDS=9 timeout 13 python3 $D/gd_forms_variants.py 8192 $VA > "$OUT/log_forms.txt" 2>&1; echo "forms rc=$?"
  grep -E "^T=" "$OUT/log_forms.txt" | sed -E 's/   regs.*//' | cut -c1-230
  grep -E "^T=.*regs" "$OUT/log_forms.txt" | sed -E 's/^(T=[0-9]+ +[a-z0-9_]+).*(regs.*)$/\1 \2/'
  grep -E "fails|Error" "$OUT/log_forms.txt" | head -3 | cut -c1-200
  ROUNDS=7 timeout 10 python3 $D/gd_forms_variants.py 8192 $B,$VX > "$OUT/log_ablate.txt" 2>&1; echo "ablations rc=$?"
  grep -E "^T=" "$OUT/log_ablate.txt" | sed -E 's/   (vs fp64|regs).*//' | cut -c1-120
  grep -E "fails|Error" "$OUT/log_ablate.txt" | head -3 | cut -c1-200
  timeout 12 python3 $D/gd_pub_s19b16.py 8192,32768 3 GF_S64,GF_OD4,GF_QSH,GF_VEA,GF_LAM4,GF_GZB,GF_DROW > "$OUT/log_pub.txt" 2>&1; echo "pub rc=$?"
  grep -E "^T=|Error" "$OUT/log_pub.txt" | cut -c1-240
fi
echo "=== done $(date -u +%T)"
