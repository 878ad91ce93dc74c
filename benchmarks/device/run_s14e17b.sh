#!/usr/bin/env bash
# Session 14, branch s14e17 (issue 17), request 2 (final code), one H200.
# Tests (concurrent with other helpers', each <= 95 s): the log_attention backward in narrow selections (float32
# spikes: the FFMA LOGV products and flagged rows; bf16 tensor cores; against the reference; float64 gradcheck;
# spikes / non-causal), the exp-kernel backward (test_training), memcheck and racecheck of ek_spiky_s14e17.py;
# warm-ups of the timed scripts (kernels compiled into CuPy's cache).
# TIMINGS (alone): per kernel at 32K, bf16 then fp32, base (benchmarks/device/s14e17_base/) against the tree
# (ek_ab_s14e17.py, 2 rounds), then issue 17's pair at 16K / 32K / 64K.
# Needs the parent's backward sources beside it (removed from the tree after the run; regenerate before sending):
#   mkdir -p benchmarks/device/s14e17_base; for f in exp_kernel_bwd.cu exp_kernel_bwd_tc.cu; do
#     git show c675226:lsattn/backends/cupy/$f > benchmarks/device/s14e17_base/$f.txt; done
#   OUT=... bash benchmarks/device/run_s14e17b.sh      (results and logs: $OUT/s14e17b.tgz)
set -u
NAME=s14e17b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
TL=tests/test_cupy_log_attention.py
echo "=== tests $(date -u +%T)"
timeout 95 $PT $TL -k "float32_spikes" > "$OUT/t_f32spikes.txt" 2>&1 &
timeout 95 $PT $TL -k "gpu_bf16_backward_tensor_cores" > "$OUT/t_bf16tc.txt" 2>&1 &
timeout 95 $PT $TL -k "grads_against_reference" > "$OUT/t_ref.txt" 2>&1 &
timeout 95 $PT $TL -k "gradcheck" > "$OUT/t_gradcheck.txt" 2>&1 &
timeout 95 $PT $TL -k "gpu_log_attention_backward_spikes or gpu_noncausal_backward" > "$OUT/t_spikes.txt" 2>&1 &
timeout 95 $PT tests/test_training.py -k "exp_kernel_grads" > "$OUT/t_exp.txt" 2>&1 &
timeout 95 compute-sanitizer --tool memcheck --leak-check no --print-limit 10 python3 benchmarks/device/ek_spiky_s14e17.py > "$OUT/memcheck.txt" 2>&1 &
timeout 95 compute-sanitizer --tool racecheck --print-limit 10 python3 benchmarks/device/ek_spiky_s14e17.py > "$OUT/racecheck.txt" 2>&1 &
(timeout 95 python3 benchmarks/device/ek_ab_s14e17.py benchmarks/device/s14e17_base 2048 bf16,fp32 1 > "$OUT/warm.txt" 2>&1;
 timeout 60 python3 benchmarks/bench_gpu_hierarchical.py table --ops ek,la --T 2048 --reps 1 --small-reps 2 --out "$OUT/warm_table" > "$OUT/warm_table.txt" 2>&1) &
wait
for f in t_f32spikes t_bf16tc t_ref t_gradcheck t_spikes t_exp memcheck racecheck warm warm_table; do echo "-- $f: $(tail -1 "$OUT/$f.txt" | cut -c1-200)"; grep -E "^FAILED|^ERROR|^E  |ERROR SUMMARY|RACECHECK SUMMARY|Error|hazard|^ok" "$OUT/$f.txt" | head -8 | cut -c1-240; done
# TIMINGS (alone on the GPU, <= 40 s)
echo "=== per kernel, base / new, fwd+bwd 32K, B=2 H=16 d=64 $(date -u +%T)"
timeout 20 python3 benchmarks/device/ek_ab_s14e17.py benchmarks/device/s14e17_base 32768 bf16,fp32 2 > "$OUT/ab.txt" 2>&1; echo "rc=$?"
grep -v -i warn "$OUT/ab.txt" | cut -c1-200 | head -60
echo "=== issue 17's pair, exp_kernel_attention / log_attention, interleaved $(date -u +%T)"
timeout 19 python3 benchmarks/bench_gpu_hierarchical.py table --ops ek,la --T 16384,32768,65536 --reps 3 --out "$OUT/table" > "$OUT/table.txt" 2>&1; echo "rc=$?"
grep -E "fails|^\||^T =|  (exp|log)" "$OUT/table.txt" | cut -c1-160 | head -40
echo "=== done $(date -u +%T)"
