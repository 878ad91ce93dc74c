#!/usr/bin/env bash
# Session 14, branch s14e17 (issue 17), one H200: log_attention fwd+bwd within 1.2x of exp_kernel_attention.
# Tests (concurrent with other helpers'): the log_attention backward selection (spikes, bf16 tensor cores, non-causal,
# float32 / float64 against the reference, gradcheck: the FFMA LOGV kernels' factorised products and their per-pair
# rows), the exp-kernel backward (its products share ekb_D), memcheck of ek_bwd_small.py and of a spiky float32 /
# float64 log_attention backward (the flagged rows' global reads), racecheck of one (the new phases).
# TIMINGS (alone): per kernel, base (benchmarks/device/s14e17_base/, this branch's parent) against the tree, exp and
# log fwd+bwd at 32K fp32 and bf16 (ek_ab_s14e17.py), then issue 17's pair at 16K / 32K / 64K.
# Needs benchmarks/device/s14e17_base/ as run_s14e17b.sh says (removed after the runs). Its SPIKY variable (a
# multi-line string) broke the batch tool's preamble cut: run_s14e17b.sh uses ek_spiky_s14e17.py instead.
#   OUT=... bash benchmarks/device/run_s14e17.sh      (results and logs: $OUT/s14e17.tgz)
set -u
NAME=s14e17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
SPIKY="
import torch, lsattn
for dt, d in ((torch.float32, 40), (torch.float64, 24), (torch.float32, 64)):
    g = torch.Generator('cuda').manual_seed(0)
    q, k, v = (torch.randn(2, 100, d, device='cuda', generator=g, dtype=torch.float64) for _ in range(3))
    v = v * 30; v[:, ::3, 0] = -float('inf'); v[:, :, 1] = -float('inf'); k[:, 66] += 60; v[:, 40, 2:] += 200
    q, k, v = (x.to(dt).requires_grad_(True) for x in (q, k, v))
    o = lsattn.log_attention(q, k, v); torch.where(torch.isfinite(o), o, 0).float().square().mean().backward()
    torch.cuda.synchronize(); print('ok', dt, all(bool(torch.isfinite(x.grad).all()) for x in (q, k, v)))
"
echo "=== tests $(date -u +%T)"
timeout 95 $PT tests/test_cupy_log_attention.py -k "backward or spikes" > "$OUT/t_bwd.txt" 2>&1 &
timeout 95 $PT tests/test_cupy_log_attention.py -k "grads_against_reference or gradcheck" > "$OUT/t_ref.txt" 2>&1 &
timeout 95 $PT tests/test_training.py -k "exp_kernel_grads or exp_kernel_gradcheck" > "$OUT/t_exp.txt" 2>&1 &
timeout 95 compute-sanitizer --tool memcheck --leak-check no --print-limit 10 python3 benchmarks/device/ek_bwd_small.py > "$OUT/memcheck.txt" 2>&1 &
timeout 95 compute-sanitizer --tool memcheck --leak-check no --print-limit 10 python3 -c "$SPIKY" > "$OUT/memcheck_spiky.txt" 2>&1 &
timeout 95 compute-sanitizer --tool racecheck --print-limit 10 python3 -c "$SPIKY" > "$OUT/racecheck.txt" 2>&1 &
timeout 95 python3 benchmarks/device/ek_ab_s14e17.py benchmarks/device/s14e17_base 2048 fp32,bf16 1 > "$OUT/warm.txt" 2>&1 &  # compiles
wait
for f in t_bwd t_ref t_exp memcheck memcheck_spiky racecheck warm; do echo "-- $f: $(tail -1 "$OUT/$f.txt" | cut -c1-200)"; grep -E "^FAILED|^ERROR|^E  |ERROR SUMMARY|RACECHECK SUMMARY|Error|hazard|^ok" "$OUT/$f.txt" | head -8 | cut -c1-240; done
# TIMINGS (alone on the GPU, <= 40 s)
echo "=== per kernel, base / new, fwd+bwd 32K, B=2 H=16 d=64 $(date -u +%T)"
timeout 20 python3 benchmarks/device/ek_ab_s14e17.py benchmarks/device/s14e17_base 32768 fp32,bf16 3 > "$OUT/ab.txt" 2>&1; echo "rc=$?"
cut -c1-200 "$OUT/ab.txt" | head -70
echo "=== issue 17's pair, exp_kernel_attention / log_attention, interleaved $(date -u +%T)"
timeout 18 python3 benchmarks/bench_gpu_hierarchical.py table --ops ek,la --T 16384,32768,65536 --reps 3 --out "$OUT/table" > "$OUT/table.txt" 2>&1; echo "rc=$?"
grep -E "fails|^\||^T =|  (exp|log)" "$OUT/table.txt" | cut -c1-160 | head -40
echo "=== done $(date -u +%T)"
