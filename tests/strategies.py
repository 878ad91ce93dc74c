"""Hypothesis strategies shared by the operator tests."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

#: Lengths that matter: 1, powers of two and their neighbours, odd numbers.
INTERESTING_T = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65]

batch_shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
seq_lens = st.one_of(st.sampled_from(INTERESTING_T), st.integers(1, 80))
head_dims = st.integers(1, 6)
magnitudes = st.sampled_from([1e-3, 0.1, 1.0, 3.0])
seeds = st.integers(0, 2**32 - 1)

#: Per-token log decay regimes of the operator tests, ``DECAYS[kind](rng, shape)``: zero, moderate,
#: strong (exp(-30) per step), mixed (some steps near zero decay).
DECAYS = {
    "zero": lambda rng, shape: np.zeros(shape),
    "moderate": lambda rng, shape: -rng.random(shape),
    "strong": lambda rng, shape: -30.0 * rng.random(shape) - 1.0,
    "mixed": lambda rng, shape: np.where(rng.random(shape) < 0.5, -1e-9, -3.0 * rng.random(shape)),
}
decays = st.sampled_from(list(DECAYS))
#: ... and no log_decay at all (None), for the operators where it is optional
decays_or_none = st.sampled_from(["none"] + list(DECAYS))


def log_decay(rng, shape, kind):
    """Log decays of regime ``kind`` (a key of :data:`DECAYS`; None for ``"none"``)."""
    return None if kind == "none" else DECAYS[kind](rng, shape)


@st.composite
def split_points(draw, T, max_splits=4):
    """Sorted distinct cut points in (0, T): a stream of T tokens cut into len+1 chunks."""
    if T < 2:
        return []
    return sorted(draw(st.sets(st.integers(1, T - 1), max_size=max_splits)))


def normal(seed, shape, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale
