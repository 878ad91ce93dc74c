#!/usr/bin/env bash
# Needs the patch from main to the branch beside it, regenerated before sending (not kept in the tree):
#   git diff 4c495c3 bca5b09 -- lsattn > benchmarks/device/s11e17_base.patch
# issue 17, branch s11e17, second (final) request, one H200. Tests first (concurrent with other helpers'),
# then, alone on the GPU: issue 17's full table (bench_gpu_hierarchical.py table, ~100 s), then the public calls'
# latency on this branch (checks by torch's foreach max |x| / max, the default), on main (4c495c3, rebuilt in
# /tmp/base_s11e17b by reversing benchmarks/device/s11e17_base.patch on a copy of lsattn) and on this branch
# with _nonfinite.KERNEL (the checks in one launch: off by default, measured and tested here).
set -u
NAME=s11e17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
BASE=/tmp/base_s11e17b; rm -rf "$BASE"; mkdir -p "$BASE"; cp -r lsattn "$BASE/"
(cd "$BASE" && patch -R -p1 -s < "$OLDPWD/benchmarks/device/s11e17_base.patch") && echo "base rebuilt" || echo "base patch FAILED"
echo "=== tests $(date -u +%T)"
timeout 75 $PT tests/test_nonfinite.py -k "kernel or one_read or empty_calls or zero_weight_rows_gpu" > "$OUT/t_kernel.txt" 2>&1 &
timeout 75 $PT tests/test_nonfinite.py -k "not kernel and not one_read and not empty_calls" > "$OUT/t_nonfinite.txt" 2>&1 &
timeout 75 $PT tests/test_gpu_dispatch.py tests/test_training.py > "$OUT/t_dispatch.txt" 2>&1 &
timeout 75 $PT tests/test_cupy_backend.py tests/test_cupy_hierarchical.py -k "interop or bfloat16_public or grouped_heads or noncausal or empty or 16bit or stream_moves" > "$OUT/t_cupy.txt" 2>&1 &
wait
for f in t_kernel t_nonfinite t_dispatch t_cupy; do echo "-- $f: $(tail -1 "$OUT/$f.txt" | cut -c1-200)"; grep -E "^FAILED|^ERROR|^E  " "$OUT/$f.txt" | head -8 | cut -c1-240; done
# TIMINGS (alone on the GPU; in order of importance: the later sections may be cut)
echo "=== issue 17 table $(date -u +%T)"
timeout 110 python3 benchmarks/bench_gpu_hierarchical.py table --reps 5 --out "$OUT/table" > "$OUT/table.txt" 2>&1; echo "rc=$?"
grep -E "fails|^## Targets" -A12 "$OUT/table.txt" | grep -E "fails|^\||x \(target" | cut -c1-220 | head -30
echo "=== latency fwd: branch (FOREACH checks), base, branch with KERNEL checks $(date -u +%T)"
timeout 15 python3 benchmarks/device/host_spans_s11e17.py latency 128 8192 > "$OUT/lat_branch.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/lat_branch.txt" | cut -c1-150
PYTHONPATH=/tmp/site:$BASE timeout 15 python3 benchmarks/device/host_spans_s11e17.py latency 128 8192 > "$OUT/lat_base.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/lat_base.txt" | cut -c1-150
timeout 15 python3 benchmarks/device/host_spans_s11e17.py latency 128 8192 kernel > "$OUT/lat_kernel.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/lat_kernel.txt" | cut -c1-150
echo "=== primitives (the checks' host cost by mode) $(date -u +%T)"
timeout 12 python3 benchmarks/device/host_spans_s11e17.py prims > "$OUT/prims.txt" 2>&1; echo "rc=$?"; grep -E "checks|_foreach" "$OUT/prims.txt" | cut -c1-140
echo "=== done $(date -u +%T)"
