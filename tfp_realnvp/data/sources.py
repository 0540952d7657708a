"""One entry point per return type: :func:`load_images` (NumPy) and :func:`get_dataset` (tf.data).

Both take ``"shipped"`` or a local path and pick the loader from what the path holds;
:func:`get_dataset` also takes tfds names. Sets larger than memory go through
:mod:`tfp_realnvp.data.streaming` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfp_realnvp.data.checks import (
    PathLike,
    Size,
    check_images,
    check_size,
    check_split,
    check_train_fraction,
    require_tensorflow,
    split_indices,
)
from tfp_realnvp.data.local import is_idx_dir, load_idx_dir, load_image_folder, load_npz, read_idx
from tfp_realnvp.data.resizing import pad_amounts, resize_and_pad
from tfp_realnvp.data.shipped import load_shipped
from tfp_realnvp.data.tfds import TFDS_DATASETS, check_tfds_available, load_tfds, tfds_key

__all__ = ["get_dataset", "load_images"]


def _looks_like_path(source: str) -> bool:
    return os.sep in source or "/" in source or source.startswith(".") or source.endswith(".npz")


def _known_sources() -> str:
    return (
        "'shipped', a path to a .npz file, an IDX directory or an image folder, "
        f"or a tfds name: {sorted(TFDS_DATASETS)}"
    )


def load_images(
    source: PathLike = "shipped",
    *,
    split: str = "train",
    image_size: Size | None = None,
    pad_to: Size | None = None,
    train_fraction: float = 0.9,
    key: str | None = None,
) -> np.ndarray:
    """Loads local images as one NumPy ``uint8`` array ``[N, H, W, C]``.

    Sources:

    * ``"shipped"``: the Fashion-MNIST file inside the package (:func:`~tfp_realnvp.data.load_shipped`).
    * a ``.npz`` file: the array ``x_<split>`` or ``images_<split>`` when the file has
      one (as ``keras.datasets`` writes ``x_train`` / ``x_test``), otherwise the array
      :func:`~tfp_realnvp.data.load_npz` picks (or ``key``), split by ``train_fraction``.
    * an IDX directory (``train-images-idx3-ubyte[.gz]`` etc.): its own splits.
    * a single IDX file (a name containing ``idx``, plain or ``.gz``): split by
      ``train_fraction``.
    * any other directory: PNG/JPEG files (:func:`~tfp_realnvp.data.load_image_folder`), split by
      ``train_fraction``.

    Needs no TensorFlow. For tfds names use :func:`get_dataset`.

    Args:
        source: ``"shipped"`` or a path.
        split: ``"train"``, ``"test"`` or ``"all"``.
        image_size: optional side or ``(height, width)``: center crop + resize.
        pad_to: optional side or ``(height, width)``: zero padding, after resizing.
        train_fraction: the ``"train"`` share of a source without its own splits.
        key: the array of a ``.npz`` file to read (overrides the split keys).

    Returns:
        ``uint8`` images ``[N, H, W, C]``.

    Raises:
        FileNotFoundError: naming the path when it does not exist.
        ValueError: naming the received value for a bad split, size or fraction, a
            tfds name (they stream: use :func:`get_dataset`), or an unknown source.
    """
    check_split(split)
    check_train_fraction(train_fraction)
    check_size(image_size, name="image_size")
    check_size(pad_to, name="pad_to")
    if isinstance(source, str) and source == "shipped":
        images = load_shipped(split=split, train_fraction=train_fraction)[0]
        return resize_and_pad(images, image_size, pad_to)
    path = Path(source)
    if path.is_dir():
        return _load_folder(path, split=split, image_size=image_size, pad_to=pad_to, train_fraction=train_fraction)
    if path.is_file():
        return _load_file(
            path, split=split, image_size=image_size, pad_to=pad_to, train_fraction=train_fraction, key=key
        )
    if isinstance(source, str) and tfds_key(source) is not None:
        raise ValueError(
            f"{source!r} is a tfds dataset, read as a stream: use get_dataset({source!r}, "
            "split=...), which returns a tf.data.Dataset."
        )
    if isinstance(source, os.PathLike) or _looks_like_path(str(source)):
        raise FileNotFoundError(f"no such file or directory: {str(source)!r}.")
    raise ValueError(f"unknown image source {source!r}; expected {_known_sources()}.")


def _load_folder(
    path: Path, *, split: str, image_size: Size | None, pad_to: Size | None, train_fraction: float
) -> np.ndarray:
    """An IDX directory (its own splits) or an image folder (split by ``train_fraction``)."""
    if is_idx_dir(path):
        images = load_idx_dir(path, split=split)[0]
        return resize_and_pad(images, image_size, pad_to)
    images = load_image_folder(path, image_size=image_size)
    return resize_and_pad(images[split_indices(len(images), split, train_fraction)], None, pad_to)


def _load_file(
    path: Path, *, split: str, image_size: Size | None, pad_to: Size | None, train_fraction: float, key: str | None
) -> np.ndarray:
    """A single IDX file or a ``.npz`` file, split by ``train_fraction`` unless it has split keys."""
    if "idx" in path.name.lower() and path.suffix.lower() != ".npz":
        images = check_images(read_idx(path), name=str(path))
    elif path.suffix.lower() != ".npz":
        raise ValueError(
            f"cannot read images from {str(path)!r}: expected a .npz file, an IDX "
            "file or directory, or an image folder."
        )
    else:
        split_key = _npz_split_key(path, split) if key is None else None
        if split_key is not None:
            return resize_and_pad(load_npz(path, key=split_key), image_size, pad_to)
        images = load_npz(path, key=key)
    chosen = images[split_indices(len(images), split, train_fraction)]
    return resize_and_pad(chosen, image_size, pad_to)


def _npz_split_key(path: Path, split: str) -> str | None:
    """The array of ``split`` in a ``.npz`` file (``x_<split>`` or ``images_<split>``), if any."""
    if split == "all":
        return None
    with np.load(path, allow_pickle=False) as archive:
        return next((k for k in (f"x_{split}", f"images_{split}") if k in archive.files), None)


def get_dataset(
    source: PathLike = "shipped",
    *,
    split: str = "train",
    image_size: Size | None = None,
    pad_to: Size | None = None,
    train_fraction: float = 0.9,
    key: str | None = None,
    data_dir: PathLike | None = None,
    shuffle_files: bool = False,
):
    """One entry point for every source: a ``tf.data.Dataset`` of single images.

    Local sources (``"shipped"`` and paths) are read with :func:`load_images`; any other
    string is a tfds name read with :func:`~tfp_realnvp.data.load_tfds` (an existing path wins over a tfds
    name spelled the same). Either way the elements are
    ``uint8`` tensors ``[H, W, C]`` with a static shape, unbatched; pass the dataset to
    :func:`~tfp_realnvp.data.make_dataset` (or batch it yourself) for training.

    Args:
        source: ``"shipped"`` (default), a path, or a tfds name (:data:`~tfp_realnvp.data.TFDS_DATASETS`).
        split: ``"train"``, ``"test"`` or ``"all"`` for local sources; any tfds split
            string (e.g. ``"validation"``, ``"train[:90%]"``) for tfds names.
        image_size: optional side or ``(height, width)`` (see :func:`load_images` and
            :func:`~tfp_realnvp.data.load_tfds`).
        pad_to: optional side or ``(height, width)`` to zero-pad to, after resizing.
        train_fraction: the ``"train"`` share of a local source without its own splits.
        key: the array of a ``.npz`` file to read.
        data_dir: where tfds keeps its data (tfds names only).
        shuffle_files: passed to ``tfds.load`` (tfds names only).

    Returns:
        A ``tf.data.Dataset`` of ``uint8`` images ``[H, W, C]``; the image shape is
        ``dataset.element_spec.shape``.

    Raises:
        FileNotFoundError: naming the path for a missing local source.
        ValueError: naming the received value for an unknown source or a bad option.
    """
    is_local = not isinstance(source, str) or source == "shipped" or Path(source).exists()
    if not is_local and tfds_key(str(source)) is not None:
        # Where TensorFlow is missing, say that tfds needs it (not only tf.data).
        check_tfds_available(source, data_dir=data_dir)
    tf = require_tensorflow()

    target_pad = check_size(pad_to, name="pad_to")
    if is_local or tfds_key(str(source)) is None:
        images = load_images(
            source,
            split=split,
            image_size=image_size,
            pad_to=pad_to,
            train_fraction=train_fraction,
            key=key,
        )
        return tf.data.Dataset.from_tensor_slices(images)
    dataset = load_tfds(source, split=split, data_dir=data_dir, image_size=image_size, shuffle_files=shuffle_files)
    if target_pad is not None:
        height, width, channels = dataset.element_spec.shape
        top, bottom, left, right = pad_amounts(height, width, target_pad)
        paddings = [[top, bottom], [left, right], [0, 0]]
        dataset = dataset.map(
            lambda image: tf.ensure_shape(tf.pad(image, paddings), [*target_pad, channels]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset
