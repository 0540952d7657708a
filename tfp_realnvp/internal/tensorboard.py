"""TensorBoard event files written without TensorFlow: scalars and images.

:class:`EventWriter` frames ``Event`` protocol buffers as TensorBoard reads them, with the
protocol buffers and the record framing of the ``tensorboard`` package. Neither imports
TensorFlow, so the same files come out of a run on any Keras backend, and a JAX run does
not load TensorFlow to log.
"""

from __future__ import annotations

import io
import itertools
import os
import socket
import time

import numpy as np

#: What to install when the ``tensorboard`` package is missing.
INSTALL_HINT = "pip install tensorboard (or the tfp-realnvp[tensorflow] / [jax] extra)"

_file_numbers = itertools.count()


def require_tensorboard() -> None:
    """Raises ``ImportError`` naming what to install when the ``tensorboard`` package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError as error:
        raise ImportError(f"TensorBoard logging needs the tensorboard package: {INSTALL_HINT}.") from error


class EventWriter:
    """Appends scalar and image summaries to a new event file in ``directory``.

    One writer per directory at a time: TensorBoard reads the event files of a
    directory one after the other, so two files written at once would hide data.

    Args:
        directory: the run directory (created if missing).

    Raises:
        ImportError: without the ``tensorboard`` package.
    """

    def __init__(self, directory: str | os.PathLike):
        require_tensorboard()
        from tensorboard.summary.writer.record_writer import RecordWriter

        os.makedirs(directory, exist_ok=True)
        now = time.time()
        name = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}.{next(_file_numbers)}"
        self.path = os.path.join(os.fspath(directory), name)
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._records = RecordWriter(self._file)
        self._write_event(wall_time=now, file_version="brain.Event:2")
        self.flush()

    def _write_event(self, **fields) -> None:
        from tensorboard.compat.proto import event_pb2

        if self._file.closed:
            raise ValueError(f"the event file {self.path} is closed")
        fields.setdefault("wall_time", time.time())
        self._records.write(event_pb2.Event(**fields).SerializeToString())

    def scalar(self, tag: str, value, *, step: int) -> None:
        """Writes ``value`` (a number or a one-element array) under ``tag`` at ``step``."""
        from tensorboard.compat.proto import summary_pb2

        number = float(np.asarray(value).reshape(()))
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=number)])
        self._write_event(step=int(step), summary=summary)

    def image(self, tag: str, image, *, step: int) -> None:
        """Writes an ``[H, W, C]`` uint8 image (C = 1, 3 or 4) under ``tag`` at ``step``, as PNG."""
        from PIL import Image
        from tensorboard.compat.proto import summary_pb2

        pixels = np.asarray(image)
        if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3, 4) or pixels.dtype != np.uint8:
            raise ValueError(
                f"image must be uint8 [height, width, 1, 3 or 4]; received {pixels.dtype} {list(pixels.shape)}"
            )
        png = io.BytesIO()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(png, format="PNG")
        encoded = summary_pb2.Summary.Image(
            height=pixels.shape[0],
            width=pixels.shape[1],
            colorspace=pixels.shape[-1],
            encoded_image_string=png.getvalue(),
        )
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, image=encoded)])
        self._write_event(step=int(step), summary=summary)

    def summary(self, summary, *, step: int) -> None:
        """Writes a ``Summary`` protocol buffer (``tensorboard.compat.proto.summary_pb2``) at ``step``."""
        self._write_event(step=int(step), summary=summary)

    def flush(self) -> None:
        """Makes what was written visible to TensorBoard."""
        self._file.flush()

    def close(self) -> None:
        """Flushes and closes the file; closing twice is harmless."""
        if not self._file.closed:
            self._file.close()
