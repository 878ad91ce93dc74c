#!/usr/bin/env bash
# Session 10, branch s10e17 (issue 17), for the lead's final run if there is budget (not run this session): the
# bfloat16 backward's products on bf16 tensor cores (commit 1c9b614, hib_prod with -DHIB_TC=1). The bf16 / f16 GPU
# gradient tests and memcheck of the small cases (the bf16 one takes the tensor cores); then # TIMINGS alone:
# fwd+bwd 8K..32K (ours_bf16 against ours_fp32 and SDPA).
#   OUT=... bash benchmarks/device/run_s10e17c.sh      (results and logs: $OUT/s10e17c.tgz)
set -u
NAME=s10e17c; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 110 $PT tests/test_cupy_hierarchical_grad.py -k "16bit or gradcheck or matches" > "$OUT/log_tests.txt" 2>&1 &
timeout 100 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
wait
echo "-- tests"; grep -E "^FAILED|^ERROR|^E  " "$OUT/log_tests.txt" | head -8; tail -1 "$OUT/log_tests.txt"
echo "-- memcheck"; grep -E "ERROR SUMMARY|sanitize ok|^float|^bfloat|Error" "$OUT/log_memcheck.txt" | tail -8
# TIMINGS (alone on the GPU)
echo "=== train $(date -u +%T)"
timeout 60 python3 benchmarks/bench_gpu_hierarchical.py train --out "$OUT" --T 8192,16384,32768 --api-max 0 > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; grep -E "split|^\| " "$OUT/log_train.txt" | cut -c1-230
echo "=== done $(date -u +%T)"
