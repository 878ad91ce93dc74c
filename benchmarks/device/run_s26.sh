#!/usr/bin/env bash
# Session 26, the lead's calls on main:
#   OUT=... bash benchmarks/device/run_s26.sh first   where the bf16 training step and the forward spend their time at
#                                                     16K / 32K (torch profiler, profile_gd.py), and issue 20's one- vs
#                                                     two-thread table on this host's CPU held to two cores (taskset),
#                                                     the GPU work pinned to the other cores
set -u
if [ "$1" = first ]; then
  ( NAME=s26_first; . benchmarks/device/setup.sh
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
    echo "=== cpu $(date -u +%T): nproc $(nproc)"; grep -m1 "model name" /proc/cpuinfo; grep -m1 flags /proc/cpuinfo | grep -o "avx512f\|avx2\|amx_tile" | sort -u | tr '\n' ' '; echo
    taskset -c 0,1 python3 -c "import os, numpy, numba; print('affinity', sorted(os.sched_getaffinity(0)), 'numpy', numpy.__version__, 'numba', numba.__version__)" 2>&1 | tail -2
    ( export NUMBA_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
      cat /proc/loadavg
      taskset -c 0,1 timeout 280 python3 benchmarks/bench_cpu_roofline.py --threads-only --threads-T 65536 --repeat 9 > "$OUT/log_cpu_threads.txt" 2>&1
      echo "rc=$?" >> "$OUT/log_cpu_threads.txt"; cat /proc/loadavg >> "$OUT/log_cpu_threads.txt" ) &
    G="taskset -c 2-15"
    for T in 16384 32768; do
      echo "=== train $T $(date -u +%T)"
      $G timeout 80 python3 benchmarks/device/profile_gd.py train $T > "$OUT/log_train_$T.txt" 2>&1; echo "rc=$?"
      grep -E "====" "$OUT/log_train_$T.txt"; grep -vE "^-|^$" "$OUT/log_train_$T.txt" | sed -n 2,34p | sed -E 's/  +/ /g' | cut -c1-150
    done
    echo "=== forward $(date -u +%T)"
    $G timeout 80 python3 benchmarks/device/profile_gd.py 16384,32768 > "$OUT/log_fwd.txt" 2>&1; echo "rc=$?"
    grep -E "====" "$OUT/log_fwd.txt"
    wait
    echo "=== cpu threads $(date -u +%T)"; tail -n 25 "$OUT/log_cpu_threads.txt" | cut -c1-200 )
fi
echo "=== done $(date -u +%T)"
