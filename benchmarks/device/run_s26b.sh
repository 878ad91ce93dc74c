#!/usr/bin/env bash
# Session 26, s26b (issue 16): K3 gd_tier1x_bwd / K4 gd_tier1_bwd faster (gated_delta_tier1x_bwd.cu, gated_delta_tier1_bwd.cu).
#   OUT=... bash benchmarks/device/run_s26b.sh tests   the K3 / K4 GPU tests, the two-tier training step's GPU tests, and
#                                                      memcheck / racecheck / initcheck of gd_train16_small_s24a.py (the
#                                                      bf16 step through K1-K4 from 3 chunks); the A/B's builds compiled
#   OUT=... bash benchmarks/device/run_s26b.sh times   K3, K4 new vs session 25's forms at 8K / 16K / 32K (B H = 32, GD_S16
#                                                      x1; ab_tier1_bwd_s26b.py), ncu --set full of one launch of each at 8K
set -u
# ncu_summary REPORT (without .ncu-rep): the details page's launch / occupancy / issue lines and, per kernel, the stall
# reasons (cycles per issued instruction) and the tensor pipe's raw metrics (run_s25b.sh's, at 49de611)
ncu_summary() {
  timeout 8 ncu --import "$1.ncu-rep" --page details --print-units base > "$1_details.txt" 2>&1
  grep -E "^  [a-z_0-9]+ \(|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occ|Registers Per|Dynamic Shared|Issue Slots Busy|No Eligible|Eligible Warps|Warp Cycles Per Issued|Executed Ipc A|L2 Hit|DRAM Throughput|Executed Instructions  " \
      "$1_details.txt" | cut -c1-110
  timeout 8 ncu --import "$1.ncu-rep" --page raw --csv --print-units base > "$1_raw.csv" 2>&1
  timeout 8 python3 - "$1_raw.csv" <<'PY'
import csv, re, sys
rows = list(csv.reader(open(sys.argv[1])))
if len(rows) < 3:
    sys.exit("no raw rows")
name = rows[0]
pat = re.compile(r"smsp__average_warps?_(latency_)?issue_stalled_.*_per_issue_active\.ratio$|pipe_tensor.*pct_of_peak"
                 r"|sm__warps_active\.avg\.pct_of_peak|smsp__issue_active\.avg\.pct|lsu_mem_global_op_red|inst_executed_op_global_red\.sum$"
                 r"|l1tex__data_pipe_lsu_wavefronts_mem_shared\.sum$|lts__t_sectors_op_red\.sum$")
kcol = name.index("Kernel Name") if "Kernel Name" in name else None
for val in [r for r in rows[1:] if r and r[0].strip().isdigit()]:  # (not the units row)
    print("--", val[kcol][:40] if kcol is not None else "kernel")
    out = [(n, v) for n, v in zip(name, val) if pat.search(n)]
    stalls = sorted(((float(v.replace(",", "")), n) for n, v in out if "stalled" in n
                     and v.replace(",", "").replace(".", "").isdigit()), reverse=True)
    for v, n in stalls[:8]:
        print(f"  stall {n.split('issue_stalled_')[1].split('_per_issue')[0]:28s} {v:8.2f} cycles/issue")
    for n, v in out:
        if "stalled" not in n:
            print(f"  {n} = {v}")
PY
}
if [ "$1" = tests ]; then
  ( NAME=s26b_tests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    echo "=== tests $(date -u +%T)"
    timeout 145 python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short tests/test_cupy_gated_delta_tier_bwd.py \
        -k "tier1x_bwd or tier1_bwd" > "$OUT/log_t_k34.txt" 2>&1 &
    timeout 145 python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short tests/test_cupy_gated_delta_tier_grad.py \
        > "$OUT/log_t_grad.txt" 2>&1 &
    timeout 140 python3 benchmarks/device/ab_tier1_bwd_s26b.py compile > "$OUT/log_compile.txt" 2>&1 &  # (for times)
    for tool in memcheck racecheck initcheck; do
      PYTORCH_CUDA_ALLOC_CONF= timeout 140 compute-sanitizer --tool $tool --print-limit 10 \
          python3 benchmarks/device/gd_train16_small_s24a.py > "$OUT/log_${tool}.txt" 2>&1 &
    done
    wait
    for f in "$OUT/log_t_k34.txt" "$OUT/log_t_grad.txt"; do
      echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"
      grep -E "^FAILED|^E  " $f | head -8 | cut -c1-220; tail -n 1 $f | cut -c1-160
    done
    echo "-- compile: $(tail -n 1 $OUT/log_compile.txt | cut -c1-160)"
    for tool in memcheck racecheck initcheck; do f="$OUT/log_${tool}.txt"
      echo "-- $tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) | $(tail -n 2 $f | head -1 | cut -c1-120)"; done )
fi
if [ "$1" = times ]; then
  ( NAME=s26b_times; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    echo "=== times $(date -u +%T)"
    timeout 75 python3 benchmarks/device/ab_tier1_bwd_s26b.py times 8192,16384,32768 15 > "$OUT/log_times.txt" 2>&1
    echo "rc=$?"; grep -vE "^\s*$" "$OUT/log_times.txt" | tail -n 7 | cut -c1-200
    echo "=== ncu $(date -u +%T)"
    timeout 40 ncu --kernel-name regex:gd_tier1x?_bwd_x1 --launch-count 2 --set full -o "$OUT/k34_8k" \
        python3 benchmarks/device/ab_tier1_bwd_s26b.py one 8192 > "$OUT/log_ncu.txt" 2>&1; echo "rc=$?"
    tail -n 2 "$OUT/log_ncu.txt" | cut -c1-200
    ncu_summary "$OUT/k34_8k" )
fi
echo "=== done $(date -u +%T)"
