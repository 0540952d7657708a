"""Input checks that fail loudly, with the received value, on every backend."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from tfp_realnvp.internal.backend import backend_name, is_concrete


def check_event_shape(shape: Sequence[int | None], *, expected_rank: int = 3, name: str = "input") -> tuple:
    """Checks that ``shape`` ends in a fully known ``[H, W, C]`` event.

    Raises:
        ValueError: naming the received shape when the rank is too small or a
            dimension of the event is unknown or not positive.
    """
    shape = tuple(shape)
    if len(shape) < expected_rank:
        raise ValueError(
            f"{name} must have at least rank {expected_rank} (..., height, width, channels); "
            f"received shape {list(shape)}."
        )
    event = shape[-expected_rank:]
    if any(d is None or int(d) <= 0 for d in event):
        raise ValueError(
            f"{name} needs a known, positive event shape [height, width, channels]; received shape {list(shape)}."
        )
    return tuple(int(d) for d in event)


def assert_in_range(x, low: float, high: float, *, name: str = "images", closed: bool = False):
    """Returns ``x`` after checking ``low <= x < high`` (``<= high`` if ``closed``) and no NaN.

    Concrete values are checked now and raise ``ValueError`` with the offending
    range. Inside a ``tf.function`` the check becomes a graph assertion that raises
    ``InvalidArgumentError`` with the same message when it runs. Traced JAX code
    cannot raise on values, so it is checked where concrete data enters (the model
    and the data pipelines).
    """
    if is_concrete(x):
        arr = np.asarray(keras.ops.convert_to_numpy(x))
        if arr.size == 0:
            return x
        nan = np.isnan(arr).any()
        finite = arr[~np.isnan(arr)]
        above = finite.size and (finite.max() > high if closed else finite.max() >= high)
        if nan or (finite.size and finite.min() < low) or above:
            seen = f"[{finite.min():g}, {finite.max():g}]" if finite.size else "none but NaN"
            raise ValueError(
                f"{name} must lie in [{low:g}, {high:g}{']' if closed else ')'}; received values in "
                f"{seen}{' and NaN' if nan else ''}."
            )
        return x
    if backend_name() == "tensorflow":
        import tensorflow as tf

        message = f"{name} must lie in [{low:g}, {high:g}{']' if closed else ')'} with no NaN"
        upper = tf.debugging.assert_less_equal if closed else tf.debugging.assert_less
        checks = [
            tf.debugging.assert_greater_equal(x, tf.cast(low, x.dtype), message=message),
            upper(x, tf.cast(high, x.dtype), message=message),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(x)
    return x


def as_image_batch(images, *, image_shape: Sequence[int], name: str = "images") -> np.ndarray:
    """Returns ``images`` as a NumPy ``[N, H, W, C]`` batch with values in ``[0, 256)``.

    The dtype is kept (integers mean "dequantize me"); a single ``[H, W, C]`` image
    becomes a batch of one.

    Raises:
        ValueError: naming the received shape, dtype or value range when the batch
            does not match ``image_shape`` or holds values outside ``[0, 256)``.
    """
    arr = np.asarray(keras.ops.convert_to_numpy(images))
    expected = tuple(int(d) for d in image_shape)
    if arr.ndim == 3 and arr.shape == expected:
        arr = arr[None]
    if arr.ndim != 4 or tuple(arr.shape[1:]) != expected:
        raise ValueError(
            f"{name} must have shape [N, {', '.join(map(str, expected))}]; received shape {list(arr.shape)}."
        )
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must hold integer or float pixel values; received dtype {arr.dtype}.")
    assert_in_range(arr, 0.0, 256.0, name=name)
    return arr
