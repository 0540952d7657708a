"""``train``: fit a Real NVP with checkpoints, then write the model, grids and report."""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import time
import warnings

import keras

from tfp_realnvp.cli.evaluate import classify_accuracy, mean_bits_per_dim
from tfp_realnvp.cli.flags import add_data_arguments, add_model_arguments, add_training_arguments
from tfp_realnvp.cli.inputs import (
    is_streamed,
    is_tfds,
    load_labelled_split,
    load_split,
    statistics_refresh,
    train_input,
)
from tfp_realnvp.cli.run_state import (
    CHECKPOINT_DIRNAME,
    MODEL_FILENAME,
    REPORT_FILENAME,
    agree_on_start,
    command_line,
    diverged_report,
    resume_from_checkpoint,
    run_settings,
    verbosity,
)
from tfp_realnvp.cli.sample import class_grid_labels
from tfp_realnvp.internal import atomic
from tfp_realnvp.model.baselines import independent_pixel_bits_per_dim
from tfp_realnvp.model.files import save_realnvp
from tfp_realnvp.model.realnvp import RealNVP
from tfp_realnvp.training import batch_stream
from tfp_realnvp.training.callbacks import SampleGrid
from tfp_realnvp.training.checkpoints import CheckpointCallback, CheckpointManager, TrainingDiverged, model_step
from tfp_realnvp.training.distributed import AgreeToStop, Topology, setup_data_parallel, without_distribution
from tfp_realnvp.training.interrupts import Interrupted, SignalCatcher
from tfp_realnvp.training.steps import StopAtStep, StopOnNonFiniteLoss, TimeBudget, plan_steps, write_json


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``train``'s flags: data, architecture, ``--conditional`` and training."""
    add_data_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="train a class-conditional model p(x | y) on the labels of --data (shipped, an IDX directory with label files, a .npz with a label array, an image folder with one subdirectory per class, or a tfds name); grids get one row per class and the report the accuracy of classify.",
    )
    add_training_arguments(parser, "train")
    parser.set_defaults(default_epochs=10)


def train(args) -> dict:
    """Trains a RealNVP, checkpointing as it goes, and writes the model, sample grids and
    ``report.json``; resumes from the newest checkpoint in ``--output-dir`` if there is one.

    Raises:
        TrainingDiverged: when the loss or the weights become non-finite.
        Interrupted: when SIGINT or SIGTERM stopped training (after a checkpoint).
        FileExistsError: when ``--output-dir`` holds a finished model and neither a
            checkpoint nor ``--fresh``.
        ValueError: for contradictory or bad flags, naming them.
    """
    out = pathlib.Path(args.output_dir)
    # First of all: joining a multi-process job must precede any JAX computation.
    topology = setup_data_parallel()
    if topology.data_parallel:
        print(f"training {topology.describe()}; --batch-size {args.batch_size} is the global batch")
    with contextlib.ExitStack() as stack:
        if topology.is_chief:
            try:
                stack.enter_context(atomic.directory_lock(out, blocking=False))
            except BlockingIOError:
                raise ValueError(
                    f"another run is writing to --output-dir {str(out)!r}; wait for it or choose another --output-dir."
                ) from None
        signals = stack.enter_context(SignalCatcher())
        return _train(args, out, signals, topology)


