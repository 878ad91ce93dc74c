#!/usr/bin/env bash
# Session 14, branch s14f17 (issue 17: the hierarchical backward toward SDPA at 16K), request 1: hib_dq's held slots
# double-buffered with cp.async (n-major B operand in hib_prod), and the A/B of session 12's hib_blocks loads.
# Tests (above TIMINGS, <= 100 s): the hierarchical gradient tests on the GPU (16-bit, gradcheck, the float32 / float64
# property test, the 16-bit training forward), memcheck and racecheck of hier_bwd_small.py; beside them the A/B
# variants and the chunk-32 training compiled for the timings.
# TIMINGS (<= 40 s): the backward's kernels alone at 16K, each variant on the same recorded arguments
# (hier_bwd_s14f17.py kab: new / s12b = session 12's hib_blocks loads; bf16 and float32 copies of the inputs; the
# request ran at ce991a1 also sa0 / sc0 / fx0 / ua0, main's forms, removed after it); one bf16 fwd+bwd at 16K beside SDPA.
#   OUT=... bash benchmarks/device/run_s14f17.sh      (results and logs: $OUT/s14f17.tgz)
set -u
NAME=${NAME:-s14f17}; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; date -u; } > "$OUT/log_env.txt" 2>&1
echo "=== tests $(date -u +%T)"
G=tests/test_cupy_hierarchical_grad.py
timeout 100 $PT $G -k "gpu_backward_16bit or gradcheck" > "$OUT/log_tests_a.txt" 2>&1 &
timeout 100 $PT $G -k "16bit_training_forward" > "$OUT/log_tests_b.txt" 2>&1 &
timeout 100 $PT $G -k "gpu_backward_matches_reference" > "$OUT/log_tests_c.txt" 2>&1 &
timeout 100 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
timeout 100 compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/hier_bwd_small.py race > "$OUT/log_racecheck.txt" 2>&1 &
for v in bf16:new bf16:s12b f32in:new f32in:s12b; do  # (one NVRTC compile each, in parallel)
  timeout 100 python3 benchmarks/device/hier_bwd_s14f17.py warm $v > "$OUT/log_warm_${v/:/_}.txt" 2>&1 &
done
timeout 100 python3 benchmarks/device/hier_bwd_s13d17.py warm 256 32:new > "$OUT/log_warm2.txt" 2>&1 &
wait
tail -q -n 1 "$OUT"/log_warm*.txt
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|^E  " "$f" | head -8; tail -n 1 "$f"; done
for f in "$OUT/log_memcheck.txt" "$OUT/log_racecheck.txt"; do echo "-- $f"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize ok|^float|^bfloat|Error" "$f" | tail -n 8; done
# TIMINGS (alone on the GPU)
echo "=== TIMINGS: the backward's kernels alone at 16K, variants on the same arguments $(date -u +%T)"
timeout 22 python3 benchmarks/device/hier_bwd_s14f17.py kab 16384 > "$OUT/log_kab.txt" 2>&1
echo "rc=$?"; grep -E "^T=|Error" "$OUT/log_kab.txt" | cut -c1-250
echo "=== bf16 fwd+bwd 16K beside SDPA (interleaved) $(date -u +%T)"
timeout 16 python3 benchmarks/device/hier_bwd_s13d17.py train 16384 32:new > "$OUT/log_train.txt" 2>&1
echo "rc=$?"; grep -E "^T=|Error" "$OUT/log_train.txt" | cut -c1-220
echo "=== done $(date -u +%T)"
