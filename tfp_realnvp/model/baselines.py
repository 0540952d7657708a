"""Reference likelihoods to put a flow's bits/dim in context."""

from __future__ import annotations

import numpy as np

from tfp_realnvp.internal.arguments import check_number


def independent_pixel_bits_per_dim(train, test, *, smoothing: float = 1.0) -> float:
    """Bits/dim of a model that draws every pixel (and channel) independently.

    For each position ``d`` it fits a 256-way categorical ``p_d`` to the training images
    with additive ``smoothing`` and scores the test images by
    ``-mean_n mean_d log2 p_d(x_nd)``. Spreading each bin uniformly over ``[v, v+1)``
    turns it into a density on ``[0, 256)^D`` with the same value, so the number is
    directly comparable to a dequantized flow's bits/dim.

    Args:
        train: uint8 images ``[N, H, W, C]``.
        test: uint8 images ``[M, H, W, C]`` of the same shape.
        smoothing: pseudo-count added to every bin, > 0.

    Raises:
        ValueError: for mismatched shapes or a non-positive ``smoothing``.
    """
    train = np.asarray(train)
    test = np.asarray(test)
    if train.shape[1:] != test.shape[1:]:
        raise ValueError(f"train and test images differ in shape: {list(train.shape)} vs {list(test.shape)}.")
    smoothing = check_number(smoothing, name="smoothing", low=0.0)
    flat_train = train.reshape(len(train), -1).astype(np.int64)
    flat_test = test.reshape(len(test), -1).astype(np.int64)
    dims = flat_train.shape[1]
    counts = np.full((dims, 256), smoothing)
    np.add.at(counts, (np.broadcast_to(np.arange(dims), flat_train.shape), flat_train), 1.0)
    log_probs = np.log2(counts / counts.sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(dims)[None, :], flat_test].mean())
