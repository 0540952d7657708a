"""The images (and labels) of a training run: in memory, streamed from disk, or from tfds.

:class:`DataSource` says where the images come from and how to read them;
:func:`load_training_data` reads the splits a run trains and reports on, and
:func:`train_input` gives ``fit`` the batches of a run from any step on.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import types
import warnings
from typing import Any, NamedTuple

import keras
import numpy as np

from tfp_realnvp.data import (
    FolderBatches,
    check_tfds_available,
    folder_files,
    get_dataset,
    load_images,
    load_labelled_images,
    stream_dataset,
    tfds_key,
)
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training.batch_stream import batches_per_pass, resumable_fit_input, streamed_fit_input
from tfp_realnvp.training.distributed import Topology

#: Images of a split that a tfds or streamed source materialises, unless ``max_images`` says otherwise.
DEFAULT_MATERIALISED_IMAGES = 10000


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSource:
    """Where a run's images come from and how they are read.

    Attributes:
        data: ``"shipped"`` (the Fashion-MNIST images inside the package), a ``.npz``
            file, an IDX directory, an image folder, a folder of shards, or a tfds name.
        data_dir: the tfds data directory (tfds names only).
        pad_to: zero-pad images held in memory to this side.
        image_size: center-crop and resize images to this side.
        max_images: use at most this many images of each split held in memory (tfds
            and streamed sources: of the evaluation split; default 10000 there).
        stream: stream ``data`` from disk instead of loading it into memory.
        preset: the paper's preprocessing of a streamed set (``"celeba"``, ``"lsun"``).
    """

    data: str = "shipped"
    data_dir: str | None = None
    pad_to: int | None = None
    image_size: int | None = None
    max_images: int | None = None
    stream: bool = False
    preset: str | None = None

    @classmethod
    def of(cls, options: Any) -> DataSource:
        """The source described by the like-named attributes of ``options`` (missing ones: defaults)."""
        names = [field.name for field in dataclasses.fields(cls)]
        return cls(**{name: getattr(options, name) for name in names if getattr(options, name, None) is not None})


class TrainingData(NamedTuple):
    """The splits of a run: training images and the evaluation split, with labels for a conditional run."""

    train_images: np.ndarray
    test_images: np.ndarray
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    num_classes: int | None = None


def is_tfds(source: DataSource) -> bool:
    """Whether ``source.data`` names a tfds dataset (and no local path of that name exists)."""
    return tfds_key(str(source.data)) is not None and not os.path.exists(str(source.data))


def check_source_available(source: DataSource) -> None:
    """Refuses at once, before anything is written, a tfds source this machine cannot read.

    Raises:
        ValueError: in one line naming what to install, where tensorflow-datasets (or
            TensorFlow, which it needs) is missing.
        ConnectionError: in one line naming the dataset and ``data_dir``, when the
            dataset is not prepared there and there is no network to download it.
    """
    if not is_tfds(source):
        return
    try:
        check_tfds_available(source.data, data_dir=source.data_dir)
    except ImportError as error:
        raise ValueError(f"data={source.data!r}: {error}") from None


def is_streamed(source: DataSource) -> bool:
    """Whether the source streams from disk; refuses options that contradict it.

    Raises:
        ValueError: for a ``preset`` without ``stream``, a streamed tfds source,
            ``pad_to``, or shard files on a backend without TensorFlow.
    """
    if source.preset and not source.stream:
        raise ValueError(f"preset={source.preset} applies to streamed sets; add stream=True.")
    if not source.stream:
        return False
    backend = keras.backend.backend()
    if backend != "tensorflow" and not os.path.isdir(str(source.data)):
        raise ValueError(
            f"on {backend}, stream=True reads image folders; received data={source.data!r} "
            "(shard files stream through tf.data: use the TensorFlow backend)."
        )
    if is_tfds(source):
        raise ValueError(
            f"stream=True is for local folders and shard files; the tfds source {source.data!r} streams already."
        )
    if source.pad_to is not None:
        raise ValueError("pad_to applies to images held in memory; with stream=True give image_size or a preset.")
    return True


def stream_split(source: DataSource, split: str, **options):
    """A ``tf.data`` stream of a split of the source (TensorFlow backend)."""
    return stream_dataset(source.data, split=split, preset=source.preset, image_size=source.image_size, **options)


def folder_split_batches(source: DataSource, split: str, **options) -> FolderBatches:
    """A NumPy stream of a split of the image folder ``source.data`` (backends without TensorFlow)."""
    files = folder_files(source.data, split=split)
    return FolderBatches(files, preset=source.preset, image_size=source.image_size, **options)


def load_split(source: DataSource, split: str) -> np.ndarray:
    """Local images as a uint8 array, or a tfds or streamed split materialised up to
    ``max_images`` (default 10000)."""
    limit = source.max_images or DEFAULT_MATERIALISED_IMAGES
    if is_streamed(source):
        if keras.backend.backend() != "tensorflow":
            batches = folder_split_batches(source, split, batch_size=min(limit, 256), shuffle=False)
            return np.concatenate(list(itertools.islice(batches, math.ceil(limit / min(limit, 256)))))[:limit]
        dataset = stream_split(source, split, batch_size=None, shuffle=False)
        return np.stack(list(dataset.take(limit).as_numpy_iterator()))
    if is_tfds(source):
        dataset = get_dataset(
            source.data, split=split, image_size=source.image_size, pad_to=source.pad_to, data_dir=source.data_dir
        )
        return np.stack(list(dataset.take(limit).as_numpy_iterator()))
    images = load_images(source.data, split=split, pad_to=source.pad_to, image_size=source.image_size)
    return images[: source.max_images] if source.max_images else images


def load_labelled_split(source: DataSource, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of the source (held in memory) for a class-conditional model."""
    if source.stream:
        raise ValueError("conditional=True reads labelled sets held in memory; received stream=True (leave it out).")
    images, labels, _ = load_labelled_images(
        source.data,
        split=split,
        pad_to=source.pad_to,
        image_size=source.image_size,
        data_dir=source.data_dir,
        max_images=source.max_images or DEFAULT_MATERIALISED_IMAGES,
    )
    if source.max_images:
        images, labels = images[: source.max_images], labels[: source.max_images]
    return images, labels


