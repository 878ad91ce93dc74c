#!/usr/bin/env bash
# The last H200 runs of sessions 12-16 (merged main), on one warm machine:
#   OUT=... bash benchmarks/device/run_m.sh tests [LIM]  every GPU-marked test file: wave 1, nine verbose pytest processes beside
#                                                        compute-sanitizer memcheck / racecheck / initcheck of the small scripts; wave 2, the two
#                                                        files whose float64 quadratic references need most GPU memory (session 11's
#                                                        eight concurrent processes ran out of memory there), alone
#   OUT=... bash benchmarks/device/run_m.sh one [LIM]    both in one call, every test process at once (little device time left)
#   OUT=... bash benchmarks/device/run_m.sh quick [LIM]  one's tests without the tables (less still)
#   OUT=... bash benchmarks/device/run_m.sh bench        the tables alone on the GPU (peers in the same run): issue 17's, Gated DeltaNet
#                                                        forward and fwd+bwd
# Results and logs: $OUT/m_<mode>.tgz.
set -u
MODE=${1:-tests}; LIM=${2:-130}
NAME=m_$MODE; . benchmarks/device/setup.sh
# expandable segments for the tests (less fragmentation beside each other); compute-sanitizer refuses them (cuMemCreate:
# CUDA_ERROR_NOT_PERMITTED, one "error" per run in session 12's final run), so the sanitizers run without
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
summary() {
  for f in "$@"; do echo "-- $(basename $f) [$(grep -m1 -o 'tests/[a-z_]*\.py' $f)]: $(grep -c ' PASSED' "$f") passed, $(grep -c ' SKIPPED' "$f") skipped, $(grep -c ' FAILED' "$f") failed"
    grep -E "^FAILED|^ERROR" "$f" | head -6 | cut -c1-220; tail -1 "$f" | cut -c1-160; done
}
# the test groups: one pytest process per group (a file alone ran past session 13's 150 s cap: cupy backend, hierarchical
# gradients, Dask); wave 2 holds the files whose float64 quadratic references need most GPU memory (session 11's eight
# concurrent processes ran out of memory there)
WAVE1=("tests/test_cupy_gated_delta.py" "tests/test_cupy_gated_delta_grad.py" "tests/test_gpu_dispatch.py"
       "tests/test_cupy_backend.py" "tests/test_cupy_hierarchical.py" "tests/test_cupy_hierarchical_grad.py"
       "tests/test_varlen.py tests/test_cupy_packed_ek.py" "tests/test_nonfinite.py" "tests/test_gpu_stepper.py")
WAVE2=("tests/test_cupy_log_attention.py -k '(backward or spikes or grad) and not tensor_cores'"
       "tests/test_cupy_log_attention.py -k 'not (backward or spikes or grad)'" "tests/test_training.py"
       "tests/test_dask_gpu.py")  # (Dask: its first call of each operator compiles its kernels, slow beside wave 1)
