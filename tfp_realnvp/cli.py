"""Command line: ``python -m tfp_realnvp {train,evaluate,sample,export,demo}``.

``train --conditional`` trains a class-conditional model ``p(x | y)`` on labelled data
(``tfp_realnvp.data.load_labelled_images``: the shipped set, IDX directories with label
files, ``.npz`` files with a label array, image folders with one subdirectory per class,
tfds names); its sample grids have one row per class and its report adds the accuracy
of ``classify``. ``evaluate`` of a conditional model reports ``-log p(x | y)`` in bits/dim
and the classification accuracy; ``sample --label K`` draws from one class.

``train`` checkpoints into ``<output-dir>/checkpoints`` at the end of every epoch, every
``--checkpoint-every`` seconds and on SIGINT/SIGTERM; running the same command again
resumes from the newest checkpoint. Every file it keeps is written aside and renamed
into place, and a model already in ``--output-dir`` is replaced only when resuming or
with ``--fresh``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import pathlib
import re
import shlex
import sys
import time
import types
import warnings

import keras
import numpy as np

from tfp_realnvp import atomic, batch_stream
from tfp_realnvp import data as data_lib
from tfp_realnvp.baselines import independent_pixel_bits_per_dim
from tfp_realnvp.bijectors.recompute import RECOMPUTE_MODES
from tfp_realnvp.callbacks import SampleGrid
from tfp_realnvp.checkpointing import (
    CheckpointCallback,
    CheckpointManager,
    CheckpointMismatchError,
    TrainingDiverged,
    compare_settings,
    model_step,
)
from tfp_realnvp.distributed import (
    AgreeToStop,
    Topology,
    broadcast_from_chief,
    setup_data_parallel,
    without_distribution,
)
from tfp_realnvp.interrupts import Interrupted, SignalCatcher
from tfp_realnvp.model import RESUME_SETTING_KEYS, RealNVP
from tfp_realnvp.model_files import load_realnvp, save_realnvp
from tfp_realnvp.training import StopAtStep, StopOnNonFiniteLoss, TimeBudget, plan_steps, write_json
from tfp_realnvp.visualize import save_grid

#: Exit status of a run whose training diverged (NaN or infinite loss or weights).
EXIT_DIVERGED = 3
#: Exit status of a command refused for bad flags, files or data.
EXIT_USAGE = 2

MODEL_FILENAME = "model.keras"
REPORT_FILENAME = "report.json"
CHECKPOINT_DIRNAME = "checkpoints"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number; received {text!r}")
    return value


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default="shipped",
        help="'shipped' (Fashion-MNIST inside the package), a .npz file, an IDX directory, an image folder, or a tfds name such as cifar10 or celeb_a (default: shipped).",
    )
    parser.add_argument(
        "--pad-to",
        type=_positive_int,
        default=None,
        help="zero-pad images to this side (e.g. 32 for 28x28 data with 3 scales).",
    )
    parser.add_argument(
        "--image-size", type=_positive_int, default=None, help="center-crop and resize local images to this side."
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=64, help="images per batch (default: 64, as in the paper)."
    )
    parser.add_argument("--data-dir", default=None, help="tfds data directory (tfds names only).")
    parser.add_argument(
        "--max-images",
        type=_positive_int,
        default=None,
        help="use at most N images of each split held in memory (tfds sources: N images of the evaluation split; default 10000 there).",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="stream --data from disk through tf.data instead of loading it into memory (an image folder, searched recursively, or a folder of TFRecord / .npz shards; TensorFlow backend). Memory stays flat as the set grows; the final report uses the first --max-images test images (default 10000).",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(data_lib.PRESETS),
        default=None,
        help="the paper's preprocessing of a streamed set: celeba (148x148 center crop, resized to 64x64) or lsun (smaller side to 96, 64x64 center crop). Needs --stream.",
    )
    parser.add_argument(
        "--test-split",
        default="test",
        help="split for the final bits/dim report (default: test; tfds also accepts e.g. validation).",
    )


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num-scales", type=_positive_int, default=2, help="scales of the multi-scale flow (default: 2)."
    )
    parser.add_argument(
        "--num-filters",
        type=_positive_int,
        default=64,
        help="conditioner width at the first scale; doubles per scale (default: 64).",
    )
    parser.add_argument("--num-blocks", type=int, default=8, help="residual blocks per conditioner (default: 8).")
    parser.add_argument(
        "--no-batch-norm", action="store_true", help="leave out the batch-normalization steps between couplings."
    )


def _is_tfds(args) -> bool:
    return data_lib.tfds_key(str(args.data)) is not None and not os.path.exists(str(args.data))


def _is_streamed(args) -> bool:
    if getattr(args, "preset", None) and not getattr(args, "stream", False):
        raise ValueError(f"--preset {args.preset} applies to streamed sets; add --stream.")
    if getattr(args, "stream", False):
        if keras.backend.backend() != "tensorflow" and not os.path.isdir(str(args.data)):
            raise ValueError(
                f"on {keras.backend.backend()}, --stream reads image folders; received --data {args.data!r} "
                "(shard files stream through tf.data: use the TensorFlow backend)."
            )
        if _is_tfds(args):
            raise ValueError(
                f"--stream is for local folders and shard files; the tfds source {args.data!r} streams already."
            )
        if args.pad_to is not None:
            raise ValueError("--pad-to applies to images held in memory; with --stream give --image-size or --preset.")
        return True
    return False


def _stream(args, split: str, **options):
    """A ``tf.data`` stream of ``--data`` (TensorFlow backend)."""
    return data_lib.stream_dataset(args.data, split=split, preset=args.preset, image_size=args.image_size, **options)


def _folder_batches(args, split: str, **options) -> data_lib.FolderBatches:
    """A NumPy stream of the image folder ``--data`` (backends without TensorFlow)."""
    files = data_lib.folder_files(args.data, split=split)
    return data_lib.FolderBatches(files, preset=args.preset, image_size=args.image_size, **options)


def _load(args, split: str) -> np.ndarray:
    """Local images as a uint8 array, or a tfds or streamed split materialised up to
    ``--max-images`` (default 10000)."""
    if _is_streamed(args):
        limit = args.max_images or 10000
        if keras.backend.backend() != "tensorflow":
            batches = _folder_batches(args, split, batch_size=min(limit, 256), shuffle=False)
            return np.concatenate(list(itertools.islice(batches, math.ceil(limit / min(limit, 256)))))[:limit]
        dataset = _stream(args, split, batch_size=None, shuffle=False)
        return np.stack(list(dataset.take(limit).as_numpy_iterator()))
    if _is_tfds(args):
        dataset = data_lib.get_dataset(
            args.data, split=split, image_size=args.image_size, pad_to=args.pad_to, data_dir=args.data_dir
        )
        return np.stack(list(dataset.take(args.max_images or 10000).as_numpy_iterator()))
    images = data_lib.load_images(args.data, split=split, pad_to=args.pad_to, image_size=args.image_size)
    return images[: args.max_images] if args.max_images else images


def _report(model: RealNVP, test: np.ndarray, batch_size: int, labels: np.ndarray | None = None) -> float:
    return float(np.mean(model.bits_per_dim(test, labels, batch_size=batch_size)))


def _load_labelled(args, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``--data`` (held in memory) for a class-conditional model."""
    if getattr(args, "stream", False):
        raise ValueError("--conditional reads labelled sets held in memory; received --stream (leave it out).")
    images, labels, _ = data_lib.load_labelled_images(
        args.data,
        split=split,
        pad_to=args.pad_to,
        image_size=args.image_size,
        data_dir=args.data_dir,
        max_images=args.max_images or 10000,
    )
    if args.max_images:
        images, labels = images[: args.max_images], labels[: args.max_images]
    return images, labels


