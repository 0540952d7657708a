"""Streaming: image folders and shard files read through ``tf.data``, never whole in memory.

For sets larger than memory (CelebA, LSUN, ...). Only the list of file names is held;
images are read, decoded (``num_parallel_calls=tf.data.AUTOTUNE``), cropped and resized
a few batches ahead of training, so memory stays flat as the set grows. Three kinds of
source, one reader each, and :func:`stream_dataset` to pick the reader from a path:

* a folder of PNG/JPEG files, searched recursively (:func:`stream_image_folder`, or
  :func:`stream_image_files` for a list of files);
* TFRecord shards of encoded images (:func:`stream_tfrecord_shards`), written by
  :func:`write_tfrecord_shards`;
* ``.npz`` shards of ``uint8`` arrays (:func:`stream_npz_shards`), written by
  :func:`write_npz_shards`.

Every reader returns a ``tf.data.Dataset`` of ``uint8`` batches ``[B, H, W, C]``
(single images ``[H, W, C]`` with ``batch_size=None``) and works in the same order:

1. list the files (sorted, so every process sees the same list);
2. keep this process' share, ``dataset.shard(num_shards, shard_index)`` on the file
   list, before anything is read, so processes read disjoint files that together
   cover the set (:func:`process_shard_from_env` reads the share from Keras'
   distribution environment variables);
3. shuffle with a bounded buffer, reshuffled each epoch: file names for a folder
   (cheap, so the buffer can be large), shard order and then serialized records for
   TFRecords, shard order and then decoded images for ``.npz``; a ``seed`` makes the
   order reproducible;
4. repeat (when asked), decode and preprocess in parallel, batch, flip (when asked),
   prefetch.

Preprocessing: ``preset="celeba"`` is the paper's CelebA setup (center crop 148x148,
resize to 64x64, :func:`~tfp_realnvp.data.celeba_preprocess`), ``preset="lsun"`` the
LSUN one (smaller side to 96, center crop 64x64, :func:`~tfp_realnvp.data.lsun_preprocess`);
``image_size`` changes their output size. Without a preset, ``image_size`` center crops
every image to its aspect ratio and resizes it, and without either all images must
share the size of the first one. So a CelebA folder (``img_align_celeba/*.jpg``,
178x218) trains with the paper's crop from one argument::

    from tfp_realnvp import data

    train = data.stream_image_folder("celeba", preset="celeba", batch_size=64, seed=0,
                                     repeat=True, flip=True,
                                     **data.process_shard_from_env())
    model.fit(train, steps_per_epoch=1000, epochs=100)

Writing shards and building readers needs no TensorFlow until a function that makes
a dataset or a TFRecord is called.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfp_realnvp.data.checks import (
    PathLike,
    Size,
    check_channels,
    check_images,
    check_positive_int,
    check_shard,
    check_size,
    require_tensorflow,
)
from tfp_realnvp.data.file_batches import folder_files
from tfp_realnvp.data.local import list_image_files, npz_image_key
from tfp_realnvp.data.pipeline import batch_flip_prefetch
from tfp_realnvp.data.resizing import check_preset, image_preprocessor
from tfp_realnvp.internal.job_environment import NUM_PROCESSES_VARIABLE, PROCESS_ID_VARIABLE, read_job_environment

__all__ = [
    "DEFAULT_SHUFFLE_BUFFER",
    "NUM_PROCESSES_VARIABLE",
    "PROCESS_ID_VARIABLE",
    "process_shard_from_env",
    "stream_dataset",
    "stream_image_files",
    "stream_image_folder",
    "stream_npz_shards",
    "stream_tfrecord_shards",
    "write_npz_shards",
    "write_tfrecord_shards",
]

DEFAULT_SHUFFLE_BUFFER = 10_000
"""Elements (file names, records or images) a streaming shuffle holds by default."""

_TFRECORD_SUFFIX = ".tfrecord"
_NPZ_SUFFIX = ".npz"
_ENCODED, _FORMAT, _FILENAME = "image/encoded", "image/format", "image/filename"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_GLOB_CHARACTERS = frozenset("*?[")


# ------------------------------------------------------------------ process sharding


def process_shard_from_env(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """This process' share of a distributed job, from Keras' environment variables.

    ``keras.distribution.initialize()`` joins processes named by
    ``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and
    ``KERAS_DISTRIBUTION_PROCESS_ID``; the last two say which share of the files
    this process reads. Unset, the process reads everything.

    Args:
        environ: the variables to read; ``None`` reads ``os.environ``.

    Returns:
        ``{"num_shards": n, "shard_index": i}``, ready to pass as keyword arguments to
        the streaming readers; ``{"num_shards": 1, "shard_index": 0}`` when neither
        variable is set.

    Raises:
        ValueError: naming the variables and their values when only one of the two
            is set, a value is not an integer, or the index is not in ``[0, n)``
            (``tfp_realnvp.internal.job_environment``, shared with the training run).
    """
    job = read_job_environment(environ, require_addresses=False)
    return {"num_shards": job.process_count, "shard_index": job.process_index}


# ----------------------------------------------------------------------- shared parts


def _check_stream_options(
    *, preset, image_size, batch_size, shuffle_buffer, num_shards, shard_index, flip
) -> tuple[tuple[int, int] | None, tuple[int, int]]:
    """Checks the options every reader takes; returns ``(size, (num_shards, index))``."""
    check_preset(preset)
    size = check_size(image_size, name="image_size")
    check_positive_int(batch_size, name="batch_size", allow_none=True)
    check_positive_int(shuffle_buffer, name="shuffle_buffer")
    shard = check_shard(num_shards, shard_index)
    if flip and batch_size is None:
        raise ValueError("flip=True needs batches; received batch_size=None.")
    return size, shard


def _check_share(files: Sequence[Any], num_shards: int, what: str) -> None:
    if len(files) < num_shards:
        raise ValueError(
            f"{len(files)} {what} cannot be shared among num_shards={num_shards} processes: "
            "every process needs at least one; write more, smaller shards."
        )


def _file_list(
    files: Any, num_shards: int, shard_index: int, *, shuffle: bool, seed: int | None, shuffle_buffer: int, repeat: bool
):
    """The file-name dataset of this process: sharded, then shuffled, then repeated.

    ``files`` is a list of names, or a tuple of equally long lists (names and what
    goes with each).
    """
    tf = require_tensorflow()

    slices = tuple(list(f) for f in files) if isinstance(files, tuple) else list(files)
    count = len(slices[0]) if isinstance(slices, tuple) else len(slices)
    dataset = tf.data.Dataset.from_tensor_slices(slices)
    if num_shards > 1:
        dataset = dataset.shard(num_shards, shard_index)
    if shuffle:
        share = len(range(shard_index, count, num_shards))
        dataset = dataset.shuffle(min(shuffle_buffer, share), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset


def _decoder(
    *, channels: int, size: tuple[int, int] | None, preset: str | None, stored_shape: tuple[int, int] | None, where: str
) -> Callable:
    """``decode(contents, name)``: PNG/JPEG bytes to a preprocessed ``uint8`` image.

    ``stored_shape`` is the ``(height, width)`` every image must have when there is no
    preset and no ``size``; a file that differs is an error naming it (``name``).
    """
    tf = require_tensorflow()
    preprocess = image_preprocessor(preset, size)

    def decode(contents, name):
        head = tf.strings.substr(contents, 0, len(_PNG_MAGIC))
        known = tf.logical_or(tf.io.is_jpeg(contents), tf.equal(head, _PNG_MAGIC))
        checked = tf.debugging.Assert(known, [f"not a PNG or JPEG image in {where}:", name])
        with tf.control_dependencies([checked]):
            image = tf.io.decode_image(contents, channels=channels, dtype=tf.uint8, expand_animations=False)
        if preprocess is not None:
            image = preprocess(image)
        else:
            height, width = stored_shape
            same = tf.reduce_all(tf.equal(tf.shape(image)[:2], [height, width]))
            checked = tf.debugging.Assert(
                same,
                [
                    f"images in {where} differ in size (the first is {height}x{width}; pass image_size= or preset=):",
                    name,
                    tf.shape(image),
                ],
            )
            with tf.control_dependencies([checked]):
                image = tf.identity(image)
        height, width = (size or (64, 64)) if preprocess is not None else stored_shape
        return tf.ensure_shape(image, [height, width, channels])

    return decode


# ---------------------------------------------------------------------- image folders


def stream_image_files(
    files: Sequence[PathLike],
    *,
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
):
    """Streams a list of PNG/JPEG files as ``uint8`` batches (see the module docstring).

    Args:
        files: the image files, in the order every process agrees on.
        preset: ``"celeba"``, ``"lsun"`` (see :data:`~tfp_realnvp.data.PRESETS`) or
            ``None``.
        image_size: the output side or ``(height, width)``: with a preset its output
            size (64 by default), otherwise a centered crop to this aspect ratio and a
            resize. ``None`` without a preset keeps the stored size, which every file
            must share with the first one.
        channels: 3 (RGB; grayscale files are expanded, alpha dropped) or 1.
        batch_size: images per batch; ``None`` yields single images ``[H, W, C]``.
        shuffle: shuffle the file names, reshuffled each epoch.
        shuffle_buffer: file names the shuffle holds (names are cheap; a buffer as
            large as the share is a full shuffle).
        seed: makes the order and the flips reproducible; ``None`` draws fresh ones.
        num_shards: processes sharing the files (see :func:`process_shard_from_env`).
        shard_index: this process' share, in ``[0, num_shards)``.
        repeat: repeat forever (pass ``steps_per_epoch`` to ``fit``).
        flip: flip each image left-right with probability 1/2 (needs ``batch_size``).
        drop_remainder: drop the last, smaller batch of an epoch.

    Returns:
        A ``tf.data.Dataset`` of ``uint8`` tensors ``[B, H, W, C]`` (``[H, W, C]`` when
        ``batch_size=None``).

    Raises:
        ValueError: naming the received value for a bad option, an empty file list or
            fewer files than ``num_shards``.
        FileNotFoundError: naming the first file when it does not exist.
    """
    size, (num_shards, shard_index) = _check_stream_options(
        preset=preset,
        image_size=image_size,
        batch_size=batch_size,
        shuffle_buffer=shuffle_buffer,
        num_shards=num_shards,
        shard_index=shard_index,
        flip=flip,
    )
    channels = check_channels(channels)
    if isinstance(files, (str, os.PathLike)):
        raise ValueError(
            f"files must be a list of image files; received the single path {str(files)!r} "
            "(use stream_image_folder for a folder)."
        )
    names = [os.fspath(f) for f in files]
    if not names:
        raise ValueError("files must name at least one image; received an empty list.")
    _check_share(names, num_shards, "image files")
    tf = require_tensorflow()
    stored_shape = None
    if preset is None and size is None:
        stored_shape = _stored_size(names[0])
    decode = _decoder(channels=channels, size=size, preset=preset, stored_shape=stored_shape, where="the image files")
    dataset = _file_list(
        names, num_shards, shard_index, shuffle=shuffle, seed=seed, shuffle_buffer=shuffle_buffer, repeat=repeat
    )
    dataset = dataset.map(lambda name: decode(tf.io.read_file(name), name), num_parallel_calls=tf.data.AUTOTUNE)
    return batch_flip_prefetch(dataset, batch_size=batch_size, drop_remainder=drop_remainder, flip=flip, seed=seed)


def _stored_size(file: str) -> tuple[int, int]:
    """``(height, width)`` of an image file, from its header (Pillow reads no pixels)."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(file):
        raise FileNotFoundError(f"image file not found: {file!r}.")
    try:
        with Image.open(file) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read the size of image {file!r}: {error}.") from error
    return height, width


