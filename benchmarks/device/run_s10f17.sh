#!/usr/bin/env bash
# issue 17, branch s10f17, first request, one H200, <= 180 s. Everything that matters goes to stdout.
# Tests: the one-read checks now waited for after the kernels' launch (test_nonfinite: non-finite inputs
# take the recompute), dispatch and training, the CuPy backend. TIMINGS: prologue_s10f17.py (modes spec /
# wait / s9 in one run), its training step, the exp_kernel fp32 trace, issue 17's 8K ratio, the host profile.
set -u
NAME=s10f17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 70 $PT tests/test_nonfinite.py > "$OUT/t_nonfinite.txt" 2>&1 &
timeout 70 $PT tests/test_gpu_dispatch.py tests/test_training.py > "$OUT/t_dispatch.txt" 2>&1 &
timeout 70 $PT tests/test_cupy_backend.py > "$OUT/t_cupy.txt" 2>&1 &
wait
for f in t_nonfinite t_dispatch t_cupy; do echo "-- $f: $(tail -1 "$OUT/$f.txt")"; grep -E "^FAILED|^ERROR|^E  " "$OUT/$f.txt" | head -8 | cut -c1-240; done
# TIMINGS (in order of importance: the later sections may be cut)
echo "=== prologue fwd $(date -u +%T)"
timeout 60 python3 benchmarks/device/prologue_s10f17.py 128 8192 > "$OUT/prologue.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/prologue.txt" | cut -c1-150
echo "=== ratio, trace $(date -u +%T)"
timeout 12 python3 benchmarks/device/prologue_s10f17.py ratio 8192 > "$OUT/ratio.txt" 2>&1; echo "rc=$?"; grep "^T=" "$OUT/ratio.txt"
timeout 15 python3 benchmarks/device/prologue_s10f17.py trace 8192 > "$OUT/trace.txt" 2>&1; echo "rc=$?"
grep -E "^====|Self CPU time total|Self CUDA time total" "$OUT/trace.txt"
echo "=== prologue train bf16 $(date -u +%T)"
timeout 20 python3 benchmarks/device/prologue_s10f17.py train 128 dtypes=bf16 modes=spec,s9 > "$OUT/train.txt" 2>&1; echo "rc=$?"
grep -E "^T=|fails" "$OUT/train.txt" | cut -c1-150
echo "=== host profile T=128 $(date -u +%T)"
timeout 15 python3 benchmarks/host_cost.py --gpu --dtypes fp32 --n 20 --profile > "$OUT/host.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/host.txt"
timeout 12 python3 benchmarks/host_cost.py --gpu --train --dtypes bf16 --n 10 --profile > "$OUT/host_train.txt" 2>&1; echo "rc=$?"
grep -E "^T=" "$OUT/host_train.txt"
echo "=== done $(date -u +%T)"
