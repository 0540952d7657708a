"""Training batches in a fixed order that can restart at any step.

Images held in memory are read in passes: pass ``p`` visits every image once, in the
order of a permutation drawn from ``(seed, p)``, in batches of ``batch_size`` (the last
batch of a pass may be smaller). Step ``s`` of training always gets batch
``s mod B`` of pass ``s div B`` (``B`` batches per pass), whatever the number of
epochs and whether the run was interrupted and resumed in between, so a resumed run
sees exactly the batches an uninterrupted one would. Optional horizontal flips are
drawn from ``(seed, s)`` in the same way. The stream never ends: ``fit`` takes
``steps_per_epoch`` batches per epoch and the data repeats as needed.

Sources that stream from disk (tfds) have no cheap way to seek: they restart with a
shuffle seeded by ``(seed, start step)``, so a resumed run continues on freshly
shuffled data rather than at the exact image where it stopped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

from tfp_realnvp.internal.arguments import check_int
from tfp_realnvp.internal.backend import backend_name


def batches_per_pass(num_images: int, batch_size: int, *, drop_remainder: bool = False) -> int:
    """Batches in one pass over ``num_images`` images: ``ceil(num_images / batch_size)``,
    or ``floor`` with ``drop_remainder`` (every batch full, the last images of each
    pass's permutation left out of that pass)."""
    num_images = check_int(num_images, name="num_images")
    batch_size = check_int(batch_size, name="batch_size")
    if drop_remainder:
        if num_images < batch_size:
            raise ValueError(f"full batches of {batch_size} need at least as many images; received {num_images}.")
        return num_images // batch_size
    return math.ceil(num_images / batch_size)


def pass_order(num_images: int, *, seed: int, data_pass: int) -> np.ndarray:
    """The order in which pass ``data_pass`` visits the images (a permutation)."""
    return np.random.default_rng([int(seed) % 2**32, int(data_pass)]).permutation(int(num_images))


def batch_indices(
    num_images: int, *, batch_size: int, seed: int, start_step: int = 0, drop_remainder: bool = False
) -> Iterator[tuple[int, np.ndarray]]:
    """``(step, image indices)`` for every step from ``start_step`` on, without end."""
    per_pass = batches_per_pass(num_images, batch_size, drop_remainder=drop_remainder)
    start_step = check_int(start_step, name="start_step", low=0)
    cached_pass, order = None, None
    for step in itertools.count(int(start_step)):
        data_pass, batch = divmod(step, per_pass)
        if data_pass != cached_pass:
            cached_pass, order = data_pass, pass_order(num_images, seed=seed, data_pass=data_pass)
        yield step, order[batch * batch_size : (batch + 1) * batch_size]


def _flip(batch: np.ndarray, *, seed: int, step: int) -> np.ndarray:
    """Flips each image left-right with probability 1/2, drawn from ``(seed, step)``."""
    flips = np.random.default_rng([int(seed) % 2**32, int(step), 1]).random(len(batch)) < 0.5
    return np.where(flips[:, None, None, None], batch[:, :, ::-1], batch)


def image_batches(
    images: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    flip: bool = False,
    start_step: int = 0,
    drop_remainder: bool = False,
) -> Iterator[np.ndarray]:
    """The uint8 batches of steps ``start_step, start_step + 1, ...`` (see the module docstring)."""
    indices_of = batch_indices(
        len(images), batch_size=batch_size, seed=seed, start_step=start_step, drop_remainder=drop_remainder
    )
    for step, indices in indices_of:
        batch = images[indices]
        yield _flip(batch, seed=seed, step=step) if flip else batch


def _tf_batches(images: np.ndarray, *, batch_size: int, seed: int, flip: bool, start_step: int, labels=None):
    """The stream of :func:`image_batches` as a ``tf.data`` pipeline (its own permutations);
    with ``labels``, elements are ``((images, labels),)``."""
    import tensorflow as tf

    num_images = len(images)
    per_pass = batches_per_pass(num_images, batch_size)
    first_pass, first_batch = divmod(int(start_step), per_pass)
    seed = int(seed) % 2**31

    def pass_batches(data_pass):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_images, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), data_pass])
        )
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    indices = tf.data.Dataset.range(first_pass, 2**62).flat_map(pass_batches).skip(first_batch)
    steps = tf.data.Dataset.range(int(start_step), 2**62)
    pixels = tf.data.Dataset.from_tensors(images if labels is None else (images, labels)).repeat()

    def gather(step, index, data):
        all_images = data if labels is None else data[0]
        batch = tf.gather(all_images, index)
        if flip:
            draw = tf.random.stateless_uniform(
                tf.shape(batch)[:1], seed=tf.stack([tf.constant(seed + 1, tf.int64), step])
            )
            batch = tf.where(draw[:, None, None, None] < 0.5, tf.reverse(batch, axis=[2]), batch)
        batch = tf.ensure_shape(batch, [None, *images.shape[1:]])
        if labels is None:
            return batch
        return ((batch, tf.gather(data[1], index)),)

    stream = tf.data.Dataset.zip((steps, indices, pixels)).map(
        lambda step, index, data: gather(step, index, data), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return stream.prefetch(tf.data.AUTOTUNE)


def resumable_fit_input(
    images: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    flip: bool = False,
    start_step: int = 0,
    topology=None,
    labels=None,
):
    """``(x, fit_kwargs)`` for ``fit`` that starts at training step ``start_step``.

    On TensorFlow ``x`` is a ``tf.data.Dataset`` that computes the same kind of
    stream in the graph (its permutations come from TensorFlow's stateless
    shuffle); on other backends it is the generator :func:`image_batches`. Either
    way the stream has no end, so ``fit`` needs ``steps_per_epoch``. (The generator
    yields ``(batch,)`` tuples, the form Keras wants from a generator.)

    Args:
        images: uint8 ``[N, H, W, C]`` held in memory.
        batch_size: images per batch.
        seed: fixes the order of every pass and the flips.
        flip: random horizontal flips.
        start_step: the global training step of the first batch.
        topology: a data-parallel :class:`~tfp_realnvp.training.distributed.Topology` (JAX): every
            batch is full (``drop_remainder``), so the devices share it equally, and this
            process gets only its rows of each global batch.
        labels: for a class-conditional model, the labels ``[N]`` of ``images``: every
            element is then ``((images, labels),)``, the pair being the model's ``x``
            (flips leave the labels as they are).
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty [N, H, W, C] array; received shape {list(images.shape)}.")
    start_step = check_int(start_step, name="start_step", low=0)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(images),):
            raise ValueError(
                f"labels must hold one label per image ({len(images)}); received shape {list(labels.shape)}."
            )
    if backend_name() == "tensorflow":
        stream = _tf_batches(images, batch_size=batch_size, seed=seed, flip=flip, start_step=start_step, labels=labels)
        return stream, {"shuffle": False}
    parallel = topology is not None and topology.data_parallel
    if labels is None:
        stream = image_batches(
            images, batch_size=batch_size, seed=seed, flip=flip, start_step=start_step, drop_remainder=parallel
        )
        # Keras wants each element of a generator as a tuple: (x,).
        batches = ((topology.local_rows(batch) if parallel else batch,) for batch in stream)
        return batches, {"shuffle": False}
    indices_of = batch_indices(
        len(images), batch_size=batch_size, seed=seed, start_step=start_step, drop_remainder=parallel
    )

    def labelled():
        for step, index in indices_of:
            batch, batch_labels = images[index], labels[index]
            if flip:
                batch = _flip(batch, seed=seed, step=step)
            if parallel:
                batch, batch_labels = topology.local_rows(batch), topology.local_rows(batch_labels)
            yield ((batch, batch_labels),)

    return labelled(), {"shuffle": False}


def streamed_fit_input(dataset, *, batch_size: int, seed: int, flip: bool = False, start_step: int = 0):
    """``(x, fit_kwargs)`` for a ``tf.data.Dataset`` of single images (a tfds source).

    The images are shuffled with a seed drawn from ``(seed, start_step)``, repeated
    without end and batched (see the module docstring for what resuming means here).
    """
    from tfp_realnvp.data import make_dataset

    stream_seed = int(np.random.default_rng([int(seed) % 2**32, int(start_step)]).integers(2**31 - 1))
    return make_dataset(dataset, batch_size=batch_size, seed=stream_seed, flip=flip, repeat=True), {"shuffle": False}
