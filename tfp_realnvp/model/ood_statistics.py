"""What ``RealNVP.fit_ood`` measures, and how the model's files carry it.

``OodStatistics`` holds the fitted statistics; ``write_statistics`` and
``read_statistics`` put them into and take them out of the store of a Keras model's
``save_own_variables`` / ``load_own_variables`` (``.keras`` files, training checkpoints,
``save_weights``). Files saved without statistics, or by versions that measured fewer of
them, still load.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tfp_realnvp.model.ood_features import GaussianFit, LogisticFit
from tfp_realnvp.model.ood_pixels import PixelTests

# Keys of the statistics in the model's saved variables (save_own_variables).
_STORE_KEYS = ("ood_train_bits_per_dim", "ood_mean", "ood_precision", "ood_log_normalizer")
_COMPLEXITY_KEYS = ("ood_complexity_mean", "ood_complexity_precision", "ood_complexity_log_normalizer")
# Added with "orientation_odds": files saved before it load without them (and without
# use for the key an earlier version wrote, the training images' "orientation" scores).
_ORIENTATION_KEYS = ("ood_orientation_weights", "ood_orientation_bias", "ood_train_orientation_odds")
_FORMER_KEYS = ("ood_train_orientation",)
# Added with the calibrated tails of "dose_orientation".
_DISTANCE_KEY = "ood_train_complexity_distance"
# Added with "fisher": the pixel tests (ood_pixels).
_PIXEL_KEYS = (
    "ood_pixel_orientation_weights",
    "ood_pixel_orientation_bias",
    "ood_coarse_mean",
    "ood_coarse_precision",
    "ood_coarse_log_normalizer",
    "ood_train_pixel_orientation",
    "ood_train_coarse",
)


class OodStatistics(NamedTuple):
    """What ``fit_ood`` measured on the training images.

    Attributes:
        train_bits_per_dim: float32 ``[n]``, the bits/dim of the images fitted.
        gaussian: the ``GaussianFit`` of their ``scale_statistics``.
        complexity: the ``GaussianFit`` of their complexity scores (``complexity_rows``).
        orientation: the ``LogisticFit`` of ``"orientation_odds"`` (``None`` in statistics
            saved before it existed).
        train_orientation_odds: float32 ``[n]``, the images' ``"orientation_odds"``
            (``None`` with ``orientation``).
        train_complexity_distance: float32 ``[n]``, the images' squared Mahalanobis
            distances under ``complexity`` (``None`` in statistics saved before
            ``"dose_orientation"`` calibrated its tails on them).
        pixels: the ``ood_pixels.PixelTests`` (``None`` in statistics saved before
            ``"fisher"`` existed).
    """

    train_bits_per_dim: np.ndarray
    gaussian: GaussianFit
    complexity: GaussianFit
    orientation: LogisticFit | None = None
    train_orientation_odds: np.ndarray | None = None
    train_complexity_distance: np.ndarray | None = None
    pixels: PixelTests | None = None

    @property
    def mean_bits_per_dim(self) -> float:
        return float(np.mean(self.train_bits_per_dim))

    @property
    def std_bits_per_dim(self) -> float:
        return max(float(np.std(self.train_bits_per_dim)), 1e-6)


def write_statistics(store, statistics: OodStatistics | None) -> None:
    """Writes ``statistics`` (nothing when ``None``) into a ``save_own_variables`` store."""
    if statistics is None:
        return
    gaussian, complexity = statistics.gaussian, statistics.complexity
    values = (statistics.train_bits_per_dim, gaussian.mean, gaussian.precision, [gaussian.log_normalizer])
    values += (complexity.mean, complexity.precision, [complexity.log_normalizer])
    for key, value in zip(_STORE_KEYS + _COMPLEXITY_KEYS, values):
        store[key] = np.asarray(value, dtype=np.float64 if key != _STORE_KEYS[0] else np.float32)
    if statistics.orientation is not None:
        store[_ORIENTATION_KEYS[0]] = statistics.orientation.weights
        store[_ORIENTATION_KEYS[1]] = np.asarray([statistics.orientation.bias], dtype=np.float64)
        store[_ORIENTATION_KEYS[2]] = np.asarray(statistics.train_orientation_odds, dtype=np.float32)
    if statistics.train_complexity_distance is not None:
        store[_DISTANCE_KEY] = np.asarray(statistics.train_complexity_distance, dtype=np.float32)
    pixels = statistics.pixels
    if pixels is not None:
        values = (pixels.orientation.weights, [pixels.orientation.bias], pixels.coarse.mean, pixels.coarse.precision)
        values += ([pixels.coarse.log_normalizer], pixels.train_orientation, pixels.train_coarse)
        for key, value in zip(_PIXEL_KEYS, values):
            store[key] = np.asarray(value, dtype=np.float32 if key.startswith("ood_train") else np.float64)


def read_statistics(store) -> tuple[OodStatistics | None, dict]:
    """The statistics of a ``load_own_variables`` store (``None`` when it has none), and
    the store's other entries (the model's own variables)."""
    keys = list(store.keys())
    own = _STORE_KEYS + _COMPLEXITY_KEYS
    statistics = None
    if all(key in keys for key in own):
        values = [np.asarray(store[key]) for key in own]
        gaussian = GaussianFit(values[1], values[2], _scalar(values[3]))
        complexity = GaussianFit(values[4], values[5], _scalar(values[6]))
        orientation, odds = None, None
        if all(key in keys for key in _ORIENTATION_KEYS):
            weights, bias, odds = (np.asarray(store[key]) for key in _ORIENTATION_KEYS)
            orientation = LogisticFit(weights, _scalar(bias))
            odds = odds.astype(np.float32)
        distance = np.asarray(store[_DISTANCE_KEY]).astype(np.float32) if _DISTANCE_KEY in keys else None
        pixels = _read_pixel_tests(store) if all(key in keys for key in _PIXEL_KEYS) else None
        statistics = OodStatistics(
            values[0].astype(np.float32), gaussian, complexity, orientation, odds, distance, pixels
        )
    own += _ORIENTATION_KEYS + _FORMER_KEYS + (_DISTANCE_KEY,) + _PIXEL_KEYS
    return statistics, {key: store[key] for key in keys if key not in own}


def _read_pixel_tests(store) -> PixelTests:
    weights, bias, mean, precision, normalizer, orientation, coarse = (np.asarray(store[k]) for k in _PIXEL_KEYS)
    return PixelTests(
        LogisticFit(weights, _scalar(bias)),
        GaussianFit(mean, precision, _scalar(normalizer)),
        orientation.astype(np.float32),
        coarse.astype(np.float32),
    )


def _scalar(value) -> float:
    """The one number a store holds as a ``[1]`` array (or a scalar)."""
    return float(np.reshape(np.asarray(value), [-1])[0])
