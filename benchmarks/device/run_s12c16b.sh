#!/usr/bin/env bash
# issue 16, session 12 (one H200), request 2: the final gd_forms_bwd and the fwd+bwd table.
# Tests (<= 120 s, the first ~60 s CUDA compilation): the GPU tests of the training path
# (tests/test_cupy_gated_delta_grad.py -m gpu) beside compute-sanitizer memcheck of gd_bwd_small.py and
# ncu on gd_forms_bwd (8K bf16 step: occupancy, stall reasons; request 1 measured 5.1 ms for a predicted 1.4-1.9).
# # TIMINGS (quiet GPU, <= 60 s): the --train table (ours bf16 / fp32, SDPA bf16; peak memory) at
# T = 8192 and 2048, then fla chunk_log_linear_attn bf16 at 8192 alone (its autotuning).
#   OUT=... bash benchmarks/device/run_s12c16b.sh       (logs under $OUT/s12c16b.tgz; summary on stdout)
set -u
NAME=s12c16b; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -q -p no:cacheprovider -rs -m gpu --tb=short"
echo "=== tests + memcheck $(date -u +%T)"
timeout 115 $PT tests/test_cupy_gated_delta_grad.py > "$OUT/log_tests_grad.txt" 2>&1 &
timeout 115 compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/gd_bwd_small.py > "$OUT/log_memcheck.txt" 2>&1 &
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [ -n "$NCU" ]; then
  timeout 100 "$NCU" --kernel-name gd_forms_bwd --launch-skip 1 --launch-count 1 --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats --section SchedulerStats --section InstructionStats \
      python3 benchmarks/device/gd_bwd_one.py > "$OUT/log_ncu.txt" 2>&1 &
fi
wait
for f in "$OUT"/log_tests_*.txt; do echo "-- $f"; grep -E "^FAILED|^ERROR|Error" "$f" | head -6; tail -1 "$f"; done
for f in "$OUT"/log_memcheck.txt; do echo "-- $f"; grep -E "ERROR SUMMARY|sanitize ok|Error" "$f" | tail -3; done
echo "-- ncu"; grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Stall|Block Limit|Executed Ipc" "$OUT/log_ncu.txt" | head -30
# TIMINGS
# the table is written after each T, and fla's first call per shape autotunes (request 1: > 25 s at 8K, the
# run cut before any table): ours and SDPA at 8K and 2K first, fla chunk_log_linear_attn at 8K alone last
B="python3 benchmarks/bench_gpu_gated_delta.py --train"
echo "=== --train table 8K, 2K (ours, SDPA) $(date -u +%T)"
mkdir -p "$OUT/t8k" "$OUT/t2k" "$OUT/t8k_fla"
timeout 16 $B --T 8192 --rows ours_bf16,ours_fp32,sdpa --out "$OUT/t8k" > "$OUT/log_bench_train_8k.txt" 2>&1
echo "rc=$?"; grep -E "fwd\+bwd" "$OUT/log_bench_train_8k.txt" | tail -4
timeout 12 $B --T 2048 --rows ours_bf16,ours_fp32,sdpa --out "$OUT/t2k" > "$OUT/log_bench_train_2k.txt" 2>&1
echo "rc=$?"; grep -E "fwd\+bwd" "$OUT/log_bench_train_2k.txt" | tail -4
echo "=== --train fla chunk_log_linear_attn 8K $(date -u +%T)"
timeout 30 $B --T 8192 --rows fla_ll --out "$OUT/t8k_fla" > "$OUT/log_bench_train_8k_fla.txt" 2>&1
echo "rc=$?"; grep -E "fwd\+bwd" "$OUT/log_bench_train_8k_fla.txt" | tail -2
echo "=== done $(date -u +%T)"
