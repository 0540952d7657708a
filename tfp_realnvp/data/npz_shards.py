""".npz shards of ``uint8`` images: writing them, and streaming them through ``tf.data``.

Each shard holds one array ``images`` ``[n, H, W, C]``. Only the array headers are read
up front; a reader holds about ``cycle_length`` shards plus the shuffle buffer in
memory, whatever the number of shards.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tfp_realnvp.data.checks import PathLike, Size, check_images, require_tensorflow
from tfp_realnvp.data.local import npz_image_key
from tfp_realnvp.data.resizing import image_preprocessor
from tfp_realnvp.data.shard_files import NPZ_SUFFIX, shard_files, write_shards
from tfp_realnvp.data.stream_common import (
    DEFAULT_SHUFFLE_BUFFER,
    ReaderOptions,
    check_share,
    read_shards,
    record_split,
)
from tfp_realnvp.internal.arguments import check_int

__all__ = ["stream_npz_shards", "write_npz_shards"]


def _npz_header(path: str, key: str | None) -> tuple[str, tuple[int, ...]]:
    """``(key, shape)`` of the image array of a ``.npz`` file; no pixel is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            keys = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
            key = npz_image_key(Path(path), keys, key)
            with archive.open(f"{key}.npy") as member:
                version = np.lib.format.read_magic(member)
                reader = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = reader(member)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        if isinstance(error, ValueError) and str(path) in str(error):
            raise
        raise ValueError(f"cannot read the .npz shard {path!r}: {error}.") from error
    if len(shape) == 3:
        shape = (*shape, 1)
    if len(shape) != 4 or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ValueError(
            f"the .npz shard {path!r} holds {key!r} with dtype {dtype}, shape {list(shape)}; "
            "expected images [N, H, W, C] or [N, H, W]."
        )
    return key, tuple(int(s) for s in shape)


def write_npz_shards(
    images: Any,
    directory: PathLike,
    *,
    images_per_shard: int = 1000,
    prefix: str = "images",
    compress: bool = False,
    overwrite: bool = False,
    verbose: bool = False,
) -> list[Path]:
    """Writes ``uint8`` images as ``.npz`` shards, read by :func:`stream_npz_shards`.

    Each shard holds one array ``images`` ``[n, H, W, C]``; the shards are
    ``{prefix}-00000-of-0000n.npz`` in ``directory``, written aside and renamed into
    place when all are complete; only ``images_per_shard`` images are held at a time.

    Args:
        images: a ``uint8`` array ``[N, H, W, C]`` (anything
            :func:`~tfp_realnvp.data.check_images` takes), or an iterable of single
            images ``[H, W, C]`` of one shape.
        directory: where the shards go (created if missing).
        images_per_shard: images per shard (the last one may hold fewer).
        prefix: the shards' name prefix: ``"train"`` and ``"test"`` for a set's two
            splits; the default, ``"images"``, names one set, which
            ``stream_dataset`` and ``train --stream`` split by image.
        compress: write with ``np.savez_compressed``.
        overwrite: replace existing shards of the same prefix.
        verbose: print a line per shard written.

    Returns:
        The shard paths, in order.

    Raises:
        FileExistsError: if shards of ``prefix`` exist and ``overwrite`` is false.
        ValueError: naming the received value for a bad option, images that are not
            pixels or differ in shape, or an empty input.
    """
    if isinstance(images, (str, os.PathLike)):
        raise ValueError(
            f"images must be an array or an iterable of images; received the path "
            f"{str(images)!r} (use write_tfrecord_shards for files)."
        )
    items = (
        check_images(images)
        if isinstance(images, np.ndarray)
        else (check_images(np.asarray(image)[np.newaxis], name="image")[0] for image in images)
    )
    save = np.savez_compressed if compress else np.savez

    def write(path: Path, chunk: list) -> None:
        shapes = sorted({image.shape for image in chunk})
        if len(shapes) > 1:
            raise ValueError(f"the images of one shard must share one shape; received {shapes}.")
        with open(path, "wb") as handle:
            save(handle, images=np.stack(chunk))

    return write_shards(
        items,
        directory,
        prefix=prefix,
        suffix=NPZ_SUFFIX,
        images_per_shard=images_per_shard,
        overwrite=overwrite,
        verbose=verbose,
        write=write,
    )


