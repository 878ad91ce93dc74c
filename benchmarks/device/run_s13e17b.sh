#!/usr/bin/env bash
# Session 13, branch s13e17 (issue 17), request 2, one H200: ran at eac09b9 (its "noftz" / "rsh" variants and "rshcheck" are gone
# from hier_fwd_s13e17.py since: benchmarks/NOTES.md, session 13 — s13e17).
# Tests (<= 100 s, concurrent): the forward's GPU tests (16-bit / tensor-core reads; float32 at 1e3 on the 3xTF32 read; streams) with hi_read's exponentials as
# ex2.approx.ftz (not in request 1), the 16-bit training forward and backward, memcheck of hier_small.py; beside them the
# variants the timings use compiled.
# TIMINGS (<= 40 s, alone): the forward's kernels at 64K / 16K bf16, chunks 64 and 32: the tree, hi_read without .ftz
# (64K, chunk 64), the -DHI_RSH=1 timing build (each row's E made once per m-tile); its log y against the tree's (bit for
# bit expected); the public bf16 forward against loglinear_attention at 32K / 64K (issue 17's table calls, interleaved).
#   OUT=... bash benchmarks/device/run_s13e17b.sh      (results and logs: $OUT/s13e17b.tgz)
set -u
NAME=s13e17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
timeout 95 $PT tests/test_cupy_hierarchical.py -k "16bit or tensor_core" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_hierarchical.py -k "matches_reference or stream" > "$OUT/log_tests_b.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_hierarchical_grad.py -k "16bit_training_forward or gpu_backward_16bit" > "$OUT/log_tests_c.txt" 2>&1 &
timeout 95 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 95 python3 benchmarks/device/hier_fwd_s13e17.py warm tree,noftz,rsh > "$OUT/log_warm.txt" 2>&1 &
wait
tail -2 "$OUT/log_warm.txt"
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -1 "$f"; done
echo "-- memcheck"; grep -E "ERROR SUMMARY|sanitize ok|Error" "$OUT/log_memcheck.txt" | tail -6
# TIMINGS (alone on the GPU)
echo "=== TIMINGS: forward kernels $(date -u +%T)"
timeout 20 python3 benchmarks/device/hier_fwd_s13e17.py kernels 65536,16384 tree,noftz,rsh > "$OUT/log_kernels.txt" 2>&1
echo "rc=$?"; grep -E "^tree|^noftz|^rsh|^T=" "$OUT/log_kernels.txt" | cut -c1-220
echo "=== HI_RSH's log y against the tree's $(date -u +%T)"
timeout 8 python3 benchmarks/device/hier_fwd_s13e17.py rshcheck 16384 > "$OUT/log_rshcheck.txt" 2>&1
echo "rc=$?"; grep -E "^T=" "$OUT/log_rshcheck.txt"
echo "=== public bf16 forward $(date -u +%T)"
timeout 12 python3 benchmarks/device/hier_fwd_s13e17.py public 32768,65536 > "$OUT/log_public.txt" 2>&1
echo "rc=$?"; grep -E "^T=" "$OUT/log_public.txt" | cut -c1-220
echo "=== done $(date -u +%T)"
