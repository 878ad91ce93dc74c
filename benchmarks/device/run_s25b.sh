#!/usr/bin/env bash
# Session 25, s25b (issue 16): K3 gd_tier1x_bwd, the two-tier scan backward's transfers kernel.
#   OUT=... bash benchmarks/device/run_s25b.sh tests   its GPU tests (against the twin at d = 64, C = 64, T = 8292 /
#                                                       32768, GD_S16 1xTF32 and float32 3xTF32); memcheck / racecheck /
#                                                       initcheck of one launch each at T = 1000 (150 s)
#   OUT=... bash benchmarks/device/run_s25b.sh times   gd_tier1x_bwd_x1 alone (and its timing builds: one tile set;
#                                                       32 columns a block, two blocks per SM) against gd_scan_bwd_x1
#                                                       (GD_S16 builds), B H = 32, d = 64, C = 64, T = 8K / 16K / 32K;
#                                                       ncu --set full of one launch of the default and the 32-column
#                                                       build at 8K (120 s, alone)
set -u
# ncu_summary REPORT (without .ncu-rep): the details page's launch / occupancy / issue lines and, per kernel, the stall
# reasons (cycles per issued instruction) and the tensor pipe's raw metrics (s24c's, run_s24c.sh at e99ad06)
ncu_summary() {
  timeout 8 ncu --import "$1.ncu-rep" --page details --print-units base > "$1_details.txt" 2>&1
  grep -E "^  [a-z_0-9]+ \(|Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occ|Registers Per|Dynamic Shared|Grid Size|Issue Slots Busy|No Eligible|Active Warps Per|Eligible Warps|Warp Cycles Per Issued|Executed Ipc A|L2 Hit|DRAM Throughput|Block Limit (Reg|Shared)|Executed Instructions  " \
      "$1_details.txt" | cut -c1-110
  timeout 8 ncu --import "$1.ncu-rep" --page raw --csv --print-units base > "$1_raw.csv" 2>&1
  timeout 8 python3 - "$1_raw.csv" <<'PY'
import csv, re, sys
rows = list(csv.reader(open(sys.argv[1])))
if len(rows) < 3:
    sys.exit("no raw rows")
name = rows[0]
pat = re.compile(r"smsp__average_warps?_(latency_)?issue_stalled_.*_per_issue_active\.ratio$|pipe_tensor.*pct_of_peak"
                 r"|sm__warps_active\.avg\.pct_of_peak|sm__inst_executed_pipe_tensor|smsp__issue_active\.avg\.pct")
kcol = name.index("Kernel Name") if "Kernel Name" in name else None
for val in [r for r in rows[1:] if r and r[0].strip().isdigit()]:  # (not the units row)
    print("--", val[kcol][:40] if kcol is not None else "kernel")
    out = [(n, v) for n, v in zip(name, val) if pat.search(n)]
    stalls = sorted(((float(v.replace(",", "")), n) for n, v in out if "stalled" in n
                     and v.replace(",", "").replace(".", "").isdigit()), reverse=True)
    for v, n in stalls[:10]:
        print(f"  stall {n.split('issue_stalled_')[1].split('_per_issue')[0]:28s} {v:8.2f} cycles/issue")
    if not stalls:  # (older metric names: the sampled stall counts)
        pc = sorted(((float(v.replace(",", "")), n) for n, v in zip(name, val) if re.search(
            r"smsp__pcsamp_warps_issue_stalled_[a-z_]+$", n) and v.replace(",", "").replace(".", "").isdigit()), reverse=True)
        for v, n in pc[:10]:
            print(f"  sampled stall {n.split('issue_stalled_')[1]:28s} {v:10.0f}")
    for n, v in out:
        if "stalled" not in n:
            print(f"  {n} = {v}")
PY
}
if [ "$1" = tests ]; then
  ( NAME=s25b_tests; . benchmarks/device/setup.sh
    export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
    echo "=== tests $(date -u +%T)"
    timeout 140 python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short tests/test_cupy_gated_delta_tier_bwd.py \
        -k tier1x > "$OUT/log_t_k3.txt" 2>&1 &
    timeout 140 python3 benchmarks/device/gd_tier1x_bwd_s25b.py compile > "$OUT/log_compile.txt" 2>&1 &  # (for times)
    timeout 70 python3 benchmarks/device/gd_tier1x_bwd_s25b.py small > "$OUT/log_small.txt" 2>&1  # (compiles the family once)
    for tool in memcheck racecheck initcheck; do
      PYTORCH_CUDA_ALLOC_CONF= timeout 75 compute-sanitizer --tool $tool --print-limit 10 \
          python3 benchmarks/device/gd_tier1x_bwd_s25b.py small > "$OUT/log_${tool}.txt" 2>&1 &
    done
    wait
    f="$OUT/log_t_k3.txt"; echo "-- $(basename $f): $(grep -c ' PASSED' $f) passed, $(grep -c ' FAILED' $f) failed"
    grep -E "^FAILED|^E  " $f | head -8 | cut -c1-220; tail -n 1 $f | cut -c1-160
    echo "-- log_small.txt: $(tail -n 3 $OUT/log_small.txt | tr '\n' ' ' | cut -c1-200)"
    echo "-- log_compile.txt: $(tail -n 1 $OUT/log_compile.txt | cut -c1-200)"
    for tool in memcheck racecheck initcheck; do f="$OUT/log_${tool}.txt"
      echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1) $(grep -c 'sanitize ok' $f) ok"; done )
fi
if [ "$1" = times ]; then
  ( NAME=s25b_times; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    echo "=== times $(date -u +%T)"
    timeout 60 python3 benchmarks/device/gd_tier1x_bwd_s25b.py times 8192,16384,32768 15 > "$OUT/log_times.txt" 2>&1
    echo "rc=$?"; grep -vE "^\s*$" "$OUT/log_times.txt" | tail -n 12 | cut -c1-260
    echo "=== ncu $(date -u +%T)"
    timeout 50 ncu --kernel-name gd_tier1x_bwd_x1 --launch-count 2 --set full -o "$OUT/k3_8k" \
        python3 benchmarks/device/gd_tier1x_bwd_s25b.py one 8192 > "$OUT/log_ncu.txt" 2>&1; echo "rc=$?"
    tail -n 2 "$OUT/log_ncu.txt" | cut -c1-200
    ncu_summary "$OUT/k3_8k" )
fi
echo "=== done $(date -u +%T)"