def load_training_data(source: DataSource, *, test_split: str = "test", conditional: bool = False) -> TrainingData:
    """The training split and the evaluation split ``test_split`` of ``source``.

    Raises:
        ValueError: for a conditional run on a streamed source or on fewer than 2 classes.
    """
    if not conditional:
        return TrainingData(load_split(source, "train"), load_split(source, test_split))
    if is_streamed(source):
        raise ValueError("conditional=True reads labelled sets held in memory; received stream=True (leave it out).")
    train_images, train_labels = load_labelled_split(source, "train")
    test_images, test_labels = load_labelled_split(source, test_split)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    if num_classes < 2:
        raise ValueError(
            f"conditional=True needs at least 2 classes; data={source.data!r} has labels "
            f"{sorted(set(train_labels.tolist()))}."
        )
    return TrainingData(train_images, test_images, train_labels, test_labels, num_classes)


def train_batches_per_pass(
    source: DataSource, data: TrainingData, *, batch_size: int, topology: Topology
) -> int | None:
    """Batches in one pass over the training images, or ``None`` for a source without end (tfds, streams)."""
    if is_tfds(source) or is_streamed(source):
        return None
    return batches_per_pass(len(data.train_images), batch_size, drop_remainder=topology.data_parallel)


def _streamed_input(source: DataSource, *, batch_size: int, seed: int, flip: bool, start_step: int, topology):
    # Like tfds sources, a stream restarts with a shuffle seeded by (seed, start step).
    stream_seed = int(np.random.default_rng([int(seed) % 2**32, int(start_step)]).integers(2**31 - 1))
    if keras.backend.backend() != "tensorflow":
        # Each process decodes only its share of the files: its rows of every batch.
        batches = folder_split_batches(
            source,
            "train",
            batch_size=batch_size // topology.process_count,
            seed=stream_seed,
            repeat=True,
            flip=flip,
            num_shards=topology.process_count,
            shard_index=topology.process_index,
        )
        return ((batch,) for batch in batches), {"shuffle": False}
    dataset = stream_split(source, "train", batch_size=batch_size, seed=stream_seed, repeat=True, flip=flip)
    return dataset, {"shuffle": False}


def train_input(
    source: DataSource,
    data: TrainingData,
    *,
    start_step: int,
    topology: Topology,
    batch_size: int,
    seed: int,
    flip: bool = False,
):
    """``(x, fit_kwargs)`` whose first batch is the one of training step ``start_step``
    (this process's rows of it, in a multi-process job)."""
    options = {"batch_size": batch_size, "seed": seed, "flip": flip, "start_step": start_step}
    if is_streamed(source):
        return _streamed_input(source, topology=topology, **options)
    if is_tfds(source):
        dataset = get_dataset(
            source.data,
            split="train",
            image_size=source.image_size,
            pad_to=source.pad_to,
            data_dir=source.data_dir,
            shuffle_files=True,
        )
        return streamed_fit_input(dataset, **options)
    if flip and keras.backend.backend() != "tensorflow":
        raise ValueError(f"flip=True needs the TensorFlow backend; received flip=True on {keras.backend.backend()}.")
    return resumable_fit_input(data.train_images, topology=topology, labels=data.train_labels, **options)


def statistics_refresh(model: RealNVP, x, data: TrainingData, *, batch_size: int, seed: int):
    """A callback that re-estimates the batch-norm averages from the training images when
    ``RealNVP.fit`` cannot do it from ``x`` itself (the endless generator used on
    backends without ``tf.data``), else ``None``. Call it inside
    ``warnings.catch_warnings()``: it silences ``fit``'s warning about that generator.
    """
    if keras.backend.backend() == "tensorflow" or not isinstance(x, types.GeneratorType):
        return None
    try:
        from tfp_realnvp.model.batch_norm_refresh import make_refresh_callback
    except ImportError:
        return None
    images = data.train_images if data.train_labels is None else (data.train_images, data.train_labels)
    num_batches = int(getattr(model, "refresh_batches", 0) or 0)
    callback = make_refresh_callback(model, images, batch_size=batch_size, num_batches=num_batches, seed=seed)
    if callback is not None:
        warnings.filterwarnings(
            "ignore", message="batch-norm statistics will not be re-estimated", category=UserWarning
        )
    return callback
