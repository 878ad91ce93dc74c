#!/usr/bin/env bash
# Session 27, the lead's calls on main (issue 16):
#   OUT=... bash benchmarks/device/run_s27.sh tests    the merged main (s26a gd_forms_bwd FB_LDM / FB_DLQ, s26b K4 float2
#                                                      pairs, s26c K1 GT3B_V2, s26d GF_STG 3; ran with PIPE_PARTS 2, since
#                                                      taken out, and gd_pipe_small_s26d.py in the sanitizers): the gated
#                                                      delta GPU tests in six processes; memcheck / racecheck / initcheck
#                                                      of small scan, pipelined-parts and training calls; then alone:
#                                                      ab_s26d.py (the public bf16 forward: the defaults, main's gd_forms
#                                                      stores, GD_T1B16_SET), the two-tier backward's kernels,
#                                                      the bf16 training step's kernel profile at 32K
#   OUT=... bash benchmarks/device/run_s27.sh tests2   the tests again with each process's GPU memory sampled every 3 s
#                                                      (the first call's OOM: one process held 117.7 GiB) and memcheck of
#                                                      gd_bwd16_small_s19g16 (its first run hit that OOM)
#   OUT=... bash benchmarks/device/run_s27.sh third    after PIPE_PARTS' removal: test_cupy_gated_delta.py -m gpu (two
#                                                      processes), memcheck / racecheck of gd_small bf16; the JAX test of
#                                                      test_gpu_dispatch alone with its peak GPU memory, as it is and under
#                                                      XLA_PYTHON_CLIENT_ALLOCATOR=platform; the public forward's builds
#                                                      (ab_s26d.py off / nob16 / main at 8K-32K); the forward's profile
#   OUT=... bash benchmarks/device/run_s27.sh ncu      ncu --set full of one gd_forms_bwd_x1 launch (a bf16 step at 8K,
#                                                      forms_bwd_step_s27.py): details and per-SASS-line source counters
#   OUT=... bash benchmarks/device/run_s27.sh tables   the Gated DeltaNet tables alone (fwd; fwd+bwd beside fla's GDN with
#                                                      its Hopper guard lifted, fla's log-linear and SDPA)
set -u
( NAME=s27_$1; . benchmarks/device/setup.sh
  export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
  if [ "$1" = tests ] || [ "$1" = tests2 ]; then
    [ "$1" = tests2 ] && { ( while sleep 3; do pgrep -f pytest > /dev/null || break; echo "t=$SECONDS"; nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader
        ps -eo pid,args | grep -E "pytest|sanitizer" | grep -v grep | cut -c1-160; done ) > "$OUT/log_gpu_mem.txt" 2>&1 & }  # (ends with the tests)
    . benchmarks/device/gd_gpu_tests.sh
    echo "=== tests $(date -u +%T)"
    gd_gpu_tests
    [ "$1" = tests2 ] && PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool memcheck --print-limit 10 \
        python3 benchmarks/device/gd_bwd16_small_s19g16.py > "$OUT/log_memcheck_gd_bwd16_small_s19g16.txt" 2>&1 &
    [ "$1" = tests ] && for tool in memcheck racecheck initcheck; do
      ( for s in gd_tier_small "gd_small bf16" gd_bwd16_small_s19g16 gd_train16_small_s24a; do set -- $s
          PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/$1.py ${2:-} > "$OUT/log_${tool}_$1${2:+_$2}.txt" 2>&1
        done ) &
    done
    wait
    [ "$1" = tests2 ] && { echo "-- peak GPU MiB per pid:"; awk -F', ' '/MiB/ {m=$2+0; if (m > p[$1]) p[$1] = m} END {for (k in p) print k, p[k]}' "$OUT/log_gpu_mem.txt" | sort -k2 -n | tail -4
        grep -E "^ *[0-9]+ " "$OUT/log_gpu_mem.txt" | sort -u | cut -c1-160 | head -20; }
    gd_gpu_summary
    for f in "$OUT"/log_memcheck_*.txt "$OUT"/log_racecheck_*.txt "$OUT"/log_initcheck_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) $(grep -c 'sanitize ok' $f) ok $(grep -c 'equal to 1: False' $f) unequal"; done
    echo "=== forward A/B $(date -u +%T)"
    timeout 110 python3 benchmarks/device/ab_s26d.py 16384,32768 9 off,main,nob16 0 > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
    grep -E "vs off|^\|" "$OUT/log_ab.txt" | cut -c1-160
    echo "=== two-tier backward kernels $(date -u +%T)"
    timeout 60 python3 benchmarks/device/gd_tier_bwd_kernels.py > "$OUT/log_tier_bwd_kernels.txt" 2>&1; echo "rc=$?"
    grep -E "^\||H200|H100" "$OUT/log_tier_bwd_kernels.txt" | cut -c1-200
    echo "=== train profile 32K $(date -u +%T)"
    timeout 80 python3 benchmarks/device/profile_gd.py train 32768 > "$OUT/log_train_32768.txt" 2>&1; echo "rc=$?"
    grep -E "====" "$OUT/log_train_32768.txt"; grep -vE "^-|^$" "$OUT/log_train_32768.txt" | sed -n 2,24p | sed -E 's/  +/ /g' | cut -c1-150
  elif [ "$1" = ncu ]; then
    timeout 150 ncu --set full --import-source yes -k regex:gd_forms_bwd_x1 -c 1 -o "$OUT/forms_bwd_8k" \
        python3 benchmarks/device/forms_bwd_step_s27.py 8192 > "$OUT/log_ncu_run.txt" 2>&1; echo "ncu rc=$?"
    tail -n 2 "$OUT/log_ncu_run.txt" | cut -c1-160
    timeout 40 ncu --import "$OUT/forms_bwd_8k.ncu-rep" --print-details all > "$OUT/log_ncu_details.txt" 2>&1; echo "details rc=$?"
    timeout 40 ncu --import "$OUT/forms_bwd_8k.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu_sass.csv" 2>&1; echo "sass rc=$?"
    gzip -f "$OUT/ncu_sass.csv"; rm -f "$OUT/forms_bwd_8k.ncu-rep"
    grep -E "Duration|Registers Per|Achieved Occupancy|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Executed Instructions  |Shared Memory Config|Bank Conflicts|L1/TEX Hit|DRAM Throughput|Compute \(SM\) Thr" "$OUT/log_ncu_details.txt" | head -24 | cut -c1-150
    ls -la "$OUT"
  elif [ "$1" = third ]; then
    . benchmarks/device/gd_gpu_tests.sh
    PT=$GD_PT K=$GD_K
    echo "=== tests $(date -u +%T)"
    timeout 200 $PT tests/test_cupy_gated_delta.py -k "$K" > "$OUT/log_t_gd1.txt" 2>&1 &
    timeout 200 $PT tests/test_cupy_gated_delta.py -k "not ($K)" > "$OUT/log_t_gd2.txt" 2>&1 &
    for tool in memcheck racecheck; do
      PYTORCH_CUDA_ALLOC_CONF= timeout 95 compute-sanitizer --tool $tool --print-limit 10 python3 benchmarks/device/gd_small.py bf16 > "$OUT/log_${tool}_gd_small.txt" 2>&1 &
    done
    wait
    gd_gpu_summary
    for f in "$OUT"/log_*check_*.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) $(grep -c 'sanitize ok' $f) ok"; done
    for alloc in default platform; do
      echo "=== JAX test alone, allocator $alloc $(date -u +%T)"
      ( [ $alloc = platform ] && export XLA_PYTHON_CLIENT_ALLOCATOR=platform
        timeout 100 $PT tests/test_gpu_dispatch.py -k "cupy_and_jax" > "$OUT/log_jax_$alloc.txt" 2>&1 ) &
      P=$!; peak=0
      while kill -0 $P 2> /dev/null; do m=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1); [ "${m:-0}" -gt $peak ] && peak=$m; sleep 1; done
      echo "peak device memory used: $peak MiB; $(tail -n 1 $OUT/log_jax_$alloc.txt | cut -c1-120)"
    done
    echo "=== forward builds $(date -u +%T)"
    timeout 120 python3 benchmarks/device/ab_s26d.py 8192,16384,32768 9 off,nob16,main 0 > "$OUT/log_ab.txt" 2>&1; echo "rc=$?"
    grep -E "vs off|^\|" "$OUT/log_ab.txt" | cut -c1-160
    echo "=== forward profile $(date -u +%T)"
    timeout 80 python3 benchmarks/device/profile_gd.py 8192,16384 > "$OUT/log_fwd.txt" 2>&1; echo "rc=$?"
    grep -E "====|wall|no kernel" "$OUT/log_fwd.txt" | cut -c1-200; grep -vE "^-|^$" "$OUT/log_fwd.txt" | grep -E "gd_|aten|Memcpy|Memset" | sed -E 's/  +/ /g' | cut -c1-150 | head -30
  else
    . benchmarks/device/gd_gpu_tests.sh
    gd_tables
  fi )
echo "=== done $(date -u +%T)"
