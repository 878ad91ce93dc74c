"""Session 15, s15e17: a short summary of an ncu report's raw page (``ncu -i R --page raw --csv``): per kernel its
duration, registers, occupancy, issue activity, cycles per issued instruction, L1/shared and L2 throughput and the
largest warp-stall reasons (per issued instruction). ``python ncu_sum_s15e17.py RAW.csv``"""
import csv
import sys

rows = list(csv.reader(open(sys.argv[1])))
head = rows[0]
KEYS = [("gpu__time_duration.sum", "us"), ("launch__registers_per_thread", "regs"),
        ("sm__warps_active.avg.pct_of_peak_sustained_active", "occ%"),
        ("smsp__issue_active.avg.pct_of_peak_sustained_active", "issue%"),
        ("smsp__average_warp_latency_per_inst_issued.ratio", "cyc/inst"),
        ("smsp__inst_executed.sum", "warp-inst"),
        ("l1tex__data_pipe_lsu_wavefronts_mem_shared.sum.pct_of_peak_sustained_elapsed", "shm%"),
        ("l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum", "shm-conflicts"),
        ("lts__t_sectors.avg.pct_of_peak_sustained_elapsed", "L2%"),
        ("dram__throughput.avg.pct_of_peak_sustained_elapsed", "dram%"),
        ("sm__throughput.avg.pct_of_peak_sustained_elapsed", "sm%")]
for r in rows[2:]:
    d = dict(zip(head, r))
    name = d.get("Kernel Name", "?")
    out = [name]
    for k, short in KEYS:
        if k in d:
            out.append(f"{short} {d[k]}")
    stalls = []
    for k, v in d.items():
        if k.startswith("smsp__average_warps_issue_stalled_") and k.endswith("_per_issue_active.ratio"):
            try:
                stalls.append((float(v.replace(",", "")), k[len("smsp__average_warps_issue_stalled_"):-len("_per_issue_active.ratio")]))
            except ValueError:
                pass
    stalls.sort(reverse=True)
    print(" | ".join(out))
    print("   stalls/issue: " + ", ".join(f"{n} {x:.2f}" for x, n in stalls[:8]))
