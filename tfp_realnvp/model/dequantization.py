"""Dequantization noise ``u`` in ``[0, 1)^D``: ``log p(x + u)`` of integer pixels ``x``.

For evaluation, ``u`` is a counter-based integer hash of the image's pixels and a seed
(``dequantization_noise``), identical on every backend and in every exported graph, so
an image's ``log_prob`` and ``bits_per_dim`` do not depend on the batch it is evaluated
in. For training, ``u`` is fresh uniform noise from the model's seed generator
(``training_noise``), a different draw on every replica of a distribution strategy.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfp_realnvp.internal.replicas import num_replicas_in_sync, replica_index

#: Seed of the dequantization noise used when integer images are evaluated, so that
#: ``log_prob``/``bits_per_dim`` of the same images are reproducible.
EVAL_NOISE_SEED = (20170, 1605)


def _hash32_numpy(x: np.ndarray) -> np.ndarray:
    """The ``lowbias32`` integer hash (C. Wellons) of a ``uint32`` NumPy array."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        return x ^ (x >> np.uint32(16))


def _hash32(x):
    """``_hash32_numpy`` on a ``uint32`` backend tensor (multiplications wrap mod 2**32)."""

    def u32(value):
        return ops.convert_to_tensor(np.uint32(value))

    x = ops.bitwise_xor(x, ops.right_shift(x, u32(16)))
    x = ops.multiply(x, u32(0x7FEB352D))
    x = ops.bitwise_xor(x, ops.right_shift(x, u32(15)))
    x = ops.multiply(x, u32(0x846CA68B))
    return ops.bitwise_xor(x, ops.right_shift(x, u32(16)))


def dequantization_noise(images, seed=EVAL_NOISE_SEED):
    """Uniform ``[0, 1)`` noise for integer images that depends only on each image.

    The noise of an image is a fixed pseudo-random function of its pixels and
    ``seed`` (a counter-based integer hash, identical on every backend), so the
    dequantized image ``x + u``, and with it ``log_prob`` and ``bits_per_dim``, does
    not depend on the batch size, on the image's position in its batch, or on the
    other images in the batch. Each ``u`` is uniform on the 2**24 grid points of
    ``[0, 1)``; different images get effectively independent noise.

    Args:
        images: integer tensor ``[..., H, W, C]`` with values in ``[0, 256)``.
        seed: two integers.

    Returns:
        float32 noise of the shape of ``images``.
    """
    shape = ops.shape(images)
    num_dims = int(np.prod(images.shape[-3:]))
    seed = np.asarray(seed, dtype=np.int64).astype(np.uint32)
    seed_key = _hash32_numpy(seed[0] ^ _hash32_numpy(seed[1]))
    # One key per pixel position, then one key per image from all (position, value) pairs.
    position_key = _hash32_numpy(np.arange(num_dims, dtype=np.uint32) ^ seed_key)
    values = ops.reshape(ops.cast(images, "uint32"), (-1, num_dims))
    golden = ops.convert_to_tensor(np.uint32(0x9E3779B9))
    pair_hash = _hash32(ops.add(ops.convert_to_tensor(position_key), ops.multiply(values, golden)))
    image_key = ops.cast(ops.sum(pair_hash, axis=-1, keepdims=True), "uint32")
    image_key = _hash32(ops.bitwise_xor(image_key, ops.convert_to_tensor(seed_key)))
    bits = _hash32(ops.bitwise_xor(image_key, ops.convert_to_tensor(position_key)))
    noise = ops.cast(ops.right_shift(bits, ops.convert_to_tensor(np.uint32(8))), "float32") * (2.0**-24)
    return ops.reshape(noise, shape)


def noise_seeds(samples: int, seed=EVAL_NOISE_SEED) -> list[tuple[int, int]]:
    """The seeds of ``samples`` independent evaluation draws: ``(seed[0] + k, seed[1])``.

    Draw 0 is ``seed`` itself, so the first of ``K`` draws is the noise of
    ``dequantization_noise(images, seed)``.
    """
    return [(int(seed[0]) + k, int(seed[1])) for k in range(int(samples))]


def noise_seed_keys(seeds) -> np.ndarray:
    """The ``uint32`` key of each seed (two integers each) that ``dequantization_noise_keys`` takes."""
    keys = []
    for seed in seeds:
        pair = np.asarray(seed, dtype=np.int64).astype(np.uint32)
        keys.append(_hash32_numpy(pair[0] ^ _hash32_numpy(pair[1])))
    return np.asarray(keys, dtype=np.uint32)


def dequantization_noise_keys(images, seed_keys):
    """``dequantization_noise`` of ``images`` for several seeds at once, ``[K * N, H, W, C]``.

    Row ``k * N + n`` is draw ``k`` of image ``n``:
    ``dequantization_noise_keys(images, noise_seed_keys([s]))`` equals
    ``dequantization_noise(images, s)`` bit for bit: the same hashes, with the seed key a
    tensor, so the ``K`` draws of an importance-weighted bound can be fed to one
    compiled function. Each draw depends only on the image and its seed.

    Args:
        images: integer tensor ``[N, H, W, C]`` with values in ``[0, 256)``.
        seed_keys: ``uint32`` ``[K]`` from ``noise_seed_keys``.

    Returns:
        float32 noise ``[K * N, H, W, C]`` in ``[0, 1)``, draw-major.
    """
    num_dims = int(np.prod(images.shape[-3:]))
    seed_key = ops.reshape(ops.cast(ops.convert_to_tensor(seed_keys), "uint32"), (-1, 1, 1))
    positions = ops.convert_to_tensor(np.arange(num_dims, dtype=np.uint32))
    position_key = _hash32(ops.bitwise_xor(positions[None, None, :], seed_key))  # [K, 1, D]
    values = ops.reshape(ops.cast(images, "uint32"), (1, -1, num_dims))
    golden = ops.convert_to_tensor(np.uint32(0x9E3779B9))
    pair_hash = _hash32(ops.add(position_key, ops.multiply(values, golden)))  # [K, N, D]
    image_key = ops.cast(ops.sum(pair_hash, axis=-1, keepdims=True), "uint32")
    image_key = _hash32(ops.bitwise_xor(image_key, seed_key))
    bits = _hash32(ops.bitwise_xor(image_key, position_key))
    noise = ops.cast(ops.right_shift(bits, ops.convert_to_tensor(np.uint32(8))), "float32") * (2.0**-24)
    return ops.reshape(noise, (-1, *(int(d) for d in images.shape[-3:])))


def training_noise(shape, seed: keras.random.SeedGenerator):
    """Uniform ``[0, 1)`` float32 noise of ``shape`` for a training step.

    Every replica of a TensorFlow distribution strategy holds the same generator
    state, so each draws the noise of all replicas and keeps its own share: no two
    replicas add the same noise to their images.

    Args:
        shape: shape of the (per-replica) image batch.
        seed: the model's ``keras.random.SeedGenerator``; each call advances it.

    Returns:
        A float32 tensor of ``shape``.
    """
    replica = replica_index()
    if replica is None:
        return keras.random.uniform(shape, seed=seed, dtype="float32")
    noise = keras.random.uniform((num_replicas_in_sync(),) + tuple(shape), seed=seed, dtype="float32")
    return ops.take(noise, replica, axis=0)
