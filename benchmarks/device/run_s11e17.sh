#!/usr/bin/env bash
# Needs the patch from main to the branch beside it, regenerated before sending (not kept in the tree):
#   git diff 4c495c3 bca5b09 -- lsattn > benchmarks/device/s11e17_base.patch
# issue 17, branch s11e17, first request, one H200, <= 180 s. Tests above `# TIMINGS` (concurrent with other
# helpers'), timings below it. Base: main at 4c495c3, rebuilt in /tmp/base_s11e17 by reversing
# benchmarks/device/s11e17_base.patch (this branch's lsattn changes) on a copy of lsattn.
set -u
NAME=s11e17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
BASE=/tmp/base_s11e17; rm -rf "$BASE"; mkdir -p "$BASE"; cp -r lsattn "$BASE/"
(cd "$BASE" && patch -R -p1 -s < "$OLDPWD/benchmarks/device/s11e17_base.patch") && echo "base rebuilt" || echo "base patch FAILED"
echo "=== tests $(date -u +%T)"
timeout 80 $PT tests/test_nonfinite.py > "$OUT/t_nonfinite.txt" 2>&1 &
timeout 80 $PT tests/test_gpu_dispatch.py tests/test_training.py > "$OUT/t_dispatch.txt" 2>&1 &
timeout 80 $PT tests/test_bad_input.py tests/test_cupy_backend.py -k "interop or bfloat16_public or grouped_heads or noncausal or empty" > "$OUT/t_cupy.txt" 2>&1 &
wait
for f in t_nonfinite t_dispatch t_cupy; do echo "-- $f: $(tail -1 "$OUT/$f.txt" | cut -c1-200)"; grep -E "^FAILED|^ERROR|^E  " "$OUT/$f.txt" | head -8 | cut -c1-240; done
# TIMINGS (alone on the GPU; in order of importance)
echo "=== primitives $(date -u +%T)"
timeout 15 python3 benchmarks/device/host_spans_s11e17.py prims > "$OUT/prims.txt" 2>&1; echo "rc=$?"; cat "$OUT/prims.txt" | cut -c1-120
echo "=== latency fwd: branch, then base $(date -u +%T)"
timeout 30 python3 benchmarks/device/host_spans_s11e17.py latency 128 8192 prof > "$OUT/lat_branch.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/lat_branch.txt" | cut -c1-150
PYTHONPATH=/tmp/site:$BASE timeout 25 python3 benchmarks/device/host_spans_s11e17.py latency 128 8192 > "$OUT/lat_base.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/lat_base.txt" | cut -c1-150
echo "=== latency fwd: branch with _nonfinite.FOREACH (checks by torch's foreach max |x| / max) $(date -u +%T)"
timeout 25 python3 benchmarks/device/host_spans_s11e17.py latency 128 8192 foreach > "$OUT/lat_foreach.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/lat_foreach.txt" | cut -c1-150
echo "=== spans fwd $(date -u +%T)"
timeout 20 python3 benchmarks/device/host_spans_s11e17.py spans 128 > "$OUT/spans_fwd.txt" 2>&1; echo "rc=$?"
timeout 10 python3 benchmarks/device/host_spans_s11e17.py spans 8192 dtypes=fp32 >> "$OUT/spans_fwd.txt" 2>&1; echo "rc=$?"
echo "=== spans train bf16 $(date -u +%T)"
timeout 12 python3 benchmarks/device/host_spans_s11e17.py spans 128 train dtypes=bf16 > "$OUT/spans_train.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/spans_fwd.txt" "$OUT/spans_train.txt" | cut -c1-150
echo "=== latency train bf16 T=128: branch, then base $(date -u +%T)"
timeout 12 python3 benchmarks/device/host_spans_s11e17.py latency 128 train dtypes=bf16 2>&1 | grep -E "^T=|fails" | cut -c1-150
PYTHONPATH=/tmp/site:$BASE timeout 12 python3 benchmarks/device/host_spans_s11e17.py latency 128 train dtypes=bf16 2>&1 | grep -E "^T=|fails" | cut -c1-150
echo "=== issue 17 table, smoke (T = 2048) $(date -u +%T)"
timeout 20 python3 benchmarks/bench_gpu_hierarchical.py table --T 2048 --api-T 2048 --out "$OUT/table" > "$OUT/table.txt" 2>&1; echo "rc=$?"
grep -E "fails|Error|x \(target" "$OUT/table.txt" | head -12 | cut -c1-200
echo "=== done $(date -u +%T)"
