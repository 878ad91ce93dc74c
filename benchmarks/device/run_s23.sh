#!/usr/bin/env bash
# Session 23, the lead's calls on main:
#   OUT=... bash benchmarks/device/run_s23.sh first   the 8K / 32K bf16 public forward: timeline (every GPU op), host
#                                                     stamps, and Nsight Compute's view of the five kernels at 8K
set -u
if [ "$1" = first ]; then
  ( NAME=s23_first; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
    echo "=== timeline $(date -u +%T)"
    timeout 90 python3 benchmarks/device/gd_timeline.py 8192,32768 bf16 nochecks > "$OUT/log_timeline.txt" 2>&1; echo "rc=$?"
    grep -v "^ *$" "$OUT/log_timeline.txt" | tail -n 60 | cut -c1-160
    echo "=== host $(date -u +%T)"
    timeout 60 python3 benchmarks/device/gd_host_s16a16.py 8192 bf16 20 > "$OUT/log_host.txt" 2>&1; echo "rc=$?"
    tail -n 25 "$OUT/log_host.txt" | cut -c1-160
    echo "=== ncu $(date -u +%T)"
    timeout 150 ncu --kernel-name regex:gd_ --launch-skip 10 --launch-count 6 --set full -o "$OUT/gd8k" \
        python3 benchmarks/device/gd_one_bf16_s23.py 8192 > "$OUT/log_ncu.txt" 2>&1; echo "rc=$?"
    tail -n 5 "$OUT/log_ncu.txt" | cut -c1-200
    timeout 60 ncu --import "$OUT/gd8k.ncu-rep" --page details --print-units base > "$OUT/ncu_details.txt" 2>&1
    grep -E "^  gd_|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Theoretical Occ|Block Size|Grid Size|Dynamic Shared|Waves Per SM|DRAM Throughput|L1/TEX Hit|L2 Hit|Issue Slots Busy|No Eligible|Active Warps Per|Eligible Warps" "$OUT/ncu_details.txt" | cut -c1-120 )
fi
echo "=== done $(date -u +%T)"