PIDS=()
launch() {  # launch TAG GROUP...: one capped pytest per group, logs $OUT/log_<TAG><i>.txt, pids in PIDS
  local tag=$1 i=0; shift
  for grp in "$@"; do i=$((i + 1)); eval timeout "$LIM" $PT $grp > "$OUT/log_$tag$i.txt" 2>&1 & PIDS+=($!); done
}
cap() {  # cap PER: PER seconds, or what is left before END (0: nothing left)
  local left=$((END - $(date +%s))); [ "$left" -lt "$1" ] && echo $((left > 10 ? left : 0)) || echo "$1"
}
sanitizers() {  # memcheck / racecheck of the small scripts (each call capped at $1 / $2 s), all done by END
  local mc=$1 rc=$2
  ( for s in gd_small gd_bwd_small hier_small hier_bwd_small ek_packed_small ek_bwd_small; do
      c=$(cap $mc); [ "$c" = 0 ] && break
      PYTORCH_CUDA_ALLOC_CONF= timeout "$c" compute-sanitizer --tool memcheck --print-limit 5 python3 benchmarks/device/$s.py > "$OUT/log_memcheck_$s.txt" 2>&1
    done ) &
  ( for s in gd_small gd_bwd_small hier_small "hier_bwd_small race"; do
      set -- $s; c=$(cap $rc); [ "$c" = 0 ] && break
      PYTORCH_CUDA_ALLOC_CONF= timeout "$c" compute-sanitizer --tool racecheck --print-limit 5 python3 benchmarks/device/$1.py ${2:-} > "$OUT/log_racecheck_$1.txt" 2>&1
    done ) &
  # reads of never-written global memory (session 16: one in gd_tier1; session 20: gd_forms' bf16 path, the
  # hierarchical kernels after s19e17)
  ( for s in gd_tier_small gd_small "gd_small bf16" hier_small hier_bwd_small; do
      set -- $s; c=$(cap $rc); [ "$c" = 0 ] && break
      PYTORCH_CUDA_ALLOC_CONF= timeout "$c" compute-sanitizer --tool initcheck --print-limit 10 python3 benchmarks/device/$1.py ${2:-} > "$OUT/log_initcheck_$1${2:+_$2}.txt" 2>&1
    done ) &
}
report() {
  summary "$OUT"/log_t*.txt "$OUT"/log_u*.txt "$OUT"/log_v*.txt
  for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt "$OUT"/log_initcheck_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$f" | tail -1)"; done
}
tables() {  # issue 17's table, the Gated DeltaNet forward and fwd+bwd (peers in the same run)
  mkdir -p "$OUT/table" "$OUT/gd" "$OUT/gd_train"
  echo "=== issue 17 table $(date -u +%T)"
  timeout 130 python3 benchmarks/bench_gpu_hierarchical.py table --reps 5 --out "$OUT/table" > "$OUT/log_table.txt" 2>&1; echo "rc=$?"
  grep -E "^## Targets" -A9 "$OUT/log_table.txt" | cut -c1-230; grep -E "x \(target|fails" "$OUT/log_table.txt" | cut -c1-230
  echo "=== gated delta fwd $(date -u +%T)"
  timeout 90 python3 benchmarks/bench_gpu_gated_delta.py --T 2048,8192,16384,32768 --api-max-T 8192 --fla-dtypes bf16 --out "$OUT/gd" > "$OUT/log_gd.txt" 2>&1; echo "rc=$?"
  grep -E "^\|" "$OUT/log_gd.txt" | cut -c1-200
  echo "=== gated delta fwd+bwd $(date -u +%T)"
  timeout 80 python3 benchmarks/bench_gpu_gated_delta.py --train --T 8192,32768 --rows ours_bf16,ours_fp32,fla_ll,sdpa --out "$OUT/gd_train" > "$OUT/log_gd_train.txt" 2>&1; echo "rc=$?"
  grep -E "^\|" "$OUT/log_gd_train.txt" | cut -c1-200
}
if [ "$MODE" = tests ]; then
  echo "=== tests, wave 1 $(date -u +%T)"
  END=$(($(date +%s) + 2 * LIM)); sanitizers 60 75  # the sanitizers run through both waves
  # the bf16 tensor-core backward property test (13 examples, each compiling variants: cut at 170 s beside wave 2 in
  # sessions 17-18) runs through both waves in its own process
  timeout $((2 * LIM + 60)) $PT tests/test_cupy_log_attention.py -k tensor_cores > "$OUT/log_v1.txt" 2>&1 &
  launch t "${WAVE1[@]}"; wait "${PIDS[@]}"
  echo "=== tests, wave 2 $(date -u +%T)"
  launch u "${WAVE2[@]}"; wait
  report
elif [ "$MODE" = one ] || [ "$MODE" = quick ]; then
  # a session with little device time left: every group and the sanitizers at once (all done by LIM: session 15's
  # sanitizer chain outlived it), then the tables
  echo "=== tests, one wave $(date -u +%T)"
  END=$(($(date +%s) + LIM)); launch t "${WAVE1[@]}"; launch u "${WAVE2[@]}"; sanitizers 40 60
  timeout "$LIM" $PT tests/test_cupy_log_attention.py -k tensor_cores > "$OUT/log_v1.txt" 2>&1 &  # (WAVE2 leaves it out)
  wait
  report
  [ "$MODE" = one ] && tables
elif [ "$MODE" = bench ]; then
  tables
fi
echo "=== done $(date -u +%T)"
