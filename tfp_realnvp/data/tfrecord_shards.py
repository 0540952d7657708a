"""TFRecord shards of encoded images: writing them, and streaming them through ``tf.data``.

Each record is a ``tf.train.Example`` with ``image/encoded`` (PNG or JPEG bytes),
``image/format`` (``b"png"`` / ``b"jpeg"``) and ``image/filename``. The serialized
records (a few kB each) pass a bounded shuffle buffer before they are decoded, so
memory stays flat however many shards there are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tfp_realnvp.data.checks import PathLike, Size, check_channels, check_images, require_tensorflow
from tfp_realnvp.data.local import list_image_files
from tfp_realnvp.data.shard_files import TFRECORD_SUFFIX, shard_files, write_shards
from tfp_realnvp.data.stream_common import (
    DEFAULT_SHUFFLE_BUFFER,
    JPEG_MAGIC,
    PNG_MAGIC,
    ReaderOptions,
    check_share,
    decoded_shape,
    image_decoder,
    read_shards,
    record_split,
)
from tfp_realnvp.internal.arguments import check_int

__all__ = ["stream_tfrecord_shards", "write_tfrecord_shards"]

_ENCODED, _FORMAT, _FILENAME = "image/encoded", "image/format", "image/filename"
_IMAGE_FORMATS = ("png", "jpeg")


def _image_items(images_or_files: Any) -> Iterator[tuple[str, Any]]:
    """``("file", path)`` or ``("array", image)`` for every image of the input."""
    if isinstance(images_or_files, (str, os.PathLike)):
        path = Path(images_or_files)
        if not path.is_dir():
            raise FileNotFoundError(
                f"expected an image folder, an array or a list of images or files; "
                f"received the path {str(path)!r}, which is not a folder."
            )
        yield from (("file", f) for f in list_image_files(path))
        return
    if isinstance(images_or_files, np.ndarray):
        yield from (("array", image) for image in check_images(images_or_files))
        return
    for item in images_or_files:
        if isinstance(item, (str, os.PathLike)):
            yield "file", Path(item)
        else:
            yield "array", check_images(np.asarray(item)[np.newaxis], name="image")[0]


def _file_format(path: Path, contents: bytes) -> bytes:
    if contents.startswith(JPEG_MAGIC):
        return b"jpeg"
    if contents.startswith(PNG_MAGIC):
        return b"png"
    raise ValueError(f"{str(path)!r} is not a PNG or JPEG file.")


def write_tfrecord_shards(
    images_or_files: Any,
    directory: PathLike,
    *,
    images_per_shard: int = 1000,
    prefix: str = "images",
    image_format: str = "png",
    quality: int = 95,
    overwrite: bool = False,
    verbose: bool = False,
) -> list[Path]:
    """Writes images as TFRecord shards of encoded images, read by :func:`stream_tfrecord_shards`.

    Each record is a ``tf.train.Example`` with ``image/encoded`` (PNG or JPEG bytes),
    ``image/format`` (``b"png"`` / ``b"jpeg"``) and ``image/filename`` (the file's path
    relative to the folder it came from, or ``b""`` for arrays). Files are stored as
    they are, bytes unchanged; arrays are encoded with ``image_format``. The shards are
    ``{prefix}-00000-of-0000n.tfrecord`` in ``directory``, written aside and renamed into
    place when all are complete; only ``images_per_shard`` images are held at a time.

    Args:
        images_or_files: an image folder (every PNG/JPEG under it, sorted), a ``uint8``
            array ``[N, H, W, C]``, or an iterable of files and/or single images
            ``[H, W, C]``.
        directory: where the shards go (created if missing).
        images_per_shard: images per shard (the last one may hold fewer).
        prefix: the shards' name prefix: ``"train"`` and ``"test"`` for a set's two
            splits; the default, ``"images"``, names one set, which
            ``stream_dataset`` and ``train --stream`` split by image.
        image_format: ``"png"`` (lossless) or ``"jpeg"``, for arrays.
        quality: JPEG quality for arrays, 1 to 100.
        overwrite: replace existing shards of the same prefix.
        verbose: print a line per shard written.

    Returns:
        The shard paths, in order.

    Raises:
        FileExistsError: if shards of ``prefix`` exist and ``overwrite`` is false.
        ValueError: naming the received value for a bad option, a file that is not PNG
            or JPEG, or an empty input.
    """
    image_format, quality = _check_encoding(image_format, quality)
    tf = require_tensorflow()
    root = Path(images_or_files) if isinstance(images_or_files, (str, os.PathLike)) else None

    def example(item: tuple[str, Any]) -> bytes:
        kind, value = item
        if kind == "file":
            contents, fmt, name = _stored_file(value, root)
        else:
            contents, fmt, name = _encoded_array(tf, value, image_format, quality), image_format.encode(), ""
        return _serialized_example(tf, contents, fmt, name)

    return write_shards(
        (example(item) for item in _image_items(images_or_files)),
        directory,
        prefix=prefix,
        suffix=TFRECORD_SUFFIX,
        images_per_shard=images_per_shard,
        overwrite=overwrite,
        verbose=verbose,
        write=_write_records,
    )


def _check_encoding(image_format: Any, quality: Any) -> tuple[str, int]:
    if image_format not in _IMAGE_FORMATS:
        raise ValueError(f"image_format must be 'png' or 'jpeg'; received {image_format!r}.")
    return image_format, check_int(quality, name="quality", low=1, high=100)


def _stored_file(path: Path, root: Path | None) -> tuple[bytes, bytes, str]:
    """``(contents, format, name)`` of an image file, its bytes unchanged.

    ``name`` is the path relative to ``root`` (the folder being written), or the file
    name of a listed file.
    """
    contents = path.read_bytes()
    name = str(path.relative_to(root) if root is not None else path.name)
    return contents, _file_format(path, contents), name


def _encoded_array(tf, image: np.ndarray, image_format: str, quality: int) -> bytes:
    """A ``uint8`` image ``[H, W, C]`` encoded as PNG or JPEG."""
    if image_format == "png":
        return tf.io.encode_png(image).numpy()
    if image.shape[-1] not in (1, 3):
        raise ValueError(
            f"JPEG holds 1 or 3 channels; received an image of shape {list(image.shape)} (use image_format='png')."
        )
    return tf.io.encode_jpeg(image, quality=quality).numpy()


def _serialized_example(tf, contents: bytes, fmt: bytes, name: str) -> bytes:
    """One record: a serialized ``tf.train.Example`` of an encoded image."""

    def feature(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {_ENCODED: feature(contents), _FORMAT: feature(fmt), _FILENAME: feature(name.encode())}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _write_records(path: Path, records: list) -> None:
    tf = require_tensorflow()
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def stream_tfrecord_shards(
    shards: Any,
    *,
    prefix: str | None = None,
    split: str = "all",
    train_fraction: float = 0.9,
    preset: str | None = None,
    image_size: Size | None = None,
    channels: int = 3,
    batch_size: int | None,
    shuffle: bool = True,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    seed: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    repeat: bool = False,
    flip: bool = False,
    drop_remainder: bool = False,
    cycle_length: int = 4,
):
    """Streams TFRecord shards of encoded images as ``uint8`` batches.

    Reads records with an ``image/encoded`` feature (PNG or JPEG bytes), as
    :func:`write_tfrecord_shards` writes them. This process reads its share of the
    shard files (``num_shards`` / ``shard_index``), in shuffled order, ``cycle_length``
    at a time, interleaved; the serialized records (a few kB each) pass a bounded
    shuffle buffer before they are decoded in parallel.

    Args:
        shards: a folder (its ``*.tfrecord`` files), a glob pattern, a file, or a list
            of files.
        prefix: in a folder, read only ``{prefix}-*.tfrecord`` (e.g. ``"train"``).
        split: ``"all"`` records, or the ``"train"`` / ``"test"`` share of every
            shard's records, for shards that hold one set (a fixed split by record;
            see ``stream_common.record_split``).
        train_fraction: the share of the records in ``"train"``.
        preset: ``"celeba"``, ``"lsun"`` or ``None``.
        image_size: see :func:`~tfp_realnvp.data.stream_image_files`.
        channels: 3 (RGB) or 1 (grayscale).
        batch_size: images per batch; ``None`` yields single images.
        shuffle: shuffle the shard order and the records, reshuffled each epoch.
        shuffle_buffer: serialized records the shuffle holds.
        seed: makes the order and the flips reproducible.
        num_shards: processes sharing the files (see :func:`~tfp_realnvp.data.process_shard_from_env`).
        shard_index: this process' share, in ``[0, num_shards)``.
        repeat: repeat forever.
        flip: random left-right flips.
        drop_remainder: drop the last, smaller batch of an epoch.
        cycle_length: shard files read at the same time when shuffling; without
            shuffling the shards are read one after the other, in the stored order.

    Returns:
        A ``tf.data.Dataset`` of ``uint8`` tensors ``[B, H, W, C]``.

    Raises:
        FileNotFoundError: naming a missing file or folder.
        ValueError: naming the received value for a bad option, no shard files, or
            fewer shard files than ``num_shards``.
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
    channels = check_channels(channels)
    cycle_length = check_int(cycle_length, name="cycle_length")
    files = shard_files(shards, TFRECORD_SUFFIX, prefix=prefix)
    check_share(files, options.num_shards, "TFRecord shard files")
    tf = require_tensorflow()
    where = f"the TFRecord shards {files[0]!r}, ..." if len(files) > 1 else repr(files[0])
    stored_shape = _first_image_shape(files[0]) if options.keeps_stored_size else None
    decode = image_decoder(options, channels=channels, stored_shape=stored_shape, where=where)
    read = record_split(tf.data.TFRecordDataset, split, train_fraction)
    dataset = read_shards(files, read, options, cycle_length=cycle_length)
    dataset = dataset.map(lambda record: decode(*_parsed(record)), num_parallel_calls=tf.data.AUTOTUNE)
    return options.batched(dataset)


def _parsed(record):
    """``(encoded image, file name)`` of a serialized record."""
    tf = require_tensorflow()
    features = {
        _ENCODED: tf.io.FixedLenFeature([], tf.string),
        _FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    example = tf.io.parse_single_example(record, features)
    return example[_ENCODED], example[_FILENAME]


def _first_image_shape(file: str) -> tuple[int, int]:
    """``(height, width)`` of the first image of a TFRecord shard."""
    tf = require_tensorflow()
    first = next(iter(tf.data.TFRecordDataset(file).take(1)), None)
    if first is None:
        raise ValueError(f"the TFRecord shard {file!r} holds no record.")
    contents, _ = _parsed(first)
    return decoded_shape(contents)
