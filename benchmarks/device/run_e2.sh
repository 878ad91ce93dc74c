#!/usr/bin/env bash
# session 5, call E2 (same 2 x H200, warm): Dask arrays of CuPy blocks, GPU tests and the 2-GPU benchmark
set -u
FINAL=${OUT:-/tmp/out}; mkdir -p "$FINAL"
trap 'tar czf "$FINAL/res2.tgz" -C /tmp res2' EXIT
OUT=/tmp/res2 T1=${T1:-150} T2=${T2:-380} BENCH_ARGS="${BENCH_ARGS:---T 1048576,4194304}" bash benchmarks/device/dask_gpu_session.sh > /tmp/res2.log 2>&1
mkdir -p /tmp/res2; mv /tmp/res2.log /tmp/res2/log_session.txt
grep -E "dask_cuda|passed|failed|FAILED" /tmp/res2/log_env.txt /tmp/res2/log_tests_dask_gpu.txt | tail -14; tail -14 /tmp/res2/log_bench_dask_gpu.txt