def stream_npz_shards(
    shards: Any,
    *,
    key: str | None = None,
    prefix: str | None = None,
    split: str = "all",
    train_fraction: float = 0.9,
    preset: str | None = None,
    image_size: Size | None = None,
    batch_size: int | None,
    shuffle: bool = True,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    seed: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    repeat: bool = False,
    flip: bool = False,
    drop_remainder: bool = False,
    cycle_length: int = 2,
):
    """Streams ``.npz`` shards of ``uint8`` images as batches; one shard in memory per reader.

    Only the array headers are read up front (shapes and counts, so the dataset knows
    its length without ``repeat``). This process reads its share of the shard files,
    in shuffled order, ``cycle_length`` at a time; their images pass a bounded shuffle
    buffer. Memory holds about ``cycle_length`` shards plus the buffer, whatever the
    number of shards.

    Args:
        shards: a folder (its ``*.npz`` files), a glob pattern, a file, or a list of
            files.
        key: the array of each shard to read; ``None`` picks it as
            :func:`~tfp_realnvp.data.load_npz` does (``images`` in shards written by
            :func:`write_npz_shards`).
        prefix: in a folder, read only ``{prefix}-*.npz`` (e.g. ``"train"``).
        split: ``"all"`` images, or the ``"train"`` / ``"test"`` share of every
            shard's images, for shards that hold one set (a fixed split by image;
            see ``stream_common.record_split``).
        train_fraction: the share of the images in ``"train"``.
        preset: ``"celeba"``, ``"lsun"`` or ``None``.
        image_size: see :func:`~tfp_realnvp.data.stream_image_files`.
        batch_size: images per batch; ``None`` yields single images.
        shuffle: shuffle the shard order and the images, reshuffled each epoch.
        shuffle_buffer: images the shuffle holds.
        seed: makes the order and the flips reproducible.
        num_shards: processes sharing the files (see :func:`~tfp_realnvp.data.process_shard_from_env`).
        shard_index: this process' share, in ``[0, num_shards)``.
        repeat: repeat forever.
        flip: random left-right flips.
        drop_remainder: drop the last, smaller batch of an epoch.
        cycle_length: shard files open at the same time when shuffling; without
            shuffling the shards are read one after the other, in the stored order.

    Returns:
        A ``tf.data.Dataset`` of ``uint8`` tensors ``[B, H, W, C]``, the channels as
        stored.

    Raises:
        FileNotFoundError: naming a missing file or folder.
        ValueError: naming the received value for a bad option, a shard that holds no
            images, shards of different image shapes (without ``preset`` or
            ``image_size``), or fewer shard files than ``num_shards``.
    """
    options = ReaderOptions.check(
        preset=preset,
        image_size=image_size,
        batch_size=batch_size,
        shuffle=shuffle,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        num_shards=num_shards,
        shard_index=shard_index,
        repeat=repeat,
        flip=flip,
        drop_remainder=drop_remainder,
    )
    cycle_length = check_int(cycle_length, name="cycle_length")
    files = shard_files(shards, NPZ_SUFFIX, prefix=prefix)
    check_share(files, options.num_shards, ".npz shard files")
    headers = [_npz_header(f, key) for f in files]
    stored = _stored_image_shape(files, [shape for _, shape in headers], options)
    keys = [array_key for array_key, _ in headers]
    share = sum(shape[0] for _, shape in headers[options.shard_index :: options.num_shards])
    read = record_split(_shard_reader(stored), split, train_fraction)
    count = share if split == "all" else None
    dataset = read_shards((files, keys), read, options, cycle_length=cycle_length, count=count)
    return options.batched(_preprocessed(dataset, options, channels=stored[2]))


def _stored_image_shape(files: list[str], shapes: list[tuple[int, ...]], options: ReaderOptions) -> tuple:
    """``(height, width, channels)`` of the shards' images; the sides are ``None`` when they differ.

    Raises:
        ValueError: naming the shapes when the channels differ, or the sides differ and
            images keep their stored size.
    """
    channels = {shape[3] for shape in shapes}
    sizes = {shape[1:3] for shape in shapes}
    if len(channels) > 1 or (options.keeps_stored_size and len(sizes) > 1):
        shown = sorted({shape[1:] for shape in shapes})
        raise ValueError(
            f"the .npz shards {files[0]!r}, ... hold images of shapes {[list(s) for s in shown]}; "
            "pass image_size= or preset= to bring them to one size (channels must agree)."
        )
    height, width = next(iter(sizes)) if len(sizes) == 1 else (None, None)
    return height, width, next(iter(channels))


def _shard_array(path: Any, array_key: Any) -> np.ndarray:
    """The checked ``uint8`` images of one ``.npz`` shard (``path`` and key as bytes or text)."""
    path = path.decode() if isinstance(path, bytes) else str(path)
    array_key = array_key.decode() if isinstance(array_key, bytes) else str(array_key)
    with np.load(path, allow_pickle=False) as archive:
        array = archive[array_key]
    return check_images(array, name=f"{os.path.basename(path)}[{array_key!r}]")


def _shard_reader(stored_shape: tuple):
    """``read(path, key)``: the dataset of one shard's images of ``stored_shape``.

    The shard is loaded whole by a ``tf.numpy_function`` and sliced into images, so no
    Python generator (whose iterators TensorFlow finalizes at exit) is involved.
    """
    tf = require_tensorflow()

    def read(path, array_key):
        images = tf.numpy_function(_shard_array, [path, array_key], tf.uint8, stateful=False)
        return tf.data.Dataset.from_tensor_slices(tf.ensure_shape(images, [None, *stored_shape]))

    return read


def _preprocessed(dataset, options: ReaderOptions, *, channels: int):
    """``dataset`` with the preset or size applied to each image (unchanged without either)."""
    preprocess = image_preprocessor(options.preset, options.size)
    if preprocess is None:
        return dataset
    tf = require_tensorflow()
    height, width = options.output_size
    return dataset.map(
        lambda image: tf.ensure_shape(preprocess(image), [height, width, channels]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
