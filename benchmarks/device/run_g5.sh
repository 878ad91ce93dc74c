#!/usr/bin/env bash
# session 6, call G5 (one H200): after merging s6c19 (packed exp-kernel calls computed by the
# array-API path with segment masks, also for CUDA arrays): the GPU tests of packed segments,
# dispatch and non-finite inputs, a packed exp-kernel call against per-segment calls; then the
# gated-delta forward benchmark at 2K and 8K (its earlier runs ran out of time after 2K)
set -u
NAME=g5; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
echo "=== tests $(date -u +%T)"
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/test_varlen.py tests/test_gpu_dispatch.py \
    tests/test_nonfinite.py > "$OUT/log_tests.txt" 2>&1
echo "rc=$?"; tail -3 "$OUT/log_tests.txt"
timeout 60 python3 -c "
import torch, lsattn
g = torch.Generator(device='cuda').manual_seed(0)
for op in (lsattn.exp_kernel_attention, lsattn.log_attention):
    q, k, v = (torch.randn(3, 2, 3000, 16, device='cuda', dtype=torch.float64, generator=g) for _ in range(3))
    cu = [0, 100, 101, 1500, 3000]
    y = op(q, k, v, cu_seqlens=cu)
    r = torch.cat([op(q[:, a:b], k[:, a:b], v[:, a:b]) for a, b in zip(cu[:-1], cu[1:])], -2)
    print(op.__name__, 'packed vs per-segment max abs diff', float((y - r).abs().max()))
" 2>&1 | tail -3
echo "=== bench $(date -u +%T)"
timeout 110 python3 benchmarks/bench_gpu_gated_delta.py --T 2048,8192 --out "$OUT" > "$OUT/log_bench_gd.txt" 2>&1
echo "rc=$?"; tail -14 "$OUT/log_bench_gd.txt"
echo "=== done $(date -u +%T)"
