#!/usr/bin/env bash
# issue 17, branch s9c17, second request, one H200, <= 240 s. Everything that matters goes to stdout.
# 1. GPU tests (3 pytest processes) beside compute-sanitizer memcheck + racecheck of hier_small.py (hi_read's
#    tensor-core tile for bf16, chunk 32 and 64): the one-read checks (then _finite.clean), hierarchical fwd / grads.
# 2. prologue_s9c17.py: one read with fused checks against session 8's two reads, every operator, 8K fp32 / bf16.
# 3. The tables of issue 17: hierarchical fwd (2K..64K: ours, loglinear, SDPA fp32 / bf16, array-API at 8K),
#    hierarchical fwd+bwd, log_attention fwd (against exp_kernel) and fwd+bwd (against SDPA), T = 2K..64K.
set -u
NAME=s9c17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=line"
echo "=== tests, sanitizer $(date -u +%T)"
timeout 90 $PT tests/test_nonfinite.py > "$OUT/t_nonfinite.txt" 2>&1 &
timeout 90 $PT tests/test_cupy_hierarchical.py tests/test_cupy_hierarchical_grad.py > "$OUT/t_hier.txt" 2>&1 &
timeout 90 $PT tests/test_gpu_dispatch.py tests/test_training.py > "$OUT/t_dispatch.txt" 2>&1 &
( timeout 50 compute-sanitizer --tool memcheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/s_mem.txt" 2>&1
  timeout 45 compute-sanitizer --tool racecheck --print-limit 3 python3 benchmarks/device/hier_small.py > "$OUT/s_race.txt" 2>&1 ) &
wait
for f in t_nonfinite t_hier t_dispatch; do echo "-- $f: $(tail -1 "$OUT/$f.txt")"; grep -E "^FAILED|^ERROR|Error" "$OUT/$f.txt" | head -5; done
for f in s_mem s_race; do echo "-- $f: $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok" "$OUT/$f.txt" | tr '\n' ' ')"; done
echo "=== prologue $(date -u +%T)"
timeout 27 python3 benchmarks/device/prologue_s9c17.py 8192 ops=exp_kernel,log_attention,loglinear,gated_delta,hierarchical > "$OUT/prologue.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/prologue.txt" | cut -c1-150
grep -A16 "ncalls" "$OUT/prologue.txt" | cut -c1-150 | head -18
echo "=== hierarchical fwd $(date -u +%T)"
timeout 38 python3 benchmarks/bench_gpu_hierarchical.py --out "$OUT" --T 2048,8192,16384,32768,65536 > "$OUT/hier.txt" 2>&1; echo "rc=$?"
grep -E "^\||accuracy" "$OUT/hier.txt" | cut -c1-200
echo "=== hierarchical fwd+bwd $(date -u +%T)"
timeout 30 python3 benchmarks/bench_gpu_hierarchical.py train --out "$OUT" --T 2048,8192,32768,65536 > "$OUT/hier_train.txt" 2>&1; echo "rc=$?"
grep -E "^\||split" "$OUT/hier_train.txt" | cut -c1-200
echo "=== log_attention fwd, fwd+bwd $(date -u +%T)"
timeout 20 python3 benchmarks/bench_gpu.py logattn --out "$OUT" --T 2048,8192,16384,32768,65536 > "$OUT/la.txt" 2>&1; echo "rc=$?"
grep -E "ms|x$" "$OUT/la.txt" | cut -c1-110
timeout 22 python3 benchmarks/bench_gpu_train.py --out "$OUT" --T 2048,8192,16384,32768,65536 --ops la,ek,sdpa > "$OUT/la_train.txt" 2>&1; echo "rc=$?"
grep -E "^\|" "$OUT/la_train.txt" | grep -v "^|---" | cut -c1-200
echo "=== done $(date -u +%T)"
