"""SIGINT and SIGTERM as a request to stop training cleanly.

Inside :meth:`SignalCatcher.graceful` (around ``fit``) a signal only records itself;
a callback (see :mod:`tfp_realnvp.training.checkpoints`) then saves a checkpoint after the
current batch and stops training. Outside it, and for a second signal, the signal
interrupts at once by raising :class:`Interrupted`; the writes of this package are
atomic, so nothing is left half written either way.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: The signals handled, in the order of their numbers.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training was stopped by a signal; ``exit_code`` is ``128 + signal number``.

    A ``KeyboardInterrupt``, so code that already handles Ctrl-C handles it too.
    """

    def __init__(self, signum: int, message: str | None = None):
        self.signum = int(signum)
        self.signal_name = signal.Signals(self.signum).name
        super().__init__(message or f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by this signal."""
        return 128 + self.signum


class SignalCatcher:
    """Installs handlers for SIGINT and SIGTERM while used as a context manager.

    ``received`` holds the first signal number seen inside :meth:`graceful`, or
    ``None``. Handlers are installed only in the main thread (Python's rule) and the
    previous handlers come back on exit.
    """

    def __init__(self):
        self.received: int | None = None
        self._graceful = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> SignalCatcher:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @contextlib.contextmanager
    def graceful(self) -> Iterator[SignalCatcher]:
        """Within this block a first signal is only recorded in ``received``."""
        self._graceful = True
        try:
            yield self
        finally:
            self._graceful = False

    @property
    def signal_name(self) -> str | None:
        """``"SIGINT"`` or ``"SIGTERM"`` once one was received, else ``None``."""
        return None if self.received is None else signal.Signals(self.received).name

    def _handle(self, signum, frame) -> None:
        if self._graceful and self.received is None:
            self.received = int(signum)
            return
        raise Interrupted(signum)
