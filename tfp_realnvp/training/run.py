"""A whole training run: data, model, checkpoints and resume, signals, divergence, report.

:func:`train` is what ``python -m tfp_realnvp train`` runs::

    report = tfp_realnvp.train(data="shipped", num_filters=32, steps=2000, output_dir="run")

It writes ``model.keras``, a sample grid per epoch, ``report.json`` and
``checkpoints/`` into ``output_dir``; called again with the same configuration, it
resumes from the newest checkpoint there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import time
import warnings
from typing import Any, NamedTuple

import keras
import numpy as np

from tfp_realnvp.internal import atomic
from tfp_realnvp.model.files import save_realnvp
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training.callbacks import SampleGrid, TensorBoardLog
from tfp_realnvp.training.checkpoints import CheckpointCallback, CheckpointManager, TrainingDiverged, model_step
from tfp_realnvp.training.config import TrainingConfig
from tfp_realnvp.training.distributed import AgreeToStop, Topology, setup_data_parallel, without_distribution
from tfp_realnvp.training.inputs import (
    TrainingData,
    check_source_available,
    load_training_data,
    statistics_refresh,
    train_batches_per_pass,
    train_input,
)
from tfp_realnvp.training.interrupts import Interrupted, SignalCatcher
from tfp_realnvp.training.report import class_grid_labels, finished_report
from tfp_realnvp.training.run_files import CHECKPOINT_DIRNAME, MODEL_FILENAME, REPORT_FILENAME
from tfp_realnvp.training.run_state import agree_on_start, diverged_report, resume_from_checkpoint, run_settings
from tfp_realnvp.training.steps import StopAtStep, StopOnNonFiniteLoss, TimeBudget, plan_steps, write_json

#: Samples per row of the grids of a class-conditional model (one row per class).
GRID_COLUMNS = 8
#: Samples in the grids of an unconditional model.
GRID_SAMPLES = 64


class TrainingResult(NamedTuple):
    """What :func:`run_training` gives back: the report, the trained model and the test images."""

    report: dict
    model: RealNVP
    test_images: np.ndarray


def train(*, config: TrainingConfig | None = None, **options: Any) -> dict:
    """Trains a Real NVP, checkpointing as it goes, and writes the model, sample grids
    and ``report.json`` into ``output_dir``; resumes from the newest checkpoint there.

    Args:
        config: a :class:`~tfp_realnvp.training.config.TrainingConfig`, or ``None``
            for the defaults.
        **options: fields of ``TrainingConfig`` (``data``, ``num_filters``, ``steps``,
            ``output_dir``, ...), which replace those of ``config``.

    Returns:
        The report written to ``report.json``: status, steps, test bits/dim, the
        model's path and configuration, ...

    Raises:
        TrainingDiverged: when the loss or the weights became non-finite (its
            ``checkpoint`` is the last good one).
        Interrupted: when SIGINT or SIGTERM stopped training (after a checkpoint).
        FileExistsError: when ``output_dir`` holds a finished model and neither a
            checkpoint nor ``fresh=True``.
        ValueError: for contradictory or bad options, naming them.
    """
    return run_training(config, **options).report


def run_training(config: TrainingConfig | None = None, **options: Any) -> TrainingResult:
    """:func:`train`, returning the trained model and the test images with the report."""
    config = dataclasses.replace(config, **options) if config is not None else TrainingConfig(**options)
    out = pathlib.Path(config.output_dir)
    # First of all: joining a multi-process job must precede any JAX computation.
    topology = setup_data_parallel()
    if topology.data_parallel:
        config.log(f"training {topology.describe()}; batch_size={config.batch_size} is the global batch")
    check_source_available(config)
    created = _missing_directories(out)
    try:
        return _locked_run(config, topology, out)
    except BaseException:
        if topology.is_chief:
            _remove_empty_directories(created)
        raise


def _missing_directories(path: pathlib.Path) -> list[pathlib.Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_empty_directories(created: list[pathlib.Path]) -> None:
    """Removes the directories of ``created`` (deepest first) that hold nothing but empty
    directories, so that a run that failed before writing anything leaves nothing behind."""
    if not created:
        return
    for folder, _, _ in sorted(os.walk(created[0]), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            os.rmdir(folder)
    for folder in created[1:]:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _locked_run(config: TrainingConfig, topology: Topology, out: pathlib.Path) -> TrainingResult:
    """The run, holding the lock on ``out``, under the signal catcher, restoring the dtype policy."""
    with contextlib.ExitStack() as stack:
        if topology.is_chief:
            try:
                stack.enter_context(atomic.directory_lock(out, blocking=False))
            except BlockingIOError:
                raise ValueError(
                    f"another run is writing to output_dir {str(out)!r}; wait for it or choose another output_dir."
                ) from None
        signals = stack.enter_context(SignalCatcher())
        # The run may set a mixed-precision policy; the caller's comes back afterwards.
        stack.callback(keras.mixed_precision.set_global_policy, keras.mixed_precision.global_policy())
        return _Run(config, topology, signals).execute()


def build_model(config: TrainingConfig, data: TrainingData) -> RealNVP:
    """The compiled ``RealNVP`` that ``config`` describes, for images like ``data``'s."""
    optional = {
        key: value
        for key, value in (
            ("batch_norm_momentum", config.batch_norm_momentum),
            ("conditioner_batch_norm", config.conditioner_batch_norm),
        )
        if value is not None
    }
    model = RealNVP(
        data.train_images.shape[1:],
        num_classes=data.num_classes,
        num_scales=config.num_scales,
        num_filters=config.num_filters,
        num_blocks=config.num_blocks,
        batch_norm=config.batch_norm,
        recompute=config.recompute,
        dequantization=config.dequantization,
        seed=config.seed,
        **optional,
    )
    model.compile(learning_rate=config.learning_rate, jit_compile=config.jit_compile)
    return model


