"""Training checkpoints that survive a kill at any moment, and resuming from them.

A checkpoint is a directory ``<directory>/step-<NNNNNNNNN>`` holding ``model.keras``
(the whole model as ``model.save`` writes it: weights, batch-norm statistics, the
optimizer's state and step count, and the state of ``RealNVP``'s dequantization
noise generator) and ``state.json`` (the step, the run's settings and the time). It
is built under a hidden name and renamed into place in one step, so a checkpoint
directory either is complete or does not exist. The newest ``keep`` are kept.

Keras' ``BackupAndRestore`` restores weights and the epoch, but it writes its files in
place (a kill while writing leaves a broken backup), keeps at most two, deletes them
when ``fit`` ends and saves only per epoch or per batch count; ``ModelCheckpoint``
also writes in place. :class:`CheckpointCallback` therefore saves through
:class:`CheckpointManager` instead, at the end of every epoch, every
``every_seconds`` and when a signal asks training to stop; loading uses Keras'
``model.load_weights`` on the saved ``.keras`` file.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import shutil
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import keras

from tfp_realnvp.internal import atomic
from tfp_realnvp.internal.arguments import check_int, check_number
from tfp_realnvp.model.files import ModelFileError, NonFiniteWeightsError, check_finite_weights
from tfp_realnvp.training.distributed import without_distribution
from tfp_realnvp.training.run_files import MODEL_FILENAME, STATE_FILENAME

PathLike = str | os.PathLike

_NAME = re.compile(r"^step-(\d+)$")


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; training stopped.

    Attributes:
        step: the optimizer step at which it was seen.
        checkpoint: the newest checkpoint left (all finite), or ``None``.
    """

    def __init__(self, message: str, *, step: int, checkpoint: Checkpoint | None = None):
        super().__init__(message)
        self.step = int(step)
        self.checkpoint = checkpoint


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a run with other settings than the current one."""


class Checkpoint(NamedTuple):
    """One complete checkpoint directory."""

    path: pathlib.Path
    step: int

    @property
    def model_file(self) -> pathlib.Path:
        """The ``.keras`` file inside the checkpoint."""
        return self.path / MODEL_FILENAME

    def read_state(self) -> dict:
        """The contents of ``state.json``."""
        return json.loads((self.path / STATE_FILENAME).read_text())


def model_step(model) -> int:
    """The optimizer's step count (the number of train steps run so far)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class CheckpointManager:
    """Writes, lists, prunes and restores the checkpoints in one directory.

    Args:
        directory: where the ``step-*`` directories go (created on the first save).
        keep: how many of the newest checkpoints to keep, >= 1.
    """

    def __init__(self, directory: PathLike, *, keep: int = 3):
        self.keep = check_int(keep, name="keep")
        self.directory = pathlib.Path(os.fspath(directory))

    def checkpoints(self) -> list[Checkpoint]:
        """The complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            match = _NAME.match(entry.name)
            if match and entry.is_dir() and (entry / MODEL_FILENAME).is_file() and (entry / STATE_FILENAME).is_file():
                found.append(Checkpoint(entry, int(match.group(1))))
        return sorted(found, key=lambda c: c.step)

    def latest(self) -> Checkpoint | None:
        """The checkpoint with the highest step, or ``None``."""
        found = self.checkpoints()
        return found[-1] if found else None

    def remove_leftovers(self) -> None:
        """Deletes half-built checkpoint directories that a killed process left behind."""
        if not self.directory.is_dir():
            return
        for entry in self.directory.iterdir():
            if entry.name.startswith(".step-") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    def discard_all(self) -> int:
        """Deletes every checkpoint (for a fresh start); returns how many there were."""
        found = self.checkpoints()
        for checkpoint in found:
            atomic.remove_tree(checkpoint.path)
        self.remove_leftovers()
        return len(found)

    def save(self, model, state: dict[str, Any] | None = None) -> Checkpoint:
        """Saves ``model`` (weights, optimizer, noise state) as the checkpoint of its step.

        Nothing is written when a checkpoint of this step exists already.

        Args:
            model: a compiled ``RealNVP``.
            state: JSON-serialisable facts about the run stored in ``state.json``.

        Returns:
            The checkpoint.

        Raises:
            NonFiniteWeightsError: when a weight is NaN or infinite (nothing is written).
        """
        step = model_step(model)
        check_finite_weights(model, name=f"the model at step {step}")
        path = self.directory / f"step-{step:09d}"
        if path.is_dir():
            return Checkpoint(path, step)
        staging = atomic.staging_directory(path)
        try:
            staging.mkdir()
            model.save(staging / MODEL_FILENAME)
            payload = {
                "step": step,
                "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                **(state or {}),
            }
            atomic.write_json(staging / STATE_FILENAME, payload)
            atomic.install_directory(staging, path)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        self.prune()
        return Checkpoint(path, step)

    def prune(self) -> None:
        """Deletes all but the newest ``keep`` checkpoints."""
        for checkpoint in self.checkpoints()[: -self.keep]:
            atomic.remove_tree(checkpoint.path)

    def restore(self, model, checkpoint: Checkpoint) -> dict:
        """Loads the weights, optimizer state and noise state of ``checkpoint`` into ``model``.

        ``model`` must be built and compiled like the one that was saved.

        Returns:
            The checkpoint's ``state.json``.

        Raises:
            ModelFileError: naming the checkpoint when it cannot be read, or when its
                weights are not finite.
        """
        try:
            model.load_weights(checkpoint.model_file)
        except Exception as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ModelFileError(
                f"checkpoint {str(checkpoint.path)!r} could not be loaded: {type(error).__name__}: {detail[:300]}"
            ) from None
        check_finite_weights(model, name=f"checkpoint {str(checkpoint.path)!r}")
        return checkpoint.read_state()

    def restore_latest(self, model) -> tuple[Checkpoint, dict] | None:
        """Restores the newest checkpoint that loads; older ones are tried if it does not.

        Returns:
            ``(checkpoint, state)``, or ``None`` when there is no checkpoint.

        Raises:
            ModelFileError: when checkpoints exist but none of them loads.
        """
        found = self.checkpoints()
        errors = []
        for checkpoint in reversed(found):
            try:
                return checkpoint, self.restore(model, checkpoint)
            except (ModelFileError, OSError, ValueError) as error:
                errors.append(str(error))
                warnings.warn(f"skipping a checkpoint that does not load: {error}", RuntimeWarning, stacklevel=2)
        if errors:
            raise ModelFileError(f"no checkpoint in {str(self.directory)!r} loads; the newest: {errors[0]}")
        return None


#: The value of each setting that older checkpoints do not record: the only behaviour
#: there was when they were written.
LEGACY_SETTINGS = {"dequantization": "uniform"}


def compare_settings(saved: dict, current: dict, *, checkpoint: PathLike) -> None:
    """Raises :class:`CheckpointMismatchError` listing every setting that differs.

    Args:
        saved: settings recorded in a checkpoint.
        current: the same keys for the run about to resume.
        checkpoint: named in the message.
    """
    # Checkpoints written before a setting existed were made with its old behaviour.
    saved = {**LEGACY_SETTINGS, **saved}
    current = {**LEGACY_SETTINGS, **current}
    differences = [
        f"{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if json.dumps(saved.get(key), sort_keys=True) != json.dumps(current.get(key), sort_keys=True)
    ]
    if differences:
        raise CheckpointMismatchError(
            f"checkpoint {str(checkpoint)!r} was written by a run with other settings (" + "; ".join(differences) + ")."
        )


class CheckpointCallback(keras.callbacks.Callback):
    """Saves checkpoints during ``fit``: every epoch, every ``every_seconds``, and on a signal.

    Args:
        manager: where checkpoints go.
        state_fn: returns the ``state.json`` facts for the current step.
        every_seconds: save after the batch during which this much time has passed
            since the last save (``None``: only per epoch).
        signals: a :class:`~tfp_realnvp.training.interrupts.SignalCatcher`; when it has
            received a signal, the callback saves after the current batch and stops
            training.
        write: whether this process writes checkpoints (``False`` in the processes
            other than 0 of a multi-process job: they still stop on a signal).

    Attributes:
        last: the newest checkpoint written or restored, or ``None``.
        stopped_by_signal: whether it stopped training because of a signal.

    Raises:
        TrainingDiverged: (from ``fit``) when the weights to save are not finite.
    """

    def __init__(
        self,
        manager: CheckpointManager,
        *,
        state_fn: Callable[[], dict] | None = None,
        every_seconds: float | None = None,
        signals=None,
        last: Checkpoint | None = None,
        write: bool = True,
    ):
        super().__init__()
        every_seconds = check_number(every_seconds, name="every_seconds", low=0, allow_none=True)
        self.manager = manager
        self.state_fn = state_fn or dict
        self.every_seconds = every_seconds
        self.signals = signals
        self.last = last
        self.write = bool(write)
        self.stopped_by_signal = False
        self._last_time = time.monotonic()

    def save(self) -> Checkpoint:
        """Saves a checkpoint now (or returns the one of this step)."""
        if not self.write:
            return self.last
        try:
            with without_distribution():
                self.last = self.manager.save(self.model, self.state_fn())
        except NonFiniteWeightsError as error:
            step = model_step(self.model)
            self.model.stop_training = True
            raise TrainingDiverged(f"training diverged: {error}", step=step, checkpoint=self.last) from None
        self._last_time = time.monotonic()
        return self.last

    def on_train_begin(self, logs=None):
        self._last_time = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.signals is not None and self.signals.received is not None:
            self.save()
            self.stopped_by_signal = True
            self.model.stop_training = True
        elif self.every_seconds is not None and time.monotonic() - self._last_time >= self.every_seconds:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()
