"""Kernel-alone A/Bs of the chunked exp-kernel / log attention Numba kernel (issue 20), in ONE process.

Each argument is a copy of ``lsattn/backends/_numba_chunked.py`` (e.g. main's, copied to /tmp, beside
the tree's), loaded as its own module; every copy is called on the same inputs in alternation and
timed by ``time.process_time`` (robust to other jobs on a shared machine; run it with
``NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` for one core's work). Prints each copy's outputs against
the first copy's, then min / p10 / median ms.

    python benchmarks/cpu_ab_ek.py ab log 8 4096 20 /tmp/main_chunked.py lsattn/backends/_numba_chunked.py
    python benchmarks/cpu_ab_ek.py ab exp64 8 4096 10 /tmp/main_chunked.py lsattn/backends/_numba_chunked.py
    python benchmarks/cpu_ab_ek.py summary 8 1 65536 /tmp/main_chunked.py lsattn/backends/_numba_chunked.py
    python benchmarks/cpu_ab_ek.py keep 8 1 65536 float32 lsattn/backends/_numba_chunked.py

``ab``'s op: exp or log (float32 inputs), exp64 or log64 (float64). ``summary``: one sequence's chunks run in full and summarised only (``_ek_chunks``' two modes), both ops:
the ratio is ``SUMMARY_COST`` (the head start of a sequence split over threads). ``keep``: one sequence's chunks in full
with and without a summary's kept column maxima, float32 or float64: ``KEEP_SAVED``. A path may carry
``:C`` (a chunk size other than ``chunk_for``'s).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import time

import numpy as np

importlib.import_module("lsattn.backends")  # the copies import their neighbours relative to it

D = 64


def load(spec):
    """(spec, module, C): the file copied under /tmp/lsattn_ab (so Numba's on-disk cache of a copy never
    mixes with the tree's own) and loaded as a module of ``lsattn.backends`` named after its contents."""
    path, _, C = spec.partition(":")
    src = open(path, "rb").read()
    name = f"_ab_{os.path.basename(path)[:-3]}_{hashlib.sha1(src).hexdigest()[:10]}"
    copy = os.path.join(tempfile.gettempdir(), "lsattn_ab", name + ".py")
    if not os.path.exists(copy):  # written once: its cache stays valid across runs
        os.makedirs(os.path.dirname(copy), exist_ok=True)
        with open(copy, "wb") as fh:
            fh.write(src)
    name = "lsattn.backends." + name
    if name not in sys.modules:
        s = importlib.util.spec_from_file_location(name, copy)
        m = importlib.util.module_from_spec(s)
        sys.modules[name] = m
        s.loader.exec_module(m)
    m = sys.modules[name]
    return spec, m, int(C) if C else m.chunk_for(D, D)


def stats(ts):
    a = np.array(ts) * 1e3
    return a.min(), np.percentile(a, 10), np.median(a)


def ab(op, B, T, rounds, specs):
    log_values = op.startswith("log")
    dt = np.float64 if op.endswith("64") else np.float32  # exp64 / log64: float64 inputs
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((B, T, D)).astype(dt) for _ in range(3))
    lo = -float(np.finfo(np.float32).max) / 8
    rows, seg = np.tile(np.arange(B), (3, 1)).astype(np.int64), np.array([0, T], np.int64)
    m0, n0 = np.full((B, D), lo, dt), np.full((B, D), lo, dt)
    S0, z0 = np.zeros((B, D, D), dt), np.zeros((B, D), dt)

    def call(m, C):
        out = np.empty((B, T, D), dt)
        m1, n1, S1, z1 = np.empty_like(m0), np.empty_like(n0), np.empty_like(S0), np.empty_like(z0)
        t = time.process_time()
        bad = m.ek_chunked(q, k, v, rows, seg, m0, n0, S0, z0, log_values, lo, C, m.parts(B), out, m1, n1, S1, z1)
        t = time.process_time() - t
        assert bad == 0
        return t, out, S1

    mods = [load(s) for s in specs]
    first = [call(m, C) for _, m, C in mods]
    for (spec, _, _), (_, o, S) in zip(mods[1:], first[1:]):
        print(f"{spec}: max |out - first| {np.abs(o - first[0][1]).max():.3g}, "
              f"state {np.abs(S - first[0][2]).max() / np.abs(first[0][2]).max():.3g} of max")
    ts = {spec: [] for spec, _, _ in mods}
    for r in range(rounds):
        for spec, m, C in (mods if r % 2 == 0 else mods[::-1]):
            ts[spec].append(call(m, C)[0])
    base = stats(ts[mods[0][0]])
    for spec, _, _ in mods:
        st = stats(ts[spec])
        print(f"{op} B={B} T={T} {spec}: min / p10 / median {st[0]:.2f} / {st[1]:.2f} / {st[2]:.2f} ms "
              f"({' / '.join(f'{100 * (x / y - 1):+.1f}%' for x, y in zip(st, base))})")


