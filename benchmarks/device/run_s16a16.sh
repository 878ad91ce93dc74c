#!/usr/bin/env bash
# Session 16, s16a16 (issue 16: the Gated DeltaNet forward outside the scan), request 1.
#   tests: gd_forms on 16 x 64 warp tiles (GF_W64) against the reference (pytest), memcheck / racecheck of gd_small.py,
#          the builds the timings need (gd_forms' variants; main's tree for the timeline)
#   times: gd_forms alone at 8K (main's 16 x 32 tiles vs GF_W64 1 / 2 / 3, interleaved, bit-equality), the host
#          stamps of a public call (gd_host_s16a16.py), the per-kernel timeline on main's code (gd_timeline.py)
#   OUT=... bash benchmarks/device/run_s16a16.sh tests|times      results and logs: $OUT/s16a16_<mode>.tgz
set -u
NAME=s16a16_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
VA=bf16in_chk_lamw_w0,bf16in_chk_lamw,fp32_chk_w0,fp32_chk  # (built in two jobs: the bases and the defaults first)
VC=bf16in_chk_lamw_w1,bf16in_chk_lamw_w2,fp32_chk_w1,fp32_chk_kq0,fp32_chk_w0_kq
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
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_matches_reference" > "$OUT/log_pt_ref.txt" 2>&1 &
  timeout 95 $PT tests/test_cupy_gated_delta.py -k "gpu_torch_direct_path" > "$OUT/log_pt_direct.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/gd_small.py bf16 > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool memcheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py > "$OUT/log_memcheck32.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 90 compute-sanitizer --tool racecheck --kernel-name kns=gd_forms --print-limit 5 python3 $D/gd_small.py > "$OUT/log_racecheck.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile fp64,$VA > "$OUT/log_build.txt" 2>&1 &
  timeout 95 python3 $D/gd_forms_variants.py compile $VC > "$OUT/log_build2.txt" 2>&1 &
  ( cd /tmp/s16a16_base && PYTHONPATH=/tmp/site:/tmp/s16a16_base timeout 95 python3 $D/gd_host_s16a16.py 2048 bf16,fp32 2 ) > "$OUT/log_warm_base.txt" 2>&1 &
  timeout 95 python3 $D/gd_host_s16a16.py 2048 bf16,fp32 2 > "$OUT/log_warm.txt" 2>&1 &
  wait
  for f in "$OUT"/log_pt_*.txt; do echo "-- $(basename $f): $(tail -1 $f | cut -c1-120)"; grep -E "^FAILED|^E  " "$f" | head -6 | cut -c1-200; done
  for f in "$OUT"/log_memcheck.txt "$OUT"/log_memcheck32.txt "$OUT"/log_racecheck.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok' $f | tr '\n' ' ')"; grep -E "Invalid|Race|hazard" $f | head -3 | cut -c1-160; done
  echo "-- builds: $(cat $OUT/log_build*.txt | grep -c '^built') of 10"; cat "$OUT"/log_build*.txt | grep -E "^built" | cut -c1-110
  cat "$OUT"/log_build*.txt | grep -iE "error|fails" | head -3 | cut -c1-200
  echo "-- warm: $(grep -c '^T=' $OUT/log_warm.txt) / base $(grep -c '^T=' $OUT/log_warm_base.txt) (of 2)"
else
  base
  echo "=== times $(date -u +%T)"
  ROUNDS=5 timeout 12 python3 $D/gd_forms_variants.py 8192 $VB > "$OUT/log_forms.txt" 2>&1; echo "forms rc=$?"
  grep -E "^T=" "$OUT/log_forms.txt" | sed -E 's/ +vs fp64 \(qeff eGK phi H g intra\): ([^ ]+ ){6}//' | cut -c1-170
  grep -E "^T=8192 bf16in_chk_lamw_w0 " "$OUT/log_forms.txt" | grep -oE "vs fp64.*" | cut -c1-110
  timeout 10 python3 $D/gd_host_s16a16.py 8192,32768 bf16,fp32 20 > "$OUT/log_host.txt" 2>&1; echo "host rc=$?"
  cut -c1-330 "$OUT/log_host.txt"
  ( cd /tmp/s16a16_base && PYTHONPATH=/tmp/site:/tmp/s16a16_base timeout 14 python3 $D/gd_timeline.py 8192,32768 bf16,fp32 nochecks ) > "$OUT/log_timeline_base.txt" 2>&1; echo "timeline rc=$?"
  grep -E "^====|per kernel|GPU: first|first launch" "$OUT/log_timeline_base.txt" | cut -c1-260
fi
echo "=== done $(date -u +%T)"
