#!/usr/bin/env bash
# One device session for the GPU backends (run from the repo root on the GPU
# machine; wheels for array-api-compat and fla-core carried in .whl/, the previous lsattn in .old/).
#   STEPS="tests shim sanitize check bench overhead" bash benchmarks/gpu_session.sh  (each step has a time limit T1..T7)
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u;
  python3 -c "import cupy, torch, numpy, jax; print('cupy', cupy.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__, 'jax', jax.__version__)";
  python3 -m lsattn info; } 2>&1 | tee -a "$OUT/log_env.txt"
for step in ${STEPS:-tests}; do
  echo "=== $step ($(date -u +%T))"
  case $step in
    tests)  # the public dispatch with numba-cuda as installed (no shim), then the cupy kernels' GPU tests
      timeout ${T1:-200} python3 -m pytest -q -p no:cacheprovider -m gpu -x ${GPU_TESTS:-tests/test_gpu_dispatch.py tests/test_cupy_backend.py tests/test_nonfinite.py} \
        2>&1 | tee "$OUT/log_tests.txt" | tail -25 ;;
    shim)   # with the device-run stand-in that lets numba-cuda 0.30.4 compile under NumPy 2.5
      PYTHONPATH=/tmp/site:benchmarks/device timeout ${T2:-150} python3 -m pytest -q -p no:cacheprovider -p numpy25_shim -m gpu \
        tests/test_gpu_dispatch.py tests/test_numba_cuda.py -k "dispatch or automatic or probe or torch_cuda or cupy_and_jax" \
        2>&1 | tee "$OUT/log_tests_shim.txt" | tail -15 ;;
    sanitize)
      timeout ${T3:-150} compute-sanitizer --tool memcheck --leak-check no --print-limit 20 \
        python3 benchmarks/bench_gpu.py sanitize > "$OUT/log_sanitize.txt" 2>&1
      echo "memcheck rc=$?" | tee -a "$OUT/log_sanitize.txt"; tail -6 "$OUT/log_sanitize.txt" ;;
    check)
      timeout ${T4:-120} python3 benchmarks/bench_gpu.py check --out "$OUT" --T 8192 2>&1 | tee "$OUT/log_check.txt" | tail -12 ;;
    bench)
      timeout ${T5:-240} python3 benchmarks/bench_gpu.py bench --out "$OUT" --T ${BENCH_T:-2048,8192,16384,32768,65536} \
        --heinsen-max 8192 2>&1 | tee "$OUT/log_bench.txt" | tail -30 ;;
    train)  # the backward kernels: GPU training tests, then forward + backward against the peers
      timeout ${T8:-200} python3 -m pytest -q -p no:cacheprovider -m gpu -x tests/test_training.py tests/test_cupy_backend.py -k "grad or train or compile or backward" \
        2>&1 | tee "$OUT/log_tests_train.txt" | tail -15
      timeout ${T9:-240} python3 benchmarks/bench_gpu_train.py --out "$OUT" --T ${TRAIN_T:-2048,8192,16384,32768,65536} \
        2>&1 | tee "$OUT/log_train.txt" | tail -12 ;;
    overhead)
      timeout ${T6:-90} python3 benchmarks/bench_gpu.py overhead --out "$OUT" 2>&1 | tee "$OUT/log_overhead.txt" | grep -v "^ " | tail -12
      if [ -d .old/lsattn ]; then
        mkdir -p .old/benchmarks && cp benchmarks/bench_gpu.py .old/benchmarks/
        timeout ${T7:-60} python3 .old/benchmarks/bench_gpu.py overhead --backend cupy --out "$OUT" 2>&1 \
          | tee "$OUT/log_overhead_before.txt" | grep -v "^ " | tail -6
      fi ;;
  esac
done
echo "=== done ($(date -u +%T))"
