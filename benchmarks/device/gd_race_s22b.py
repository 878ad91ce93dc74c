"""Session 22, s22b16: gd_tier_small.py's calls (the bf16 direct path first: gd_forms' GD_S16 build) with the sources of
one gd_b16_s22b.py build (its MODE: 15 the default, 15a GF_ALDM 0, 0 main's kernel; batch 2's 15v: GF_VQ, removed), for
    compute-sanitizer --tool racecheck --kernel-name kns=gd_forms python benchmarks/device/gd_race_s22b.py MODE"""
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gd_b16_s22b  # noqa: E402  (patches _compile._source)

gd_b16_s22b.use(sys.argv[1] if len(sys.argv) > 1 else "15")
print("build", gd_b16_s22b.CUR[0], flush=True)
runpy.run_path(os.path.join(HERE, "gd_tier_small.py"), run_name="__main__")