def summary(rounds, T, specs):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((T, D)).astype(np.float32) for _ in range(3))
    lo = -float(np.finfo(np.float32).max) / 8

    def call(m, C, full, log_values):
        mm, n, Ss = np.full(D, lo), np.zeros(D + 1), np.zeros((D, D + 1))
        n[:D] = lo if log_values else 0.0
        out = np.empty((T, D), np.float32)
        t = time.process_time()
        m._ek_chunks(q, k, v, 0, -(-T // C), full, mm, n, Ss, np.zeros(D, np.float32), log_values, lo, C, out,
                     np.zeros((0, 2 * D), np.float32), False)  # no kept maxima
        return time.process_time() - t

    mods = [load(s) for s in specs]
    keys = [(spec, m, C, lv, full) for spec, m, C in mods for lv in (True, False) for full in (True, False)]
    ts = {(spec, lv, full): [] for spec, _, _, lv, full in keys}
    for key in keys:
        call(*key[1:])
    for r in range(rounds):
        for spec, m, C, lv, full in (keys if r % 2 == 0 else keys[::-1]):
            ts[(spec, lv, full)].append(call(m, C, full, lv))
    for spec, _, _ in mods:
        for lv in (True, False):
            f, s = min(ts[(spec, lv, True)]), min(ts[(spec, lv, False)])
            print(f"{spec} {'log' if lv else 'exp'} B=1 T={T}: full {f * 1e3:.2f} ms, summary {s * 1e3:.2f} ms "
                  f"(min of {rounds}), ratio {s / f:.3f}")


def keep(rounds, T, specs, dtype):
    """One sequence's chunks run in full with and without the column maxima a summary kept (``_ek_chunks``' KX):
    ``1 - kept / not kept`` is ``KEEP_SAVED`` (what a part that runs summarised chunks saves), both ops, float32 or
    float64 inputs."""
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    q, k, v = (rng.standard_normal((T, D)).astype(dt) for _ in range(3))
    lo = -float(np.finfo(dt).max) / 8

    def state(log_values):
        mm, n, Ss = np.full(D, lo), np.zeros(D + 1), np.zeros((D, D + 1))
        n[:D] = lo if log_values else 0.0
        return mm, n, Ss

    def call(m, C, log_values, KX, kept):
        out = np.empty((T, D), dt)
        t = time.process_time()
        m._ek_chunks(q, k, v, 0, -(-T // C), True, *state(log_values), np.zeros(D, dt), log_values, lo, C, out, KX, kept)
        return time.process_time() - t

    mods = [load(s) for s in specs]
    KXs = {}
    for spec, m, C in mods:
        for lv in (True, False):  # the summary's maxima, as a summarising part keeps them
            KX = KXs[(spec, lv)] = np.zeros((-(-T // C), 2 * D), dt)
            m._ek_chunks(q, k, v, 0, -(-T // C), False, *state(lv), np.zeros(D, dt), lv, lo, C, np.empty((T, D), dt),
                         KX, True)
    keys = [(spec, m, C, lv, kept) for spec, m, C in mods for lv in (True, False) for kept in (True, False)]
    ts = {(spec, lv, kept): [] for spec, _, _, lv, kept in keys}
    for spec, m, C, lv, kept in keys:
        call(m, C, lv, KXs[(spec, lv)], kept)
    for r in range(rounds):
        for spec, m, C, lv, kept in (keys if r % 2 == 0 else keys[::-1]):
            ts[(spec, lv, kept)].append(call(m, C, lv, KXs[(spec, lv)], kept))
    for spec, _, _ in mods:
        for lv in (True, False):
            a, b = min(ts[(spec, lv, True)]), min(ts[(spec, lv, False)])
            print(f"{spec} {'log' if lv else 'exp'} {dtype} B=1 T={T}: full with kept maxima {a * 1e3:.2f} ms, without "
                  f"{b * 1e3:.2f} ms (min of {rounds}), saved {1 - a / b:.3f}")


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "ab":
        ab(a[1], int(a[2]), int(a[3]), int(a[4]), a[5:])
    elif a[0] == "keep":
        keep(int(a[1]), int(a[3]), a[5:], a[4])
    else:
        summary(int(a[1]), int(a[3]), a[4:])
