"""What every streaming reader shares: options, this process' share, file lists, decoding.

The readers of :mod:`tfp_realnvp.data.streaming` (image files, TFRecord shards, ``.npz``
shards) check the same options, keep the same share of the file list, shuffle and
repeat it the same way and decode PNG/JPEG bytes with the same checks; this module
holds those parts once.

Public (re-exported by :mod:`tfp_realnvp.data`): :func:`process_shard_from_env`, Keras' two
job variable names and :data:`~tfp_realnvp.data.DEFAULT_SHUFFLE_BUFFER` (defined with the
batching pipeline). Shared by the reader
modules only: :class:`ReaderOptions`, :func:`check_share`, :func:`read_shards`,
:func:`record_split`, :func:`image_decoder`, :func:`decoded_shape`, :data:`PNG_MAGIC` and :data:`JPEG_MAGIC`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tfp_realnvp.data.checks import (
    Size,
    check_shard,
    check_size,
    check_split,
    check_train_fraction,
    require_tensorflow,
)
from tfp_realnvp.data.pipeline import DEFAULT_SHUFFLE_BUFFER, batch_flip_prefetch
from tfp_realnvp.data.resizing import PRESET_IMAGE_SIZE, check_preset, image_preprocessor
from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.internal.job_environment import NUM_PROCESSES_VARIABLE, PROCESS_ID_VARIABLE, read_job_environment

__all__ = ["DEFAULT_SHUFFLE_BUFFER", "NUM_PROCESSES_VARIABLE", "PROCESS_ID_VARIABLE", "process_shard_from_env"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
"""The first bytes of every PNG file."""

JPEG_MAGIC = b"\xff\xd8\xff"
"""The first bytes of every JPEG file."""

# Hash buckets of the record split of shards without split names (see ``record_split``).
_SPLIT_BUCKETS = 1_000_000


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


@dataclass(frozen=True)
class ReaderOptions:
    """The options every streaming reader takes, checked (see :meth:`check`).

    Attributes:
        preset: ``"celeba"``, ``"lsun"`` or ``None``.
        size: the output ``(height, width)``, or ``None``.
        batch_size: images per batch, or ``None`` for single images.
        shuffle: whether to shuffle, reshuffled each epoch.
        shuffle_buffer: elements the element shuffle holds.
        seed: the seed of the shuffles and flips, or ``None``.
        num_shards: processes sharing the files.
        shard_index: this process' share, in ``[0, num_shards)``.
        repeat: whether to repeat forever.
        flip: whether to flip left-right at random.
        drop_remainder: whether to drop the last, smaller batch.
    """

    preset: str | None
    size: tuple[int, int] | None
    batch_size: int | None
    shuffle: bool
    shuffle_buffer: int
    seed: int | None
    num_shards: int
    shard_index: int
    repeat: bool
    flip: bool
    drop_remainder: bool

    @classmethod
    def check(
        cls,
        *,
        preset: str | None,
        image_size: Size | None,
        batch_size: int | None,
        shuffle: bool,
        shuffle_buffer: int,
        seed: int | None,
        num_shards: int,
        shard_index: int,
        repeat: bool,
        flip: bool,
        drop_remainder: bool,
    ) -> ReaderOptions:
        """Checks the reader options (the readers' keyword arguments of the same names).

        Raises:
            ValueError: naming the received value for a bad preset, size, batch size,
                buffer or share, or ``flip`` without batches.
        """
        preset = check_preset(preset)
        size = check_size(image_size, name="image_size")
        batch_size = check_int(batch_size, name="batch_size", allow_none=True)
        shuffle_buffer = check_int(shuffle_buffer, name="shuffle_buffer")
        num_shards, shard_index = check_shard(num_shards, shard_index)
        if flip and batch_size is None:
            raise ValueError("flip=True needs batches; received batch_size=None.")
        return cls(
            preset=preset,
            size=size,
            batch_size=batch_size,
            shuffle=bool(shuffle),
            shuffle_buffer=shuffle_buffer,
            seed=seed,
            num_shards=num_shards,
            shard_index=shard_index,
            repeat=bool(repeat),
            flip=bool(flip),
            drop_remainder=bool(drop_remainder),
        )

    @property
    def keeps_stored_size(self) -> bool:
        """Whether images keep their stored size (no preset, no ``image_size``)."""
        return self.preset is None and self.size is None

    @property
    def output_size(self) -> tuple[int, int] | None:
        """The ``(height, width)`` of a preprocessed image; ``None`` when sizes are kept."""
        if self.keeps_stored_size:
            return None
        return self.size or (PRESET_IMAGE_SIZE, PRESET_IMAGE_SIZE)

    def file_names(self, files: Any, *, shuffle_buffer: int | None = None):
        """The dataset of this process' file names: sharded, then shuffled, then repeated.

        Args:
            files: a list of names, or a tuple of equally long lists (names and what goes
                with each).
            shuffle_buffer: the names the shuffle holds; ``None`` uses
                :attr:`shuffle_buffer`.
        """
        tf = require_tensorflow()

        slices = tuple(list(f) for f in files) if isinstance(files, tuple) else list(files)
        count = len(slices[0]) if isinstance(slices, tuple) else len(slices)
        dataset = tf.data.Dataset.from_tensor_slices(slices)
        if self.num_shards > 1:
            dataset = dataset.shard(self.num_shards, self.shard_index)
        if self.shuffle:
            share = len(range(self.shard_index, count, self.num_shards))
            buffer = self.shuffle_buffer if shuffle_buffer is None else shuffle_buffer
            dataset = dataset.shuffle(min(buffer, share), seed=self.seed, reshuffle_each_iteration=True)
        if self.repeat:
            dataset = dataset.repeat()
        return dataset

    def shuffled(self, dataset):
        """``dataset`` through the bounded element shuffle, when shuffling."""
        if not self.shuffle:
            return dataset
        seed = None if self.seed is None else self.seed + 1
        return dataset.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    def batched(self, dataset):
        """``dataset`` batched, flipped when asked, and prefetched."""
        return batch_flip_prefetch(
            dataset, batch_size=self.batch_size, drop_remainder=self.drop_remainder, flip=self.flip, seed=self.seed
        )


def check_share(files: Sequence[Any], num_shards: int, what: str) -> None:
    """Checks that every one of ``num_shards`` processes gets at least one of ``files``.

    Raises:
        ValueError: naming the file count, ``what`` they are, and ``num_shards``.
    """
    if len(files) < num_shards:
        raise ValueError(
            f"{len(files)} {what} cannot be shared among num_shards={num_shards} processes: "
            "every process needs at least one; write more, smaller shards."
        )


def record_split(read: Callable, split: str, train_fraction: float) -> Callable:
    """``read`` restricted to the records of ``split``, for shards that are one set.

    Record ``i`` of the shard file ``name`` belongs to ``"train"`` when the hash of
    ``name:i`` (the file's base name, so moving the folder keeps the split) falls in
    the first ``train_fraction`` of the hash range, else to ``"test"``: a fixed split,
    independent of the shuffles, the order of the files and the processes sharing
    them, that puts about ``train_fraction`` of the records in ``"train"``.

    Args:
        read: maps one element of :meth:`ReaderOptions.file_names` (a file name, or a
            tuple whose first item is the file name) to the dataset of its records.
        split: ``"train"``, ``"test"`` or ``"all"`` (``read`` unchanged).
        train_fraction: the share of records in ``"train"``, in ``(0, 1)``.

    Raises:
        ValueError: naming a bad ``split`` or ``train_fraction``.
    """
    check_split(split)
    threshold = int(round(check_train_fraction(train_fraction) * _SPLIT_BUCKETS))
    if split == "all":
        return read
    tf = require_tensorflow()

    def read_split(*element):
        name = tf.strings.regex_replace(element[0], r".*[/\\]", "")

        def keep(index, _):
            key = tf.strings.join([name, tf.strings.as_string(index)], separator=":")
            train = tf.strings.to_hash_bucket_fast(key, _SPLIT_BUCKETS) < threshold
            return train if split == "train" else tf.logical_not(train)

        return read(*element).enumerate().filter(keep).map(lambda _, record: record)

    return read_split


def read_shards(files: Any, read: Callable, options: ReaderOptions, *, cycle_length: int, count: int | None = None):
    """The elements of this process' shard files, interleaved and shuffled.

    The share of ``files`` is read in shuffled order, ``cycle_length`` files at a time
    (one after the other, in the stored order, without shuffling); the elements then
    pass the bounded element shuffle.

    Args:
        files: the shard files, or a tuple of the files and what goes with each.
        read: maps one element of :meth:`ReaderOptions.file_names` to a dataset.
        options: the checked reader options.
        cycle_length: files read at the same time when shuffling.
        count: the elements of this process' share, when known (it makes the length of
            a dataset that does not repeat known).
    """
    tf = require_tensorflow()

    file_count = len(files[0]) if isinstance(files, tuple) else len(files)
    dataset = options.file_names(files, shuffle_buffer=file_count).interleave(
        read,
        cycle_length=min(cycle_length, file_count) if options.shuffle else 1,
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if count is not None and not options.repeat:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    return options.shuffled(dataset)


def _decoded(tf, contents, name, *, channels: int, where: str):
    """PNG/JPEG ``contents`` decoded to ``uint8``, or an error naming the file ``name``."""
    head = tf.strings.substr(contents, 0, len(PNG_MAGIC))
    known = tf.logical_or(tf.io.is_jpeg(contents), tf.equal(head, PNG_MAGIC))
    checked = tf.debugging.Assert(known, [f"not a PNG or JPEG image in {where}:", name])
    with tf.control_dependencies([checked]):
        return tf.io.decode_image(contents, channels=channels, dtype=tf.uint8, expand_animations=False)


def _with_stored_size(tf, image, name, *, stored_shape: tuple[int, int], where: str):
    """``image``, or an error naming the file ``name`` when its size is not ``stored_shape``."""
    height, width = stored_shape
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], [height, width]))
    message = f"images in {where} differ in size (the first is {height}x{width}; pass image_size= or preset=):"
    checked = tf.debugging.Assert(same, [message, name, tf.shape(image)])
    with tf.control_dependencies([checked]):
        return tf.identity(image)


def image_decoder(
    options: ReaderOptions, *, channels: int, stored_shape: tuple[int, int] | None, where: str
) -> Callable:
    """``decode(contents, name)``: PNG/JPEG bytes to a preprocessed ``uint8`` image.

    Args:
        options: the checked reader options (their preset and size).
        channels: the channels to decode to, 1 or 3.
        stored_shape: the ``(height, width)`` every image must have when sizes are kept
            (no preset, no size); a file that differs is an error naming it (``name``).
        where: the source, for the error messages.
    """
    tf = require_tensorflow()
    preprocess = image_preprocessor(options.preset, options.size)
    height, width = options.output_size or stored_shape

    def decode(contents, name):
        image = _decoded(tf, contents, name, channels=channels, where=where)
        if preprocess is not None:
            image = preprocess(image)
        else:
            image = _with_stored_size(tf, image, name, stored_shape=stored_shape, where=where)
        return tf.ensure_shape(image, [height, width, channels])

    return decode


def decoded_shape(contents: Any) -> tuple[int, int]:
    """``(height, width)`` of encoded PNG/JPEG ``contents`` (a scalar string tensor)."""
    tf = require_tensorflow()
    return tuple(tf.io.decode_image(contents, expand_animations=False).shape[:2])
