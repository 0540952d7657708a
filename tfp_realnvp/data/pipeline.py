"""The batching pipeline: shuffled, optionally flipped, batched, prefetched ``uint8`` images.

:func:`make_dataset` turns an in-memory array or a dataset of single images into what
Keras ``fit`` reads as ``x``. The streaming readers of :mod:`tfp_realnvp.data.streaming`
end in the same batching, flipping and prefetching (:func:`batch_flip_prefetch`, shared
with them and not re-exported by :mod:`tfp_realnvp.data`). Imports TensorFlow when called.
"""

from __future__ import annotations

from typing import Any

from tfp_realnvp.data.checks import check_images, require_tensorflow
from tfp_realnvp.internal.arguments import check_int

__all__ = ["DEFAULT_SHUFFLE_BUFFER", "make_dataset"]

DEFAULT_SHUFFLE_BUFFER = 10_000
"""Elements a shuffle holds by default where the set is not in memory: a dataset passed to
:func:`make_dataset`, and the file names, records or images of a streaming reader."""


def make_dataset(
    images,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int | None = None,
    flip: bool = False,
    repeat: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int | None = None,
):
    """Builds the training input: shuffled, flipped, batched, prefetched ``uint8`` images.

    Elements are ``uint8`` batches ``[B, H, W, C]`` and nothing else, so Keras ``fit``,
    ``evaluate`` and ``predict`` read them as ``x`` with no labels.

    Args:
        images: a ``uint8`` array ``[N, H, W, C]`` (anything
            :func:`~tfp_realnvp.data.check_images` takes), or a ``tf.data.Dataset`` of
            single images ``[H, W, C]`` such as :func:`~tfp_realnvp.data.get_dataset`
            returns.
        batch_size: images per batch.
        shuffle: shuffle the images, reshuffling each epoch.
        seed: makes shuffling and flips reproducible; ``None`` draws fresh ones.
        flip: flip each image left-right with probability 1/2.
        repeat: repeat forever (pass ``steps_per_epoch`` to ``fit``).
        drop_remainder: drop the last, smaller batch of an epoch.
        shuffle_buffer: the shuffle buffer; ``None`` uses the whole array, or
            :data:`DEFAULT_SHUFFLE_BUFFER` images for a dataset.

    Returns:
        A ``tf.data.Dataset`` of ``uint8`` tensors ``[B, H, W, C]``.

    Raises:
        ValueError: naming the received value for a bad ``batch_size`` or
            ``shuffle_buffer``, or images that :func:`~tfp_realnvp.data.check_images`
            rejects.
    """
    tf = require_tensorflow()

    batch_size = check_int(batch_size, name="batch_size")
    shuffle_buffer = check_int(shuffle_buffer, name="shuffle_buffer", allow_none=True)
    if isinstance(images, tf.data.Dataset):
        spec = images.element_spec
        if not isinstance(spec, tf.TensorSpec) or spec.shape.rank != 3 or spec.dtype != tf.uint8:
            raise ValueError(
                "a dataset passed to make_dataset must yield single uint8 images [H, W, C]; "
                f"received element_spec {spec}."
            )
        dataset = images
        buffer = shuffle_buffer or DEFAULT_SHUFFLE_BUFFER
    else:
        array = check_images(images)
        dataset = tf.data.Dataset.from_tensor_slices(array)
        buffer = shuffle_buffer or len(array)
    if shuffle:
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return batch_flip_prefetch(dataset, batch_size=batch_size, drop_remainder=drop_remainder, flip=flip, seed=seed)


def batch_flip_prefetch(
    dataset: Any,
    *,
    batch_size: int | None,
    drop_remainder: bool = False,
    flip: bool = False,
    seed: int | None = None,
) -> Any:
    """Batches single images, flips them at random when asked, and prefetches.

    ``batch_size=None`` leaves the images unbatched (flips then need a batch and are
    refused).

    Args:
        dataset: a ``tf.data.Dataset`` of single images ``[H, W, C]``.
        batch_size: images per batch, or ``None`` for no batching.
        drop_remainder: drop the last, smaller batch.
        flip: flip each image left-right with probability 1/2 (one stateless draw per
            batch, seeded from ``seed``).
        seed: makes the flips reproducible; ``None`` draws fresh ones.

    Returns:
        The ``tf.data.Dataset`` of batches ``[B, H, W, C]`` (or single images), prefetched.

    Raises:
        ValueError: when ``flip`` is asked for with ``batch_size=None``.
    """
    tf = require_tensorflow()

    if batch_size is None:
        if flip:
            raise ValueError("flip=True needs batches; received batch_size=None.")
        return dataset.prefetch(tf.data.AUTOTUNE)
    dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder)
    if flip:
        # One random int64 per batch seeds a stateless draw of per-image flips.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(_flip_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _flip_batch(batch, seed):
    tf = require_tensorflow()

    draw = tf.random.stateless_uniform(tf.shape(batch)[:1], seed=tf.stack([seed, tf.constant(0, tf.int64)]))
    flipped = tf.where(draw[:, None, None, None] < 0.5, tf.reverse(batch, axis=[2]), batch)
    return tf.ensure_shape(flipped, batch.shape)
