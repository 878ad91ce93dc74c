#!/usr/bin/env bash
# Session 16, s16a16 (issue 16: the Gated DeltaNet forward outside the scan). Request 1 (3b473b6): GF_W64 / GF_KQ
# (removed), host stamps, the timeline on main's code. Request 2 (1591320): GF_ASPLIT / GF_OSPLIT on by default: the GPU
# tests and sanitizers ran, the timings did not (this script's variant names were wrong; the public calls cut at 12 s).
# This version (not run): GF_ASPLIT (attn's two longest reductions split with the two idle warps, bf16 inputs) and
# GF_OSPLIT (the intra output's reductions balanced over the warps beside H's) as timing builds (off by default), timed
# against the production kernel; a later session's first request (request 2 ran the GPU tests and sanitizers with both
# on: bf16 tests 7 passed, memcheck 0 errors, racecheck of the bf16 and float32 hand-overs 0 hazards).
#   tests: the GPU tests (bf16, the torch direct path), memcheck / racecheck of gd_small.py bf16 and memcheck of
#          gd_small.py (gd_forms' new shared-memory hand-overs), the builds
#   times: gd_forms alone at 8K (the production kernel vs GF_ASPLIT / GF_OSPLIT, interleaved), the host stamps
#   OUT=... bash benchmarks/device/run_s16a16.sh tests|times      results and logs: $OUT/s16a16_<mode>.tgz
set -u
NAME=s16a16_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
VA=bf16in_chk_lamw,bf16in_chk_lamw_as1_os1,fp32_chk  # (built in two jobs: the production kernels first)
VC=fp32_chk_os1,bf16in_chk_lamw_as1,bf16in_chk_lamw_os1
VB=$VA,$VC
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_bfloat16_in or gpu_half_inputs" > "$OUT/log_pt_bf16.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_torch_direct_path" > "$OUT/log_pt_direct.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/gd_small.py bf16 > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py > "$OUT/log_memcheck32.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py f32 > "$OUT/log_racecheck32.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py bf16 > "$OUT/log_racecheck.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile fp64,$VA > "$OUT/log_build.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile $VC > "$OUT/log_build2.txt" 2>&1 &
  timeout 95 python3 $D/gd_host_s16a16.py 2048 bf16,fp32 2 > "$OUT/log_warm.txt" 2>&1 &
  wait
  for f in "$OUT"/log_pt_*.txt; do echo "-- $(basename $f): $(tail -1 $f | cut -c1-120)"; grep -E "^FAILED|^E  " "$f" | head -6 | cut -c1-200; done
  for f in "$OUT"/log_memcheck.txt "$OUT"/log_memcheck32.txt "$OUT"/log_racecheck.txt "$OUT"/log_racecheck32.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok' $f | tr '\n' ' ')"; grep -E "Invalid|Race|hazard" $f | head -3 | cut -c1-160; done
  echo "-- builds: $(cat $OUT/log_build*.txt | grep -c '^built') of 7"; cat "$OUT"/log_build*.txt | grep -E "^built" | cut -c1-110
  cat "$OUT"/log_build*.txt | grep -iE "error|fails" | head -3 | cut -c1-200
  echo "-- warm: $(grep -c '^T=' $OUT/log_warm.txt) (of 2)"
else
  echo "=== times $(date -u +%T)"
  ROUNDS=9 timeout 10 python3 $D/gd_forms_variants.py 8192 $VB > "$OUT/log_forms.txt" 2>&1; echo "forms rc=$?"
  grep -E "^T=" "$OUT/log_forms.txt" | sed -E 's/   regs.*//' | cut -c1-230
  timeout 10 python3 $D/gd_host_s16a16.py 8192,32768 bf16,fp32 10 > "$OUT/log_host.txt" 2>&1; echo "host rc=$?"
  grep -E "^T=" "$OUT/log_host.txt" | cut -c1-150
fi
echo "=== done $(date -u +%T)"