#: Test images on which ``train --conditional`` and ``evaluate`` measure ``classify``.
CLASSIFY_IMAGES = 2000


def _classify_accuracy(
    model: RealNVP, images: np.ndarray, labels: np.ndarray, limit: int = CLASSIFY_IMAGES
) -> tuple[float, int]:
    """Share of the first ``limit`` images whose most probable class (uniform prior) is their label."""
    images, labels = images[:limit], labels[:limit]
    predicted = model.classify(images).argmax(axis=1)
    return float(np.mean(predicted == labels)), int(len(images))


def _class_grid_labels(num_classes: int, columns: int) -> np.ndarray:
    """Labels of a grid with one row per class: ``columns`` samples of each."""
    return np.repeat(np.arange(num_classes, dtype=np.int32), columns)


def _train_input(args, train_images, start_step: int, topology: Topology, train_labels=None):
    """``(x, fit_kwargs)`` whose first batch is the one of training step ``start_step``
    (this process's rows of it, in a multi-process job)."""
    if _is_streamed(args):
        # Like tfds sources, a stream restarts with a shuffle seeded by (seed, start step).
        stream_seed = int(np.random.default_rng([int(args.seed) % 2**32, int(start_step)]).integers(2**31 - 1))
        if keras.backend.backend() != "tensorflow":
            # Each process decodes only its share of the files: its rows of every batch.
            batches = _folder_batches(
                args,
                "train",
                batch_size=args.batch_size // topology.process_count,
                seed=stream_seed,
                repeat=True,
                flip=args.flip,
                num_shards=topology.process_count,
                shard_index=topology.process_index,
            )
            return ((batch,) for batch in batches), {"shuffle": False}
        dataset = _stream(args, "train", batch_size=args.batch_size, seed=stream_seed, repeat=True, flip=args.flip)
        return dataset, {"shuffle": False}
    if _is_tfds(args):
        dataset = data_lib.get_dataset(
            args.data,
            split="train",
            image_size=args.image_size,
            pad_to=args.pad_to,
            data_dir=args.data_dir,
            shuffle_files=True,
        )
        return batch_stream.streamed_fit_input(
            dataset, batch_size=args.batch_size, seed=args.seed, flip=args.flip, start_step=start_step
        )
    if args.flip and keras.backend.backend() != "tensorflow":
        raise ValueError(f"--flip needs the TensorFlow backend; received --flip on {keras.backend.backend()}.")
    return batch_stream.resumable_fit_input(
        train_images,
        batch_size=args.batch_size,
        seed=args.seed,
        flip=args.flip,
        start_step=start_step,
        topology=topology,
        labels=train_labels,
    )


