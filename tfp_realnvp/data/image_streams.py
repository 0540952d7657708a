"""Folders and lists of PNG/JPEG files, streamed through ``tf.data``.

Only the file names are held: this process keeps its share of them, shuffles the
names (cheap, so the buffer can be large), then reads and decodes the files in
parallel, a few batches ahead of training. See :mod:`tfp_realnvp.data.streaming` for
the order of the steps and the presets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from tfp_realnvp.data.checks import PathLike, Size, check_channels, require_tensorflow
from tfp_realnvp.data.file_batches import folder_files
from tfp_realnvp.data.stream_common import DEFAULT_SHUFFLE_BUFFER, ReaderOptions, check_share, image_decoder

__all__ = ["stream_image_files", "stream_image_folder"]


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
    """Streams a list of PNG/JPEG files as ``uint8`` batches (see :mod:`tfp_realnvp.data.streaming`).

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
        num_shards: processes sharing the files (see :func:`~tfp_realnvp.data.process_shard_from_env`).
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
    names = _file_names(files)
    check_share(names, options.num_shards, "image files")
    tf = require_tensorflow()
    stored_shape = _stored_size(names[0]) if options.keeps_stored_size else None
    decode = image_decoder(options, channels=channels, stored_shape=stored_shape, where="the image files")
    dataset = options.file_names(names).map(
        lambda name: decode(tf.io.read_file(name), name), num_parallel_calls=tf.data.AUTOTUNE
    )
    return options.batched(dataset)


def _file_names(files: Sequence[PathLike]) -> list[str]:
    """The names of ``files``: a list that is not empty, not a single path."""
    if isinstance(files, (str, os.PathLike)):
        raise ValueError(
            f"files must be a list of image files; received the single path {str(files)!r} "
            "(use stream_image_folder for a folder)."
        )
    names = [os.fspath(f) for f in files]
    if not names:
        raise ValueError("files must name at least one image; received an empty list.")
    return names


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
        num_shards: processes sharing the files (see :func:`~tfp_realnvp.data.process_shard_from_env`).
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
