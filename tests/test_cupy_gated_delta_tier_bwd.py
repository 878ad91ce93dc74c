"""The two-tier Gated DeltaNet scan's backward kernels (K1-K4 of benchmarks/NOTES.md "Session 24 — s24c":
gd_tier3_bwd, gd_coarse_bwd, gd_tier1x_bwd, gd_tier1_bwd) against the float64 NumPy twin ``gd_tier_twin``'s pieces,
emulated on the CPU (``cuda_emu_gd_tier_bwd.cpp``) and on the GPU."""
from __future__ import annotations

# ---- K1 gd_tier3_bwd (s25a) ----

# ---- K2 gd_coarse_bwd (s25a) ----

# ---- K3 gd_tier1x_bwd (s25b) ----

# ---- K4 gd_tier1_bwd (s25c) ----
