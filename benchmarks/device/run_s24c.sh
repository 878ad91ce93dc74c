#!/usr/bin/env bash
# Session 24, helper c (issue 16: the scan's backward across chunks in parallel; no kernel changed on this branch):
# Request 2 (batch 2):
#   OUT=... bash benchmarks/device/run_s24c.sh tests   no GPU tests; the bf16 training path's kernels compiled (gd_bwd_one.py)
#   OUT=... bash benchmarks/device/run_s24c.sh times   one bf16 fwd+bwd step's kernels at 32K and 16K (profile_gd.py train):
#                                                      the training forward's tier kernels and the backward's beside them;
#                                                      ncu --set full of the training forward's gd_tier1, gd_tier1x,
#                                                      gd_coarse, gd_tier3 at 8K (float32 tiles: the K1-K4 analogues)
# Request 1 (batch 1, commit bf0d7ca, as tests / times then):
#   OUT=... bash benchmarks/device/run_s24c.sh tests1  nothing to test on the GPU (this branch changes no kernel: its
#                                                      tests are the CPU float64 twin's, tests/test_gated_delta_tier_bwd.py):
#                                                      the builds of `times` compiled into CuPy's cache only
#   OUT=... bash benchmarks/device/run_s24c.sh times1  gd_scan_bwd_x1's phase 1 (the slots' recompute) against the whole
#                                                      kernel and phase 2 alone at 8K and 32K (gd_bwd_phases_s24c.py);
#                                                      ncu --set full of one launch at 8K (and of gd_forms_bwd_x1):
#                                                      occupancy, stall reasons, tensor pipe
set -u
# ncu_summary REPORT (without .ncu-rep): the details page's launch / occupancy / issue lines and, per kernel, the stall
# reasons (cycles per issued instruction) and the tensor pipe's raw metrics
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
if [ "$1" = tests1 ]; then
  ( NAME=s24c_tests1; . benchmarks/device/setup.sh
    echo "no GPU tests on s24c (no kernel changed); compiling times' builds $(date -u +%T)"
    timeout 140 python3 benchmarks/device/gd_bwd_phases_s24c.py compile > "$OUT/log_compile.txt" 2>&1; echo "rc=$?"
    tail -n 4 "$OUT/log_compile.txt" | cut -c1-160 )
fi
if [ "$1" = times1 ]; then
  ( NAME=s24c_times1; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv,noheader
    echo "=== phases $(date -u +%T)"
    timeout 60 python3 benchmarks/device/gd_bwd_phases_s24c.py 8192,32768 15 > "$OUT/log_phases.txt" 2>&1; echo "rc=$?"
    grep -E "^T=|registers|Error|error" "$OUT/log_phases.txt" | cut -c1-260
    echo "=== ncu $(date -u +%T)"
    timeout 40 ncu --kernel-name regex:"gd_scan_bwd_x1|gd_forms_bwd_x1" --launch-count 2 --set full -o "$OUT/bwd8k" \
        python3 benchmarks/device/gd_bwd_phases_s24c.py one 8192 > "$OUT/log_ncu.txt" 2>&1; echo "rc=$?"
    tail -n 3 "$OUT/log_ncu.txt" | cut -c1-200
    ncu_summary "$OUT/bwd8k"
  )
fi
if [ "$1" = tests ]; then
  ( NAME=s24c_tests; . benchmarks/device/setup.sh
    echo "no GPU tests on s24c (no kernel changed); compiling the bf16 training path's kernels $(date -u +%T)"
    timeout 140 python3 benchmarks/device/gd_bwd_one.py 2048 > "$OUT/log_compile.txt" 2>&1; echo "rc=$?"
    tail -n 2 "$OUT/log_compile.txt" | cut -c1-160 )
fi
if [ "$1" = times ]; then
  ( NAME=s24c_times; . benchmarks/device/setup.sh
    export CUDA_VISIBLE_DEVICES=0
    nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv,noheader
    for T in 32768 16384; do
      echo "=== profile train $T $(date -u +%T)"
      timeout 35 python3 benchmarks/device/profile_gd.py train $T > "$OUT/log_prof_train_$T.txt" 2>&1; echo "rc=$?"
      grep -E "====|gd_|Self CUDA time total" "$OUT/log_prof_train_$T.txt" | cut -c1-200 | head -24
    done
    echo "=== ncu training forward 8K $(date -u +%T)"
    timeout 30 ncu --kernel-name regex:"gd_tier|gd_coarse|gd_cgroup" --launch-count 4 --set full -o "$OUT/fwd8k" \
        python3 benchmarks/device/gd_bwd_one.py 8192 > "$OUT/log_ncu.txt" 2>&1; echo "rc=$?"
    tail -n 2 "$OUT/log_ncu.txt" | cut -c1-200
    ncu_summary "$OUT/fwd8k" )
fi
echo "=== done $(date -u +%T)"
