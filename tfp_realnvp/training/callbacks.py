"""Keras callbacks for flow training: sample grids on disk and in TensorBoard."""

from __future__ import annotations

import os

import keras
import numpy as np

from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.internal.backend import backend_name
from tfp_realnvp.internal.visualize import image_grid, save_png
from tfp_realnvp.training.run_files import sample_grid_name


class SampleGrid(keras.callbacks.Callback):
    """Writes a grid of samples after every ``every`` epochs (same latent seed each time).

    Files are ``<directory>/samples_epoch{NNN}.png``. With ``log_dir`` on the TensorFlow
    backend, the grid is also logged as a TensorBoard image under ``samples``.

    Args:
        directory: where PNG files go.
        num_samples: images per grid.
        temperature: latent standard deviation.
        seed: sampling seed, fixed so grids are comparable across epochs.
        every: epoch interval.
        log_dir: TensorBoard log directory, or ``None``.
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
        self._writer = None

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
        if self.log_dir and backend_name() == "tensorflow":
            import tensorflow as tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "samples"))
            with self._writer.as_default():
                tf.summary.image("samples", grid[None].astype(np.uint8), step=epoch + 1)
            self._writer.flush()
