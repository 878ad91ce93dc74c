// K2 of the two-tier scan's backward (benchmarks/NOTES.md "Session 24 — s24c"): written in session 25 (s25a).
