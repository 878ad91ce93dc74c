#!/usr/bin/env bash
# One device session for the CuPy backend: install carried wheels, GPU tests, compute-sanitizer,
# accuracy + per-kernel times, and the side-by-side benchmark. Logs and JSON go to $OUT.
#   STEPS="tests sanitize check bench" bash benchmarks/gpu_session.sh
# Wheels (fla-core, einops, array-api-compat, hypothesis, pytest, ...) are carried in .whl/.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
STEPS=${STEPS:-"tests sanitize check bench"}
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "wheel install failed"
fi
export PYTHONPATH=/tmp/site:$PWD
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv; date -u;
  python3 -c "import cupy, torch, numpy; print('cupy', cupy.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__)"; } 2>&1 | tee "$OUT/log_env.txt"

for step in $STEPS; do
  echo "=== $step ($(date -u +%T))"
  case $step in
    tests)
      set -o pipefail
      timeout ${T_TESTS:-240} python3 -m pytest -q -x -p no:cacheprovider tests/test_cupy_backend.py ${PYTEST_ARGS:-} 2>&1 \
        | tee "$OUT/log_tests.txt" | tail -40
      rc=$?; set +o pipefail
      if [ $rc -ne 0 ]; then
        echo "tests failed (rc=$rc): bf16 tests again with LSATTN_CUPY_EK5=0 (v4 exp-kernel bf16 kernels)"
        export LSATTN_CUPY_EK5=0
        LSATTN_CUPY_EK5=0 timeout 90 python3 -m pytest -q -x -p no:cacheprovider tests/test_cupy_backend.py -k bfloat16 2>&1 \
          | tee -a "$OUT/log_tests.txt" | tail -5
        [ ${PIPESTATUS[0]} -ne 0 ] && { echo "v4 failed too: LSATTN_CUPY_TC4=0"; export LSATTN_CUPY_TC4=0; }
      fi ;;
    tests_v3)  # the earlier tensor-core kernels (fallback variant), bf16 tests only
      LSATTN_CUPY_TC4=0 timeout ${T_TESTS3:-120} python3 -m pytest -q -x -p no:cacheprovider tests/test_cupy_backend.py \
        -k bfloat16 2>&1 | tee -a "$OUT/log_tests.txt" | tail -5 ;;
    check_v3)
      LSATTN_CUPY_TC4=0 timeout ${T_CHECK3:-60} python3 benchmarks/bench_gpu.py check --out /tmp/v3 --T 32768 2>&1 \
        | grep -E "bf16|relerr" | tee -a "$OUT/log_check.txt" ;;
    sanitize)
      timeout ${T_SAN:-200} compute-sanitizer --tool memcheck --leak-check no --print-limit 20 \
        python3 benchmarks/bench_gpu.py sanitize > "$OUT/log_sanitize.txt" 2>&1
      echo "memcheck rc=$?" | tee -a "$OUT/log_sanitize.txt"; tail -15 "$OUT/log_sanitize.txt"
      if [ -n "${RACECHECK:-}" ]; then
        timeout ${T_RACE:-150} compute-sanitizer --tool racecheck --print-limit 20 \
          python3 benchmarks/bench_gpu.py sanitize >> "$OUT/log_sanitize.txt" 2>&1
        echo "racecheck rc=$?" | tee -a "$OUT/log_sanitize.txt"; tail -8 "$OUT/log_sanitize.txt"
      fi ;;
    check)
      timeout ${T_CHECK:-150} python3 benchmarks/bench_gpu.py check --out "$OUT" ${CHECK_ARGS:-} 2>&1 \
        | tee "$OUT/log_check.txt" | tail -30 ;;
    bench)
      timeout ${T_BENCH:-300} python3 benchmarks/bench_gpu.py bench --out "$OUT" ${BENCH_ARGS:-} 2>&1 \
        | tee "$OUT/log_bench.txt" | tail -45 ;;
  esac
done
echo "=== done ($(date -u +%T))"