def _statistics_refresh(model: RealNVP, x, train_images, args):
    """A callback that re-estimates the batch-norm averages from ``train_images`` when
    ``RealNVP.fit`` cannot do it from ``x`` itself (the endless generator used on
    backends without ``tf.data``), else ``None``. Call it inside
    ``warnings.catch_warnings()``: it silences ``fit``'s warning about that generator.
    """
    if keras.backend.backend() == "tensorflow" or not isinstance(x, types.GeneratorType):
        return None
    try:
        from tfp_realnvp.batch_norm_refresh import make_refresh_callback
    except ImportError:
        return None
    num_batches = int(getattr(model, "refresh_batches", 0) or 0)
    callback = make_refresh_callback(
        model, train_images, batch_size=args.batch_size, num_batches=num_batches, seed=args.seed
    )
    if callback is not None:
        warnings.filterwarnings(
            "ignore", message="batch-norm statistics will not be re-estimated", category=UserWarning
        )
    return callback


def _verbosity(args) -> int:
    """``--verbose``, or by default a progress bar on a terminal and one line per epoch otherwise."""
    if args.verbose is not None:
        return args.verbose
    return 1 if sys.stdout.isatty() else 2


def _command_line(args) -> str:
    argv = getattr(args, "argv", None)
    if argv is None:
        argv = sys.argv[1:]
    return shlex.join(["python", "-m", "tfp_realnvp", *argv])


def _run_settings(args, model: RealNVP, train_images: np.ndarray) -> dict:
    """What must match for a checkpoint to be resumed by this command."""
    config = model.get_config()
    return {
        "data": str(args.data),
        "image_size": args.image_size,
        "pad_to": args.pad_to,
        "max_images": args.max_images,
        "train_images": int(len(train_images)),
        "batch_size": args.batch_size,
        "seed": args.seed,
        "flip": bool(args.flip),
        "precision": args.precision,
        **{key: config[key] for key in RESUME_SETTING_KEYS},
        # Only a conditional run records its classes, so checkpoints of earlier versions still resume.
        **({"num_classes": config["num_classes"]} if config.get("num_classes") is not None else {}),
    }


