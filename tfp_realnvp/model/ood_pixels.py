"""Two out-of-distribution tests on the pixels themselves, for what a flow's likelihood misses.

A flow's ``log p(x)`` is dominated by local pixel statistics, which images of other
sets share (Kirichenko et al. 2020), so the likelihood scores of ``ood.OOD_METHODS``
see little of an image's global layout. These two tests look at the layout directly,
each fitted by ``RealNVP.fit_ood`` to the training images:

* ``"coarse_density"``: ``-log N(c(x); mu, Sigma)``, a Gaussian density of the image
  averaged down to about 7 pixels a side (``coarse_rows``). At that resolution no local
  texture is left, and the density is a plain likelihood test of where the image's mass
  lies (strokes against filled silhouettes, a digit's centre against a garment's).
* ``"pixel_orientation_odds"``: the log-odds that the image is upside down, ``w . p(x) + b``
  on its pixels (``orientation_pixels``), a logistic regression fitted to the training
  images (upright) against their vertical flips. It is the pixel-level twin of
  ``"orientation_odds"``, which fits the same question on the flow's per-scale
  statistics of the image and its turned copies.

The scores the training images get are kept for the calibrated tails of ``"fisher"``.
They are out-of-fold (two folds, each scored by the fit to the other): a fit's scores of
its own images are optimistic, and held-out images would look unusual against them. New
images are scored by the fit to all the images, a little better than the half-data fits
that scored the reference: the tails err towards calling an image typical.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from keras import ops

from tfp_realnvp.model.ood_features import GaussianFit, LogisticFit

#: Side length, in pixels, that ``coarse_rows`` averages an image down to (about).
COARSE_SIDE = 7
#: At most this many inputs per image for ``orientation_pixels`` (larger images are averaged).
MAX_ORIENTATION_INPUTS = 1024
#: The L2 penalty of the pixel orientation fit, on standardised pixels.
ORIENTATION_L2 = 1e-2


class PixelTests(NamedTuple):
    """The fitted pixel tests and the training images' out-of-fold scores.

    Attributes:
        orientation: the ``LogisticFit`` of ``"pixel_orientation_odds"``.
        coarse: the ``GaussianFit`` of ``"coarse_density"``.
        train_orientation: float32 ``[n]``, the fitted images' orientation log-odds.
        train_coarse: float32 ``[n]``, their coarse negative log-densities.
    """

    orientation: LogisticFit
    coarse: GaussianFit
    train_orientation: np.ndarray
    train_coarse: np.ndarray


def _pooled(images, factor: int):
    """``[N, H // f * W // f * C]``: pixels in ``[0, 1]`` averaged over ``f x f`` blocks
    (the last rows and columns that do not fill a block are left out). NumPy images give
    float64; backend tensors float32 (for exported graphs)."""
    height, width, channels = (int(d) for d in images.shape[1:])
    rows, cols = height // factor, width // factor
    if ops.is_tensor(images):
        x = ops.cast(images, "float32")[:, : rows * factor, : cols * factor] / np.float32(255.0)
        if factor > 1:
            x = ops.mean(ops.reshape(x, (-1, rows, factor, cols, factor, channels)), axis=(2, 4))
        return ops.reshape(x, (-1, rows * cols * channels))
    x = np.asarray(images, dtype=np.float64)[:, : rows * factor, : cols * factor] / 255.0
    if factor > 1:
        x = x.reshape(len(x), rows, factor, cols, factor, channels).mean(axis=(2, 4))
    return x.reshape(len(x), -1)


def coarse_rows(images):
    """The input of ``"coarse_density"``: the images averaged over ``f x f`` blocks,
    ``f = max(1, min(H, W) // COARSE_SIDE)`` (28 x 28 images: 4, giving 7 x 7).

    Args:
        images: ``[N, H, W, C]`` in ``[0, 256)``, NumPy or a backend tensor.

    Returns:
        ``[N, H // f * W // f * C]`` in ``[0, 1]``: float64 NumPy or float32 tensors.
    """
    factor = max(1, min(int(d) for d in images.shape[1:3]) // COARSE_SIDE)
    return _pooled(images, factor)


def orientation_pixels(images):
    """The input of ``"pixel_orientation_odds"``: the images' pixels averaged over the
    smallest ``f x f`` blocks that leave at most ``MAX_ORIENTATION_INPUTS`` values
    (28 x 28 x 1: ``f = 1``; 32 x 32 x 3: ``f = 2``).

    Args:
        images: ``[N, H, W, C]`` in ``[0, 256)``, NumPy or a backend tensor.

    Returns:
        ``[N, H // f * W // f * C]`` in ``[0, 1]``: float64 NumPy or float32 tensors.
    """
    height, width, channels = (int(d) for d in images.shape[1:])
    factor = 1
    while (height // factor) * (width // factor) * channels > MAX_ORIENTATION_INPUTS and factor < min(height, width):
        factor += 1
    return _pooled(images, factor)


def _fit_orientation(images: np.ndarray) -> LogisticFit:
    upright = orientation_pixels(images)
    flipped = orientation_pixels(np.ascontiguousarray(images[:, ::-1]))
    targets = np.r_[np.zeros(len(images)), np.ones(len(images))]
    return LogisticFit.fit(np.concatenate([upright, flipped]), targets, l2=ORIENTATION_L2)


def _fit_coarse(images: np.ndarray) -> GaussianFit:
    return GaussianFit.fit(coarse_rows(images))


def pixel_scores(tests: PixelTests, images) -> tuple:
    """The two pixel tests' scores of images.

    Args:
        tests: the fitted ``PixelTests``.
        images: ``[N, H, W, C]`` in ``[0, 256)``, NumPy or a backend tensor.

    Returns:
        ``(pixel_orientation_odds, coarse_density)``: ``w . p(x) + b`` and
        ``-log N(c(x); mu, Sigma)``, float32 ``[N]`` each, NumPy arrays for NumPy
        images and backend tensors for tensors.
    """
    return tests.orientation.log_odds(orientation_pixels(images)), tests.coarse.negative_log_density(
        coarse_rows(images)
    )


def fit_pixel_tests(images: np.ndarray, *, seed: int = 0) -> PixelTests:
    """Fits both tests to in-distribution images and scores those images out of fold.

    Args:
        images: uint8 ``[N, H, W, C]``, ``N >= 2``. With ``N < 4`` (too few for two folds
            of two) the images are scored in sample.
        seed: seed of the split into two folds.

    Returns:
        The ``PixelTests``: the fits to all the images, and each image's scores under
        the fits to the other fold.
    """
    images = np.asarray(images)
    orientation, coarse = _fit_orientation(images), _fit_coarse(images)
    if len(images) < 4:
        return PixelTests(orientation, coarse, *pixel_scores(PixelTests(orientation, coarse, None, None), images))
    fold = np.random.default_rng(seed).permutation(len(images)) % 2
    train_orientation, train_coarse = np.empty(len(images), np.float32), np.empty(len(images), np.float32)
    for k in (0, 1):
        other = images[fold != k]
        held_out = PixelTests(_fit_orientation(other), _fit_coarse(other), None, None)
        train_orientation[fold == k], train_coarse[fold == k] = pixel_scores(held_out, images[fold == k])
    return PixelTests(orientation, coarse, train_orientation, train_coarse)
