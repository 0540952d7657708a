"""Image folders streamed as NumPy batches, without TensorFlow (the JAX backend's path).

:class:`FolderBatches` reads PNG/JPEG files a batch at a time: the file names are all it
holds, a pool of threads decodes the files of the next few batches (Pillow releases the
GIL while it decodes), and at most ``prefetch`` decoded batches wait at any time, so
memory stays flat however large the folder. Pass ``p`` visits this process's files in
the order of a permutation drawn from ``(seed, p)``; a multi-process job shares the
files as ``files[shard_index::num_shards]``, so each process reads only its own share.

The presets are the paper's, as in the ``tf.data`` readers of ``streaming``: ``celeba``
takes the centered 148x148 window and resizes it to 64x64, ``lsun`` resizes the smaller
side to 96 and takes the centered 64x64 window (both resize bilinearly with
antialiasing, as ``tf.image.resize(..., antialias=True)`` does, so the two readers agree
to a few grey levels).
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from tfp_realnvp.data.checks import (
    Size,
    check_channels,
    check_shard,
    check_size,
    split_indices,
)
from tfp_realnvp.data.local import list_image_files
from tfp_realnvp.data.resizing import (
    CELEBA_CROP,
    LSUN_SHORT_SIDE,
    PRESET_IMAGE_SIZE,
    center_crop_resize_pil,
    check_preset,
)
from tfp_realnvp.internal.arguments import check_int

__all__ = ["FolderBatches", "decode_image_file", "folder_files"]


def _center_window(image, height: int, width: int):
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def decode_image_file(
    path, *, preset: str | None = None, image_size: Size | None = None, channels: int = 3
) -> np.ndarray:
    """Decodes one PNG/JPEG file to ``uint8`` ``[H, W, channels]``, preprocessed.

    Args:
        path: the file.
        preset: ``"celeba"``, ``"lsun"`` or ``None``.
        image_size: without a preset, center crop to this aspect ratio and resize
            (bicubic, as :func:`~tfp_realnvp.data.load_image_folder`); with a preset,
            the preset's output size (default 64).
        channels: 3 (RGB) or 1 (grayscale).

    Raises:
        ValueError: naming the file when it cannot be decoded or is smaller than the
            preset's window.
    """
    from PIL import Image, UnidentifiedImageError

    preset = check_preset(preset)
    size = check_size(image_size, name="image_size")
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB" if channels == 3 else "L")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot decode image {str(path)!r}: {error}.") from None
    if preset is not None:
        out_h, out_w = size or (PRESET_IMAGE_SIZE, PRESET_IMAGE_SIZE)
        if preset == "celeba":
            if min(image.height, image.width) < CELEBA_CROP:
                raise ValueError(
                    f"the celeba preset crops {CELEBA_CROP}x{CELEBA_CROP}; {str(path)!r} is only "
                    f"{image.height}x{image.width}."
                )
            image = _center_window(image, CELEBA_CROP, CELEBA_CROP).resize((out_w, out_h), Image.Resampling.BILINEAR)
        else:
            scale = LSUN_SHORT_SIDE / min(image.height, image.width)
            resized = (max(out_w, round(image.width * scale)), max(out_h, round(image.height * scale)))
            image = _center_window(image.resize(resized, Image.Resampling.BILINEAR), out_h, out_w)
    elif size is not None:
        image = center_crop_resize_pil(image, size)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


class FolderBatches:
    """An iterator of ``uint8`` batches ``[B, H, W, C]`` decoded from image files.

    Args:
        files: the image files (for example ``list_image_files(folder)``, or one split).
        batch_size: images per batch of this process.
        preset: ``"celeba"``, ``"lsun"`` or ``None`` (see :func:`decode_image_file`).
        image_size: see :func:`decode_image_file`.
        channels: 3 or 1.
        shuffle: visit the files in a new random order each pass (else sorted order).
        seed: seed of the orders and of the flips.
        num_shards: processes that share the files.
        shard_index: this process, in ``[0, num_shards)``.
        repeat: pass after pass without end (else one pass; the last batch may be
            smaller).
        flip: flip each image left-right with probability 1/2.
        workers: decoding threads (default: the CPU count, at most 16).
        prefetch: decoded batches that may wait ahead of the consumer.

    Raises:
        ValueError: naming a bad option, or a share without files.
    """

    def __init__(
        self,
        files: Sequence,
        *,
        batch_size: int,
        preset: str | None = None,
        image_size: Size | None = None,
        channels: int = 3,
        shuffle: bool = True,
        seed: int = 0,
        num_shards: int = 1,
        shard_index: int = 0,
        repeat: bool = False,
        flip: bool = False,
        workers: int | None = None,
        prefetch: int = 2,
    ):
        self.batch_size = check_int(batch_size, name="batch_size")
        check_preset(preset)
        check_size(image_size, name="image_size")
        self.channels = check_channels(channels)
        num_shards, shard_index = check_shard(num_shards, shard_index)
        self.files = [str(f) for f in list(files)[shard_index::num_shards]]
        if not self.files:
            raise ValueError(
                f"{len(files)} file(s) cannot be shared among num_shards={num_shards} processes: "
                f"share {shard_index} is empty."
            )
        if repeat and len(self.files) < self.batch_size:
            # An endless stream yields full batches only: it could never yield one.
            raise ValueError(
                f"share {shard_index} holds {len(self.files)} file(s), fewer than batch_size={self.batch_size}; "
                "an endless stream needs at least one full batch per pass."
            )
        self.preset, self.image_size = preset, image_size
        self.shuffle, self.seed, self.repeat, self.flip = bool(shuffle), int(seed), bool(repeat), bool(flip)
        self.workers = int(workers or min(16, os.cpu_count() or 1))
        self.prefetch = check_int(prefetch, name="prefetch")

    def _order(self, data_pass: int) -> list[str]:
        if not self.shuffle:
            return self.files
        permutation = np.random.default_rng([self.seed % 2**32, data_pass]).permutation(len(self.files))
        return [self.files[i] for i in permutation]

    def _batch_files(self) -> Iterator[tuple[int, list[str]]]:
        step = 0
        for data_pass in itertools.count() if self.repeat else (0,):
            order = self._order(data_pass)
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                if self.repeat and len(chunk) < self.batch_size:
                    break  # every batch full when the stream has no end
                yield step, chunk
                step += 1

    def _decode(self, file: str) -> np.ndarray:
        return decode_image_file(file, preset=self.preset, image_size=self.image_size, channels=self.channels)

    def _assemble(self, step: int, images: list[np.ndarray], files: list[str]) -> np.ndarray:
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise ValueError(
                f"images of different sizes {sorted(shapes)} in one batch (first file {files[0]!r}); "
                "pass image_size= or a preset."
            )
        batch = np.stack(images)
        if self.flip:
            flips = np.random.default_rng([self.seed % 2**32, step, 1]).random(len(batch)) < 0.5
            batch = np.where(flips[:, None, None, None], batch[:, :, ::-1], batch)
        return batch

    def __iter__(self) -> Iterator[np.ndarray]:
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            pending = collections.deque()
            chunks = self._batch_files()
            for step, files in itertools.islice(chunks, self.prefetch):
                pending.append((step, files, [pool.submit(self._decode, f) for f in files]))
            while pending:
                step, files, futures = pending.popleft()
                following = next(chunks, None)
                if following is not None:
                    pending.append((following[0], following[1], [pool.submit(self._decode, f) for f in following[1]]))
                yield self._assemble(step, [future.result() for future in futures], files)


def folder_files(directory, *, split: str = "all", train_fraction: float = 0.9) -> list[Path]:
    """The files of ``split`` of an image folder, split as ``load_images`` splits it."""
    files = list_image_files(directory)
    return [files[i] for i in split_indices(len(files), split, train_fraction)]
