"""Batch-norm statistics that describe the weights as they are at the end of an epoch.

While training, every batch-norm step normalises with the statistics of the batch
and moves its averages towards them. The averages then describe the flow as it was a
few optimizer steps earlier, and every optimizer step changes it: early in training
inference-mode bits/dim computed from them can be half a bit or more above what the
final weights give (``benchmarks/batch_norm_modes.py`` measures it). ``RealNVP.fit``
therefore re-estimates the averages from a few training batches at the end of every
epoch, before validation and before any callback sees the model, so that
``evaluate``, ``validation_data``, ``bits_per_dim``, ``sample``, saved models and
exports all describe the trained flow with no extra call.

Re-estimation sets each average to the plain mean of the statistics of ``k`` batches
drawn from the training data: the update counters are set to 0 and the flow runs in
training mode, so the warm-started rule of ``moving_stats`` (decay
``min(momentum, j / (j + 1))`` on the ``(j + 1)``-th batch) averages them with equal
weights for ``k <= 1 / (1 - momentum)``. Weights are not changed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import keras
import numpy as np

from tfp_realnvp.internal.backend import backend_name
from tfp_realnvp.model.inputs import InputKind, classify_fit_input


def statistic_counters(model) -> list:
    """The ``num_updates`` counters of every batch-norm layer of ``model.flow``."""
    return [v for v in model.flow.non_trainable_variables if v.name == "num_updates"]


def has_batch_norm(model) -> bool:
    return bool(statistic_counters(model))


def _image_array(images: np.ndarray) -> np.ndarray:
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"expected images [N, H, W, C] with N >= 1; received shape {list(images.shape)}.")
    return images


class TrainingBatches:
    """Draws image batches from what ``fit`` trains on, for re-estimation.

    Accepts a NumPy array of images, a tuple ``(images, labels)`` of arrays (a
    class-conditional model; batches are then ``(images, labels)`` pairs), or a
    ``tf.data.Dataset`` of image batches (or of ``(images, ...)`` tuples, whose first
    item a conditional model's input pair may be). Anything else (Python generators, ``PyDataset``) cannot
    be read twice and is refused with ``ValueError``.

    Args:
        x: the ``x`` given to ``fit``.
        batch_size: images per batch for arrays (``fit``'s batch size).
        seed: seed of the random batches drawn from arrays.
    """

    def __init__(self, x, *, batch_size: int, seed: int = 0):
        self._array = None
        self._labels = None
        self._dataset = None
        self._batch_size = int(batch_size)
        self._seed = int(seed)
        data = classify_fit_input(x)
        if data.kind is InputKind.PAIR and all(isinstance(a, np.ndarray) for a in x):
            images, self._labels = x
            if len(self._labels) != len(images):
                raise ValueError(
                    f"expected one label per image; received {len(self._labels)} labels for {len(images)} images."
                )
            self._array = _image_array(images)
        elif data.kind is InputKind.ARRAYS and isinstance(x, np.ndarray):
            self._array = _image_array(x)
        elif data.kind is InputKind.DATASET and backend_name() == "tensorflow":
            self._dataset = x
        else:
            raise ValueError(
                "batch-norm statistics are re-estimated from the training data, which must be a "
                f"NumPy array or a tf.data.Dataset; received {data.describe()}."
            )

    def take(self, count: int, *, epoch: int = 0) -> Iterator[np.ndarray]:
        """Yields up to ``count`` batches of images.

        From arrays the batches are a fixed function of ``(seed, epoch)``, so a run
        resumed from a backup re-estimates exactly what the uninterrupted run did.
        """
        if self._array is not None:
            rng = np.random.default_rng([self._seed, int(epoch)])
            for _ in range(count):
                size = min(self._batch_size, len(self._array))
                index = np.sort(rng.choice(len(self._array), size=size, replace=False))
                yield self._array[index] if self._labels is None else (self._array[index], self._labels[index])
            return
        for element in self._dataset.take(count):
            images = element[0] if isinstance(element, (tuple, list)) else element
            if isinstance(images, dict):
                raise ValueError(f"expected image batches; received a dict with keys {sorted(images)}.")
            yield images


def refresh_statistics(model, batches) -> int:
    """Sets every batch-norm average of ``model.flow`` to the mean over ``batches``.

    Args:
        model: a ``RealNVP``.
        batches: an iterable of image batches ``[n, H, W, C]`` (integer images are
            dequantized with the evaluation noise).

    Returns:
        The number of batches used (0 leaves the statistics as they were).
    """
    counters = statistic_counters(model)
    if not counters:
        return 0
    saved = [keras.ops.convert_to_numpy(v) for v in counters]
    step = model.batch_statistics_step()
    used = 0
    for batch in batches:
        if used == 0:
            for counter in counters:
                counter.assign(np.zeros((), np.float32))
        step(batch)
        used += 1
    if used == 0:
        for counter, value in zip(counters, saved):
            counter.assign(value)
    return used


class RefreshBatchNorm(keras.callbacks.Callback):
    """Re-estimates the batch-norm averages at the end of every epoch of ``fit``.

    It runs before validation (``on_test_begin`` of the validation pass) or, without
    validation data, first among the epoch-end callbacks; ``RealNVP.fit`` puts it
    first in the callback list. See the module docstring for the math.

    Args:
        batches: a ``TrainingBatches`` source.
        num_batches: batches per re-estimation.
    """

    def __init__(self, batches: TrainingBatches, *, num_batches: int):
        super().__init__()
        self.batches = batches
        self.num_batches = int(num_batches)
        self.refreshes = 0
        self._stale = False
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        self._stale = True

    def _refresh(self):
        if not self._stale:
            return
        self._stale = False
        # The batches depend on the epoch only (not on how many re-estimations this
        # process ran before), so a resumed run repeats the uninterrupted one.
        if refresh_statistics(self.model, self.batches.take(self.num_batches, epoch=self._epoch)):
            self.refreshes += 1

    def on_test_begin(self, logs=None):
        self._refresh()

    def on_epoch_end(self, epoch, logs=None):
        self._refresh()

    def on_train_end(self, logs=None):
        self._refresh()


def make_refresh_callback(model, x, *, batch_size: int | None, num_batches: int, seed: int = 0):
    """The callback for ``fit(x, ...)``, or ``None`` when there is nothing to refresh.

    A source that cannot be read twice (a generator) gets a warning and no refresh.
    """
    if num_batches < 1 or not has_batch_norm(model):
        return None
    try:
        source = TrainingBatches(x, batch_size=batch_size or 32, seed=seed)
    except ValueError as error:
        warnings.warn(f"batch-norm statistics will not be re-estimated after each epoch: {error}", stacklevel=3)
        return None
    return RefreshBatchNorm(source, num_batches=num_batches)
