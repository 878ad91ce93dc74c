#!/usr/bin/env bash
# issue 17, branch s10f17, second request, one H200, ~190 s. Everything that matters goes to stdout.
# Tests: what run 1's timeouts cut (dispatch, training, the CuPy backend's interop / grouped heads / bf16
# public calls) and the one-read flags again (the copy's dtype handling changed). TIMINGS: prologue_s10f17.py
# modes spec / fe (one _foreach_norm launch for the checks) / s9 at T = 128 and 8192, the bf16 training
# step of every operator at T = 128 (spec / s9), issue 17's 8K ratio.
set -u
NAME=s10f17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 100 $PT tests/test_gpu_dispatch.py tests/test_training.py > "$OUT/t_dispatch.txt" 2>&1 &
timeout 100 $PT tests/test_cupy_backend.py -k "grouped_heads or interop or bfloat16_public or stream_decode or noncausal or large_heads" > "$OUT/t_cupy.txt" 2>&1 &
timeout 100 $PT tests/test_nonfinite.py -k "one_read or empty_calls or non_causal" > "$OUT/t_nonfinite.txt" 2>&1 &
wait
for f in t_dispatch t_cupy t_nonfinite; do echo "-- $f: $(tail -1 "$OUT/$f.txt")"; grep -E "^FAILED|^ERROR|^E  " "$OUT/$f.txt" | head -8 | cut -c1-240; done
# TIMINGS (in order of importance: the later sections may be cut)
echo "=== prologue fwd $(date -u +%T)"
timeout 50 python3 benchmarks/device/prologue_s10f17.py 128 8192 modes=spec,fe,s9 > "$OUT/prologue.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails|^_foreach" "$OUT/prologue.txt" | cut -c1-150
echo "=== session 9's exp_kernel fp32 regression: s9 against s8, twice $(date -u +%T)"
for i in 1 2; do timeout 12 python3 benchmarks/device/prologue_s10f17.py 8192 ops=exp_kernel dtypes=fp32 modes=s9,s8,spec 2>&1 | grep -E "^T=|fails" | cut -c1-150; done
echo "=== ratio $(date -u +%T)"
timeout 12 python3 benchmarks/device/prologue_s10f17.py ratio 8192 > "$OUT/ratio.txt" 2>&1; echo "rc=$?"; grep "^T=" "$OUT/ratio.txt"
echo "=== prologue train bf16 $(date -u +%T)"
timeout 40 python3 benchmarks/device/prologue_s10f17.py train 128 dtypes=bf16 modes=spec,s9 > "$OUT/train.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/train.txt" | cut -c1-150
echo "=== done $(date -u +%T)"
