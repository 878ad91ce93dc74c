#!/usr/bin/env bash
# Session 11, s11h20 (issue 20): the CPU roofline on an idle host CPU, two cores pinned (no GPU work).
#   OUT=... bash benchmarks/device/run_s11h20.sh      (results and logs: $OUT/s11h20.tgz)
# Compiles the float32 kernels first on other cores (two processes at once: Numba's cache), then on
# cores 0-1 only: bench_cpu_roofline (B = 8, T = 4096, numba; then B = 1, T = 65536 on 1 vs 2 threads,
# three times), and where exp / log calls spend their time (cpu_s11h20.py, 1 and 2 threads).
set -u
NAME=s11h20; . benchmarks/device/setup.sh
export NUMBA_CACHE_DIR=/tmp/s11h20_numba_cache HYPOTHESIS_PROFILE=ci
echo "=== host $(date -u +%T)"; nproc; lscpu | grep -E "Model name|^CPU\(s\)|Thread\(s\)" ; uptime
python3 -c "import numba, scipy, numpy; print('numba', numba.__version__, 'scipy', scipy.__version__, 'numpy', numpy.__version__)"
echo "=== compile (float32 kernels, cores 2-15) $(date -u +%T)"
W="taskset -c 2-15 env NUMBA_NUM_THREADS=2"
timeout 150 $W python3 benchmarks/bench_cpu_roofline.py --quick --no-threads --no-write --max-work-array-api 0 --ops exp_kernel_attention > "$OUT/log_warm_ek.txt" 2>&1 &
timeout 150 $W python3 benchmarks/bench_cpu_roofline.py --quick --no-threads --no-write --max-work-array-api 0 --ops loglinear_attention > "$OUT/log_warm_ll.txt" 2>&1 &
wait; echo "compiled $(date -u +%T)"; tail -2 "$OUT"/log_warm_*.txt
# TIMINGS (alone on the host; two cores pinned)
P2="taskset -c 0,1 env NUMBA_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2"
OPS=exp_kernel_attention,log_attention,loglinear_attention,loglinear_gated_delta
echo "=== roofline $(date -u +%T)"
timeout 120 $P2 python3 benchmarks/bench_cpu_roofline.py --B 8 --T 4096 --dtypes float32 --repeat 5 --threads-T 65536 --ops $OPS --max-work-array-api 0 --name cpu_roofline_s11h20 > "$OUT/log_roofline.txt" 2>&1; echo "rc=$?"
cat "$OUT/log_roofline.txt" | cut -c1-200
cp benchmarks/results/cpu_roofline_s11h20.* "$OUT/" 2>/dev/null
for i in 2 3; do
  echo "=== threads again ($i) $(date -u +%T)"
  timeout 60 $P2 python3 -c "
import sys; sys.argv = ['x', '--ops', '$OPS', '--threads-T', '65536', '--repeat', '5']
sys.path.insert(0, 'benchmarks'); import bench_cpu_roofline as R, argparse
a = argparse.Namespace(ops='$OPS'.split(','), threads_T=65536, d=64, repeat=5)
r = R.threads_check(a); print('speed-up', {op: round(r[1][op] / r[2][op], 2) for op in a.ops})" 2>&1 | tail -3
done
echo "=== where exp / log spend it $(date -u +%T)"
for n in 1 2; do timeout 40 taskset -c 0,1 env NUMBA_NUM_THREADS=$n OPENBLAS_NUM_THREADS=$n python3 benchmarks/device/cpu_s11h20.py --repeat 10 2>&1 | tail -4; done
echo "=== done $(date -u +%T)"