class _Run:
    """One invocation of a run, from claiming its directory to its report."""

    def __init__(self, config: TrainingConfig, topology: Topology, signals: SignalCatcher):
        self.config = config
        self.topology = topology
        self.signals = signals
        self.out = pathlib.Path(config.output_dir)
        self.manager = CheckpointManager(self.out / CHECKPOINT_DIRNAME, keep=config.keep_checkpoints)
        self.histories = []
        self.budget = TimeBudget(config.time_budget) if config.time_budget else None

    def execute(self) -> TrainingResult:
        """Prepares, trains and reports."""
        config = self.config
        resume = self._start()
        self.data = load_training_data(config, test_split=config.test_split, conditional=config.conditional)
        self.model = build_model(config, self.data)
        settings = run_settings(config, self.model, self.data.train_images)
        start_step, checkpoint = (
            resume_from_checkpoint(config, self.model, self.manager, settings) if resume else (0, None)
        )
        self.resumed_from = start_step if resume else None
        self.plan = plan_steps(
            batches_per_pass=train_batches_per_pass(
                config, self.data, batch_size=config.batch_size, topology=self.topology
            ),
            epochs=config.epochs,
            steps=config.steps,
            steps_per_epoch=config.steps_per_epoch,
            default_epochs=config.default_epochs,
        )
        if start_step >= self.plan.total_steps:
            config.log(
                f"the checkpoint is at step {start_step}; this run asks for {self.plan.total_steps} steps: "
                "nothing left to train"
            )
        self.checkpoints = CheckpointCallback(
            self.manager,
            state_fn=lambda: self._state(settings),
            every_seconds=config.checkpoint_every,
            signals=self.signals,
            last=checkpoint,
            write=self.topology.is_chief,
        )
        self.callbacks = self._callbacks()
        train_seconds = self._train(start_step)
        return self._finish(train_seconds)

    def _start(self) -> bool:
        """Refuses what the job cannot do, claims the output directory, seeds; whether to resume."""
        config, topology = self.config, self.topology
        if topology.data_parallel:
            topology.check_batch_size(config.batch_size, name="batch_size")
        if topology.multi_process and config.time_budget:
            raise ValueError(
                f"time_budget={config.time_budget:g} would stop the processes of a job at different steps; "
                "give steps=N or epochs=N instead."
            )
        resume = agree_on_start(config, self.manager, topology)
        keras.utils.set_random_seed(config.seed)
        if config.precision != "float32":
            keras.mixed_precision.set_global_policy(config.precision)
        return resume

    def _state(self, settings: dict) -> dict:
        """The ``state.json`` facts of a checkpoint of the current step."""
        return {
            "settings": settings,
            "epoch": model_step(self.model) // self.plan.steps_per_epoch,
            "steps_per_epoch": self.plan.steps_per_epoch,
            "total_steps": self.plan.total_steps,
        }

    def _callbacks(self) -> list:
        """The callbacks of every ``fit``: agreement on stops, divergence, checkpoints, grids, ..."""
        config, chief = self.config, self.topology.is_chief
        callbacks = [
            AgreeToStop(self.topology, self.signals),
            StopOnNonFiniteLoss(),
            self.checkpoints,
            StopAtStep(self.plan.total_steps),
        ]
        num_classes = self.data.num_classes
        if num_classes:
            grid = {
                "num_samples": GRID_COLUMNS * num_classes,
                "labels": class_grid_labels(num_classes, GRID_COLUMNS),
                "columns": GRID_COLUMNS,
            }
        else:
            grid = {"num_samples": GRID_SAMPLES}
        log_dir = config.tensorboard if chief else None
        callbacks.append(
            SampleGrid(
                str(self.out), temperature=config.temperature, seed=config.seed, log_dir=log_dir, write=chief, **grid
            )
        )
        if config.tensorboard:
            data = self.data
            test = data.test_images if data.test_labels is None else (data.test_images, data.test_labels)
            callbacks.append(
                TensorBoardLog(config.tensorboard, validation_data=test, batch_size=config.batch_size, write=chief)
            )
        if self.budget:
            callbacks.append(self.budget)
        return callbacks

    def _fit(self, start: int, *, steps_per_epoch: int, extra_callbacks=()):
        """``fit`` from step ``start`` to the end of the plan (or of ``steps_per_epoch`` steps)."""
        config = self.config
        x, fit_kwargs = train_input(
            config,
            self.data,
            start_step=start,
            topology=self.topology,
            batch_size=config.batch_size,
            seed=config.seed,
            flip=config.flip,
        )
        with warnings.catch_warnings():
            own_refresh = statistics_refresh(self.model, x, self.data, batch_size=config.batch_size, seed=config.seed)
            first = [own_refresh] if own_refresh is not None else []
            return self.model.fit(
                x,
                initial_epoch=start // self.plan.steps_per_epoch,
                epochs=self.plan.epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=[*first, *self.callbacks, *extra_callbacks],
                verbose=config.verbosity if self.topology.is_chief else 0,
                **fit_kwargs,
            )

    def _stopped(self) -> bool:
        return self.signals.received is not None or bool(self.budget and self.budget.stopped_early)

    def _train(self, start_step: int) -> float:
        """Trains from ``start_step`` to the end of the plan; returns the seconds it took.

        Raises:
            TrainingDiverged: after writing the report of the divergence (process 0).
        """
        plan, checkpoints = self.plan, self.checkpoints
        started = time.perf_counter()
        try:
            with self.signals.graceful():
                step = start_step
                epoch, into_epoch = divmod(step, plan.steps_per_epoch)
                if into_epoch and step < plan.total_steps:
                    # Finish the interrupted epoch first, so later epochs start where they would have.
                    end = min((epoch + 1) * plan.steps_per_epoch, plan.total_steps)
                    self.histories.append(
                        self._fit(step, steps_per_epoch=end - step, extra_callbacks=[StopAtStep(end)])
                    )
                    step = model_step(self.model)
                if step < plan.total_steps and not self._stopped():
                    self.histories.append(self._fit(step, steps_per_epoch=plan.steps_per_epoch))
                if model_step(self.model) > start_step or checkpoints.last is None:
                    checkpoints.save()
        except TrainingDiverged as error:
            error.checkpoint = checkpoints.last
            # A finished model keeps the report that belongs to it.
            if self.topology.is_chief and not (self.out / MODEL_FILENAME).exists():
                write_json(self.out / REPORT_FILENAME, diverged_report(self.config.data, error, self.resumed_from))
            raise
        return time.perf_counter() - started

    def _interrupted(self) -> Interrupted:
        """The error of a run that a signal stopped, saying how to resume it."""
        last = self.checkpoints.last
        where = last.path if last else self.manager.directory
        command = self.config.resume_command
        how = (
            f"run the same command again (or add --resume):\n  {command}"
            if command
            else "call train again with the same configuration (or resume=True)."
        )
        return Interrupted(
            self.signals.received,
            f"interrupted by {self.signals.signal_name} at step {model_step(self.model)} of {self.plan.total_steps}; "
            f"checkpoint saved in {where}. To resume, {how}",
        )

    def _finish(self, train_seconds: float) -> TrainingResult:
        """Saves the model and writes the report (process 0); raises if a signal stopped training."""
        if self.signals.received is not None:
            raise self._interrupted()
        config, chief, model = self.config, self.topology.is_chief, self.model
        model_path = self.out / MODEL_FILENAME
        ood = None
        if chief:
            with without_distribution():
                if config.fit_ood:
                    ood = model.fit_ood(
                        self.data.train_images, self.data.train_labels, max_images=config.fit_ood, seed=config.seed
                    )
                    config.log(
                        f"fitted the OOD statistics on {ood['num_images']} training images "
                        f"(bits/dim {ood['mean_bits_per_dim']:.4f} +- {ood['std_bits_per_dim']:.4f})"
                    )
                save_realnvp(model, model_path)
        last = self.checkpoints.last
        report = finished_report(
            model,
            data_name=config.data,
            data=self.data,
            plan=self.plan,
            histories=self.histories,
            resumed_from=self.resumed_from,
            train_seconds=train_seconds,
            stopped_by_time_budget=bool(self.budget and self.budget.stopped_early),
            model_path=str(model_path),
            checkpoint_path=str(last.path) if last else None,
            topology=self.topology,
            batch_size=config.batch_size,
        )
        if ood is not None:
            report["ood_statistics"] = ood
        if chief:
            write_json(self.out / REPORT_FILENAME, report)
            config.log(
                f"test bits/dim: {report['test_bits_per_dim']:.4f}  (independent-pixel baseline: "
                f"{report['independent_pixel_test_bits_per_dim']:.4f}; {report['steps']} steps in {train_seconds:.0f} s)"
            )
            if self.data.num_classes:
                config.log(
                    f"test classification accuracy of classify: {report['test_classify_accuracy']:.4f} "
                    f"({report['test_classify_images']} images, {self.data.num_classes} classes)"
                )
        return TrainingResult(report, model, self.data.test_images)
