"""Training helpers shared by the CLI, the examples and the benchmarks."""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np

from tfp_realnvp.backend import backend_name


class TimeBudget(keras.callbacks.Callback):
    """Stops ``fit`` after the batch during which ``seconds`` of training have elapsed."""

    def __init__(self, seconds: float):
        super().__init__()
        if not float(seconds) > 0:
            raise ValueError(f"seconds must be positive; received {seconds!r}.")
        self.seconds = float(seconds)
        self.stopped_early = False
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self._start >= self.seconds:
            self.model.stop_training = True
            self.stopped_early = True


class StopAfterSteps(keras.callbacks.Callback):
    """Stops ``fit`` once ``steps`` optimizer steps have run in this ``fit`` call."""

    def __init__(self, steps: int):
        super().__init__()
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1; received {steps!r}.")
        self.steps = int(steps)
        self._done = 0

    def on_train_batch_end(self, batch, logs=None):
        self._done += 1
        if self._done >= self.steps:
            self.model.stop_training = True


def as_fit_input(images: np.ndarray, *, batch_size: int, shuffle: bool, seed: int | None, flip: bool = False):
    """``(x, fit_kwargs)`` for ``fit``/``evaluate``: a tf.data pipeline on TensorFlow,
    the array itself (with ``batch_size``) on other backends."""
    if backend_name() == "tensorflow":
        from tfp_realnvp.data import make_dataset

        # The pipeline shuffles; Keras must not be asked to (it warns and ignores it).
        return make_dataset(images, batch_size=batch_size, shuffle=shuffle, seed=seed, flip=flip), {"shuffle": False}
    if flip:
        raise ValueError("flip=True needs the TensorFlow backend (tf.data); received flip=True on " + backend_name() + ".")
    return images, {"batch_size": batch_size, "shuffle": shuffle}


def write_json(path: str, payload: dict) -> str:
    """Writes ``payload`` as indented JSON, creating the directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=float)
    return path


def recalibrate_batch_norm(model, images: np.ndarray, *, batch_size: int = 256, num_batches: int = 4, seed: int = 0) -> int:
    """Sets every batch-norm moving average to the mean of batch statistics over data.

    Moving averages lag behind the weights early in training, which makes inference
    bits/dim worse than training bits/dim. This runs ``num_batches`` batches through
    the flow in training mode with momentum ``k / (k + 1)`` on the ``k``-th batch, so
    each ``moving_mean``/``moving_variance`` ends as the plain average of the batch
    statistics that the current weights produce. Weights are not changed.

    Returns:
        The number of batches used.
    """
    from keras import ops

    flow = model.flow
    if not flow.batch_norms:
        return 0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    saved = [bn._momentum for bn in flow.batch_norms]
    used = 0
    try:
        for k in range(num_batches):
            batch = images[order[k * batch_size : (k + 1) * batch_size]]
            if len(batch) == 0:
                break
            for bn in flow.batch_norms:
                bn._momentum = k / (k + 1.0)
            x = ops.cast(batch, "float32") + keras.random.uniform(batch.shape, seed=seed + k)
            with flow.training_mode(True):
                flow.inverse(x)
            used += 1
    finally:
        for bn, momentum in zip(flow.batch_norms, saved):
            bn._momentum = momentum
    return used
