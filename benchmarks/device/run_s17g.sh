#!/usr/bin/env bash
# Session 17, s17g17 (issue 17): hi_intra of the hierarchical training forward launched from the torch tensors'
# pointers before the CuPy views and allocations (hierarchical_direct.DIRECT) against the views first (main's order).
#   tests: the GPU tests of the autograd path (16-bit training forward, gradcheck, the backward against the
#          reference), bit-equality of DIRECT on / off (public step, out and grads), memcheck and initcheck of
#          hier_bwd_small.py (no kernel filter), the warm-up of what times compiles
#   times: fwd+bwd direct / views / SDPA interleaved (bf16 16K, fp32 8K), host / GPU at hi_intra per flag
#   OUT=... bash benchmarks/device/run_s17g.sh tests|times      results and logs: $OUT/s17g_<mode>.tgz
set -u
NAME=s17g_$1; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
PT="python3 -m pytest -q -p no:cacheprovider -rf -m gpu --tb=short"
G=tests/test_cupy_hierarchical_grad.py
if [ "$1" = tests ]; then
  echo "=== tests $(date -u +%T)"
  timeout 95 python3 $D/hier_direct_s17g17.py warm > "$OUT/log_warm.txt" 2>&1 &
  timeout 95 $PT $G -k "gpu_16bit_training_forward" > "$OUT/log_pt_train16.txt" 2>&1 &
  timeout 95 $PT $G -k "gpu_backward_16bit or gradcheck or gpu_backward_matches_reference" > "$OUT/log_pt_bwd.txt" 2>&1 &
  timeout 95 python3 $D/hier_direct_s17g17.py eq bf16:300 fp32:300 bf16:16384 fp32:8192 > "$OUT/log_eq.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --print-limit 5 \
      python3 $D/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
  PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool initcheck --print-limit 5 \
      python3 $D/hier_bwd_small.py race > "$OUT/log_initcheck.txt" 2>&1 &
  wait
  for f in "$OUT"/log_pt_*.txt; do echo "-- $(basename $f): $(tail -1 $f | cut -c1-120)"; grep -E "^FAILED|^E  " "$f" | head -6 | cut -c1-200; done
  echo "-- eq:"; grep -E "bit-equal|launches|Error" "$OUT/log_eq.txt" | cut -c1-200
  for f in log_memcheck log_initcheck; do echo "-- $f: $(grep -E 'ERROR SUMMARY' $OUT/$f.txt | tail -1)";
    grep -vE "^=========( |$)|^$" $OUT/$f.txt | tail -4 | cut -c1-160; done
  echo "-- warm: $(tail -1 $OUT/log_warm.txt | cut -c1-160)"
else
  echo "=== times $(date -u +%T)"
  timeout 37 python3 $D/hier_direct_s17g17.py times bf16:16384 fp32:8192 --budget 4 > "$OUT/log_times.txt" 2>&1; echo "rc=$?"
  grep -E "^T=|Error" "$OUT/log_times.txt" | cut -c1-220
fi
echo "=== done $(date -u +%T)"
