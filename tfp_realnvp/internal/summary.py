"""The part of ``tf.summary`` that ``keras.callbacks.TensorBoard`` calls, without TensorFlow.

Keras' TensorBoard callback writes through ``tensorflow.summary``, so on a backend
installed without TensorFlow it fails at its first write. :data:`SUMMARY` offers the
functions it calls (``create_file_writer``, ``scalar``, ``histogram``, ``image``,
``record_if``) on :class:`~tfp_realnvp.internal.tensorboard.EventWriter` and the
``tensorboard`` package alone; :func:`equip_keras_tensorboard` gives it to the Keras
callbacks of a ``fit`` when TensorFlow cannot be imported. The files are TensorBoard's
own: scalars as ``simple_value``, histograms as the histogram plugin's tensors, images
as PNG. TensorFlow's trace functions (``profile_batch``) have no counterpart here: they
refuse with a message naming what to install.
"""

from __future__ import annotations

import contextlib
import importlib.util
import types
from collections.abc import Callable, Iterable, Iterator

import keras
import numpy as np

from tfp_realnvp.internal.backend import set_tensorboard_summary_module
from tfp_realnvp.internal.tensorboard import EventWriter

#: What to install for the parts of ``keras.callbacks.TensorBoard`` that need TensorFlow.
PROFILE_NEEDS = (
    "keras.callbacks.TensorBoard(profile_batch=...) traces with TensorFlow's profiler, which is not "
    "installed: pip install tensorflow-cpu tensorboard, or leave profile_batch=0."
)

# The writers made default by ``SummaryWriter.as_default`` (innermost last), with the step each set.
_defaults: list[tuple[SummaryWriter, int | None]] = []
# The conditions of the ``record_if`` blocks entered (innermost last).
_conditions: list[bool | Callable[[], bool]] = []


def _number(value) -> np.ndarray:
    """A NumPy array of a number, an array, a backend tensor or a Keras variable."""
    if isinstance(value, keras.Variable):
        value = value.value
    return np.asarray(keras.ops.convert_to_numpy(value))


class SummaryWriter:
    """An event file in ``logdir``, made default for the summary functions by ``as_default``.

    Args:
        logdir: the run directory (created if missing).
    """

    def __init__(self, logdir: str):
        self.logdir = logdir
        self._events = EventWriter(logdir)

    @contextlib.contextmanager
    def as_default(self, step: int | None = None) -> Iterator[SummaryWriter]:
        """Within the block, the summary functions write here, at ``step`` unless they name one."""
        _defaults.append((self, None if step is None else int(_number(step))))
        try:
            yield self
        finally:
            _defaults.pop()

    def write(self, summary, step: int) -> None:
        """Appends a ``Summary`` protocol buffer at ``step``."""
        self._events.summary(summary, step=step)

    def write_image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """Appends a uint8 ``[h, w, c]`` image as PNG under ``tag`` at ``step``."""
        self._events.image(tag, picture, step=step)

    def flush(self) -> None:
        """Makes what was written visible to TensorBoard."""
        self._events.flush()

    def close(self) -> None:
        """Flushes and closes the file; closing twice is harmless."""
        self._events.close()


def create_file_writer(logdir: str, **kwargs) -> SummaryWriter:
    """A :class:`SummaryWriter` of ``logdir`` (``tf.summary.create_file_writer``; other
    arguments such as ``max_queue`` or ``flush_millis`` do not apply: every write goes to the
    file at once)."""
    return SummaryWriter(logdir)


@contextlib.contextmanager
def record_if(condition: bool | Callable[[], bool]) -> Iterator[None]:
    """Within the block, the summary functions write only while ``condition`` (or its call) holds."""
    _conditions.append(condition)
    try:
        yield
    finally:
        _conditions.pop()


def _target(step) -> tuple[SummaryWriter | None, int]:
    """The default writer and the step to write at; ``(None, 0)`` when nothing is to be written."""
    if not _defaults or not all(c() if callable(c) else c for c in _conditions):
        return None, 0
    writer, default_step = _defaults[-1]
    if step is None:
        step = default_step
    if step is None:
        raise ValueError("a summary needs a step: pass step=... or set one with writer.as_default(step).")
    return writer, int(_number(step))


def scalar(name: str, data, step=None, description: str | None = None) -> bool:
    """Writes a number under ``name``; returns whether anything was written."""
    from tensorboard.compat.proto import summary_pb2

    writer, step = _target(step)
    if writer is None:
        return False
    value = float(_number(data).reshape(()))
    writer.write(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=name, simple_value=value)]), step)
    return True


def histogram(name: str, data, step=None, buckets: int | None = None, description: str | None = None) -> bool:
    """Writes the histogram of ``data``'s values under ``name`` (the histogram plugin's format)."""
    from tensorboard.plugins.histogram.summary_v2 import histogram_pb

    writer, step = _target(step)
    if writer is None:
        return False
    values = _number(data).astype(np.float64).reshape(-1)
    writer.write(histogram_pb(name, values, buckets=buckets, description=description), step)
    return True


def image(name: str, data, step=None, max_outputs: int = 3, description: str | None = None) -> bool:
    """Writes up to ``max_outputs`` images of ``data`` (``[k, h, w, c]``, c = 1, 3 or 4;
    floats in ``[0, 1]`` or uint8) as PNG: tag ``name`` for one image, ``name/i`` for several."""
    writer, step = _target(step)
    if writer is None:
        return False
    images = _number(data)
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image data must have shape [k, h, w, 1, 3 or 4]; received {list(images.shape)}.")
    if images.dtype != np.uint8:
        images = np.round(np.clip(images.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    images = images[:max_outputs]
    for index, picture in enumerate(images):
        tag = name if len(images) == 1 else f"{name}/{index}"
        writer.write_image(tag, picture, step)
    return True


def trace_on(*args, **kwargs) -> None:
    """TensorFlow's graph and profiler tracing: not available without TensorFlow."""
    raise ImportError(PROFILE_NEEDS)


def trace_export(*args, **kwargs) -> None:
    """TensorFlow's trace export: not available without TensorFlow."""
    raise ImportError(PROFILE_NEEDS)


#: The functions above as one namespace, the stand-in for ``tensorflow.summary``.
SUMMARY = types.SimpleNamespace(
    create_file_writer=create_file_writer,
    record_if=record_if,
    scalar=scalar,
    histogram=histogram,
    image=image,
    trace_on=trace_on,
    trace_export=trace_export,
)


def tensorflow_installed() -> bool:
    """Whether ``tensorflow`` can be imported here."""
    return importlib.util.find_spec("tensorflow") is not None


def equip_keras_tensorboard(callbacks: Iterable | None) -> int:
    """Gives every ``keras.callbacks.TensorBoard`` in ``callbacks`` :data:`SUMMARY`, where
    TensorFlow is not installed (with TensorFlow, Keras' own ``tf.summary`` stays).

    Returns:
        How many callbacks were given it.
    """
    if callbacks is None or tensorflow_installed():
        return 0
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks = callbacks.callbacks
    return sum(
        set_tensorboard_summary_module(callback, SUMMARY)
        for callback in callbacks
        if isinstance(callback, keras.callbacks.TensorBoard)
    )