def _train(args, out: pathlib.Path, signals: SignalCatcher, topology: Topology) -> dict:
    if topology.data_parallel:
        topology.check_batch_size(args.batch_size, name="--batch-size")
    if topology.multi_process and args.time_budget:
        raise ValueError(
            f"--time-budget {args.time_budget:g} would stop the processes of a job at different steps; "
            "give --steps or --epochs instead."
        )
    manager = CheckpointManager(out / CHECKPOINT_DIRNAME, keep=args.keep_checkpoints)
    resume = agree_on_start(args, manager, topology)
    keras.utils.set_random_seed(args.seed)
    if args.precision != "float32":
        keras.mixed_precision.set_global_policy(args.precision)
    conditional = bool(getattr(args, "conditional", False))
    if conditional:
        if is_streamed(args):
            raise ValueError("--conditional reads labelled sets held in memory; received --stream (leave it out).")
        (train_images, train_labels), (test_images, test_labels) = (
            load_labelled_split(args, "train"),
            load_labelled_split(args, args.test_split),
        )
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
        if num_classes < 2:
            raise ValueError(
                f"--conditional needs at least 2 classes; --data {args.data!r} has labels {sorted(set(train_labels.tolist()))}."
            )
    else:
        train_images, test_images = load_split(args, "train"), load_split(args, args.test_split)
        train_labels = test_labels = None
        num_classes = None
    model = RealNVP(
        train_images.shape[1:],
        num_classes=num_classes,
        num_scales=args.num_scales,
        num_filters=args.num_filters,
        num_blocks=args.num_blocks,
        batch_norm=not args.no_batch_norm,
        recompute=args.recompute,
        seed=args.seed,
        **{
            key: value
            for key, value in (
                ("batch_norm_momentum", args.batch_norm_momentum),
                ("conditioner_batch_norm", args.conditioner_batch_norm),
            )
            if value is not None
        },
    )
    model.compile(learning_rate=args.learning_rate, jit_compile=args.jit_compile)
    settings = run_settings(args, model, train_images)
    start_step, checkpoint = resume_from_checkpoint(args, model, manager, settings) if resume else (0, None)
    resumed_from = start_step if resume else None

    per_pass = (
        None
        if is_tfds(args) or is_streamed(args)
        else batch_stream.batches_per_pass(len(train_images), args.batch_size, drop_remainder=topology.data_parallel)
    )
    plan = plan_steps(
        batches_per_pass=per_pass,
        epochs=args.epochs,
        steps=args.steps,
        steps_per_epoch=args.steps_per_epoch,
        default_epochs=args.default_epochs,
    )
    if start_step >= plan.total_steps:
        print(
            f"the checkpoint is at step {start_step}; this run asks for {plan.total_steps} steps: nothing left to train"
        )

    def state() -> dict:
        step = model_step(model)
        return {
            "settings": settings,
            "epoch": step // plan.steps_per_epoch,
            "steps_per_epoch": plan.steps_per_epoch,
            "total_steps": plan.total_steps,
        }

    chief = topology.is_chief
    checkpoints = CheckpointCallback(
        manager, state_fn=state, every_seconds=args.checkpoint_every, signals=signals, last=checkpoint, write=chief
    )
    callbacks = [AgreeToStop(topology, signals), StopOnNonFiniteLoss(), checkpoints, StopAtStep(plan.total_steps)]
    if conditional:
        grid = {"num_samples": 8 * num_classes, "labels": class_grid_labels(num_classes, 8), "columns": 8}
    else:
        grid = {"num_samples": 64}
    callbacks.append(
        SampleGrid(
            str(out),
            temperature=args.temperature,
            seed=args.seed,
            log_dir=args.tensorboard if chief else None,
            write=chief,
            **grid,
        )
    )
    if args.tensorboard and chief:
        callbacks.append(keras.callbacks.TensorBoard(args.tensorboard))
    budget = TimeBudget(args.time_budget) if args.time_budget else None
    if budget:
        callbacks.append(budget)
    verbose = verbosity(args) if chief else 0

    def fit(start: int, *, steps_per_epoch: int, extra_callbacks=()):
        x, fit_kwargs = train_input(args, train_images, start, topology, train_labels)
        with warnings.catch_warnings():
            own_refresh = statistics_refresh(
                model, x, train_images if train_labels is None else (train_images, train_labels), args
            )
            first = [own_refresh] if own_refresh is not None else []
            return model.fit(
                x,
                initial_epoch=start // plan.steps_per_epoch,
                epochs=plan.epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=[*first, *callbacks, *extra_callbacks],
                verbose=verbose,
                **fit_kwargs,
            )

    def stopped() -> bool:
        return signals.received is not None or bool(budget and budget.stopped_early)

    histories = []
    started = time.perf_counter()
    try:
        with signals.graceful():
            step = start_step
            epoch, into_epoch = divmod(step, plan.steps_per_epoch)
            if into_epoch and step < plan.total_steps:
                # Finish the interrupted epoch first, so later epochs start where they would have.
                end = min((epoch + 1) * plan.steps_per_epoch, plan.total_steps)
                histories.append(fit(step, steps_per_epoch=end - step, extra_callbacks=[StopAtStep(end)]))
                step = model_step(model)
            if step < plan.total_steps and not stopped():
                histories.append(fit(step, steps_per_epoch=plan.steps_per_epoch))
            if model_step(model) > start_step or checkpoints.last is None:
                checkpoints.save()
    except TrainingDiverged as error:
        error.checkpoint = checkpoints.last
        if chief and not (out / MODEL_FILENAME).exists():  # else keep the report that belongs to that model
            write_json(out / REPORT_FILENAME, diverged_report(args, error, resumed_from))
        raise
    train_seconds = time.perf_counter() - started
    steps = model_step(model)
    if signals.received is not None:
        last = checkpoints.last
        raise Interrupted(
            signals.received,
            f"interrupted by {signals.signal_name} at step {steps} of {plan.total_steps}; checkpoint saved in "
            f"{last.path if last else manager.directory}. To resume, run the same command again "
            f"(or add --resume):\n  {command_line(args)}",
        )

    model_path = out / MODEL_FILENAME
    if chief:
        with without_distribution():
            save_realnvp(model, model_path)
    test_bpd = mean_bits_per_dim(model, test_images, batch_size=256, labels=test_labels)
    classify = classify_accuracy(model, test_images, test_labels) if conditional else None
    train_bpd = [h.history["bits_per_dim"][-1] for h in histories if h.history.get("bits_per_dim")]
    report = {
        "status": "stopped_by_time_budget" if budget and budget.stopped_early else "finished",
        "data": str(args.data),
        "image_shape": list(model.image_shape),
        "train_images": int(len(train_images)),
        "test_images": int(len(test_images)),
        "steps": steps,
        "requested_steps": plan.total_steps,
        "steps_per_epoch": plan.steps_per_epoch,
        "resumed_from_step": resumed_from,
        "train_seconds": round(train_seconds, 1),
        "stopped_by_time_budget": bool(budget and budget.stopped_early),
        "final_train_bits_per_dim": float(train_bpd[-1]) if train_bpd else None,
        # Per epoch of this invocation (a resumed run lists only the epochs it trained).
        "history": {
            key: [float(v) for h in histories for v in h.history.get(key, [])] for key in ("loss", "bits_per_dim")
        },
        "test_bits_per_dim": test_bpd,
        "independent_pixel_test_bits_per_dim": independent_pixel_bits_per_dim(train_images, test_images),
        "model": str(model_path),
        "checkpoint": str(checkpoints.last.path) if checkpoints.last else None,
        "config": model.get_config(),
    }
    if conditional:
        report["num_classes"] = num_classes
        report["test_bits_per_dim_given"] = "-log p(x | y) / (D ln 2) with the true labels"
        report["test_classify_accuracy"] = classify[0]
        report["test_classify_images"] = classify[1]
    if topology.data_parallel:
        report["data_parallel"] = {
            "processes": topology.process_count,
            "devices": topology.num_devices,
            "global_batch_size": args.batch_size,
        }
    if not chief:
        return {"model": model, "report": report, "test_images": test_images}
    write_json(out / REPORT_FILENAME, report)
    print(
        f"test bits/dim: {test_bpd:.4f}  (independent-pixel baseline: {report['independent_pixel_test_bits_per_dim']:.4f}; {steps} steps in {train_seconds:.0f} s)"
    )
    if conditional:
        print(
            f"test classification accuracy of classify: {classify[0]:.4f} ({classify[1]} images, {num_classes} classes)"
        )
    return {"model": model, "report": report, "test_images": test_images}
