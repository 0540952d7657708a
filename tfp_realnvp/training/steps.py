"""Training helpers shared by the CLI, the examples and the benchmarks."""

from __future__ import annotations

import dataclasses
import math
import time

import keras
import numpy as np

from tfp_realnvp.internal import atomic
from tfp_realnvp.internal.arguments import check_int, check_number
from tfp_realnvp.internal.backend import backend_name


class TimeBudget(keras.callbacks.Callback):
    """Stops ``fit`` after the batch during which ``seconds`` of training have elapsed.

    The clock starts at the first ``fit`` that uses the callback; later ``fit`` calls
    with the same callback share the budget.
    """

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = check_number(seconds, name="seconds", low=0)
        self.stopped_early = False
        self._start = None

    def on_train_begin(self, logs=None):
        if self._start is None:
            self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self._start >= self.seconds:
            self.model.stop_training = True
            self.stopped_early = True


class StopAfterSteps(keras.callbacks.Callback):
    """Stops ``fit`` once ``steps`` optimizer steps have run in this ``fit`` call."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = check_int(steps, name="steps")
        self._done = 0

    def on_train_batch_end(self, batch, logs=None):
        self._done += 1
        if self._done >= self.steps:
            self.model.stop_training = True


class StopAtStep(keras.callbacks.Callback):
    """Stops ``fit`` once the optimizer has run ``step`` steps in all (resumed runs included)."""

    def __init__(self, step: int):
        super().__init__()
        self.step = check_int(step, name="step")

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) >= self.step:
            self.model.stop_training = True


class StopOnNonFiniteLoss(keras.callbacks.TerminateOnNaN):
    """Keras' ``TerminateOnNaN`` that raises a ``TrainingDiverged`` naming the step.

    Training ends at once, in the batch whose loss is NaN or infinite: no later
    callback of that batch (such as a checkpoint) runs, so what was saved before
    stays the last good state.
    """

    def __init__(self):
        super().__init__(raise_error=True)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        value = float(np.asarray(keras.ops.convert_to_numpy(loss)))
        if not math.isfinite(value):
            from tfp_realnvp.training.checkpoints import TrainingDiverged, model_step

            self.model.stop_training = True
            step = model_step(self.model)
            raise TrainingDiverged(f"training diverged at step {step}: the loss is {value}.", step=step)


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """How many steps a run trains and how they fall into epochs.

    Attributes:
        total_steps: optimizer steps of the whole run.
        steps_per_epoch: steps per Keras epoch (the last epoch may stop earlier).
        epochs: ``ceil(total_steps / steps_per_epoch)``.
    """

    total_steps: int
    steps_per_epoch: int
    epochs: int


def plan_steps(
    *,
    batches_per_pass: int | None,
    epochs: int | None = None,
    steps: int | None = None,
    steps_per_epoch: int | None = None,
    default_epochs: int = 10,
) -> StepPlan:
    """Turns the step options of a run into exact numbers; the data repeats as needed.

    * ``steps``: exactly that many steps; an epoch is ``steps_per_epoch`` steps, or
      one pass over the data (``batches_per_pass``), at most ``steps``.
    * ``epochs`` (default ``default_epochs``): ``epochs * steps_per_epoch`` steps,
      an epoch being ``steps_per_epoch`` steps or one pass over the data.

    Args:
        batches_per_pass: batches in one pass over the data; ``None`` for a stream
            without end (which then needs ``steps`` or ``steps_per_epoch``).
        epochs: number of epochs.
        steps: total number of steps.
        steps_per_epoch: steps per epoch.
        default_epochs: epochs when neither ``epochs`` nor ``steps`` is given.

    Raises:
        ValueError: for ``epochs`` together with ``steps``, a stream without
            ``steps`` or ``steps_per_epoch``, or a value that is not a positive
            integer, naming what was received.
    """
    epochs = check_int(epochs, name="epochs", allow_none=True)
    steps = check_int(steps, name="steps", allow_none=True)
    steps_per_epoch = check_int(steps_per_epoch, name="steps_per_epoch", allow_none=True)
    batches_per_pass = check_int(batches_per_pass, name="batches_per_pass", allow_none=True)
    if epochs is not None and steps is not None:
        raise ValueError(
            f"give epochs or steps, not both; received epochs={epochs} and steps={steps} "
            "(steps counts the whole run, epochs * steps_per_epoch would be a second count)."
        )
    if steps_per_epoch is None:
        if batches_per_pass is not None:
            steps_per_epoch = min(batches_per_pass, steps) if steps else batches_per_pass
        elif steps is not None:
            steps_per_epoch = min(steps, 1000)
        else:
            raise ValueError(
                "a streamed source has no end to mark an epoch: give steps or steps_per_epoch; "
                f"received epochs={epochs}."
            )
    total = steps if steps is not None else (epochs or int(default_epochs)) * steps_per_epoch
    return StepPlan(total_steps=total, steps_per_epoch=steps_per_epoch, epochs=math.ceil(total / steps_per_epoch))


def as_fit_input(images: np.ndarray, *, batch_size: int, shuffle: bool, seed: int | None, flip: bool = False):
    """``(x, fit_kwargs)`` for ``fit``/``evaluate``: a tf.data pipeline on TensorFlow,
    the array itself (with ``batch_size``) on other backends."""
    if backend_name() == "tensorflow":
        from tfp_realnvp.data import make_dataset

        # The pipeline shuffles; Keras must not be asked to (it warns and ignores it).
        return make_dataset(images, batch_size=batch_size, shuffle=shuffle, seed=seed, flip=flip), {"shuffle": False}
    if flip:
        raise ValueError(
            "flip=True needs the TensorFlow backend (tf.data); received flip=True on " + backend_name() + "."
        )
    return images, {"batch_size": batch_size, "shuffle": shuffle}


def write_json(path: str, payload: dict) -> str:
    """Writes ``payload`` as indented, strictly valid JSON, atomically, creating the directory.

    Non-finite floats become ``null`` (bare ``NaN`` is not JSON); NumPy values become
    Python numbers. The file is written aside and renamed into place.
    """
    atomic.write_json(path, payload)
    return path


def recalibrate_batch_norm(
    model, images: np.ndarray, *, batch_size: int = 256, num_batches: int = 4, seed: int = 0
) -> int:
    """Sets every batch-norm average of ``model`` to the mean of batch statistics over ``images``.

    What ``RealNVP.fit`` does by itself at the end of every epoch
    (``tfp_realnvp.model.batch_norm_refresh``), for weights that were changed otherwise (a
    custom loop, loaded weights): ``num_batches`` random batches of ``batch_size``
    images run through the flow in training mode with the update counters reset, so
    each average ends as the plain mean of the statistics of the current weights.
    Integer images are dequantized with the evaluation noise. Weights are not changed.

    Returns:
        The number of batches used.
    """
    from tfp_realnvp.model.batch_norm_refresh import TrainingBatches, refresh_statistics

    batches = TrainingBatches(np.asarray(images), batch_size=batch_size, seed=seed)
    return refresh_statistics(model, batches.take(num_batches))
