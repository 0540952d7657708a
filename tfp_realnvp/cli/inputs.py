"""The images (and labels) a command reads from ``--data``: in memory, streamed, or tfds."""

from __future__ import annotations

import itertools
import math
import os
import types
import warnings

import keras
import numpy as np

from tfp_realnvp import data as data_lib
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training import batch_stream
from tfp_realnvp.training.distributed import Topology


def is_tfds(args) -> bool:
    """Whether ``--data`` names a tfds dataset (and no local path of that name exists)."""
    return data_lib.tfds_key(str(args.data)) is not None and not os.path.exists(str(args.data))


def is_streamed(args) -> bool:
    """Whether ``--data`` is streamed from disk (``--stream``); refuses flags that contradict it.

    Raises:
        ValueError: for ``--preset`` without ``--stream``, a tfds source, ``--pad-to``, or
            shard files on a backend without TensorFlow.
    """
    if getattr(args, "preset", None) and not getattr(args, "stream", False):
        raise ValueError(f"--preset {args.preset} applies to streamed sets; add --stream.")
    if getattr(args, "stream", False):
        if keras.backend.backend() != "tensorflow" and not os.path.isdir(str(args.data)):
            raise ValueError(
                f"on {keras.backend.backend()}, --stream reads image folders; received --data {args.data!r} "
                "(shard files stream through tf.data: use the TensorFlow backend)."
            )
        if is_tfds(args):
            raise ValueError(
                f"--stream is for local folders and shard files; the tfds source {args.data!r} streams already."
            )
        if args.pad_to is not None:
            raise ValueError("--pad-to applies to images held in memory; with --stream give --image-size or --preset.")
        return True
    return False


def stream_split(args, split: str, **options):
    """A ``tf.data`` stream of ``--data`` (TensorFlow backend)."""
    return data_lib.stream_dataset(args.data, split=split, preset=args.preset, image_size=args.image_size, **options)


def folder_split_batches(args, split: str, **options) -> data_lib.FolderBatches:
    """A NumPy stream of the image folder ``--data`` (backends without TensorFlow)."""
    files = data_lib.folder_files(args.data, split=split)
    return data_lib.FolderBatches(files, preset=args.preset, image_size=args.image_size, **options)


def load_split(args, split: str) -> np.ndarray:
    """Local images as a uint8 array, or a tfds or streamed split materialised up to
    ``--max-images`` (default 10000)."""
    if is_streamed(args):
        limit = args.max_images or 10000
        if keras.backend.backend() != "tensorflow":
            batches = folder_split_batches(args, split, batch_size=min(limit, 256), shuffle=False)
            return np.concatenate(list(itertools.islice(batches, math.ceil(limit / min(limit, 256)))))[:limit]
        dataset = stream_split(args, split, batch_size=None, shuffle=False)
        return np.stack(list(dataset.take(limit).as_numpy_iterator()))
    if is_tfds(args):
        dataset = data_lib.get_dataset(
            args.data, split=split, image_size=args.image_size, pad_to=args.pad_to, data_dir=args.data_dir
        )
        return np.stack(list(dataset.take(args.max_images or 10000).as_numpy_iterator()))
    images = data_lib.load_images(args.data, split=split, pad_to=args.pad_to, image_size=args.image_size)
    return images[: args.max_images] if args.max_images else images


def load_labelled_split(args, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``--data`` (held in memory) for a class-conditional model."""
    if getattr(args, "stream", False):
        raise ValueError("--conditional reads labelled sets held in memory; received --stream (leave it out).")
    images, labels, _ = data_lib.load_labelled_images(
        args.data,
        split=split,
        pad_to=args.pad_to,
        image_size=args.image_size,
        data_dir=args.data_dir,
        max_images=args.max_images or 10000,
    )
    if args.max_images:
        images, labels = images[: args.max_images], labels[: args.max_images]
    return images, labels


def train_input(args, train_images, start_step: int, topology: Topology, train_labels=None):
    """``(x, fit_kwargs)`` whose first batch is the one of training step ``start_step``
    (this process's rows of it, in a multi-process job)."""
    if is_streamed(args):
        # Like tfds sources, a stream restarts with a shuffle seeded by (seed, start step).
        stream_seed = int(np.random.default_rng([int(args.seed) % 2**32, int(start_step)]).integers(2**31 - 1))
        if keras.backend.backend() != "tensorflow":
            # Each process decodes only its share of the files: its rows of every batch.
            batches = folder_split_batches(
                args,
                "train",
                batch_size=args.batch_size // topology.process_count,
                seed=stream_seed,
                repeat=True,
                flip=args.flip,
                num_shards=topology.process_count,
                shard_index=topology.process_index,
            )
            return ((batch,) for batch in batches), {"shuffle": False}
        dataset = stream_split(args, "train", batch_size=args.batch_size, seed=stream_seed, repeat=True, flip=args.flip)
        return dataset, {"shuffle": False}
    if is_tfds(args):
        dataset = data_lib.get_dataset(
            args.data,
            split="train",
            image_size=args.image_size,
            pad_to=args.pad_to,
            data_dir=args.data_dir,
            shuffle_files=True,
        )
        return batch_stream.streamed_fit_input(
            dataset, batch_size=args.batch_size, seed=args.seed, flip=args.flip, start_step=start_step
        )
    if args.flip and keras.backend.backend() != "tensorflow":
        raise ValueError(f"--flip needs the TensorFlow backend; received --flip on {keras.backend.backend()}.")
    return batch_stream.resumable_fit_input(
        train_images,
        batch_size=args.batch_size,
        seed=args.seed,
        flip=args.flip,
        start_step=start_step,
        topology=topology,
        labels=train_labels,
    )


def statistics_refresh(model: RealNVP, x, train_images, args):
    """A callback that re-estimates the batch-norm averages from ``train_images`` when
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
    num_batches = int(getattr(model, "refresh_batches", 0) or 0)
    callback = make_refresh_callback(
        model, train_images, batch_size=args.batch_size, num_batches=num_batches, seed=args.seed
    )
    if callback is not None:
        warnings.filterwarnings(
            "ignore", message="batch-norm statistics will not be re-estimated", category=UserWarning
        )
    return callback
