#!/usr/bin/env bash
# Session 16, lead, first call on main (044d507 + this script): settle session 15's two T=2048 failures, measure the
# two unmeasured session-15 kernels (s15d17, s15e17) against their main copies, sanitize the grouped coarse form,
# then the public-call tables (issue 17's, Gated DeltaNet fwd and fwd+bwd) that session 15 never ran.
#   OUT=... bash benchmarks/device/run_s16a.sh      (<= ~480 s)  results and logs: $OUT/s16a.tgz
set -u
NAME=s16a; . benchmarks/device/setup.sh
export HYPOTHESIS_PROFILE=ci CUDA_VISIBLE_DEVICES=0
D=benchmarks/device; BASE=$D/s15d17_base
PT="python3 -m pytest -v -p no:cacheprovider -rf -m gpu --tb=short"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; date -u; git log --oneline -1 2>/dev/null; } > "$OUT/log_env.txt" 2>&1
cat "$OUT/log_env.txt"
echo "=== phase A: tests, equality, builds, sanitizers $(date -u +%T)"
timeout 120 $PT tests/test_cupy_log_attention.py -k grads_against_reference > "$OUT/log_grads.txt" 2>&1 &
timeout 110 python3 $D/ek_ab_s15d17.py equal $BASE > "$OUT/log_equal.txt" 2>&1 &
( timeout 50 python3 $D/ek_ab_s15d17.py ab $BASE 2048 bf16 1 > "$OUT/log_ekwarm.txt" 2>&1 ) &
( timeout 100 python3 $D/hier_bwd_s15e17.py warm bf16:main,new > "$OUT/log_hwarm1.txt" 2>&1 ) &
( timeout 100 python3 $D/hier_bwd_s15e17.py warm f32in:main,new > "$OUT/log_hwarm2.txt" 2>&1 ) &
PYTORCH_CUDA_ALLOC_CONF= timeout 110 compute-sanitizer --tool memcheck --print-limit 5 python3 $D/gd_tier_small.py > "$OUT/log_memcheck_tier.txt" 2>&1 &
PYTORCH_CUDA_ALLOC_CONF= timeout 110 compute-sanitizer --tool racecheck --kernel-name kns=gd_ --print-limit 5 python3 $D/gd_tier_small.py > "$OUT/log_racecheck_tier.txt" 2>&1 &
wait
echo "-- grads: $(tail -1 $OUT/log_grads.txt | cut -c1-150)"; grep -E "FAILED|^E  " $OUT/log_grads.txt | head -12 | cut -c1-220
echo "-- equal:"; grep -E "DIFFER|NONFINITE|^equal:|Error" "$OUT/log_equal.txt" | head -6 | cut -c1-200; tail -1 "$OUT/log_equal.txt" | cut -c1-150
echo "-- warm: ek rc-tail $(tail -1 $OUT/log_ekwarm.txt | cut -c1-80); hier $(cat $OUT/log_hwarm*.txt | grep -c '^warm')"
for f in $OUT/log_memcheck_tier.txt $OUT/log_racecheck_tier.txt; do echo "-- $(basename $f): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $f | tail -1)"; grep -E "Error|error|mismatch|max" $f | head -4 | cut -c1-160; done
echo "=== phase B: kernel-alone A/Bs $(date -u +%T)"
timeout 30 python3 $D/ek_ab_s15d17.py ab $BASE 32768,65536 bf16 3 > "$OUT/log_ekab.txt" 2>&1; echo "rc=$?"
grep -E "fwd\+bwd|ekb_|total" "$OUT/log_ekab.txt" | cut -c1-120
timeout 30 python3 $D/hier_bwd_s15e17.py kab 16384 main,new,f32in > "$OUT/log_kab.txt" 2>&1; echo "rc=$?"
grep -E "^T=.*(ms|differ)|Error" "$OUT/log_kab.txt" | cut -c1-200
grep -E "^T=.*(bit-equal)" "$OUT/log_kab.txt" | cut -c1-90 | tr '\n' ';' | cut -c1-400; echo
echo "=== phase C: public-call tables $(date -u +%T)"
mkdir -p "$OUT/table" "$OUT/gd" "$OUT/gd_train"
timeout 150 python3 benchmarks/bench_gpu_hierarchical.py table --reps 5 --out "$OUT/table" > "$OUT/log_table.txt" 2>&1; echo "rc=$?"
grep -E "^## Targets" -A9 "$OUT/log_table.txt" | cut -c1-230; grep -E "x \(target|fails" "$OUT/log_table.txt" | cut -c1-230
timeout 70 python3 benchmarks/bench_gpu_gated_delta.py --T 8192,32768 --api-max-T 8192 --fla-dtypes bf16 --out "$OUT/gd" > "$OUT/log_gd.txt" 2>&1; echo "rc=$?"
grep -E "^\|" "$OUT/log_gd.txt" | cut -c1-200
timeout 60 python3 benchmarks/bench_gpu_gated_delta.py --train --T 8192 --rows ours_bf16,ours_fp32,fla_ll,sdpa --out "$OUT/gd_train" > "$OUT/log_gd_train.txt" 2>&1; echo "rc=$?"
grep -E "^\|" "$OUT/log_gd_train.txt" | cut -c1-200
echo "=== done $(date -u +%T)"