def stream_image_folder(
    directory: PathLike,
    *,
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
):
    """Streams every PNG/JPEG file under ``directory`` (recursively) as ``uint8`` batches.

    The files are listed sorted by path (names only), split like
    :func:`~tfp_realnvp.data.load_images` splits a folder (the same fixed permutation,
    so ``split="test"`` streams the images that ``load_images(directory,
    split="test")`` loads) and read by :func:`stream_image_files`. For a CelebA
    folder, ``preset="celeba"`` gives the paper's 64x64 crops.

    Args:
        directory: the folder.
        split: ``"all"`` (default), ``"train"`` or ``"test"``.
        train_fraction: the ``"train"`` share of the files.
        preset: ``"celeba"``, ``"lsun"`` or ``None``.
        image_size: see :func:`stream_image_files`.
        channels: 3 (RGB) or 1 (grayscale).
        batch_size: images per batch; ``None`` yields single images.
        shuffle: shuffle the file names, reshuffled each epoch.
        shuffle_buffer: file names the shuffle holds.
        seed: makes the order and the flips reproducible.
        num_shards: processes sharing the files (see :func:`process_shard_from_env`).
        shard_index: this process' share, in ``[0, num_shards)``.
        repeat: repeat forever.
        flip: random left-right flips.
        drop_remainder: drop the last, smaller batch of an epoch.

    Returns:
        A ``tf.data.Dataset`` of ``uint8`` tensors ``[B, H, W, C]``.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: naming the folder when it holds no image, or the received value
            for a bad option.
    """
    return stream_image_files(
        folder_files(directory, split=split, train_fraction=train_fraction),
        preset=preset,
        image_size=image_size,
        channels=channels,
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


# ------------------------------------------------------------------------ shard files


def _shard_files(source: Any, suffix: str, *, prefix: str | None = None) -> list[str]:
    """The shard files that ``source`` names: a folder, a glob pattern, a file or a list."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        path = Path(text)
        if path.is_dir():
            pattern = f"{glob.escape(prefix)}-*{suffix}" if prefix else f"*{suffix}"
            files = sorted(str(p) for p in path.glob(pattern) if p.is_file())
            if not files:
                raise ValueError(f"no {pattern} files in {text!r}.")
            return files
        if path.is_file():
            return [text]
        if _GLOB_CHARACTERS & set(text):
            files = sorted(glob.glob(text))
            if not files:
                raise ValueError(f"no files match the pattern {text!r}.")
            return files
        raise FileNotFoundError(f"no such shard file or folder: {text!r}.")
    try:
        files = [os.fspath(f) for f in source]
    except TypeError:
        raise ValueError(
            f"shards must be a folder, a glob pattern, a file or a list of files; received {type(source).__name__}."
        ) from None
    if not files:
        raise ValueError("the list of shard files is empty.")
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise FileNotFoundError(f"shard file not found: {missing[0]!r}.")
    return files


def _existing_shards(directory: Path, prefix: str, suffix: str) -> list[Path]:
    return sorted(directory.glob(f"{glob.escape(prefix)}-?????-of-?????{suffix}"))


def _write_shards(
    records: Iterable[Any],
    directory: PathLike,
    *,
    prefix: str,
    suffix: str,
    images_per_shard: int,
    overwrite: bool,
    verbose: bool,
    write: Callable[[Path, list], None],
) -> list[Path]:
    """Writes ``records`` in shards of ``images_per_shard``, aside, then renames them.

    Shards are written into a hidden staging folder inside ``directory`` and renamed to
    ``{prefix}-{k:05d}-of-{n:05d}{suffix}`` once all are written, so a reader never
    sees a partial set. Existing shards of the same prefix are refused unless
    ``overwrite``; then the ones not replaced are removed.
    """
    if not isinstance(prefix, str) or not prefix or os.sep in prefix or "/" in prefix:
        raise ValueError(f"prefix must be a non-empty file name prefix; received {prefix!r}.")
    per_shard = check_positive_int(images_per_shard, name="images_per_shard")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    existing = _existing_shards(directory, prefix, suffix)
    if existing and not overwrite:
        raise FileExistsError(
            f"{str(directory)!r} already holds {len(existing)} {prefix}-*{suffix} shard(s) "
            f"such as {existing[0].name!r}; pass overwrite=True to replace them."
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix}-partial-", dir=directory))
    try:
        staged: list[Path] = []
        total = 0

        def flush(chunk):
            nonlocal total
            path = staging / f"{len(staged):05d}{suffix}"
            write(path, chunk)
            staged.append(path)
            total += len(chunk)
            if verbose:
                print(f"{prefix}: shard {len(staged)} written ({total} images so far)", file=sys.stderr, flush=True)

        chunk: list = []
        for record in records:
            chunk.append(record)
            if len(chunk) == per_shard:
                flush(chunk)
                chunk = []
        if chunk:
            flush(chunk)
        if not staged:
            raise ValueError("there are no images to write; received an empty input.")
        count = len(staged)
        final = [directory / f"{prefix}-{k:05d}-of-{count:05d}{suffix}" for k in range(count)]
        for source, target in zip(staged, final):
            os.replace(source, target)
        for old in existing:
            if old not in final:
                old.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


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
    if contents.startswith(_JPEG_MAGIC):
        return b"jpeg"
    if contents.startswith(_PNG_MAGIC):
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
        prefix: the shards' name prefix, e.g. ``"train"`` or ``"test"``.
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
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg'; received {image_format!r}.")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not (1 <= quality <= 100):
        raise ValueError(f"quality must be an int in [1, 100]; received {quality!r}.")
    tf = require_tensorflow()
    root = Path(images_or_files) if isinstance(images_or_files, (str, os.PathLike)) else None

    def example(item):
        kind, value = item
        if kind == "file":
            contents = value.read_bytes()
            fmt = _file_format(value, contents)
            name = str(value.relative_to(root) if root is not None else value.name)
        else:
            if image_format == "png":
                contents = tf.io.encode_png(value).numpy()
            else:
                if value.shape[-1] not in (1, 3):
                    raise ValueError(
                        f"JPEG holds 1 or 3 channels; received an image of shape "
                        f"{list(value.shape)} (use image_format='png')."
                    )
                contents = tf.io.encode_jpeg(value, quality=int(quality)).numpy()
            fmt, name = image_format.encode(), ""
        features = {
            _ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[contents])),
            _FORMAT: tf.train.Feature(bytes_list=tf.train.BytesList(value=[fmt])),
            _FILENAME: tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
        }
        return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()

    def write(path: Path, records: list) -> None:
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in records:
                writer.write(record)

    records = (example(item) for item in _image_items(images_or_files))
    return _write_shards(
        records,
        directory,
        prefix=prefix,
        suffix=_TFRECORD_SUFFIX,
        images_per_shard=images_per_shard,
        overwrite=overwrite,
        verbose=verbose,
        write=write,
    )


def stream_tfrecord_shards(
    shards: Any,
    *,
    prefix: str | None = None,
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
        preset: ``"celeba"``, ``"lsun"`` or ``None``.
        image_size: see :func:`stream_image_files`.
        channels: 3 (RGB) or 1 (grayscale).
        batch_size: images per batch; ``None`` yields single images.
        shuffle: shuffle the shard order and the records, reshuffled each epoch.
        shuffle_buffer: serialized records the shuffle holds.
        seed: makes the order and the flips reproducible.
        num_shards: processes sharing the files (see :func:`process_shard_from_env`).
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
    size, (num_shards, shard_index) = _check_stream_options(
        preset=preset,
        image_size=image_size,
        batch_size=batch_size,
        shuffle_buffer=shuffle_buffer,
        num_shards=num_shards,
        shard_index=shard_index,
        flip=flip,
    )
    channels = check_channels(channels)
    cycle_length = check_positive_int(cycle_length, name="cycle_length")
    files = _shard_files(shards, _TFRECORD_SUFFIX, prefix=prefix)
    _check_share(files, num_shards, "TFRecord shard files")
    tf = require_tensorflow()
    features = {
        _ENCODED: tf.io.FixedLenFeature([], tf.string),
        _FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    where = f"the TFRecord shards {files[0]!r}, ..." if len(files) > 1 else repr(files[0])

    def parse(record):
        example = tf.io.parse_single_example(record, features)
        return example[_ENCODED], example[_FILENAME]

    stored_shape = None
    if preset is None and size is None:
        first = next(iter(tf.data.TFRecordDataset(files[0]).take(1)), None)
        if first is None:
            raise ValueError(f"the TFRecord shard {files[0]!r} holds no record.")
        contents, _ = parse(first)
        stored_shape = tuple(tf.io.decode_image(contents, expand_animations=False).shape[:2])
    decode = _decoder(channels=channels, size=size, preset=preset, stored_shape=stored_shape, where=where)
    dataset = _file_list(
        files, num_shards, shard_index, shuffle=shuffle, seed=seed, shuffle_buffer=len(files), repeat=repeat
    )
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(cycle_length, len(files)) if shuffle else 1,
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if shuffle:
        dataset = dataset.shuffle(
            shuffle_buffer, seed=None if seed is None else seed + 1, reshuffle_each_iteration=True
        )
    dataset = dataset.map(lambda record: decode(*parse(record)), num_parallel_calls=tf.data.AUTOTUNE)
    return batch_flip_prefetch(dataset, batch_size=batch_size, drop_remainder=drop_remainder, flip=flip, seed=seed)


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
        prefix: the shards' name prefix, e.g. ``"train"`` or ``"test"``.
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
    save = np.savez_compressed if compress else np.savez
    items = (
        check_images(images)
        if isinstance(images, np.ndarray)
        else (check_images(np.asarray(image)[np.newaxis], name="image")[0] for image in images)
    )

    def write(path: Path, chunk: list) -> None:
        shapes = sorted({image.shape for image in chunk})
        if len(shapes) > 1:
            raise ValueError(f"the images of one shard must share one shape; received {shapes}.")
        with open(path, "wb") as handle:
            save(handle, images=np.stack(chunk))

    return _write_shards(
        items,
        directory,
        prefix=prefix,
        suffix=_NPZ_SUFFIX,
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
        preset: ``"celeba"``, ``"lsun"`` or ``None``.
        image_size: see :func:`stream_image_files`.
        batch_size: images per batch; ``None`` yields single images.
        shuffle: shuffle the shard order and the images, reshuffled each epoch.
        shuffle_buffer: images the shuffle holds.
        seed: makes the order and the flips reproducible.
        num_shards: processes sharing the files (see :func:`process_shard_from_env`).
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
    size, (num_shards, shard_index) = _check_stream_options(
        preset=preset,
        image_size=image_size,
        batch_size=batch_size,
        shuffle_buffer=shuffle_buffer,
        num_shards=num_shards,
        shard_index=shard_index,
        flip=flip,
    )
    cycle_length = check_positive_int(cycle_length, name="cycle_length")
    files = _shard_files(shards, _NPZ_SUFFIX, prefix=prefix)
    _check_share(files, num_shards, ".npz shard files")
    headers = [_npz_header(f, key) for f in files]
    channels = {shape[3] for _, shape in headers}
    sizes = {shape[1:3] for _, shape in headers}
    if len(channels) > 1 or (preset is None and size is None and len(sizes) > 1):
        shown = sorted({shape[1:] for _, shape in headers})
        raise ValueError(
            f"the .npz shards {files[0]!r}, ... hold images of shapes {[list(s) for s in shown]}; "
            "pass image_size= or preset= to bring them to one size (channels must agree)."
        )
    tf = require_tensorflow()
    (channel_count,) = channels
    stored = next(iter(sizes)) if len(sizes) == 1 else (None, None)
    signature = tf.TensorSpec([*stored, channel_count], tf.uint8)

    def images_of(path, array_key):
        path = path.decode() if isinstance(path, bytes) else str(path)
        array_key = array_key.decode() if isinstance(array_key, bytes) else str(array_key)
        with np.load(path, allow_pickle=False) as archive:
            array = archive[array_key]
        yield from check_images(array, name=f"{os.path.basename(path)}[{array_key!r}]")

    def read(path, array_key):
        return tf.data.Dataset.from_generator(images_of, args=(path, array_key), output_signature=signature)

    keys = [array_key for array_key, _ in headers]
    dataset = _file_list(
        (files, keys), num_shards, shard_index, shuffle=shuffle, seed=seed, shuffle_buffer=len(files), repeat=repeat
    )
    dataset = dataset.interleave(
        read,
        cycle_length=min(cycle_length, len(files)) if shuffle else 1,
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if not repeat:
        share = sum(shape[0] for _, shape in headers[shard_index::num_shards])
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(share))
    if shuffle:
        dataset = dataset.shuffle(
            shuffle_buffer, seed=None if seed is None else seed + 1, reshuffle_each_iteration=True
        )
    preprocess = image_preprocessor(preset, size)
    if preprocess is not None:
        height, width = size or (64, 64)
        dataset = dataset.map(
            lambda image: tf.ensure_shape(preprocess(image), [height, width, channel_count]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return batch_flip_prefetch(dataset, batch_size=batch_size, drop_remainder=drop_remainder, flip=flip, seed=seed)


# ------------------------------------------------------------------------ dispatching


def stream_dataset(
    source: Any,
    *,
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
):
    """Streams any on-disk source, picking the reader from what ``source`` holds.

    * a folder with ``*.tfrecord`` files: :func:`stream_tfrecord_shards`; a ``split``
      other than ``"all"`` reads the shards named ``{split}-*.tfrecord``;
    * a folder with ``*.npz`` files: :func:`stream_npz_shards`, split the same way;
    * any other folder: :func:`stream_image_folder` (recursive PNG/JPEG), split by
      ``train_fraction``;
    * a ``.tfrecord`` / ``.npz`` file or a glob pattern of them: its reader, all of it.

    Args:
        source: a folder, a shard file or a glob pattern.
        split: ``"all"``, or the split to read (see above).
        train_fraction: the ``"train"`` share of an image folder.
        preset: ``"celeba"``, ``"lsun"`` or ``None``.
        image_size: see :func:`stream_image_files`.
        channels: 3 or 1 (image files and TFRecords; ``.npz`` keeps its own).
        batch_size: images per batch; ``None`` yields single images.
        shuffle: shuffle, reshuffled each epoch.
        shuffle_buffer: elements the shuffle holds.
        seed: makes the order and the flips reproducible.
        num_shards: processes sharing the files (see :func:`process_shard_from_env`).
        shard_index: this process' share, in ``[0, num_shards)``.
        repeat: repeat forever.
        flip: random left-right flips.
        drop_remainder: drop the last, smaller batch of an epoch.

    Returns:
        A ``tf.data.Dataset`` of ``uint8`` tensors ``[B, H, W, C]``.

    Raises:
        FileNotFoundError: naming ``source`` when it does not exist.
        ValueError: naming the received value for a bad option, a folder with both
            kinds of shards, or a split that no shard file is named after.
    """
    options = dict(
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
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"source must be a folder, a shard file or a glob pattern; received {source!r}.")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string; received {split!r}.")
    path = Path(source)
    text = os.fspath(source)
    if path.is_dir():
        tfrecords = sorted(path.glob(f"*{_TFRECORD_SUFFIX}"))
        npzs = sorted(path.glob(f"*{_NPZ_SUFFIX}"))
        if tfrecords and npzs:
            raise ValueError(
                f"{text!r} holds both .tfrecord and .npz files; pass one kind of shard "
                "(a glob pattern such as 'folder/*.tfrecord')."
            )
        if tfrecords or npzs:
            found = tfrecords or npzs
            prefix = None if split == "all" else split
            if prefix and not any(p.name.startswith(f"{prefix}-") for p in found):
                names = sorted({p.name.split("-", 1)[0] for p in found})
                raise ValueError(
                    f"no shard of split {split!r} ({prefix}-*) in {text!r}; its shards are "
                    f"named {names}-*; pass one of those, or 'all'."
                )
            if tfrecords:
                return stream_tfrecord_shards(source, prefix=prefix, channels=channels, **options)
            return stream_npz_shards(source, prefix=prefix, **options)
        return stream_image_folder(source, split=split, train_fraction=train_fraction, channels=channels, **options)
    if not path.exists() and not _GLOB_CHARACTERS & set(text):
        raise FileNotFoundError(f"no such file or folder: {text!r}.")
    if split != "all":
        raise ValueError(f"split applies to folders; received split={split!r} for {text!r} (pass 'all').")
    if text.endswith(_TFRECORD_SUFFIX):
        return stream_tfrecord_shards(source, channels=channels, **options)
    if text.endswith(_NPZ_SUFFIX):
        return stream_npz_shards(source, **options)
    raise ValueError(
        f"cannot stream {text!r}: expected an image folder, a folder of .tfrecord or .npz "
        "shards, or such a shard file or glob pattern."
    )
