"""Checks shared by the data modules: pixel arrays, splits, sizes, counts and shards.

Everything here needs only NumPy. :func:`check_images` is public; the rest are the
argument checks every loader applies, each raising a ``ValueError`` that names the
received value.

Shared by the other data modules, not re-exported by :mod:`tfp_realnvp.data`:
:func:`require_tensorflow`, :func:`check_split`, :func:`check_train_fraction`,
:func:`check_size`, :func:`check_shard`, :func:`check_channels` and
:func:`split_indices`. Counts go through :func:`tfp_realnvp.internal.arguments.check_int`,
which gives every package's argument checks one message form.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from tfp_realnvp.internal.arguments import check_int, is_integer

__all__ = ["SPLITS", "check_images"]

PathLike = str | os.PathLike
Size = int | Sequence[int]

SPLITS = ("train", "test", "all")
"""The splits of a local source: ``"train"``, ``"test"`` and ``"all"``."""

_SPLIT_SEED = 20170101


def require_tensorflow() -> ModuleType:
    """Imports TensorFlow when called, or says what to use instead where it is not installed.

    Returns:
        The ``tensorflow`` module.

    Raises:
        ImportError: when TensorFlow is not installed, pointing to the
            ``tfp-realnvp[tensorflow]`` extra and to ``load_images()`` as the NumPy path.
    """
    try:
        import tensorflow
    except ImportError as error:
        raise ImportError(
            "this function builds tf.data pipelines and needs TensorFlow "
            "(pip install 'tfp-realnvp[tensorflow]'); without it, load_images() returns "
            "NumPy arrays that Keras fit takes on any backend."
        ) from error
    return tensorflow


def check_images(images: Any, *, name: str = "images") -> np.ndarray:
    """Checks that ``images`` are pixel values and returns them as ``uint8`` NHWC.

    Accepts NumPy arrays and concrete tensors of any backend (anything ``np.asarray``
    reads). Rank 4 is ``[N, H, W, C]``; rank 3 is read as a batch of grayscale images
    ``[N, H, W]`` and gets a channel axis. Integer dtypes must lie in ``[0, 256)``;
    floating dtypes must hold integral values in ``[0, 256)`` and no NaN.

    Args:
        images: the images.
        name: what to call them in error messages.

    Returns:
        A ``uint8`` NumPy array ``[N, H, W, C]`` (no copy when already ``uint8`` NHWC).

    Raises:
        ValueError: naming the received dtype, shape, and min/max where they matter,
            when the rank is not 3 or 4, a dimension is zero, the dtype is not numeric,
            or a value is NaN, non-integral or outside ``[0, 256)``.
    """
    try:
        array = np.asarray(images)
    except Exception as error:  # symbolic tensors, ragged inputs, ...
        raise ValueError(f"{name} must be concrete array data; received {type(images).__name__} ({error}).") from error
    described = f"received dtype {array.dtype}, shape {list(array.shape)}"
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must have an integer or floating dtype; {described}.")
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.ndim != 4:
        raise ValueError(f"{name} must have rank 4 [N, H, W, C] (or rank 3 [N, H, W] for grayscale); {described}.")
    if 0 in array.shape:
        raise ValueError(f"{name} must hold at least one pixel in every dimension; {described}.")
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        nan_count = int(np.isnan(array).sum())
        if nan_count:
            finite = array[~np.isnan(array)]
            span = f"min {finite.min()}, max {finite.max()}" if finite.size else "min nan, max nan"
            raise ValueError(f"{name} must not contain NaN; {described}, {span}, {nan_count} NaN value(s).")
    low, high = array.min(), array.max()
    if low < 0 or high >= 256:
        raise ValueError(f"{name} must lie in [0, 256); {described}, min {low}, max {high}.")
    if np.issubdtype(array.dtype, np.floating):
        fractional = array != np.floor(array)
        if fractional.any():
            example = array[fractional].flat[0]
            raise ValueError(
                f"{name} must hold integer pixel values; {described}, min {low}, max {high}, "
                f"non-integral values such as {example}."
            )
    return array.astype(np.uint8)


def check_split(split: str, allowed: Sequence[str] = SPLITS) -> str:
    """Checks that ``split`` is one of ``allowed``.

    Args:
        split: the requested split.
        allowed: the splits accepted; :data:`SPLITS` by default.

    Returns:
        ``split``, unchanged.

    Raises:
        ValueError: naming the allowed splits and the received one.
    """
    if split not in allowed:
        raise ValueError(f"split must be one of {list(allowed)}; received {split!r}.")
    return split


def check_train_fraction(train_fraction: float) -> float:
    """Checks that ``train_fraction`` is a number in the open interval ``(0, 1)``.

    Args:
        train_fraction: the share of images that goes to ``"train"``.

    Returns:
        ``train_fraction`` as a ``float``.

    Raises:
        ValueError: naming the received value when it is not a number in ``(0, 1)``.
    """
    try:
        value = float(train_fraction)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1); received {train_fraction!r}.")
    return value


def check_size(size: Size | None, *, name: str) -> tuple[int, int] | None:
    """Normalises an integer or ``(height, width)`` size; ``None`` passes through.

    Args:
        size: ``None``, a side or a ``(height, width)`` pair, each an integer >= 1
            (as :func:`~tfp_realnvp.internal.arguments.is_integer` reads integers).
        name: the argument's name, for the error message.

    Returns:
        ``(height, width)`` as ints, or ``None`` when ``size`` is ``None``.

    Raises:
        ValueError: naming ``name`` and the received value when it is not a positive
            integer or a pair of them.
    """
    if size is None:
        return None
    sides = (size, size) if is_integer(size) else size
    is_pair = isinstance(sides, Sequence) and not isinstance(sides, str) and len(sides) == 2
    if not is_pair or not all(is_integer(side) and side >= 1 for side in sides):
        raise ValueError(f"{name} must be an integer >= 1 or a (height, width) pair of them; received {size!r}.")
    return int(sides[0]), int(sides[1])


def check_shard(num_shards: Any, shard_index: Any) -> tuple[int, int]:
    """Checks a process' share: ``num_shards`` positive, ``0 <= shard_index < num_shards``.

    Args:
        num_shards: the number of processes that share the data.
        shard_index: this process' index.

    Returns:
        ``(num_shards, shard_index)`` as ints.

    Raises:
        ValueError: naming the received value when ``num_shards`` is not an integer
            >= 1 or ``shard_index`` is not an integer in ``[0, num_shards)``.
    """
    count = check_int(num_shards, name="num_shards")
    return count, check_int(shard_index, name="shard_index", low=0, high=count - 1)


def check_channels(channels: Any) -> int:
    """Checks that ``channels`` is 1 (grayscale) or 3 (RGB).

    Args:
        channels: the requested channel count.

    Returns:
        ``channels`` as an ``int``.

    Raises:
        ValueError: naming the received value otherwise.
    """
    if not is_integer(channels) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB); received {channels!r}.")
    return int(channels)


def split_indices(count: int, split: str, train_fraction: float) -> np.ndarray:
    """Indices of ``split`` among ``count`` items: a fixed permutation, kept sorted.

    The permutation has a fixed seed, so the same call always gives the same indices
    and ``"train"`` and ``"test"`` never share one; ``"train"`` gets
    ``round(train_fraction * count)`` of them.

    Args:
        count: the number of items.
        split: ``"train"``, ``"test"`` or ``"all"``.
        train_fraction: the share of items in ``"train"``, in ``(0, 1)``.

    Returns:
        The sorted ``int`` indices of the split's items (``arange(count)`` for ``"all"``).

    Raises:
        ValueError: for a bad split or fraction, or when the split would be empty.
    """
    check_split(split)
    fraction = check_train_fraction(train_fraction)
    if split == "all":
        return np.arange(count)
    order = np.random.default_rng(_SPLIT_SEED).permutation(count)
    num_train = int(round(fraction * count))
    chosen = order[:num_train] if split == "train" else order[num_train:]
    if chosen.size == 0:
        raise ValueError(f"split {split!r} is empty: {count} image(s) with train_fraction={train_fraction!r}.")
    return np.sort(chosen)
