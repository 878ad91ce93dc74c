"""Critical path of log-linear Mamba-2 on one sequence in two pieces (issue 20; ``_numba_ll_chunked``'s
pieces schedule), measured on ONE thread with ``time.process_time`` (robust to other jobs on the
machine, unlike a two-thread wall clock): the whole stream (the one-thread path), each piece
(``_ll_row`` from its split point), and the second piece's reads of the slots before it
(``_piece_reads`` over its blocks). Critical path on two threads = the larger piece + half the reads.

    NUMBA_NUM_THREADS=1 python benchmarks/cpu_critical_path_mamba2.py [repeat]

Prints ``split [...] whole=.. piece0=.. piece1=.. reads=..`` (ms, best of ``repeat``, alternated);
B = 1, T = 65536, d = 64, float32, C = 64.
"""
import os, sys, time
os.environ["NUMBA_NUM_THREADS"] = "1"; os.environ["OPENBLAS_NUM_THREADS"] = "1"
import numba
import numpy as np
import lsattn
from lsattn.backends import numba_cpu as NC
from lsattn.backends import _numba_ll_chunked as KL
T, d, C = 65536, 64, 64
rep = int(sys.argv[1]) if len(sys.argv) > 1 else 5
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((1, T, d)).astype(np.float32) for _ in range(3))
a = -rng.random((1, T)).astype(np.float32) * 0.1
lam = rng.random((1, T, lsattn.num_levels(T))).astype(np.float32)
(qf, kf, vf, af, lf), rows = NC._inputs((q, 2), (k, 2), (v, 2), (a, 1), (lam, 2))
nlev = T.bit_length()
lev0 = NC._ro(np.zeros((0, d, d), np.float32))
out = np.empty((T, d), np.float32)
sp = KL._splits(0, T, C, 2)
s = sp[1]
Lv = np.empty((2, nlev, d, d), np.float32); OS = np.empty((2, nlev, d, d), np.float32)
cum = np.empty(T)

@numba.njit
def reads(q, lam, cum, s, T, C, OS, out):
    for lo in range(s, T, C):
        KL._piece_reads(q, lam, cum, 0, s, lo, min(T, lo + C), OS, out)

def whole(): KL._ll_row(qf[0], kf[0], vf[0], af[0], af[0], lf[0], 0, nlev, lev0, False, C, out, Lv[0])
def p0(): KL._ll_row(qf[0, :s], kf[0, :s], vf[0, :s], af[0, :s], af[0, :s], lf[0, :s], 0, nlev, lev0, False, C, out[:s], Lv[0])
def p1(): KL._ll_row(qf[0, s:], kf[0, s:], vf[0, s:], af[0, s:], af[0, s:], lf[0, s:], s, nlev, lev0, False, C, out[s:], Lv[1])
def rd(): reads(qf[0], lf[0], cum, s, T, C, OS[1], out)
cum[s:] = np.cumsum(a[0, s:].astype(np.float64))
p0(); OS[1] = Lv[0]
fs = {"whole": whole, "piece0": p0, "piece1": p1, "reads": rd}
for f in fs.values(): f()
best = {n: 1e9 for n in fs}
for _ in range(rep):
    for n, f in fs.items():
        t0 = time.process_time(); f(); best[n] = min(best[n], time.process_time() - t0)
print("split", sp, " ".join(f"{n}={v*1e3:.2f}ms" for n, v in best.items()))
