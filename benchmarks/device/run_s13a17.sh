#!/usr/bin/env bash
# Needs session 12's backward sources beside it, regenerated before sending (a copy is not kept in the tree):
#   mkdir -p benchmarks/device/s13a17_base; for f in exp_kernel_bwd.cu exp_kernel_bwd_tc.cu; do
#     git show d812904:lsattn/backends/cupy/$f > benchmarks/device/s13a17_base/$f.txt; done
# Session 13, branch s13a17 (issue 17), one H200.
# Tests (concurrent with other helpers'): the float32 log_attention backward behind a key spike (FFMA kernels and
# backward_noncausal, exponent cap 80, rows' caps, column scales: test_gpu_log_attention_float32_spikes), the
# log_attention backward selection (spikes, non-causal, bf16 tensor cores, gradcheck, float32 / bf16 against the
# reference), memcheck of ek_bwd_small.py (every dtype, states, non-causal) and racecheck of one float32 and one
# bf16 log_attention backward (the new phases of ekb_dq / ekb_dkdv; the tensor-core kernels' o over A and B, E and
# G over log v and g).
# TIMINGS (alone): fwd+bwd before / after this branch's backward sources (ek_ab_s13a17.py: session 12's
# exp_kernel_bwd*.cu in benchmarks/device/s13a17_base/ against the tree's, fp32 and bf16, with the ekb_* kernels'
# times), then issue 17's pair (bench_gpu_hierarchical.py table --ops ek,la) at 16K / 32K / 64K.
#   OUT=... bash benchmarks/device/run_s13a17.sh      (results and logs: $OUT/s13a17.tgz)
set -u
NAME=s13a17; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests $(date -u +%T)"
timeout 98 $PT tests/test_cupy_log_attention.py -k "float32_spikes or backward_spikes or noncausal_backward" > "$OUT/t_spikes.txt" 2>&1 &
timeout 98 $PT tests/test_cupy_log_attention.py -k "bf16_backward_tensor_cores or gradcheck or grads_against_reference" > "$OUT/t_bwd.txt" 2>&1 &
timeout 98 compute-sanitizer --tool memcheck --leak-check no --print-limit 10 python3 benchmarks/device/ek_bwd_small.py > "$OUT/memcheck.txt" 2>&1 &
timeout 98 compute-sanitizer --tool racecheck --print-limit 10 python3 -c "
import torch, lsattn
for dt, d in ((torch.float32, 40), (torch.bfloat16, 64)):
    g = torch.Generator('cuda').manual_seed(0)
    q, k, v = (torch.randn(2, 100, d, device='cuda', generator=g) for _ in range(3))
    v[:, ::3, 0] = -float('inf'); v[:, :, 1] = -float('inf'); k[:, 66] += 60
    q, k, v = (x.to(dt).requires_grad_(True) for x in (q, k, v))
    o = lsattn.log_attention(q, k, v); torch.where(torch.isfinite(o), o, 0).float().square().mean().backward()
    torch.cuda.synchronize(); print('ok', dt, all(bool(torch.isfinite(x.grad).all()) for x in (q, k, v)))
" > "$OUT/racecheck.txt" 2>&1 &
timeout 98 python3 benchmarks/device/ek_ab_s13a17.py benchmarks/device/s13a17_base 2048 fp32,bf16 1 > "$OUT/warm.txt" 2>&1 &  # compiles
wait
for f in t_spikes t_bwd memcheck racecheck warm; do echo "-- $f: $(tail -1 "$OUT/$f.txt" | cut -c1-200)"; grep -E "^FAILED|^ERROR|^E  |ERROR SUMMARY|RACECHECK SUMMARY|Error|hazard" "$OUT/$f.txt" | head -8 | cut -c1-240; done
# TIMINGS (alone on the GPU, <= 40 s)
echo "=== before / after: fwd+bwd, B=2 H=16 d=64 $(date -u +%T)"
timeout 20 python3 benchmarks/device/ek_ab_s13a17.py benchmarks/device/s13a17_base 16384,32768 bf16,fp32 3 > "$OUT/ab.txt" 2>&1; echo "rc=$?"
cut -c1-200 "$OUT/ab.txt"
echo "=== issue 17's pair, exp_kernel_attention / log_attention, interleaved $(date -u +%T)"
timeout 18 python3 benchmarks/bench_gpu_hierarchical.py table --ops ek,la --T 16384,32768,65536 --reps 3 --out "$OUT/table" > "$OUT/table.txt" 2>&1; echo "rc=$?"
grep -E "fails|^\||^T =|  (exp|log)" "$OUT/table.txt" | cut -c1-160 | head -40
echo "=== done $(date -u +%T)"
