#!/usr/bin/env bash
# Session 20, the lead's merged branch (s19b16 + s19c16's T3FILL + s19e17 + s19f16 + s19g16):
#   OUT=... bash benchmarks/device/run_s20.sh tests   every GPU test and the sanitizers (run_m.sh tests 110)
#   OUT=... bash benchmarks/device/run_s20.sh times   alone: s19g16's switches on the public bf16 fwd+bwd step
#                                                     (ab_s19g16.py), s19e17's on / off (hier_ird_s19e17.py ab)
set -u
if [ "$1" = tests ]; then bash benchmarks/device/run_m.sh tests 110; exit; fi
NAME=s20_$1; . benchmarks/device/setup.sh
export CUDA_VISIBLE_DEVICES=0
D=benchmarks/device
echo "=== times $(date -u +%T)"
timeout 70 python3 $D/ab_s19g16.py warm > "$OUT/log_g_warm.txt" 2>&1; echo "g warm rc=$?"
timeout 50 python3 $D/ab_s19g16.py public 8192,32768 6 > "$OUT/log_g_public.txt" 2>&1; echo "g public rc=$?"
grep -E "^public|^T=|Error" "$OUT/log_g_public.txt" | cut -c1-220
timeout 40 python3 $D/hier_ird_s19e17.py ab 16384 12 20 > "$OUT/log_e_ab.txt" 2>&1; echo "e ab rc=$?"
grep -E "^T=|^pub|Error" "$OUT/log_e_ab.txt" | cut -c1-220
echo "=== done $(date -u +%T)"
