#!/usr/bin/env bash
# Session 16, s16a16 (issue 16: the Gated DeltaNet forward outside the scan). Request 1 (3b473b6): GF_W64 / GF_KQ
# (removed), host stamps, the timeline on main's code. Request 2 (this): GF_ASPLIT (attn's two longest reductions split
# with the two idle warps, bf16 inputs), GF_OSPLIT (the intra output's reductions balanced over the warps beside H's).
#   tests: the GPU tests (bf16, the torch direct path), memcheck / racecheck of gd_small.py bf16 and memcheck of
#          gd_small.py (gd_forms' new shared-memory hand-overs), the builds
#   times: gd_forms alone at 8K (main's kernels vs GF_ASPLIT / GF_OSPLIT, interleaved), the public forward at 8K / 32K: this tree, then
#          main's code (benchmarks/device/s16a16_base)
#   OUT=... bash benchmarks/device/run_s16a16.sh tests|times      results and logs: $OUT/s16a16_<mode>.tgz
set -u
NAME=s16a16_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
VA=bf16in_chk_lamw_as0_os0,bf16in_chk_lamw,fp32_chk_os0  # (built in two jobs: main's and the defaults first)
VC=fp32_chk,bf16in_chk_lamw_as0,bf16in_chk_lamw_os0
VB=$VA,$VC
# main's tree (0b5d11b): this tree with main's gd_forms sources and host module (benchmarks/device/s16a16_base)
base() {
  rm -rf /tmp/s16a16_base && mkdir -p /tmp/s16a16_base && cp -r lsattn benchmarks /tmp/s16a16_base/
  for f in $D/s16a16_base/*.txt; do b=$(basename "$f" .txt); cp "$f" /tmp/s16a16_base/lsattn/backends/cupy/$b; done
}
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
if [ "$1" = tests ]; then
  base
  echo "=== tests $(date -u +%T)"
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_bfloat16_in or gpu_half_inputs" > "$OUT/log_pt_bf16.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_torch_direct_path" > "$OUT/log_pt_direct.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/gd_small.py bf16 > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py > "$OUT/log_memcheck32.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py f32 > "$OUT/log_racecheck32.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py bf16 > "$OUT/log_racecheck.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile fp64,$VA > "$OUT/log_build.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile $VC > "$OUT/log_build2.txt" 2>&1 &
  ( cd /tmp/s16a16_base && PYTHONPATH=/tmp/site:/tmp/s16a16_base timeout 95 python3 benchmarks/bench_gpu_gated_delta.py --T 2048 --api-max-T 0 --fla-dtypes none --out /tmp ) > "$OUT/log_warm_base.txt" 2>&1 &
  timeout 95 python3 benchmarks/bench_gpu_gated_delta.py --T 2048 --api-max-T 0 --fla-dtypes none --out /tmp > "$OUT/log_warm.txt" 2>&1 &
  wait
  for f in "$OUT"/log_pt_*.txt; do echo "-- $(basename $f): $(tail -1 $f | cut -c1-120)"; grep -E "^FAILED|^E  " "$f" | head -6 | cut -c1-200; done
  for f in "$OUT"/log_memcheck.txt "$OUT"/log_memcheck32.txt "$OUT"/log_racecheck.txt "$OUT"/log_racecheck32.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok' $f | tr '\n' ' ')"; grep -E "Invalid|Race|hazard" $f | head -3 | cut -c1-160; done
  echo "-- builds: $(cat $OUT/log_build*.txt | grep -c '^built') of 7"; cat "$OUT"/log_build*.txt | grep -E "^built" | cut -c1-110
  cat "$OUT"/log_build*.txt | grep -iE "error|fails" | head -3 | cut -c1-200
  echo "-- warm: $(grep -c 'ours' $OUT/log_warm.txt) / base $(grep -c 'ours' $OUT/log_warm_base.txt) (of 2)"
else
  base
  echo "=== times $(date -u +%T)"
  ROUNDS=9 timeout 10 python3 $D/gd_forms_variants.py 8192 $VB > "$OUT/log_forms.txt" 2>&1; echo "forms rc=$?"
  grep -E "^T=" "$OUT/log_forms.txt" | sed -E 's/   regs.*//' | cut -c1-230
  mkdir -p "$OUT/gd" "$OUT/gd_base"
  timeout 12 python3 benchmarks/bench_gpu_gated_delta.py --T 8192,32768 --api-max-T 0 --fla-dtypes none --out "$OUT/gd" > "$OUT/log_gd.txt" 2>&1; echo "public rc=$?"
  grep -E "^T =|ours" "$OUT/log_gd.txt" | tr '\n' ' ' | cut -c1-400; echo
  ( cd /tmp/s16a16_base && PYTHONPATH=/tmp/site:/tmp/s16a16_base timeout 12 python3 benchmarks/bench_gpu_gated_delta.py --T 8192,32768 --api-max-T 0 --fla-dtypes none --out "$OUT/gd_base" ) > "$OUT/log_gd_base.txt" 2>&1; echo "public base rc=$?"
  grep -E "^T =|ours" "$OUT/log_gd_base.txt" | tr '\n' ' ' | cut -c1-400; echo
fi
echo "=== done $(date -u +%T)"
