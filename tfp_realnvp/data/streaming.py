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

This module holds :func:`stream_dataset` and re-exports the readers, one module per
kind of source: ``image_streams`` (image files and folders), ``tfrecord_shards``,
``npz_shards``; ``stream_common`` holds what they share (options, process shares, file
lists, decoding) and ``shard_files`` finds and writes shard files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tfp_realnvp.data.checks import Size
from tfp_realnvp.data.image_streams import stream_image_files, stream_image_folder
from tfp_realnvp.data.npz_shards import stream_npz_shards, write_npz_shards
from tfp_realnvp.data.shard_files import NPZ_SUFFIX, TFRECORD_SUFFIX, is_glob_pattern
from tfp_realnvp.data.stream_common import (
    DEFAULT_SHUFFLE_BUFFER,
    NUM_PROCESSES_VARIABLE,
    PROCESS_ID_VARIABLE,
    process_shard_from_env,
)
from tfp_realnvp.data.tfrecord_shards import stream_tfrecord_shards, write_tfrecord_shards

# The shard name prefixes that name splits; a folder with none of them holds one set.
_SPLIT_PREFIXES = ("train", "test")

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
      other than ``"all"`` reads the shards named ``{split}-*.tfrecord``, and when no
      shard is named after a split (``train-*``, ``test-*``; e.g. shards written with
      the default prefix ``images``) the shards are one set whose records are split
      by ``train_fraction`` (a fixed split by record, about that share in ``"train"``);
    * a folder with ``*.npz`` files: :func:`stream_npz_shards`, split the same way;
    * any other folder: :func:`stream_image_folder` (recursive PNG/JPEG), split by
      ``train_fraction``;
    * a ``.tfrecord`` / ``.npz`` file or a glob pattern of them: its reader, all of it.

    Args:
        source: a folder, a shard file or a glob pattern.
        split: ``"all"``, or the split to read (see above).
        train_fraction: the ``"train"`` share of an image folder or of a folder of
            shards without split names.
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
    if not path.is_dir():
        return _stream_shard_files(source, split=split, channels=channels, options=options)
    kind, prefix = _shard_folder_kind(path, split)
    if kind is not None:
        # Shards named after the split are that split; shards without split names are one set.
        shares = dict(prefix=prefix, split="all" if prefix or split == "all" else split, train_fraction=train_fraction)
        if kind == TFRECORD_SUFFIX:
            return stream_tfrecord_shards(source, channels=channels, **shares, **options)
        return stream_npz_shards(source, **shares, **options)
    return stream_image_folder(source, split=split, train_fraction=train_fraction, channels=channels, **options)


def _shard_folder_kind(folder: Path, split: str) -> tuple[str | None, str | None]:
    """``(suffix, prefix)`` of the shards of ``split`` in ``folder``; ``(None, None)``
    when it holds none.

    The prefix is ``split`` when shards are named ``{split}-*``, and ``None`` for
    ``"all"`` and for a folder none of whose shards is named after a split
    (``train-*``, ``test-*``: one set, which the caller splits by record).

    Raises:
        ValueError: naming the folder when it holds both kinds of shard, or shards
            named after splits but none after ``split``.
    """
    found = {suffix: sorted(folder.glob(f"*{suffix}")) for suffix in (TFRECORD_SUFFIX, NPZ_SUFFIX)}
    kinds = [suffix for suffix, files in found.items() if files]
    if not kinds:
        return None, None
    if len(kinds) > 1:
        raise ValueError(
            f"{str(folder)!r} holds both .tfrecord and .npz files; pass one kind of shard "
            "(a glob pattern such as 'folder/*.tfrecord')."
        )
    (kind,) = kinds
    names = sorted({p.name.split("-", 1)[0] for p in found[kind]})
    if split == "all" or not any(name in _SPLIT_PREFIXES for name in names):
        return kind, None
    if split not in names:
        raise ValueError(
            f"no shard of split {split!r} ({split}-*) in {str(folder)!r}; its shards are named {names}-*. "
            f"Write the {split} images there with prefix={split!r}, or name no shard after a split "
            f"(the default prefix, 'images') to split one set of shards by record."
        )
    return kind, split


def _stream_shard_files(source: Any, *, split: str, channels: int, options: dict[str, Any]):
    """Streams a shard file or a glob pattern of them, with the reader its suffix names."""
    text = os.fspath(source)
    if not Path(source).exists() and not is_glob_pattern(text):
        raise FileNotFoundError(f"no such file or folder: {text!r}.")
    if split != "all":
        raise ValueError(f"split applies to folders; received split={split!r} for {text!r} (pass 'all').")
    if text.endswith(TFRECORD_SUFFIX):
        return stream_tfrecord_shards(source, channels=channels, **options)
    if text.endswith(NPZ_SUFFIX):
        return stream_npz_shards(source, **options)
    raise ValueError(
        f"cannot stream {text!r}: expected an image folder, a folder of .tfrecord or .npz "
        "shards, or such a shard file or glob pattern."
    )
