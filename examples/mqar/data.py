"""Multi-query associative recall (MQAR) data, generated on the fly (Zoology, Arora et al. 2023).

A sequence of length ``T`` starts with ``n_pairs`` key-value pairs ``k_1 v_1 k_2 v_2 ...`` (keys
drawn without replacement from the first half of the vocabulary, values from the second half);
the remaining ``T - 2 n_pairs`` positions hold every key once more, as a query, at distinct even
offsets drawn uniformly at random, with random filler tokens in between. The target at a query
position is the value paired with that key; every other position has target ``-100`` (ignored),
so accuracy is measured at the query positions only. Token 0 is never used.
"""
import numpy as np

IGNORE = -100


def mqar_batch(rng, batch, seq_len, n_pairs, vocab):
    """One batch of MQAR sequences.

    Parameters
    ----------
    rng : numpy.random.Generator
        The source of randomness (the batch is a function of its state only).
    batch, seq_len, n_pairs, vocab : int
        ``B``, ``T``, the number of key-value pairs and the vocabulary size. Needs
        ``4 * n_pairs <= seq_len`` and ``n_pairs < vocab // 2``.

    Returns
    -------
    inputs, targets : numpy.ndarray
        int64 arrays of shape ``(B, T)``; ``targets`` is ``-100`` except at the query positions.
    """
    if 4 * n_pairs > seq_len:
        raise ValueError(f"seq_len={seq_len} must be at least 4 * n_pairs = {4 * n_pairs}")
    half = vocab // 2
    if not 0 < n_pairs < half:
        raise ValueError(f"n_pairs={n_pairs} must be in [1, vocab // 2 = {half})")
    rows = np.arange(batch)[:, None]
    # keys: distinct per row, from [1, half); values from [half, vocab)
    keys = np.argsort(rng.random((batch, half - 1)), axis=1)[:, :n_pairs] + 1      # (B, N)
    values = rng.integers(half, vocab, size=(batch, n_pairs))                     # (B, N)
    ctx = 2 * n_pairs
    inputs = rng.integers(1, vocab, size=(batch, seq_len))                        # filler
    inputs[:, 0:ctx:2], inputs[:, 1:ctx:2] = keys, values
    # queries: at distinct even offsets of the query region (so two queries are never adjacent)
    slots = (seq_len - ctx) // 2
    offsets = np.argsort(rng.random((batch, slots)), axis=1)[:, :n_pairs]         # (B, N)
    pos = ctx + 2 * offsets
    inputs[rows, pos] = keys
    targets = np.full((batch, seq_len), IGNORE, dtype=np.int64)
    targets[rows, pos] = values
    return inputs.astype(np.int64), targets
