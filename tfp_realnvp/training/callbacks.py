"""Keras callbacks for flow training: sample grids on disk and in TensorBoard, TensorBoard scalars.

TensorBoard files are written by :class:`~tfp_realnvp.internal.tensorboard.EventWriter`
(the ``tensorboard`` package, no TensorFlow), the same on every backend.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.internal.tensorboard import EventWriter, require_tensorboard
from tfp_realnvp.internal.visualize import image_grid, save_png
from tfp_realnvp.training.run_files import sample_grid_name

#: TensorBoard's directories of a run, as ``keras.callbacks.TensorBoard`` names them.
TRAIN_RUN, VALIDATION_RUN, SAMPLES_RUN = "train", "validation", "samples"


class SampleGrid(keras.callbacks.Callback):
    """Writes a grid of samples after every ``every`` epochs (same latent seed each time).

    Files are ``<directory>/samples_epoch{NNN}.png``. With ``log_dir``, the grid is also
    logged as a TensorBoard image, tag ``samples`` in ``<log_dir>/samples``, at step
    ``epoch + 1`` (the epochs done, as in the file names).

    Args:
        directory: where PNG files go.
        num_samples: images per grid.
        temperature: latent standard deviation.
        seed: sampling seed, fixed so grids are comparable across epochs.
        every: epoch interval.
        log_dir: TensorBoard log directory, or ``None``; needs the ``tensorboard`` package.
        write: whether to write files; ``False`` still draws the samples (what the
            processes other than 0 of a multi-process job do: every process must run
            the same computations).
        labels: for a class-conditional model, the class of every sample
            (``[num_samples]``; e.g. ``columns`` of each class for one row per class).
        columns: images per row of the grid (default: a square grid).
    """

    def __init__(
        self,
        directory: str,
        *,
        num_samples: int = 64,
        temperature: float = 0.7,
        seed: int = 0,
        every: int = 1,
        log_dir: str | None = None,
        write: bool = True,
        labels=None,
        columns: int | None = None,
    ):
        super().__init__()
        every = check_int(every, name="every")
        self.directory = directory
        self.num_samples = int(num_samples)
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.every = int(every)
        self.log_dir = log_dir
        self.write = bool(write)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int32)
        if self.labels is not None and self.labels.shape != (self.num_samples,):
            raise ValueError(
                f"labels must hold one label per sample ({self.num_samples}); received shape {list(self.labels.shape)}."
            )
        self.columns = columns
        self.paths: list[str] = []
        self._writer: EventWriter | None = None
        if log_dir and self.write:
            require_tensorboard()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        if self.labels is None:
            images = self.model.sample(self.num_samples, temperature=self.temperature, seed=self.seed)
        else:
            images = self.model.sample(
                self.num_samples, labels=self.labels, temperature=self.temperature, seed=self.seed
            )
        if not self.write:
            return
        grid = image_grid(images, columns=self.columns)
        self.paths.append(save_png(grid, os.path.join(self.directory, sample_grid_name(epoch + 1)), scale=2))
        if self.log_dir:
            if self._writer is None:
                self._writer = EventWriter(os.path.join(self.log_dir, SAMPLES_RUN))
            self._writer.image("samples", grid.astype(np.uint8), step=epoch + 1)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class TensorBoardLog(keras.callbacks.Callback):
    """Logs ``fit``'s metrics and the learning rate to TensorBoard after every epoch.

    The tags and directories are those of ``keras.callbacks.TensorBoard``: ``epoch_loss``,
    ``epoch_bits_per_dim`` and ``epoch_learning_rate`` in ``<log_dir>/train``, the
    validation metrics (``val_*`` of ``fit``, or those of ``validation_data``) without
    their prefix in ``<log_dir>/validation``. The step is ``epoch + 1``, the epochs done.
    Unlike Keras' callback it needs no TensorFlow, only the ``tensorboard`` package.

    Args:
        log_dir: the TensorBoard log directory.
        validation_data: what ``model.evaluate`` takes (images, or ``(images, labels)``
            for a class-conditional model), evaluated after every epoch when ``fit``
            itself has no validation data (whole batches only); ``None`` for none.
        batch_size: the batch size of that evaluation.
        write: whether to write; ``False`` still evaluates (every process of a
            multi-process job must run the same computations).

    Raises:
        ImportError: without the ``tensorboard`` package (when ``write``).
    """

    def __init__(self, log_dir: str, *, validation_data=None, batch_size: int = 64, write: bool = True):
        super().__init__()
        if not log_dir:
            raise ValueError(f"log_dir must name a directory; received {log_dir!r}.")
        self.log_dir = os.fspath(log_dir)
        self.validation_data = validation_data
        self.batch_size = check_int(batch_size, name="batch_size")
        self.write = bool(write)
        if self.write:
            require_tensorboard()
        self._writers: dict[str, EventWriter] = {}

    def _writer(self, run: str) -> EventWriter:
        if run not in self._writers:
            self._writers[run] = EventWriter(os.path.join(self.log_dir, run))
        return self._writers[run]

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        train = {name: value for name, value in logs.items() if not name.startswith("val_")}
        validation = {name[len("val_") :]: value for name, value in logs.items() if name.startswith("val_")}
        if not validation and self.validation_data is not None:
            validation = self._evaluate()
        learning_rate = getattr(self.model.optimizer, "learning_rate", None)
        if learning_rate is not None:
            train["learning_rate"] = keras.ops.convert_to_numpy(learning_rate)
        if not self.write:
            return
        for run, values in ((TRAIN_RUN, train), (VALIDATION_RUN, validation)):
            if not values:
                continue
            writer = self._writer(run)
            for name, value in values.items():
                writer.scalar(f"epoch_{name}", value, step=epoch + 1)
            writer.flush()

    def _evaluate(self) -> dict:
        """``model.evaluate`` of the whole batches of ``validation_data`` (a data-parallel job
        splits only whole batches evenly); ``{}`` when it holds less than one batch."""
        arrays = self.validation_data if isinstance(self.validation_data, tuple) else (self.validation_data,)
        count = len(arrays[0]) // self.batch_size * self.batch_size
        if not count:
            return {}
        arrays = tuple(array[:count] for array in arrays)
        return self.model.evaluate(*arrays, batch_size=self.batch_size, verbose=0, return_dict=True)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
