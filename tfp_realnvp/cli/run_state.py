"""What a ``train`` run keeps between invocations: its output directory, its settings,
the checkpoint it resumes from, and the report of a run that diverged."""

from __future__ import annotations

import json
import math
import pathlib
import shlex
import sys

import keras
import numpy as np

from tfp_realnvp.model.realnvp import RESUME_SETTING_KEYS, RealNVP
from tfp_realnvp.training.checkpoints import (
    CheckpointManager,
    CheckpointMismatchError,
    TrainingDiverged,
    compare_settings,
    model_step,
)
from tfp_realnvp.training.distributed import Topology, broadcast_from_chief

MODEL_FILENAME = "model.keras"
REPORT_FILENAME = "report.json"
CHECKPOINT_DIRNAME = "checkpoints"


def verbosity(args) -> int:
    """``--verbose``, or by default a progress bar on a terminal and one line per epoch otherwise."""
    if args.verbose is not None:
        return args.verbose
    return 1 if sys.stdout.isatty() else 2


def command_line(args) -> str:
    """The command that resumes this run, as a shell would take it."""
    argv = getattr(args, "argv", None)
    if argv is None:
        argv = sys.argv[1:]
    return shlex.join(["python", "-m", "tfp_realnvp", *argv])


def run_settings(args, model: RealNVP, train_images: np.ndarray) -> dict:
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


def resume_from_checkpoint(args, model: RealNVP, manager: CheckpointManager, settings: dict) -> tuple[int, object]:
    """Restores the newest checkpoint into ``model`` after checking its settings match.

    Returns:
        The step it resumes at and the checkpoint.

    Raises:
        CheckpointMismatchError: when the checkpoint was written with other settings.
    """
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


def diverged_report(args, error: TrainingDiverged, resumed_from: int | None) -> dict:
    """``report.json`` of a run that diverged: where, and the last good checkpoint."""
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


_START_FRESH, _START_RESUME, _START_REFUSED = 0, 1, 2


def agree_on_start(args, manager: CheckpointManager, topology: Topology) -> bool:
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
