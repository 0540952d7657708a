"""Static event shapes: reading the ``(H, W, C)`` of a shape, and the errors that name it."""

from __future__ import annotations

import numpy as np

from tfp_realnvp.internal.backend import backend_name, is_concrete


def static_dims(shape) -> list[int | None] | None:
    """The statically known dimensions of a shape, or ``None`` when its rank is unknown.

    Args:
        shape: a ``TensorShape`` (either substrate), a list or tuple of ints (``None``
            for an unknown dimension), or an int32 shape tensor / array.

    Returns:
        A list with an int for each known dimension and ``None`` for each unknown one.
    """
    if hasattr(shape, "as_list") and hasattr(shape, "rank"):  # TensorShape
        return None if shape.rank is None else list(shape.as_list())
    if isinstance(shape, (list, tuple)):
        return [None if d is None else int(d) for d in shape]
    if backend_name() == "tensorflow":
        import tensorflow as tf

        if tf.is_tensor(shape):
            value = tf.get_static_value(shape, partial=True)
            if value is None:
                return None
            return [None if d is None else int(d) for d in np.reshape(np.asarray(value, dtype=object), [-1])]
    if not is_concrete(shape):
        return None
    return [int(d) for d in np.reshape(np.asarray(shape), [-1])]


def event_dims(shape, *, name: str) -> tuple[int | None, int | None, int | None] | None:
    """The ``(H, W, C)`` of a shape whose last three dimensions are the event.

    Unknown dimensions come back as ``None``; a shape of unknown rank gives ``None``.

    Raises:
        ValueError: naming the shape, when its rank is below 3 or a known event
            dimension is not positive.
    """
    dims = static_dims(shape)
    if dims is None:
        return None
    if len(dims) < 3:
        raise ValueError(f"{name} needs at least rank 3 (..., height, width, channels); received shape {dims}.")
    event = tuple(dims[-3:])
    if any(d is not None and d <= 0 for d in event):
        raise ValueError(f"{name} needs positive event dimensions; received shape {dims}.")
    return event


def format_event(event) -> str:
    """``[H, W, C]`` with ``None`` for unknown dimensions, as the error messages show shapes."""
    return str([d for d in event])


def check_built_event(event, built, *, name: str, what: str = "event shape") -> None:
    """Refuses an event that contradicts the (known) event a bijector was built for."""
    if built is None:
        return
    if any(d is not None and d != b for d, b in zip(event, built)):
        raise ValueError(f"{name} was built for {what} {list(built)}; received {what} {format_event(event)}.")