def _report_status(path: pathlib.Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def _claim_output_dir(args, manager: CheckpointManager) -> bool:
    """Decides between a fresh start and resuming; refuses to replace a finished model.

    Returns:
        Whether to resume from a checkpoint.
    """
    out = pathlib.Path(args.output_dir)
    if args.fresh:
        removed = manager.discard_all()
        if removed:
            print(f"--fresh: deleted {removed} checkpoint(s) in {manager.directory}")
        return False
    if manager.latest() is not None:
        return True
    if args.resume:
        raise ValueError(f"--resume: there is no checkpoint to resume from in {str(manager.directory)!r}.")
    existing = [out / name for name in (MODEL_FILENAME, REPORT_FILENAME) if (out / name).exists()]
    if existing == [out / REPORT_FILENAME] and _report_status(existing[0]) == "diverged":
        existing = []  # the report of a run that left no model
    if existing:
        raise FileExistsError(
            f"--output-dir {str(out)!r} already holds {existing[0].name} from an earlier run and no checkpoint "
            "to resume; pass --fresh to train a new model that replaces it, or choose another --output-dir."
        )
    return False


def _resume(args, model: RealNVP, manager: CheckpointManager, settings: dict) -> tuple[int, object]:
    latest = manager.latest()
    saved = latest.read_state().get("settings", {})
    try:
        compare_settings(saved, settings, checkpoint=latest.path)
    except CheckpointMismatchError as error:
        raise CheckpointMismatchError(
            f"{error} Run with the flags of that run to resume it, or pass --fresh to start over (deletes its checkpoints)."
        ) from None
    checkpoint, _ = manager.restore_latest(model)
    step = model_step(model)
    print(f"resuming from {checkpoint.path} (step {step})")
    saved_rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    if not math.isclose(saved_rate, args.learning_rate, rel_tol=1e-6):
        model.optimizer.learning_rate = args.learning_rate
        print(f"--learning-rate {args.learning_rate:g} replaces the checkpoint's {saved_rate:g}")
    return step, checkpoint


def _diverged_report(args, error: TrainingDiverged, resumed_from: int | None) -> dict:
    checkpoint = error.checkpoint
    return {
        "status": "diverged",
        "data": str(args.data),
        "diverged_at_step": error.step,
        "message": str(error),
        "last_good_checkpoint": None if checkpoint is None else str(checkpoint.path),
        "last_good_step": None if checkpoint is None else checkpoint.step,
        "resumed_from_step": resumed_from,
        "model": None,
    }


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


_START_FRESH, _START_RESUME, _START_REFUSED = 0, 1, 2


def _agree_on_start(args, manager: CheckpointManager, topology: Topology) -> bool:
    """Process 0 claims ``--output-dir`` and tells the others whether to resume.

    Returns:
        Whether to resume from the newest checkpoint.
    """
    if topology.is_chief:
        try:
            resume = _claim_output_dir(args, manager)
            manager.remove_leftovers()
        except BaseException:
            broadcast_from_chief(topology, _START_REFUSED)
            raise
        broadcast_from_chief(topology, _START_RESUME if resume else _START_FRESH)
        return resume
    decision = broadcast_from_chief(topology, _START_REFUSED)
    if decision == _START_REFUSED:
        raise ValueError("process 0 of the job refused to start (its error says why); nothing was trained.")
    return decision == _START_RESUME


def _train(args, out: pathlib.Path, signals: SignalCatcher, topology: Topology) -> dict:
    if topology.data_parallel:
        topology.check_batch_size(args.batch_size, name="--batch-size")
    if topology.multi_process and args.time_budget:
        raise ValueError(
            f"--time-budget {args.time_budget:g} would stop the processes of a job at different steps; "
            "give --steps or --epochs instead."
        )
    manager = CheckpointManager(out / CHECKPOINT_DIRNAME, keep=args.keep_checkpoints)
    resume = _agree_on_start(args, manager, topology)
    keras.utils.set_random_seed(args.seed)
    if args.precision != "float32":
        keras.mixed_precision.set_global_policy(args.precision)
    conditional = bool(getattr(args, "conditional", False))
    if conditional:
        if _is_streamed(args):
            raise ValueError("--conditional reads labelled sets held in memory; received --stream (leave it out).")
        (train_images, train_labels), (test_images, test_labels) = (
            _load_labelled(args, "train"),
            _load_labelled(args, args.test_split),
        )
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
        if num_classes < 2:
            raise ValueError(
                f"--conditional needs at least 2 classes; --data {args.data!r} has labels {sorted(set(train_labels.tolist()))}."
            )
    else:
        train_images, test_images = _load(args, "train"), _load(args, args.test_split)
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
    settings = _run_settings(args, model, train_images)
    start_step, checkpoint = _resume(args, model, manager, settings) if resume else (0, None)
    resumed_from = start_step if resume else None

    per_pass = (
        None
        if _is_tfds(args) or _is_streamed(args)
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
        grid = {"num_samples": 8 * num_classes, "labels": _class_grid_labels(num_classes, 8), "columns": 8}
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
    verbose = _verbosity(args) if chief else 0

    def fit(start: int, *, steps_per_epoch: int, extra_callbacks=()):
        x, fit_kwargs = _train_input(args, train_images, start, topology, train_labels)
        with warnings.catch_warnings():
            own_refresh = _statistics_refresh(
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
            write_json(out / REPORT_FILENAME, _diverged_report(args, error, resumed_from))
        raise
    train_seconds = time.perf_counter() - started
    steps = model_step(model)
    if signals.received is not None:
        last = checkpoints.last
        raise Interrupted(
            signals.received,
            f"interrupted by {signals.signal_name} at step {steps} of {plan.total_steps}; checkpoint saved in "
            f"{last.path if last else manager.directory}. To resume, run the same command again "
            f"(or add --resume):\n  {_command_line(args)}",
        )

    model_path = out / MODEL_FILENAME
    if chief:
        with without_distribution():
            save_realnvp(model, model_path)
    test_bpd = _report(model, test_images, batch_size=256, labels=test_labels)
    classify = _classify_accuracy(model, test_images, test_labels) if conditional else None
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


def evaluate(args) -> float:
    """Prints the mean bits/dim of a saved model on a split; for a class-conditional
    model ``-log p(x | y)`` with the true labels, and the accuracy of ``classify``."""
    model = load_realnvp(args.model)
    if model.num_classes is None:
        images = _load(args, args.split)
        bpd = _report(model, images, batch_size=args.batch_size)
        print(f"{args.split} bits/dim: {bpd:.4f} ({len(images)} images)")
        return bpd
    images, labels = _load_labelled(args, args.split)
    if labels.max() >= model.num_classes:
        raise ValueError(
            f"--data {args.data!r} has labels up to {int(labels.max())}; the model knows {model.num_classes} classes."
        )
    bpd = _report(model, images, batch_size=args.batch_size, labels=labels)
    accuracy, count = _classify_accuracy(model, images, labels, limit=args.classify_images)
    print(f"{args.split} conditional bits/dim: {bpd:.4f} ({len(images)} images)")
    print(f"{args.split} classification accuracy: {accuracy:.4f} ({count} images, {model.num_classes} classes)")
    return bpd


def sample(args) -> str:
    """Writes a PNG grid of samples from a saved model."""
    model = load_realnvp(args.model)
    columns = None
    if model.num_classes is None:
        if args.label is not None:
            raise ValueError(
                f"--label {args.label}: {args.model} is an unconditional model (trained without --conditional)."
            )
        labels, count = None, args.num_samples
    elif args.label is not None:
        if not 0 <= args.label < model.num_classes:
            raise ValueError(f"--label must lie in [0, {model.num_classes}); received --label {args.label}.")
        labels, count = args.label, args.num_samples
    else:  # one row per class
        columns = max(1, args.num_samples // model.num_classes)
        labels = _class_grid_labels(model.num_classes, columns)
        count = len(labels)
    images = model.sample(count, labels=labels, temperature=args.temperature, seed=args.seed)
    with atomic.atomic_path(args.output) as temporary:
        save_grid(images, temporary, columns=columns, scale=args.scale)
    rows = f", one row of {columns} per class" if columns else ""
    print(f"wrote {count} samples to {args.output}{rows}")
    return str(args.output)


def demo(args) -> dict:
    """Trains a small Real NVP on the shipped data and writes samples, an interpolation
    strip and a SavedModel."""
    args.data, args.pad_to, args.image_size = "shipped", None, None
    result = train(args)
    model, test_images = result["model"], result["test_images"]
    samples = os.path.join(args.output_dir, "samples.png")
    with atomic.atomic_path(samples) as temporary:
        save_grid(model.sample(64, temperature=args.temperature, seed=args.seed), temporary)
    rows = [model.interpolate(test_images[2 * i], test_images[2 * i + 1], steps=10) for i in range(4)]
    strip = os.path.join(args.output_dir, "interpolation.png")
    with atomic.atomic_path(strip) as temporary:
        save_grid(np.concatenate(rows), temporary, columns=10)
    from tfp_realnvp.export import export_saved_model

    exported = export_saved_model(
        model,
        os.path.join(args.output_dir, "saved_model"),
        version=1,
        overwrite=True,
        measured_bits_per_dim=result["report"]["test_bits_per_dim"],
    )
    print(f"wrote {samples}, {strip} and the SavedModel {exported}")
    return result


def _add_training_arguments(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help=f"training epochs (default: {100 if name == 'demo' else 10}; the demo stops at its --time-budget first). Not together with --steps.",
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="total training steps of the run, exactly (instead of --epochs; the data repeats as needed).",
    )
    p.add_argument(
        "--steps-per-epoch",
        type=_positive_int,
        default=None,
        help="batches per epoch (default: one pass over the data); the data repeats as needed.",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=330.0 if name == "demo" else None,
        help="stop training after this many seconds (checked after every batch).",
    )
    p.add_argument(
        "--learning-rate",
        type=float,
        default=3e-3 if name == "demo" else 1e-3,
        help="Adam learning rate (default: 1e-3 as in the paper; the short demo uses 3e-3). A resumed run uses this value.",
    )
    p.add_argument(
        "--batch-norm-momentum",
        type=float,
        default=None,
        help="decay of the batch-norm moving averages (default: the model's, 0.9; fit re-estimates them at every epoch end).",
    )
    p.add_argument(
        "--conditioner-batch-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="batch normalization after every convolution of the conditioner networks (default: the model's; see the README).",
    )
    p.add_argument(
        "--recompute",
        choices=list(RECOMPUTE_MODES),
        default="none",
        help="trade computation for memory in the train step: 'conditioner' recomputes each conditioner's activations in the backward pass, 'invertible' rebuilds every step's input from its output with the inverse (same gradients; see the README's memory table).",
    )
    p.add_argument("--flip", action="store_true", help="random horizontal flips (TensorFlow backend).")
    p.add_argument(
        "--precision",
        choices=["float32", "mixed_bfloat16", "mixed_float16"],
        default="float32",
        help="Keras dtype policy.",
    )
    p.add_argument(
        "--jit-compile",
        choices=["auto", "true", "false"],
        default="auto",
        help="XLA-compile the train step (auto: on where Keras deems it faster).",
    )
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature of the sample grids.")
    p.add_argument("--seed", type=int, default=0, help="random seed (data order, noise, samples).")
    p.add_argument(
        "--output-dir",
        default="realnvp_output" if name == "train" else "demo_output",
        help="where the model, samples, report.json and checkpoints/ go.",
    )
    p.add_argument("--tensorboard", default=None, help="TensorBoard log directory (losses and sample images).")
    p.add_argument(
        "--verbose",
        type=int,
        default=None,
        choices=[0, 1, 2],
        help="Keras progress output: 1 = progress bar with bits/dim, 2 = one line per epoch (default: 1 on a terminal, else 2).",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--resume",
        action="store_true",
        help="resume from the newest checkpoint in --output-dir and fail if there is none (without this flag a checkpoint is resumed when present).",
    )
    start.add_argument(
        "--fresh",
        action="store_true",
        help="start from scratch: delete the checkpoints in --output-dir and replace its model and report when done.",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_positive_float,
        default=600.0,
        metavar="SECONDS",
        help="also checkpoint after the batch during which this many seconds have passed since the last checkpoint (default: 600; checkpoints are written at every epoch end too).",
    )
    p.add_argument(
        "--keep-checkpoints",
        type=_positive_int,
        default=3,
        metavar="N",
        help="keep the newest N checkpoints in --output-dir/checkpoints (default: 3).",
    )


# The export command ------------------------------------------------------------------
def _export_version(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected 'auto' or a non-negative integer; received {text!r}")
    return int(text)


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the ``export`` command's flags to ``parser`` and returns it."""
    from tfp_realnvp.export import DEFAULT_MAX_SAMPLES

    parser.add_argument(
        "--model", required=True, metavar="PATH", help="path of the trained model (.keras file written by model.save)."
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="export directory; with --version, the model's base directory holding version subdirectories.",
    )
    parser.add_argument(
        "--version",
        type=_export_version,
        default=None,
        metavar="N|auto",
        help="write into OUTPUT/<version> (TF Serving layout): an integer, or 'auto' for the "
        "largest existing version + 1 (default: write into OUTPUT itself).",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing non-empty export directory (the old one is kept until the new one is in place).",
    )
    parser.add_argument(
        "--max-samples",
        type=int,
        default=DEFAULT_MAX_SAMPLES,
        metavar="N",
        help=f"the most images one request to the served sample signature may ask for; recorded in "
        f"assets/realnvp.json (default: {DEFAULT_MAX_SAMPLES}).",
    )
    bpd = parser.add_mutually_exclusive_group()
    bpd.add_argument(
        "--bits-per-dim",
        type=float,
        default=None,
        metavar="BPD",
        help="bits/dim measured elsewhere, recorded in assets/realnvp.json.",
    )
    bpd.add_argument(
        "--eval-data",
        default=None,
        metavar="SOURCE",
        help="measure bits/dim at export on these images ('shipped', a .npz file, an IDX or image "
        "directory; see tfp_realnvp.data.load_images) and record it in assets/realnvp.json.",
    )
    parser.add_argument(
        "--eval-split", default="test", metavar="SPLIT", help="split of --eval-data to measure on (default: test)."
    )
    parser.add_argument(
        "--eval-images",
        type=int,
        default=1000,
        metavar="N",
        help="measure on at most this many images of --eval-data (default: 1000).",
    )
    parser.add_argument(
        "--no-describe",
        action="store_true",
        help="do not print the signature listing (saved_model_cli show --all) after exporting.",
    )
    return parser


def run_export(args: argparse.Namespace) -> pathlib.Path:
    """Runs the ``export`` command: load ``--model``, export it, print the path and signatures.

    Args:
        args: parsed flags of :func:`add_export_arguments`.

    Returns:
        The directory written.
    """
    from tfp_realnvp.export import export_saved_model, load_metadata
    from tfp_realnvp.export_description import describe_export

    model_path = pathlib.Path(args.model)
    model = load_realnvp(model_path)
    images = labels = None
    if args.eval_data is not None:
        from tfp_realnvp.data import load_images

        if args.eval_images < 1:
            raise ValueError(f"--eval-images must be >= 1; received {args.eval_images}.")
        if model.num_classes is None:
            images = load_images(args.eval_data, split=args.eval_split)[: args.eval_images]
        else:
            from tfp_realnvp.data import load_labelled_images

            images, labels, _ = load_labelled_images(args.eval_data, split=args.eval_split)
            images, labels = images[: args.eval_images], labels[: args.eval_images]
    target = export_saved_model(
        model,
        args.output,
        version=args.version,
        overwrite=args.overwrite,
        measured_bits_per_dim=args.bits_per_dim,
        images_for_bpd=images,
        labels_for_bpd=labels,
        max_samples=args.max_samples,
    )
    print(f"exported {model_path} to {target}")
    bits = load_metadata(target)["bits_per_dim"]
    if bits is not None:
        print(f"bits/dim at export: {bits:.4f}")
    if not args.no_describe:
        print(describe_export(target))
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tfp_realnvp", description="Real NVP normalizing flows: train, evaluate, sample and export."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    for name, fn, help_text in (
        ("train", train, "train a Real NVP and report test bits/dim"),
        ("demo", demo, "train a small Real NVP on the shipped Fashion-MNIST images (a few minutes on CPU)"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == "train":
            _add_data_arguments(p)
            _add_model_arguments(p)
            p.add_argument(
                "--conditional",
                action="store_true",
                help="train a class-conditional model p(x | y) on the labels of --data (shipped, an IDX directory with label files, a .npz with a label array, an image folder with one subdirectory per class, or a tfds name); grids get one row per class and the report the accuracy of classify.",
            )
        else:
            p.add_argument("--batch-size", type=_positive_int, default=64, help="images per batch (default: 64).")
            p.set_defaults(
                num_scales=2,
                num_filters=16,
                num_blocks=1,
                no_batch_norm=False,
                data_dir=None,
                max_images=None,
                test_split="test",
            )
        _add_training_arguments(p, name)
        p.set_defaults(func=fn, default_epochs=100 if name == "demo" else 10)

    p = sub.add_parser(
        "evaluate",
        help="bits/dim of a saved model on a data split",
        description="Prints mean bits/dim of a saved .keras model.",
    )
    p.add_argument("--model", required=True, help="path of a saved .keras model.")
    _add_data_arguments(p)
    p.add_argument("--split", default="test", choices=["train", "test", "all"], help="which split (default: test).")
    p.add_argument(
        "--classify-images",
        type=_positive_int,
        default=CLASSIFY_IMAGES,
        help=f"class-conditional models: measure the accuracy of classify on the first N images (default: {CLASSIFY_IMAGES}).",
    )
    p.set_defaults(func=evaluate, batch_size=256)

    p = sub.add_parser(
        "sample",
        help="write a PNG grid of samples",
        description="Writes a PNG grid of samples from a saved .keras model.",
    )
    p.add_argument("--model", required=True, help="path of a saved .keras model.")
    p.add_argument("--num-samples", type=_positive_int, default=64, help="number of images (default: 64).")
    p.add_argument("--temperature", type=float, default=0.7, help="latent standard deviation (default: 0.7).")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0).")
    p.add_argument("--scale", type=_positive_int, default=2, help="enlarge the grid this many times (default: 2).")
    p.add_argument("--output", default="samples.png", help="PNG path (default: samples.png).")
    p.add_argument(
        "--label",
        type=int,
        default=None,
        help="class-conditional models: draw every sample from this class (default: one row per class).",
    )
    p.set_defaults(func=sample)

    if keras.backend.backend() == "tensorflow":  # SavedModel export needs TensorFlow
        p = sub.add_parser(
            "export",
            help="export a saved model as a TF SavedModel for serving",
            description="Exports a .keras model as a TF SavedModel.",
        )
        add_export_arguments(p)
        p.set_defaults(func=run_export)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


def cli_wording(message: str, parser: argparse.ArgumentParser | None) -> str:
    """``message`` with the Python keywords of ``parser``'s options written as its flags.

    ``overwrite=True`` becomes ``--overwrite``, ``image_size=3`` becomes
    ``--image-size 3``, and a bare ``image_size`` (names with an underscore only)
    becomes ``--image-size``.
    """
    if parser is None:
        return message
    flags = {}
    for action in parser._actions:
        long_flags = [option for option in action.option_strings if option.startswith("--")]
        if long_flags and action.dest != "help":
            flags[action.dest] = (long_flags[0], isinstance(action, argparse._StoreTrueAction))
    for dest in sorted(flags, key=len, reverse=True):
        flag, is_switch = flags[dest]
        if is_switch:
            message = re.sub(rf"(?<![\w-]){re.escape(dest)}=True\b", flag, message)
        message = re.sub(rf"(?<![\w-]){re.escape(dest)}=(?=\S)", f"{flag} ", message)
        if "_" in dest:
            message = re.sub(rf"(?<![\w-]){re.escape(dest)}\b", flag, message)
    return message


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit status (0 ok, 2 refused, 3 diverged, 128 + N on signal N)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    if getattr(args, "jit_compile", None) is not None:
        args.jit_compile = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    wording = _subparser(parser, args.command)
    try:
        args.func(args)
    except TrainingDiverged as error:
        checkpoint = error.checkpoint
        where = (
            f"the last good checkpoint is {checkpoint.path} (step {checkpoint.step}): lower --learning-rate and run "
            "the command again to resume from it, or pass --fresh to start over"
            if checkpoint is not None
            else "no checkpoint was written before; lower --learning-rate and run the command again"
        )
        print(f"error: {cli_wording(str(error), wording)}\n{where}. No model was saved.", file=sys.stderr)
        return EXIT_DIVERGED
    except Interrupted as error:
        print(str(error), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:
        print(f"error: {cli_wording(str(error), wording)}", file=sys.stderr)
        return EXIT_USAGE
    return 0
